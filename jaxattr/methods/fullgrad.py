"""FullGrad (Srinivas and Fleuret, NeurIPS 2019).

Settings and deviations from the authors' code: docs/comparison_methods.md#fullgrad.

The full-gradient decomposition of a network with biases `b_l` added at layer outputs
`h_l` is

    f(x) = <grad_x f, x - x0> + sum_l <grad_{h_l} f, b_l>

exactly for piecewise-linear networks without implicit biases (ReLU, max-pool,
affine layers, eval-mode BatchNorm with its effective bias `beta - mean * gamma /
sqrt(var + eps)`), where `x0` is the input at which the (affine) input
normalisation gives zero (the authors explain the normalised tensor). FullGrad's
saliency post-processes the input-gradient term and each spatial bias-gradient map:

    S = sum_c psi(grad_x f * (x - x0)) + sum_{spatial l} sum_c up(psi(grad_{h_l} f * b_l))

with `psi(v) = (|v| - min|v|) / (max(|v| - min|v|) + 1e-6)` over the whole map of
one layer (all channels at once) and `up` bilinear resizing to the input's `H x W`.

Calling convention. FullGrad needs gradients at the bias layers' outputs, so `f`
takes a second argument: `f(x, z)`, where `z` is a pytree of perturbations added to
the bias layers' outputs (one leaf per layer, unbatched shapes: `[h, w, C]` for a
convolution or a 2-D BatchNorm, `[C]` for a dense layer), and `biases` is the
matching pytree of effective biases (`[C]`, or anything broadcasting to the leaf).
`jaxattr.models.layers.fullgrad_model(model, target)` builds `f`, `z`, `biases` and
`x0` for the ports.

Decisions:

* The saliency is `[H, W]` (one map, channels summed as in the authors' code), not
  `x.shape`; `jaxattr.metrics` accept `[H, W]` maps.
* Upsampling follows the authors' code, `F.interpolate(mode="bilinear",
  align_corners=True)` [code: idiap/fullgrad-saliency:saliency/fullgrad.py
  `saliency`]; `align_corners=False` gives PyTorch's half-pixel convention (=
  `jax.image.resize(..., "bilinear")` when upsampling). Both are exact
  interpolation matrices, so they also match PyTorch (no antialiasing) when a map is
  larger than the input.
* Only leaves with 3 dimensions (spatial maps `[h, w, C]`) enter the saliency, as the
  authors aggregate only 4-D (batched) bias-gradients; dense layers still count in
  `delta` and `aux`.
* `delta` is the completeness error of the decomposition, `<grad_x f, x - x0> +
  sum_l <grad_{h_l} f, b_l> - f(x)`: 0 up to rounding for piecewise-linear networks
  without implicit biases. A clamp such as ReLU6 has one where it saturates (the
  constant 6), which shows up in `delta` unless it is given as a bias
  (`fullgrad_model` does so for ReLU6 ports by default, `relu6_bias`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, baselines
from jaxattr.base import Attribution
from jaxattr.fast_convolutions import fast_convolutions
from jaxattr.typing import Array, ArrayLike, BaselineLike, PRNGKey

__all__ = ["POSTS", "bilinear_matrix", "full_gradients", "psi"]

POSTS = ("fullgrad", "raw")
EPS = 1e-6


def psi(v: jax.Array, eps: float = EPS) -> jax.Array:
    """FullGrad's post-processing of one map: `|v|`, minus its minimum, divided by
    (its maximum + `eps`), over all entries of `v` at once."""
    a = jnp.abs(v)
    a = a - jnp.min(a)
    return a / (jnp.max(a) + eps)


@functools.lru_cache(maxsize=64)
def bilinear_matrix(size_in: int, size_out: int, align_corners: bool) -> np.ndarray:
    """`[size_out, size_in]` 1-D linear interpolation matrix of PyTorch's
    `F.interpolate(mode="bilinear", size=..., align_corners=...)` (without
    antialiasing)."""
    m = np.zeros((size_out, size_in), np.float64)
    for i in range(size_out):
        if align_corners:
            src = i * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        else:
            src = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        lam = src - i0
        m[i, i0] += 1.0 - lam
        m[i, i1] += lam
    return m


def _resize(a: jax.Array, h: int, w: int, align_corners: bool) -> jax.Array:
    """`[h', w'] -> [h, w]` bilinear (one map; `h, w` static)."""
    hi, wi = a.shape
    if (hi, wi) == (h, w):
        return a
    mh = jnp.asarray(bilinear_matrix(hi, h, align_corners), a.dtype)
    mw = jnp.asarray(bilinear_matrix(wi, w, align_corners), a.dtype)
    hp = jax.lax.Precision.HIGHEST
    return jnp.matmul(jnp.matmul(mh, a, precision=hp), mw.T, precision=hp)


def _upsampled_sum(maps, h: int, w: int, align_corners: bool) -> jax.Array:
    """`sum_l up(sum_c m_l)` of `[h_l, w_l, C_l]` maps, as `[h, w]`.

    Upsampling is linear and acts on the spatial axes only, so the channel sum is
    taken before it and maps of one size are added before it: one `[h_l, w_l] -> [h,
    w]` resize per distinct size instead of one `[h_l, w_l, C_l] -> [h, w, C_l]` per
    layer (EfficientNet-Lite0: 82 maps, about 2e9 upsampled values, become 5 small
    resizes). Equal to upsampling every channel up to float rounding.
    """
    by_size: dict[tuple[int, int], jax.Array] = {}
    for m in maps:
        s = jnp.sum(m, axis=-1)
        by_size[s.shape] = by_size[s.shape] + s if s.shape in by_size else s
    ups = [_resize(s, h, w, align_corners) for s in by_size.values()]
    return functools.reduce(jnp.add, ups)


def _path_names(tree) -> list[str]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p) or "<root>" for p, _ in flat]


def _check_trees(z, biases, caller: str):
    """`z` and `biases` must have the same structure, array leaves, and each bias must
    broadcast to its perturbation's shape."""
    z_leaves, z_def = jax.tree.flatten(z)
    b_leaves, b_def = jax.tree.flatten(biases)
    if not z_leaves:
        raise ValueError(f"{caller}: z has no leaves (no bias layers).")
    if z_def != b_def:
        zn, bn = set(_path_names(z)), set(_path_names(biases))
        missing, extra = sorted(zn - bn), sorted(bn - zn)
        raise ValueError(
            f"{caller}: biases must have z's tree structure (one bias per perturbed"
            f" layer); missing in biases: {missing[:5] or 'none'}, not in z:"
            f" {extra[:5] or 'none'}; z has {len(z_leaves)} leaves, biases"
            f" {len(b_leaves)}. Build both with jaxattr.models.layers.fullgrad_model"
            " (or bias_terms on the same perturbations)."
        )
    for name, zl, bl in zip(_path_names(z), z_leaves, b_leaves, strict=True):
        for what, leaf in (("z", zl), ("biases", bl)):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                raise TypeError(
                    f"{caller}: {what}{name} must be an array; got"
                    f" {type(leaf).__name__}."
                )
        if not _checks.broadcasts_to(bl.shape, zl.shape):
            raise ValueError(
                f"{caller}: biases{name} of shape {tuple(bl.shape)} does not broadcast"
                f" to the layer output z{name} of shape {tuple(zl.shape)} (expected"
                f" [C] = ({zl.shape[-1] if zl.ndim else 1},)); z must hold unbatched"
                " layer outputs, one example."
            )


