"""examples(): folder, default photos and shared-asset specs; clear errors."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from jaxattr.runs import Example, examples
from jaxattr.runs.data import CIFAR10_ZIP, IMAGENET_SAMPLE, assets_dir


def _png(path, colour, hw=(10, 12)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), colour, np.uint8)).save(path)


@pytest.fixture
def tsv_folder(tmp_path):
    for i, name in enumerate(["b.png", "a.png", "sub/c.png"]):
        _png(tmp_path / name, (40 * i, 0, 0))
    (tmp_path / "labels.tsv").write_text(
        "file\tindex\na.png\t1\nb.png\t0\nsub/c.png\t7\n"
    )
    return tmp_path


def test_folder_with_labels_tsv(tsv_folder):
    it = examples(f"folder:{tsv_folder}", size=8, resize=8)
    assert operator.length_hint(it) == 3
    got = list(it)
    assert all(isinstance(e, Example) for e in got)
    assert [(e.id, e.label) for e in got] == [
        ("a.png", 1),
        ("b.png", 0),
        ("sub/c.png", 7),
    ]
    assert got[0].image.shape == (8, 8, 3) and got[0].image.dtype == np.float32
    assert 0 <= got[2].image.min() and got[2].image.max() <= 1
    assert [e.id for e in examples(f"folder:{tsv_folder}", size=8, resize=8, limit=2)] == [
        "a.png", "b.png"]  # fmt: skip


def test_folder_seed_is_a_fixed_permutation(tsv_folder):
    ids = lambda seed: [
        e.id for e in examples(f"folder:{tsv_folder}", size=4, resize=4, seed=seed)
    ]
    assert ids(3) == ids(3)
    assert sorted(ids(3)) == ids(0)
    assert any(ids(s) != ids(0) for s in (1, 2, 3))


def test_folder_with_class_subfolders(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(2):
            _png(tmp_path / cls / f"{i}.png", (i, 0, 0))
    got = list(examples(f"folder:{tmp_path}", size=6, resize=None))
    assert [(e.id, e.label) for e in got] == [
        ("cat/0.png", 0), ("cat/1.png", 0), ("dog/0.png", 1), ("dog/1.png", 1)]  # fmt: skip
    assert got[0].image.shape == (6, 6, 3)


def test_default_photos():
    got = list(examples("default", size=16, resize=16, limit=2))
    assert len(got) == 2 and got[0].id == "coffee" and got[0].label == 967
    assert got[1].image.shape == (16, 16, 3)


def test_unknown_spec_and_bad_arguments(tmp_path):
    with pytest.raises(
        ValueError, match=r"spec: expected one of .*'folder:PATH'.*got 'mnist'"
    ):
        examples("mnist", size=8, resize=8)
    with pytest.raises(ValueError, match="spec"):
        examples("folder:", size=8, resize=8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        examples(f"folder:{tmp_path / 'nope'}", size=8, resize=8)
    with pytest.raises(ValueError, match="contains no image files"):
        examples(f"folder:{tmp_path}", size=8, resize=8)
    with pytest.raises(ValueError, match="limit: expected a positive int"):
        examples("default", size=8, resize=8, limit=0)
    with pytest.raises(TypeError, match="spec: expected a string"):
        examples(None, size=8, resize=8)


@pytest.mark.parametrize("spec", ["imagenet-sample", "cifar10-test"])
def test_missing_shared_assets_say_where(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXATTR_SHARED", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=rf"spec '{spec}'.*{tmp_path}.*JAXATTR_SHARED"
    ):
        examples(spec, size=32, resize=32)


def test_one_assets_variable_and_a_deprecated_override(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXATTR_ASSETS", raising=False)
    monkeypatch.setenv("JAXATTR_SHARED", str(tmp_path))
    assert assets_dir() == tmp_path / "assets"
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("JAXATTR_ASSETS", str(elsewhere))
    with pytest.warns(DeprecationWarning, match="set \\$JAXATTR_SHARED"):
        assert assets_dir() == elsewhere
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(FileNotFoundError, match=str(elsewhere / "cifar10-test-jpeg")),
    ):
        examples("cifar10-test", size=32, resize=32)


def test_cifar10_test_interleaves_classes(shared_dir, monkeypatch):
    if not (shared_dir / CIFAR10_ZIP).is_file():
        pytest.skip(f"{shared_dir / CIFAR10_ZIP} not present")
    monkeypatch.setenv("JAXATTR_SHARED", str(shared_dir))
    it = examples("cifar10-test", size=32, resize=32, limit=12)
    assert operator.length_hint(it) == 12
    got = list(it)
    assert [e.label for e in got] == list(range(10)) + [0, 1]
    assert (
        got[0].id == "test/airplane/0000.jpg" and got[10].id == "test/airplane/0001.jpg"
    )
    assert got[3].id == "test/cat/0000.jpg"
    assert got[0].image.shape == (32, 32, 3) and got[0].image.dtype == np.float32
    assert (
        0.0 <= got[0].image.min()
        and got[0].image.max() <= 1.0
        and got[0].image.std() > 0.01
    )


def test_imagenet_sample(shared_dir, monkeypatch):
    if not (shared_dir / IMAGENET_SAMPLE / "labels.tsv").is_file():
        pytest.skip(f"{shared_dir / IMAGENET_SAMPLE}/labels.tsv not present")
    monkeypatch.setenv("JAXATTR_SHARED", str(shared_dir))
    got = list(examples("imagenet-sample", size=224, resize=256, limit=3))
    assert len(got) == 3 and all(isinstance(e.label, int) for e in got)
    assert all(0 <= e.label < 1000 for e in got) and got[0].image.shape == (224, 224, 3)
    assert len({e.id for e in got}) == 3 and not any(e.id.startswith("/") for e in got)
