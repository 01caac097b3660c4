"""Building blocks shared by the model ports, and the FullGrad bias helper.

Every layer that adds a bias (a convolution or dense layer with a bias, and every
eval-mode BatchNorm, whose effective bias is ``beta - mean * gamma / sqrt(var + eps)``)
is followed by ``self.perturb(f"{name}.out", y)``. The perturbation is a no-op in a
plain ``apply``; to get the gradient of a target at the output of each bias layer (what
FullGrad needs), initialise the ``perturbations`` collection (``module.apply(variables,
x, mutable=["perturbations"])`` gives zeros of the right shapes) and differentiate with
respect to it. :func:`bias_terms` returns the matching bias vectors in a tree of the
same structure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FullGradInputs",
    "Relu6Bias",
    "adaptive_avg_pool",
    "batch_norm",
    "bias_terms",
    "conv",
    "dense",
    "fullgrad_model",
    "max_pool",
    "model_bias_fn",
    "relu6_with_bias",
]

PoolFn = Callable[..., jax.Array]
ActFn = Callable[[jax.Array], jax.Array]

#: Suffix of the perturbation that marks the output of a bias-adding layer.
OUT_SUFFIX = ".out"

#: Collection that marks the layers of BatchNorm-folded variables
#: (:mod:`jaxattr.models.fold`).
FOLDED = "folded_batchnorm"


def _folded(parent: nn.Module, name: str) -> bool:
    """Whether layer ``name`` of ``parent`` is marked as folded in the variables."""
    return not parent.is_initializing() and parent.has_variable(FOLDED, name)


def max_pool(
    x: jax.Array, window_shape: tuple[int, int], strides: tuple[int, int], padding
) -> jax.Array:
    """Max pooling over ``[N, H, W, C]`` (the default ``pool_fn`` of the ports); pads
    with -inf."""
    return nn.max_pool(x, window_shape, strides=strides, padding=padding)


def conv(
    parent: nn.Module,
    x: jax.Array,
    name: str,
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: Any = 0,
    groups: int = 1,
    use_bias: bool = False,
) -> jax.Array:
    """``[N, H, W, Cin] -> [N, H', W', features]``. ``padding`` is an int (symmetric, as
    in PyTorch) or ``'SAME'`` (TensorFlow). Must be called inside ``parent``'s compact
    method. With BatchNorm-folded variables (:mod:`jaxattr.models.fold`) a
    convolution marked as folded has a bias (the BatchNorm's, folded in)."""
    use_bias = use_bias or _folded(parent, name)
    pad = (
        padding
        if isinstance(padding, str)
        else ((padding, padding), (padding, padding))
    )
    y = nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=pad,
        feature_group_count=groups,
        use_bias=use_bias,
        name=name,
    )(x)
    return parent.perturb(name + OUT_SUFFIX, y) if use_bias else y


def dense(parent: nn.Module, x: jax.Array, name: str, features: int) -> jax.Array:
    """``[N, Cin] -> [N, features]``, with bias."""
    y = nn.Dense(features, name=name)(x)
    return parent.perturb(name + OUT_SUFFIX, y)


def batch_norm(
    parent: nn.Module,
    x: jax.Array,
    name: str,
    epsilon: float,
    *,
    use_running_average: bool = True,
) -> jax.Array:
    """BatchNorm over the last axis, ``[..., C] -> [..., C]``: eval mode (running
    statistics) by default; ``use_running_average=False`` (static) normalises with the
    batch statistics and updates the running ones (``momentum`` 0.9, PyTorch's 0.1),
    which needs ``mutable=['batch_stats']``. With BatchNorm-folded variables
    (:mod:`jaxattr.models.fold`) a layer marked as folded is the identity (its
    affine map is in the convolution before it)."""
    if _folded(parent, name):
        if not use_running_average:
            raise ValueError(
                f"batch_norm: layer {name} is folded into its convolution; "
                "use_running_average=False (training) needs the unfolded variables"
            )
        return x
    y = nn.BatchNorm(
        use_running_average=use_running_average,
        momentum=0.9,
        epsilon=epsilon,
        name=name,
    )(x)
    return parent.perturb(name + OUT_SUFFIX, y)