def full_gradients(
    f: Callable[..., Array],
    x: ArrayLike,
    z: ArrayLike,
    biases: Any,
    baseline: BaselineLike = None,
    *,
    post: str = "fullgrad",
    align_corners: bool = True,
    key: PRNGKey | None = None,
) -> Attribution:
    """FullGrad saliency and full-gradient decomposition of `f(x, z)` at `z = 0`.

    Args:
      f: `f(x, z) -> scalar` (e.g. a logit): one example `x` and a pytree `z` of
        perturbations added to the outputs of the bias layers; `f(x, zeros) ==` the
        model's output.
      x: one image `[H, W, C]`.
      z: the perturbation pytree; only its leaves' shapes and dtypes are used (the
        gradient is taken at zeros), so zeros or `jax.ShapeDtypeStruct`s both work.
        Leaves are unbatched layer outputs: `[h, w, C]` (spatial, aggregated in the
        saliency) or `[C]` (dense).
      biases: pytree of z's structure with each layer's (effective) bias, `[C]` or
        anything broadcasting to the leaf's shape.
      baseline: `x0`, the input whose (normalised) value is zero: the input term is
        `(x - x0) * grad_x f`. `None` (zeros) for a model taking `x` as is; for a
        model that normalises `(x - mean) / std` inside, `x0 = mean` makes the input
        term the authors' `x_n * grad_{x_n} f` and keeps the decomposition complete.
        One baseline of those `jaxattr.baselines` accepts: a scalar, an array
        broadcasting to `x.shape`, `"normalized_zero"`, ...
      post: `"fullgrad"` (the paper's `psi`, then bilinear upsampling and a sum over
        channels and maps) or `"raw"` (the same aggregation without `psi`: signed
        channel sums of each term, upsampled; static).
      align_corners: bilinear convention (static); `True` as the authors' code.
      key: PRNG key, required only for a random baseline.

    Returns:
      `Attribution` with `attributions [H, W]` (the saliency; not `x.shape`),
      `delta` (scalar) `= <grad_x f, x - x0> + sum_l <grad_{z_l} f, b_l> - f(x)`, and
      `aux`: `f_x` (`f(x, 0)`; also under `value`, its deprecated old name),
      `input_term [*x.shape]` (`(x - x0) * grad_x f`), `bias_term` (scalar,
      `sum_l <grad_{z_l} f, b_l>`) and `bias_terms` (z's structure, one scalar
      per layer).

    Raises:
      ValueError: `x` not `[H, W, C]`, `f` not scalar, `z`/`biases` structures or
        shapes that do not match, a bad `baseline` (or a list of several), or a
        bad `post`.
      TypeError: non-array leaves, or a non-floating `x`.
    """
    caller = "full_gradients"
    x = _checks.check_input(x, caller)
    _checks.check_choice(post, POSTS, caller, "post")
    if x.ndim != 3:
        raise ValueError(
            f"{caller}: x must be one image [H, W, C]; got shape {tuple(x.shape)}."
            " Use jax.vmap for batches."
        )
    if not callable(f):
        raise TypeError(
            f"{caller}: f must be a function f(x, z); got {type(f).__name__}."
        )
    _check_trees(z, biases, caller)
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), z)
    shape = getattr(baseline, "shape", None)
    if shape is not None and not _checks.broadcasts_to(shape, x.shape):
        raise ValueError(
            f"{caller}: baseline of shape {tuple(shape)} does not broadcast to"
            f" x's shape {tuple(x.shape)}."
        )
    x0 = baselines.resolve_one(baseline, x, key, caller)

    out = jax.eval_shape(f, x, zeros)  # shape checked before the VJP is traced
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(
            f"{caller}: f(x, z) must return a scalar for one example; got"
            f" {getattr(out, 'shape', type(out).__name__)}."
        )

    def value_and_grads(x, zeros):
        value, vjp = jax.vjp(f, x, zeros)
        return value, *vjp(jnp.ones_like(value))

    # CPU: convolutions in the forms XLA:CPU runs fast (depthwise as taps, ...).
    value, gx, gz = fast_convolutions(value_and_grads)(x, zeros)
    input_term = (x - x0) * gx
    b_leaves = jax.tree.leaves(biases)
    g_leaves, g_def = jax.tree.flatten(gz)
    maps = [
        g * jnp.asarray(b, g.dtype) for g, b in zip(g_leaves, b_leaves, strict=True)
    ]
    per_layer = [jnp.sum(m) for m in maps]
    bias_term = functools.reduce(jnp.add, per_layer)
    delta = jnp.sum(input_term) + bias_term - value

    h, w = x.shape[:2]
    post_fn = psi if post == "fullgrad" else (lambda v: v)
    saliency = jnp.sum(post_fn(input_term), axis=-1)
    spatial = [post_fn(m) for m in maps if m.ndim == 3]
    if spatial:
        saliency = saliency + _upsampled_sum(spatial, h, w, align_corners)
    aux = {
        "f_x": value,
        "value": value,  # deprecated: the old name of f_x
        "input_term": input_term,
        "bias_term": bias_term,
        "bias_terms": jax.tree.unflatten(g_def, per_layer),
    }
    return Attribution(saliency.astype(x.dtype), delta, aux)
