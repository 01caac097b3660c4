"""tensorflow-datasets pipelines: pure parts always, the pipeline with tfds' mock data."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from jaxattr import data as D
from jaxattr import images as J
from jaxattr.runs.data import assets_dir

SAMPLES = assets_dir() / "imagenet-sample-images"


# ----------------------------------------------------------------------------- pure parts


def test_dataset_defaults():
    assert D.dataset_defaults("imagenet2012") == ("validation", 224, 256)
    assert D.dataset_defaults("imagenette/160px-v2").size == 224
    assert D.dataset_defaults("cifar10:3.0.2") == ("test", None, None)
    with pytest.raises(ValueError, match=r"name: expected one of .* got 'mnist'"):
        D.dataset_defaults("mnist")


def test_example_to_arrays_matches_file_pipeline():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    x, y = D.example_to_arrays({"image": raw, "label": np.int64(4)})
    assert x.shape == (224, 224, 3) and x.dtype == np.float32 and y == 4
    np.testing.assert_array_equal(x, J.preprocess(raw))
    x32, _ = D.example_to_arrays(
        {"image": raw[:32, :32], "label": 1}, size=None, resize=None
    )
    np.testing.assert_array_equal(x32, raw[:32, :32] / np.float32(255.0))
    _, mapped = D.example_to_arrays({"image": raw, "label": 1}, label_map={1: 217})
    assert mapped == 217


def test_example_to_arrays_errors():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(
        ValueError, match=r"example: expected a dict with 'image' and 'label'"
    ):
        D.example_to_arrays({"image": img})
    with pytest.raises(
        ValueError,
        match=r"example\['image'\]: expected uint8 pixels, got dtype float32",
    ):
        D.example_to_arrays({"image": img.astype(np.float32), "label": 0})
    with pytest.raises(ValueError, match=r"example\['label'\]: 3 is not in label_map"):
        D.example_to_arrays(
            {"image": img, "label": 3}, size=None, resize=None, label_map={0: 1}
        )


def test_imagenette_wnids_are_at_their_imagenet_indices():
    if not (SAMPLES / "labels.tsv").is_file():
        pytest.skip(f"shared ImageNet labels not found at {SAMPLES}")
    wnid_at = {}
    with open(SAMPLES / "labels.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            wnid_at[int(row["index"])] = row["wnid"]
    assert len(D.IMAGENETTE_TO_IMAGENET) == 10
    for wnid, idx in D.IMAGENETTE_TO_IMAGENET.items():
        if idx in wnid_at:  # even index: listed directly
            assert wnid_at[idx] == wnid
        else:  # odd index: the standard order is wnid-sorted, so it sits between its neighbours
            assert wnid_at[idx - 1] < wnid < wnid_at[idx + 1], wnid


def test_cifar10_class_names_need_no_tfds():
    assert D.tfds_class_names("cifar10")[3] == "cat"
    assert len(D.CIFAR10_CLASSES) == 10


def test_missing_tfds_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxattr\[data\]'"):
        D.tfds_dataset("cifar10")


def test_argument_errors_before_any_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(
        ValueError, match=r"take: expected a positive int or None, got 0"
    ):
        D.tfds_dataset("cifar10", take=0)
    with pytest.raises(
        ValueError, match=r"batch_size: expected a positive int or None, got -2"
    ):
        D.tfds_dataset("cifar10", batch_size=-2)
    with pytest.raises(ValueError, match="name: expected one of"):
        D.tfds_dataset("imagenet")


# ----------------------------------------------------------------------------- with tfds


@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip(
        "tensorflow_datasets", reason="tensorflow-datasets not installed"
    )


def test_cifar10_mock(tfds):
    with tfds.testing.mock_data(num_examples=5):
        out = list(D.tfds_dataset("cifar10"))
        raw = list(tfds.as_numpy(tfds.builder("cifar10").as_dataset(split="test")))
    assert len(out) == 5
    for (x, y), ex in zip(out, raw):
        assert x.shape == (32, 32, 3) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1 and isinstance(y, int) and 0 <= y < 10
        np.testing.assert_array_equal(x, ex["image"] / np.float32(255.0))
        assert y == int(ex["label"])


def test_batches_and_take(tfds):
    with tfds.testing.mock_data(num_examples=7):
        batches = list(D.tfds_dataset("cifar10", batch_size=3))
        taken = list(D.tfds_dataset("cifar10", take=2))
        resized = next(D.tfds_dataset("cifar10", size=24, resize=28))
    assert [b[0].shape for b in batches] == [
        (3, 32, 32, 3),
        (3, 32, 32, 3),
        (1, 32, 32, 3),
    ]
    assert all(b[1].dtype == np.int64 for b in batches)
    assert len(taken) == 2
    assert resized[0].shape == (24, 24, 3)


def test_imagenette_mock_maps_to_imagenet(tfds):
    with tfds.testing.mock_data(num_examples=6):
        out = list(D.tfds_dataset("imagenette"))
        raw = list(
            tfds.as_numpy(tfds.builder("imagenette").as_dataset(split="validation"))
        )
        names = tfds.builder("imagenette").info.features["label"].names
        local = [y for _, y in D.tfds_dataset("imagenette", imagenet_labels=False)]
        cls = D.tfds_class_names("imagenette")
        with pytest.raises(ValueError, match="batching needs size"):
            D.tfds_dataset("imagenette", size=None, batch_size=2)
    for (x, y), ex in zip(out, raw):
        assert x.shape == (224, 224, 3) and x.dtype == np.float32
        np.testing.assert_array_equal(x, J.preprocess(ex["image"]))
        assert y == D.IMAGENETTE_TO_IMAGENET[names[int(ex["label"])]]
    assert local == [int(ex["label"]) for ex in raw]
    assert len(cls) == 1000 and cls[0] == "n01440764" and cls[1] == ""


def test_imagenet2012_mock_and_manual_dir(tfds, tmp_path, monkeypatch):
    with tfds.testing.mock_data(num_examples=3):
        seen = {}

        def fake_prepare(self, download_config=None, **kwargs):
            seen["manual_dir"] = getattr(download_config, "manual_dir", None)

        monkeypatch.setattr(
            tfds.core.DatasetBuilder, "download_and_prepare", fake_prepare
        )
        out = list(D.tfds_dataset("imagenet2012", manual_dir=tmp_path, batch_size=2))
    assert str(seen["manual_dir"]) == str(tmp_path)
    assert out[0][0].shape == (2, 224, 224, 3) and out[1][0].shape == (1, 224, 224, 3)
    labels = np.concatenate([y for _, y in out])
    assert labels.min() >= 0 and labels.max() < 1000


def test_unprepared_dataset_says_how_to_get_it(tfds, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"'cifar10' is not prepared .* download=True"
    ):
        D.tfds_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"imagenet2012.*manual_dir="):
        D.tfds_dataset("imagenet2012", data_dir=tmp_path)


def _spy_builder(tfds, monkeypatch) -> list:
    """Records the data_dir of every `tfds.builder` call."""
    seen, real = [], tfds.builder

    def builder(name, *args, data_dir=None, **kwargs):
        seen.append(data_dir)
        return real(name, *args, data_dir=data_dir, **kwargs)

    monkeypatch.setattr(tfds, "builder", builder)
    return seen


def test_data_dir_argument_and_environment_variable(tfds, tmp_path, monkeypatch):
    """`data_dir=` reaches tfds; without it `$TFDS_DATA_DIR` does, even when set
    after tensorflow-datasets was imported (tfds itself reads it once, on import)."""
    seen = _spy_builder(tfds, monkeypatch)
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=2):
        assert len(list(D.tfds_dataset("cifar10", data_dir=tmp_path / "a"))) == 2
        list(D.tfds_dataset("cifar10"))
        monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
        list(D.tfds_dataset("cifar10"))
        D.tfds_class_names("imagenette")
        list(D.tfds_dataset("cifar10", data_dir=tmp_path / "b"))
    assert seen == [
        str(tmp_path / "a"),
        None,
        str(tmp_path / "env"),
        str(tmp_path / "env"),
        str(tmp_path / "b"),
    ]
    with pytest.raises(FileNotFoundError, match=r"TFDS_DATA_DIR"):
        D.tfds_dataset("cifar10")


def test_runs_tfds_spec(tfds, tmp_path, monkeypatch):
    """`jaxattr.runs.data.examples("tfds:NAME[:SPLIT]", ..., data_dir=)`."""
    from jaxattr.runs.data import examples

    seen = _spy_builder(tfds, monkeypatch)
    with tfds.testing.mock_data(num_examples=4):
        cifar = list(examples("tfds:cifar10", size=32, resize=None, limit=3))
        nette = examples(
            "tfds:imagenette:train", size=64, resize=72, limit=2, data_dir=tmp_path
        )
        assert nette.__length_hint__() == 2
        nette = list(nette)
        with pytest.raises(ValueError, match=r"expected 'tfds:NAME\[:SPLIT\]'"):
            examples("tfds:", size=32, resize=None)
    assert [e.id for e in cifar] == [
        "cifar10:test/0",
        "cifar10:test/1",
        "cifar10:test/2",
    ]
    assert all(e.image.shape == (32, 32, 3) and 0 <= e.label < 10 for e in cifar)
    assert [e.id for e in nette] == ["imagenette:train/0", "imagenette:train/1"]
    assert all(e.image.shape == (64, 64, 3) for e in nette)
    assert all(e.label in D.IMAGENETTE_TO_IMAGENET.values() for e in nette)
    assert seen == [None, str(tmp_path)]
