"""Noise level of a heat map: SmoothTaylor's multi-scale total variation, AUTVC.

See docs/evaluation.md#multi-scale-total-variation-autvc. A Gaussian pyramid of
the signed channel sum (as
`skimage.transform.pyramid_gaussian(h, downscale=1.5)`: smoothing with sigma
`2 * downscale / 6` and reflected borders, then bilinear resizing to
`ceil(shape / downscale)` with half-pixel centres), levels kept while both sides
are `>= min_size`; at each level `|h|` is scaled by its minimum and 99th percentile
and clipped to [0, 1], and the average total variation is taken; AUTVC is Simpson's
rule over the levels. Level shapes are static.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, filters
from jaxattr.metrics import _common

Array = jax.Array


class TotalVariationCurve(NamedTuple):
    """Result of `autvc`.

    Attributes:
      score: AUTVC, Simpson's rule (dx = 1) over `curve`; lower is smoother.
      curve: `[n_levels]` average total variation of each pyramid level.
    """

    score: Array
    curve: Array


def pyramid_shapes(shape, downscale: float, min_size: int) -> list[tuple[int, int]]:
    """Static `(H, W)` of the kept levels, level 0 first."""
    shapes = [tuple(shape)]
    while True:
        nxt = tuple(math.ceil(d / float(downscale)) for d in shapes[-1])
        if min(nxt) < min_size or nxt == shapes[-1]:
            return shapes
        shapes.append(nxt)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]` bilinear weights of `ndimage.zoom(order=1, grid_mode=True)`."""
    coord = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    coord = np.clip(coord, 0, n_in - 1)
    i0 = np.floor(coord).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = coord - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] += 1 - frac
    m[np.arange(n_out), i1] += frac
    return m


def _reduce(h: Array, out_shape, sigma: float) -> Array:
    """One `pyramid_reduce` step: reflect-padded Gaussian, then bilinear resize."""
    k = jnp.asarray(filters.gaussian_kernel1d(sigma), h.dtype)
    r = (k.shape[0] - 1) // 2
    hp = jnp.pad(h, r, mode="symmetric")  # ndimage "reflect"
    hi = jax.lax.Precision.HIGHEST
    n_h, n_w = h.shape
    # separable smoothing as banded products (exact sums of shifted copies)
    sm = sum(k[i] * hp[i : i + n_h, :] for i in range(k.shape[0]))
    sm = sum(k[i] * sm[:, i : i + n_w] for i in range(k.shape[0]))
    ry = jnp.asarray(_interp_matrix(n_h, out_shape[0]), h.dtype)
    rx = jnp.asarray(_interp_matrix(n_w, out_shape[1]), h.dtype)
    return jnp.matmul(jnp.matmul(ry, sm, precision=hi), rx.T, precision=hi)


def average_total_variation(heat: Array, lp_norm: int = 1) -> Array:
    """SmoothTaylor's ATV of one `[H, W]` map after its normalisation.

    See docs/evaluation.md#multi-scale-total-variation-autvc.

    `a = |h|`, `a = clip((a - min) / (P99(a) - min), 0, 1)` (a constant map gives
    0 rather than SmoothTaylor's 0/0, also when the spread is within 16 ulp of the
    maximum), then `(sum |dx| + sum |dy|) / (H W)` for
    `lp_norm = 1`, `((sum |dx|^p)^(1/p) + (sum |dy|^p)^(1/p)) / (H W)` otherwise.
    """
    a = jnp.abs(heat)
    lo = a.min()
    span = jnp.percentile(a, 99) - lo
    # a (numerically) constant map: the pyramid's rounding (a few ulp) must not be
    # stretched to [0, 1]
    flat = span <= 16 * jnp.finfo(a.dtype).eps * a.max()
    safe = jnp.where(flat, 1, span)
    a = jnp.where(flat, 0, jnp.clip((a - lo) / safe, 0, 1))
    dx = jnp.abs(a[:, 1:] - a[:, :-1])
    dy = jnp.abs(a[1:, :] - a[:-1, :])
    if lp_norm == 1:
        tv = dx.sum() + dy.sum()
    else:
        tv = (dx**lp_norm).sum() ** (1 / lp_norm) + (dy**lp_norm).sum() ** (1 / lp_norm)
    return tv / a.size


def autvc(
    attributions,
    *,
    downscale: float = 1.5,
    min_size: int = 30,
    lp_norm: int = 1,
    reduction="sum",
) -> TotalVariationCurve:
    """Area under the multi-scale average-total-variation curve (docs/evaluation.md).

    Args:
      attributions: `[H, W, C]` (reduced by `reduction`, SmoothTaylor's signed
        channel sum by default) or an `[H, W]` map.
      downscale: pyramid factor (static, > 1); min_size: smallest side kept
        (static); lp_norm: 1 or p > 1 (static).

    Returns:
      `TotalVariationCurve` with `curve [n_levels]` (6 levels for 224 x 224).
    """
    caller = "autvc"
    if not hasattr(attributions, "shape") or attributions.ndim not in (2, 3):
        raise ValueError(
            f"{caller}: attributions must be [H, W, C] or [H, W]; got"
            f" {getattr(attributions, 'shape', type(attributions).__name__)}."
        )
    if not float(downscale) > 1:
        raise ValueError(f"{caller}: downscale must be > 1; got {downscale}.")
    min_size = _checks.check_static_int(min_size, caller, "min_size")
    lp_norm = _checks.check_static_int(lp_norm, caller, "lp_norm")
    a = jnp.asarray(attributions)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.float32)
    h = _common.heatmap(a, reduction, caller)
    if min(h.shape) < min_size:
        raise ValueError(
            f"{caller}: the heat map {tuple(h.shape)} is smaller than min_size"
            f" {min_size}."
        )
    curve = _curve(h, float(downscale), min_size, lp_norm)
    return TotalVariationCurve(_common.simpson_dx1(curve), curve)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _curve(h: Array, downscale: float, min_size: int, lp_norm: int) -> Array:
    """`[n_levels]` ATV per pyramid level (compiled once per shape and settings)."""
    sigma = 2 * downscale / 6
    levels = [h]
    for shape in pyramid_shapes(h.shape, downscale, min_size)[1:]:
        levels.append(_reduce(levels[-1], shape, sigma))
    return jnp.stack([average_total_variation(lv, lp_norm) for lv in levels])
