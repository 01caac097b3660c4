"""AUPC: SmoothTaylor's region perturbation ("sensitivity").

Definition and defaults: docs/evaluation.md#region-perturbation-aupc.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxattr import _checks, _deprecated, engine
from jaxattr.metrics import _common

Array = jax.Array


class RegionPerturbation(NamedTuple):
    """Result of `aupc`.

    Attributes:
      score: AUPC, Simpson's rule (dx = 1) over the `n_regions + 1` valid points of
        `curve`; lower is better.
      curve: `[n_regions + 1]` scores (`n_regions` the argument) divided by `|s_0|`: the original score, then
        after each region the mean score of its `n_perturb_samples` candidates; NaN after
        the last region perturbed (`curve[n_regions + 1:]`), where SmoothTaylor's
        curve has ended.
      regions: `[n_regions, 2]` top-left (the argument) corners (row, column) of the regions, in
        order; `-1` where no free window was left.
      target: the class scored.
      n_regions: the number of regions perturbed, `<=` the argument `n_regions` (int32): fewer
        when no free window was left (e.g. 32x32 images with 15x15 windows: at most
        4). The valid curve is `curve[: n_regions + 1]`.
    """

    score: Array
    curve: Array
    regions: Array
    target: Array
    n_regions: Array


def window_relevance(heat: Array, kernel_size: int) -> Array:
    """`[H, W]` signed map -> `[H - k, W - k]` mean of `|heat|` over each k x k window.

    Top-lefts run over `[0, H - k)` as in SmoothTaylor's `range(H - k)` (the last
    row and column of windows are not candidates).
    """
    k = kernel_size
    sums = jax.lax.reduce_window(
        jnp.abs(heat), jnp.zeros((), heat.dtype), jax.lax.add, (k, k), (1, 1), "VALID"
    )
    return sums[:-1, :-1] / (k * k)


@_deprecated.renamed(num_regions="n_regions", num_perturbs="n_perturb_samples")
def aupc(
    model_fn,
    x,
    attributions,
    *,
    key,
    target=None,
    kernel_size: int = 15,
    n_regions: int = 30,
    n_perturb_samples: int = 50,
    output: str = "logit",
    batch_size: int | None = None,
) -> RegionPerturbation:
    """Area under the region-perturbation curve, exactly as SmoothTaylor
    (docs/evaluation.md#region-perturbation-aupc).

    Windows of `kernel_size`^2 pixels are ranked by the mean `|sum_c A|`; greedily,
    `n_regions` times, the best window whose top-left is not within
    `kernel_size - 1` of an earlier region's is chosen; `n_perturb_samples` candidate
    patches, i.i.d. U[0, 1) per pixel and channel (SmoothTaylor's draw_mode 0,
    `U[0, 255] / 255`), are pasted into the current image (perturbations
    accumulate) and scored in one batched pass; the curve records their mean score
    and the candidate whose score is closest to the median is applied (first one on
    ties). Scores are logits by default, as in SmoothTaylor. The region loop is a
    `lax.scan` (each region depends on the last).

    When no free window is left before `n_regions` regions, SmoothTaylor's loop
    stops (`if not found: break`) and its AUPC is `scipy.integrate.simps(curve,
    dx=1)` over the shorter curve. So is this one: the shapes stay static, the
    points past the end are NaN in `curve` and left out of the score, which is
    Simpson's rule over the `n_regions + 1` valid points (scipy's `even="avg"` rule
    when that count is even, the trapezoid for 2 points). There is always at least
    one window (`kernel_size < min(H, W)`), so `n_regions >= 1`.

    Args:
      model_fn: batched `[N, H, W, C] -> [N, K]`.
      x: `[H, W, C]` pixels in [0, 1]; attributions: `[H, W, C]` (channels summed,
        signed) or an `[H, W]` map.
      key: PRNG key (required): region `i` draws its patches from
        `jax.random.split(key, n_regions)[i]`, shape `[n_perturb_samples, k, k, C]`.
      target: class; `None`: argmax on `x` (SmoothTaylor explains the top class).
      kernel_size, n_regions, n_perturb_samples, output, batch_size: static
        (`num_regions=`, `num_perturbs=`: deprecated names of the two counts).
      batch_size: candidates per forward pass; `None`: all `n_perturb_samples` at
        once.

    Returns:
      `RegionPerturbation` (`n_regions` says how much of `curve` is valid).
    """
    caller = "aupc"
    x = _common.check_image(x, caller)
    a = _common.check_attributions(attributions, x, caller)
    _checks.check_key(key, caller, "candidate patches are random")
    k = _checks.check_static_int(kernel_size, caller, "kernel_size")
    n_regions = _checks.check_static_int(n_regions, caller, "n_regions")
    n_cand = _checks.check_static_int(n_perturb_samples, caller, "n_perturb_samples")
    batch_size = _checks.check_batch_size(batch_size, caller)
    h, w, c = x.shape
    if k >= min(h, w):
        raise ValueError(
            f"{caller}: kernel_size must be < the image's height and width"
            f" {(h, w)}; got {k}."
        )
    scores = _common.score_fn(model_fn, output, caller)
    s_x = scores(x[None])[0]
    t = _common.resolve_target(s_x, target, caller)
    s0 = s_x[t]
    rel = window_relevance(_common.heatmap(a, "sum", caller), k)
    gh, gw = rel.shape
    rows = jnp.arange(gh)[:, None]
    cols = jnp.arange(gw)[None, :]

    def region(carry, key_i):
        img, free = carry
        masked = jnp.where(free, rel, -jnp.inf)
        i = jnp.argmax(masked.reshape(-1))
        valid = free.any()
        r0, c0 = i // gw, i % gw
        near = (jnp.abs(rows - r0) <= k - 1) & (jnp.abs(cols - c0) <= k - 1)
        free = free & ~(near & valid)
        patches = jax.random.uniform(key_i, (n_cand, k, k, c), x.dtype)

        def candidate(patch):
            im = jax.lax.dynamic_update_slice(img, patch, (r0, c0, 0))
            return scores(im[None])[0, t]

        logits = engine.chunked_map(candidate, patches, batch_size=batch_size)
        j = jnp.argmin(jnp.abs(logits - jnp.median(logits)))
        chosen = jax.lax.dynamic_update_slice(img, patches[j], (r0, c0, 0))
        img = jnp.where(valid, chosen, img)
        s = jnp.where(valid, logits.mean(), jnp.nan)
        corner = jnp.where(valid, jnp.stack([r0, c0]), -1)
        return (img, free), (s, corner, valid)

    free0 = jnp.ones((gh, gw), bool)
    keys = jax.random.split(key, n_regions)
    _, (s, corners, valid) = jax.lax.scan(region, (x, free0), keys)
    curve = jnp.concatenate([s0[None], s]) / jnp.abs(s0)
    # Once no window is free none becomes free again: the valid regions are a prefix.
    done = valid.sum().astype(jnp.int32)
    score = _common.simpson_dx1_prefix(curve, done + 1)
    return RegionPerturbation(score, curve, corners, t, done)