def _pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[size_out, size_in]`` averaging matrix of PyTorch's adaptive average
    pooling."""
    m = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """PyTorch's ``AdaptiveAvgPool2d`` on ``[N, H, W, C] -> [N, oh, ow, C]`` (bins
    ``[floor(i*H/oh), ceil((i+1)*H/oh))``)."""
    _, h, w, _ = x.shape
    oh, ow = output_size
    if (h, w) == (oh, ow):
        return x
    ph = jnp.asarray(_pool_matrix(h, oh), x.dtype)
    pw = jnp.asarray(_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("ih,jw,nhwc->nijc", ph, pw, x)


def bias_terms(
    variables: Mapping[str, Any], perturbations: Mapping[str, Any], *, bn_epsilon: float
) -> dict[str, Any]:
    """Bias vectors ``[C]`` for every ``'<layer>.out'`` entry of ``perturbations``.

    ``perturbations`` is the collection made by ``apply(...,
    mutable=['perturbations'])``. The result has the same tree structure, with the
    effective bias of each layer: ``bias`` for a conv/dense layer, ``bias - mean * scale
    / sqrt(var + bn_epsilon)`` for an eval-mode BatchNorm. FullGrad's bias-gradient of a
    layer is ``grad_out * bias``.
    """
    params = variables["params"]
    stats = variables.get("batch_stats", {})

    def walk(
        pert: Mapping[str, Any], p: Mapping[str, Any], s: Mapping[str, Any], where: str
    ):
        out = {}
        for key, value in pert.items():
            if isinstance(value, Mapping):
                out[key] = walk(value, p[key], s.get(key, {}), f"{where}/{key}")
                continue
            if not key.endswith(OUT_SUFFIX):
                raise ValueError(
                    f"bias_terms: perturbation {where}/{key} does not end in '.out'"
                )
            layer = key[: -len(OUT_SUFFIX)]
            lp = p[layer]
            if "scale" in lp:
                ls = s[layer]
                out[key] = lp["bias"] - ls["mean"] * lp["scale"] / jnp.sqrt(
                    ls["var"] + bn_epsilon
                )
            else:
                out[key] = lp["bias"]
        return out

    return walk(perturbations, params, stats, "")


#: Name prefix (Flax auto-naming) of the :class:`Relu6Bias` submodules.
RELU6_PREFIX = "Relu6Bias_"
RELU6_LEVEL = 6.0


class Relu6Bias(nn.Module):
    """ReLU6 whose saturation level is an explicit FullGrad bias.

    ``min(relu(y), level + z)`` with ``z = perturb('level.out', 0)``: the same values as
    ``relu6`` (exactly), but the constant ``level`` (6) that a saturated unit passes on
    becomes a bias ``[C]`` with its own gradient, so that the full-gradient
    decomposition stays complete (``grad_z f * level`` is the unit's share of the
    output). Created inline by :func:`relu6_with_bias`.
    """

    level: float = RELU6_LEVEL

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        t = self.perturb("level" + OUT_SUFFIX, jnp.full(y.shape, self.level, y.dtype))
        return jnp.minimum(jax.nn.relu(y), t)


def relu6_with_bias(y: jax.Array) -> jax.Array:
    """``act_fn`` for the ports: ReLU6 as a :class:`Relu6Bias` submodule of the module
    that calls it (Flax adopts modules built inside a compact method)."""
    return Relu6Bias()(y)


def _fullgrad_biases(
    variables: Mapping[str, Any], perturbations: Mapping[str, Any], bn_epsilon: float
) -> dict[str, Any]:
    """:func:`bias_terms`, plus ``level`` ``[C]`` for the :class:`Relu6Bias` entries."""

    def split(pert):
        layers_, clamps = {}, {}
        for key, value in pert.items():
            if key.startswith(RELU6_PREFIX):
                clamps[key] = {
                    k: jnp.full(v.shape[-1:], RELU6_LEVEL, v.dtype)
                    for k, v in value.items()
                }
            elif isinstance(value, Mapping):
                sub_layers, sub_clamps = split(value)
                if sub_layers:
                    layers_[key] = sub_layers
                if sub_clamps:
                    clamps[key] = sub_clamps
            else:
                layers_[key] = value
        return layers_, clamps

    def merge(a, b):
        out = dict(a)
        for key, value in b.items():
            out[key] = merge(out[key], value) if key in out else value
        return out

    plain, clamps = split(perturbations)
    return merge(bias_terms(variables, plain, bn_epsilon=bn_epsilon), clamps)


class FullGradInputs(NamedTuple):
    """What :func:`jaxattr.methods.fullgrad.full_gradients` needs for one example.

    ``f(x, z)``: pixels ``[H, W, 3]`` in [0, 1] and the perturbation tree -> the
    target's logit; ``zeros``: the perturbation tree (zeros, unbatched layer-output
    shapes); ``biases``: the effective biases, ``[C]`` per leaf; ``baseline``: the
    pixels at which the model's input normalisation gives zero (``[3]``, e.g. the
    ImageNet mean), so that the input term is the authors' ``x_n * grad_{x_n}``.
    """

    f: Callable[[jax.Array, Any], jax.Array]
    zeros: Any
    biases: Any
    baseline: jax.Array


def _affine_zero(normalise: Callable[[jax.Array], jax.Array], channels: int):
    """``x0`` with ``normalise(x0) == 0`` for a per-channel affine ``normalise``."""
    with jax.ensure_compile_time_eval():  # concrete even inside jit
        n0, n1, n2 = (
            np.asarray(normalise(jnp.full((1, 1, 1, channels), v, jnp.float32)))
            .reshape(channels)
            .astype(np.float64)
            for v in (0.0, 1.0, 2.0)
        )
    scale = n1 - n0
    if not (
        bool(np.all(scale != 0))
        and bool(np.allclose(n2 - n1, scale, rtol=1e-5, atol=1e-6))
    ):
        raise ValueError(
            "fullgrad_model: the model's normalise is not a per-channel affine map"
            " a * x + c with a != 0; FullGrad's decomposition needs its offset"
        )
    return jnp.asarray(-n0 / scale, jnp.float32)


def fullgrad_model(
    model: Any,
    target: Any,
    *,
    input_shape: tuple[int, int, int] | None = None,
    variables: Mapping[str, Any] | None = None,
    relu6_bias: bool | None = None,
) -> FullGradInputs:
    """FullGrad's ``(f, zeros, biases, baseline)`` for a ``jaxattr.models`` port.

    >>> fg = fullgrad_model(model, target=207)
    >>> out = full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline)

    ``f(x, z)`` is the logit of ``target`` for ONE unbatched image ``x`` ``[H, W,
    3]`` of pixels in [0, 1] (the model's normalisation inside, as ``Model.fn``),
    with ``z`` added at the output of every bias-adding layer (convolutions with a
    bias, eval-mode BatchNorms, dense layers; see :func:`bias_terms`). The model's
    affine normalisation is folded into ``baseline`` (pixels mapping to zero), so
    ``<grad_x f, x - baseline> + sum_l <grad_{z_l} f, b_l> == f(x, 0)`` for ReLU /
    max-pool ports.

    Args:
      model: a :class:`jaxattr.models.Model` (uses ``module``, ``variables``,
        ``normalise`` and ``input_size``).
      target: the class index (a Python int or a traced integer, so ``vmap`` over
        targets works).
      input_shape: ``(H, W, 3)`` of the images to explain; default
        ``(*model.input_size, 3)``. The perturbation shapes depend on it.
      variables: the model's variables (e.g. traced ones inside ``jit``, to avoid
        baking the weights in as constants); default ``model.variables``.
      relu6_bias: treat ReLU6's saturation level as a bias (:class:`Relu6Bias`; the
        module is cloned with ``act_fn=relu6_with_bias``, same outputs). ReLU6 is
        piecewise linear but not homogeneous: a saturated unit passes on the
        constant 6, an implicit bias that the explicit biases miss (for the trained
        EfficientNet-Lite0 it is larger than the logit itself). ``None`` (default):
        when the module's ``act_fn`` is ``relu6``; ``False``: explicit biases only,
        as the authors' code (whose completeness check then fails).

    A model from ``load(..., fold_batchnorm=True)`` is explained through
    ``model.unfolded``, its BatchNorm layers unfolded, so that every BatchNorm keeps its
    own bias term (folded, a convolution's own bias and its BatchNorm's would merge
    into one map). Folded ``variables`` are then replaced by the unfolded model's
    (concrete, so inside ``jit`` they become constants); folded ``variables`` without
    ``model.unfolded`` raise ``ValueError``.
    """
    if variables is None or FOLDED in variables:
        unfolded = getattr(model, "unfolded", None)
        if unfolded is not None:  # FullGrad's bias terms are the BatchNorms' own
            model, variables = unfolded, None
        elif variables is not None:
            raise ValueError(
                "fullgrad_model: variables have their BatchNorm layers folded into "
                "the convolutions (load(..., fold_batchnorm=True)); FullGrad's bias "
                "terms need the unfolded ones: pass a model whose `unfolded` is set "
                "or the unfolded variables"
            )
    module = model.module
    act_fn = getattr(module, "act_fn", None)
    if relu6_bias is None:
        relu6_bias = act_fn is jax.nn.relu6
    if relu6_bias:
        if act_fn is None:
            raise ValueError(
                "fullgrad_model: relu6_bias=True needs a module with an act_fn field"
            )
        module = module.clone(act_fn=relu6_with_bias)
    vs = model.variables if variables is None else variables
    normalise = model.normalise
    if input_shape is None:
        input_shape = (*model.input_size, 3)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"fullgrad_model: input_shape must be (H, W, C); got {input_shape}"
        )
    baseline = _affine_zero(normalise, input_shape[-1])
    batch = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: module.apply(v, normalise(x), mutable=["perturbations"]),
        vs,
        batch,
    )
    pert_shapes = state["perturbations"]
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), pert_shapes)
    biases = _fullgrad_biases(vs, pert_shapes, module.bn_epsilon)

    def f(x: jax.Array, z: Any) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(
                f"fullgrad_model: f takes one image [H, W, C]; got shape {x.shape}"
            )
        pert = jax.tree.map(lambda a: a[None], z)
        logits = module.apply({**vs, "perturbations": pert}, normalise(x[None]))
        return logits[0, target]

    return FullGradInputs(f, zeros, biases, baseline)


def model_bias_fn(
    model: Any, target: Any, *, variables: Mapping[str, Any] | None = None
) -> Callable[[jax.Array], jax.Array]:
    """DGA's ``bias_fn`` for a ``jaxattr.models`` port: the explicit FullGrad bias total.

    For the logit of ``target`` at one example ``x`` (``[H, W, 3]`` pixels), ``B(x) =
    f(x) - <grad_x f, x> = sum_l <b_l, grad_{h_l} f> - <grad_x f, x0>``, where ``h_l``
    are the outputs of the bias layers (and the saturation level of ReLU6 units) and
    ``x0`` the pixels the model's affine normalisation maps to zero, whose offset
    counts as a bias (built by :func:`fullgrad_model`). Use it with
    ``jaxattr.methods.dga.uniform_fullgrad(..., ufg="explicit", bias_fn=...)``.

    Args:
      model: a :class:`jaxattr.models.Model`.
      target: the class (int, may be traced).
      variables: the model's variables, e.g. traced ones inside ``jit``; default
        ``model.variables``.

    Returns:
      ``bias_fn(x) -> scalar`` for one image ``x`` ``[H, W, 3]``.
    """

    def bias_fn(x: jax.Array) -> jax.Array:
        fg = fullgrad_model(model, target, input_shape=x.shape, variables=variables)
        g_x, g_z = jax.grad(fg.f, argnums=(0, 1))(x, fg.zeros)
        total = sum(
            jnp.vdot(g, jnp.broadcast_to(b, g.shape))
            for g, b in zip(
                jax.tree.leaves(g_z), jax.tree.leaves(fg.biases), strict=True
            )
        )
        return total - jnp.vdot(g_x, jnp.broadcast_to(fg.baseline, x.shape))

    return bias_fn
