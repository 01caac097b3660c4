"""Helpers shared by the metrics: heat-map reductions, substrates, scores, areas."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, _deprecated, filters, reductions, targets

Array = jax.Array

IMAGENET_MEAN = (0.485, 0.456, 0.406)

#: Channel reductions `[H, W, C] -> [H, W]`, shared with `jaxattr.viz` (IDG and GNL
#: rank pixels by `"abs_sum"`, `|sum_c A|`; SmoothTaylor uses the signed `"sum"`).
REDUCTIONS = reductions.REDUCTIONS

#: RISE's insertion blur (docs/evaluation.md#substrates): an 11x11 kernel, sigma 5.
RISE_KLEN = 11
RISE_NSIG = 5.0


def check_image(x, caller: str, name: str = "x") -> Array:
    x = _checks.check_input(x, caller, name)
    if x.ndim != 3:
        raise ValueError(
            f"{caller}: {name} must be one image [H, W, C]; got shape"
            f" {tuple(x.shape)}. Use jax.vmap for batches."
        )
    return x


def check_attributions(a, x, caller: str, *, spatial: bool = True) -> Array:
    """`a` as an array of `x.shape` (or, with `spatial`, of `x.shape[:2]`)."""
    if not hasattr(a, "shape"):
        raise TypeError(
            f"{caller}: attributions must be an array; got {type(a).__name__}."
        )
    a = jnp.asarray(a)
    if spatial and tuple(a.shape) not in (tuple(x.shape), tuple(x.shape[:2])):
        raise ValueError(
            f"{caller}: attributions must have the image's shape {tuple(x.shape)} or"
            f" its spatial shape {tuple(x.shape[:2])}; got {tuple(a.shape)}."
        )
    if not spatial and a.shape != x.shape:
        raise ValueError(
            f"{caller}: attributions must have x's shape {tuple(x.shape)}; got"
            f" {tuple(a.shape)}."
        )
    return a.astype(x.dtype)


def heatmap(a: Array, reduction, caller: str) -> Array:
    """`[H, W, C]` (or an `[H, W]` map, returned as is) -> `[H, W]`."""
    if a.ndim == 2:
        return a
    if not callable(reduction):
        _checks.check_choice(reduction, tuple(REDUCTIONS), caller, "reduction")
    return reductions.reduce(jnp.asarray(a), reduction)


def rise_kernel(klen: int = RISE_KLEN, nsig: float = RISE_NSIG) -> np.ndarray:
    """RISE's `gkern`: a `[klen, klen]` Dirac smoothed by scipy's `gaussian_filter`.

    scipy's default `mode="reflect"` folds the Gaussian's tails back into the
    `klen` taps, so the kernel sums to 1 but is *not* a truncated Gaussian (and not
    `jaxattr.filters.gaussian_blur(sigma=5)`, whose radius is 20). Built here from
    scipy's 1-D kernel with the same half-sample reflection
    (docs/evaluation.md#substrates).
    """
    g = filters.gaussian_kernel1d(nsig)
    r = (g.shape[0] - 1) // 2
    k1 = np.zeros(klen)
    for i in range(klen):
        for t in range(-r, r + 1):
            m = (i + t) % (2 * klen)
            m = 2 * klen - 1 - m if m >= klen else m
            if m == klen // 2:
                k1[i] += g[t + r]
    return np.outer(k1, k1)


def rise_blur(x: Array, center, klen: int = RISE_KLEN, nsig: float = RISE_NSIG):
    """RISE's blurred image in pixel space: `center + conv(x - center)`.

    RISE blurs the *normalised* tensor with zero padding (`padding=klen // 2`);
    since normalisation is affine per channel, that is the blur of `x - mean`
    padded with zeros, shifted back by the mean colour `center` (`[C]`).
    """
    k = jnp.asarray(rise_kernel(klen, nsig), x.dtype)
    c = x.shape[-1]
    center = jnp.broadcast_to(jnp.asarray(center, x.dtype), (c,))
    y = jax.lax.conv_general_dilated(
        (x - center)[None],
        jnp.tile(k[:, :, None, None], (1, 1, 1, c)),
        window_strides=(1, 1),
        padding=[(klen // 2, (klen - 1) // 2)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )[0]
    return y + center


#: The images pixels are moved to or from: `"normalized_zero"` (the colour `mean`,
#: `jaxattr.baselines.normalized_zero(mean)`), `"black"` and `"uniform"` (as the
#: baselines of the same names) and `"rise_blur"` (RISE's 11 x 11 blur, `rise_blur`;
#: not the baselines' `"blurred"`, a Gaussian of sigma 50 for Blur IG).
SUBSTRATES = ("normalized_zero", "black", "rise_blur", "uniform")

#: Old substrate names that still work, with a DeprecationWarning: old -> new.
SUBSTRATE_ALIASES = {"mean": "normalized_zero", "blur": "rise_blur"}


def substrate(spec, x: Array, mean, key, caller: str, name: str) -> Array:
    """The image that pixels are moved to (deletion) or from (insertion).

    `"normalized_zero"`: the colour `mean` (0 in normalised space, RISE's deletion
    default; formerly `"mean"`); `"black"`: pixel 0; `"rise_blur"`: `rise_blur(x,
    mean)` (formerly `"blur"`); `"uniform"`: U[0, 1) noise (needs `key`); a scalar
    or array broadcasting to `x.shape`; or `x -> array`.
    """
    if isinstance(spec, str):
        spec = _deprecated.value(spec, SUBSTRATE_ALIASES, caller, name)
        _checks.check_choice(spec, SUBSTRATES, caller, name)
        if spec == "normalized_zero":
            return jnp.broadcast_to(jnp.asarray(mean, x.dtype), x.shape)
        if spec == "black":
            return jnp.zeros_like(x)
        if spec == "rise_blur":
            return rise_blur(x, mean)
        _checks.check_key(key, caller, f"{name}='uniform' is random")
        return jax.random.uniform(key, x.shape, x.dtype)
    b = spec(x) if callable(spec) else spec
    b = jnp.asarray(b, x.dtype)
    if not _checks.broadcasts_to(b.shape, x.shape):
        raise ValueError(
            f"{caller}: {name} must be one of {', '.join(map(repr, SUBSTRATES))}, a"
            f" scalar, a callable or an array broadcasting to {tuple(x.shape)}; got"
            f" shape {tuple(b.shape)}."
        )
    return jnp.broadcast_to(b, x.shape)


def score_fn(model_fn, output: str, caller: str) -> Callable[[Array], Array]:
    """`images [N, H, W, C] -> scores [N, K]` after the output transform."""
    if not callable(model_fn):
        raise TypeError(
            f"{caller}: model_fn must be a batched model function [N, H, W, C] ->"
            f" [N, K]; got {type(model_fn).__name__}."
        )
    _checks.check_choice(output, tuple(targets.OUTPUTS), caller, "output")
    transform = targets.OUTPUTS[output]

    def scores(imgs):
        what = (
            f"{caller} takes the model itself, batched: model_fn [N, H, W, C] -> [N, K]"
            " (e.g. model.fn), with the class as target=; not a scalar function of"
            " one example such as jaxattr.scalar_output(...)."
        )
        try:
            out = model_fn(imgs)
        except Exception as err:
            err.add_note(
                f"{caller}: model_fn failed on a batch of shape {tuple(imgs.shape)}."
                f" {what}"
            )
            raise
        shape = tuple(getattr(out, "shape", ()))
        if len(shape) != 2 or shape[0] != imgs.shape[0]:
            raise ValueError(
                f"{caller}: model_fn must map images [N, H, W, C] to scores [N, K];"
                f" given {tuple(imgs.shape)} it returned shape {shape}. {what}"
            )
        return transform(out)

    return scores


def resolve_target(outputs_x: Array, target, caller: str) -> Array:
    """`target` or, when None, the class predicted on the original image."""
    if outputs_x.ndim != 1:
        raise ValueError(
            f"{caller}: model_fn must return [N, K] scores; got"
            f" {tuple(outputs_x.shape)} per example."
        )
    if target is None:
        return jnp.argmax(outputs_x)
    if not _checks.is_traced(target):
        t = np.asarray(target)
        if t.ndim or not np.issubdtype(t.dtype, np.integer):
            raise TypeError(
                f"{caller}: target must be None or one integer class; got {t.dtype}"
                f" array of shape {t.shape}."
            )
        if not 0 <= int(t) < outputs_x.shape[0]:
            raise ValueError(
                f"{caller}: target must be in [0, {outputs_x.shape[0]}); got {int(t)}."
            )
    return jnp.asarray(target)


def rise_auc(curve: Array) -> Array:
    """RISE's normalised trapezoid `(sum s - s_0 / 2 - s_n / 2) / n`.

    See docs/evaluation.md#areas.
    """
    n = curve.shape[-1] - 1
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n


def trapezoid_dx1(curve: Array) -> Array:
    """Un-normalised trapezoid with dx = 1, Quantus' `calculate_auc`.

    See docs/evaluation.md#areas.
    """
    return curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2


def simpson_dx1(y: Array) -> Array:
    """Simpson's rule with dx = 1 along the last axis, as SmoothTaylor computed it.

    Odd number of points: composite Simpson (scipy's `simpson`/`simps`). Even number:
    the average of Simpson on the first `n - 1` points plus a trapezoid on the last
    interval and a trapezoid on the first interval plus Simpson on the last `n - 1`
    (scipy's `simps(even="avg")`, the default of the scipy SmoothTaylor used in
    2020; docs/evaluation.md#areas). Two points: the trapezoid.
    """
    n = y.shape[-1]
    if n == 1:
        return jnp.zeros(y.shape[:-1], y.dtype)
    if n == 2:
        return (y[..., 0] + y[..., 1]) / 2

    def odd(z):
        w = np.ones(z.shape[-1])
        w[1:-1:2] = 4
        w[2:-1:2] = 2
        return (z * jnp.asarray(w / 3, z.dtype)).sum(-1)

    if n % 2:
        return odd(y)
    first = odd(y[..., :-1]) + (y[..., -2] + y[..., -1]) / 2
    last = odd(y[..., 1:]) + (y[..., 0] + y[..., 1]) / 2
    return (first + last) / 2


def simpson_dx1_prefix(y: Array, n: Array) -> Array:
    """`simpson_dx1(y[:n])` for a traced count `n` (static shapes; `0 <= n <= L`).

    `y [L]`: a curve whose first `n` points are valid; the rest may be anything (NaN
    included) and get weight 0. Same rule as `simpson_dx1`: composite Simpson for odd
    `n`, scipy's `simps(even="avg")` for even `n`, the trapezoid for `n = 2`, 0 for
    `n <= 1`.
    """
    length = y.shape[-1]
    i = jnp.arange(length)
    n = jnp.asarray(n, jnp.int32)
    dtype = y.dtype

    def odd(lo, hi):  # composite Simpson weights on points lo..hi (hi - lo even)
        rel = i - lo
        inside = (i >= lo) & (i <= hi) & (hi > lo)
        w = jnp.where((rel == 0) | (i == hi), 1.0, jnp.where(rel % 2 == 1, 4.0, 2.0))
        return jnp.where(inside, w / 3, 0.0)

    def trap(a):  # the trapezoid on the interval (a, a + 1)
        return jnp.where((i == a) | (i == a + 1), 0.5, 0.0)

    w_odd = odd(0, n - 1)
    w_even = (odd(0, n - 2) + trap(n - 2) + odd(1, n - 1) + trap(0)) / 2
    w = jnp.where(n % 2 == 1, w_odd, w_even)
    w = jnp.where((n >= 2) & (i < n), w, 0.0).astype(dtype)
    return (jnp.where(i < n, y, 0) * w).sum(-1)
