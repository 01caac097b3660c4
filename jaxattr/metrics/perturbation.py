"""Pixel-perturbation curves: insertion, deletion (RISE), MoRF and LeRF.

Every curve moves pixels, ranked by the channel-reduced heat map, from a start
image to a finish image, `step` pixels at a time, all channels of a pixel together
(the channel-layout bug class of Quantus#75). Image `k` is built on the fly as
`where(rank < k * step, finish, start)` (docs/evaluation.md), and the `n_steps + 1`
images are scored as batched forward passes in chunks of `batch_size` through
`jaxattr.engine.chunked_map`, so memory grows with the chunk, not with the steps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxattr import _checks, _deprecated, engine
from jaxattr.metrics import _common

Array = jax.Array

AUCS = ("normalized", "trapezoid")


class PerturbationCurve(NamedTuple):
    """Result of `insertion`, `deletion`, `morf`, `lerf`.

    Attributes:
      score: area under `curve` (scalar).
      curve: `[n_steps + 1]` scores of `target`, at 0 and after each step.
      fractions: `[n_steps + 1]` fraction of pixels moved at each point.
      target: the class scored (the original prediction unless given).
    """

    score: Array
    curve: Array
    fractions: Array
    target: Array


def _ranks(saliency: Array, order: str) -> Array:
    """`[H, W]` -> `[H, W]` rank of each pixel in the perturbation order.

    `"descending"` follows RISE exactly, `argsort(s)[::-1]` (ties: later pixels
    first); `"ascending"` is `argsort(s)` (ties: earlier pixels first).
    """
    s = saliency.reshape(-1)
    idx = jnp.argsort(s, stable=True)
    if order == "descending":
        idx = idx[::-1]
    return (
        jnp.zeros(s.shape, jnp.int32)
        .at[idx]
        .set(jnp.arange(s.size))
        .reshape(saliency.shape)
    )


def perturbation_curve(
    model_fn,
    x,
    attributions,
    *,
    start,
    finish,
    order: str = "descending",
    target=None,
    step: int = 224,
    output: str = "softmax",
    reduction="abs_sum",
    auc: str = "normalized",
    batch_size: int | None = 32,
    caller: str = "perturbation_curve",
) -> PerturbationCurve:
    """The generic curve behind the four public metrics.

    Args:
      model_fn: batched model `[N, H, W, C] -> [N, K]` (pixels in, logits out).
      x: one image `[H, W, C]`.
      attributions: `[H, W, C]` (reduced by `reduction`) or an `[H, W]` heat map.
      start, finish: `[H, W, C]` images; point `k` shows the first `k * step`
        ranked pixels of `finish` over `start`.
      order: `"descending"` (most relevant first) or `"ascending"` (static).
      target: class to score; `None`: argmax of `model_fn` on `x`.
      step: pixels per step (static); `n_steps = ceil(H W / step)`.
      output: `"softmax"`, `"logit"` or `"log_softmax"` (static).
      reduction: a name in `REDUCTIONS` or a callable `[H, W, C] -> [H, W]`.
      auc: `"normalized"` (RISE, x-axis [0, 1]) or `"trapezoid"` (Quantus, dx=1).
      batch_size: images per forward pass (static); `None`: all at once.
    """
    _checks.check_choice(order, ("descending", "ascending"), caller, "order")
    _checks.check_choice(auc, AUCS, caller, "auc")
    step = _checks.check_static_int(step, caller, "step")
    batch_size = _checks.check_batch_size(batch_size, caller)
    scores = _common.score_fn(model_fn, output, caller)
    h, w = x.shape[:2]
    n_pix = h * w
    n_steps = math.ceil(n_pix / step)
    sal = _common.heatmap(attributions, reduction, caller)
    ranks = _ranks(sal, order)[..., None]  # [H, W, 1]: channels move together
    c = _common.resolve_target(scores(x[None])[0], target, caller)

    def point(k):
        img = jnp.where(ranks < k * step, finish, start)
        return scores(img[None])[0, c]

    ks = jnp.arange(n_steps + 1)
    curve = engine.chunked_map(point, ks, batch_size=batch_size)
    fractions = jnp.minimum(ks * step, n_pix).astype(x.dtype) / n_pix
    area = (
        _common.rise_auc(curve) if auc == "normalized" else _common.trapezoid_dx1(curve)
    )
    return PerturbationCurve(area, curve, fractions, c)


#: The four public curves: name -> (ranking order, whether pixels of `x` move into the
#: substrate (`False`: the substrate replaces pixels of `x`)). `morf` is `deletion`
#: under DGA's name; `lerf` is its ascending twin.
CURVES: dict[str, tuple[str, bool]] = {
    "deletion": ("descending", False),
    "insertion": ("descending", True),
    "morf": ("descending", False),
    "lerf": ("ascending", False),
}


def _named_curve(
    name, model_fn, x, attributions, *, target, step, perturb_baseline, mean, output,
    reduction, auc, batch_size, key,
) -> PerturbationCurve:  # fmt: skip
    """The curve `name` of `CURVES`: checks, the substrate, then `perturbation_curve`."""
    order, inserts = CURVES[name]
    x = _common.check_image(x, name)
    a = _common.check_attributions(attributions, x, name)
    substrate = _common.substrate(
        perturb_baseline, x, mean, key, name, "perturb_baseline"
    )
    start, finish = (substrate, x) if inserts else (x, substrate)
    return perturbation_curve(
        model_fn, x, a, start=start, finish=finish, order=order, target=target,
        step=step, output=output, reduction=reduction, auc=auc,
        batch_size=batch_size, caller=name,
    )  # fmt: skip


def deletion(
    model_fn,
    x,
    attributions,
    *,
    target=None,
    step: int = 224,
    perturb_baseline="normalized_zero",
    mean=_common.IMAGENET_MEAN,
    output: str = "softmax",
    reduction="abs_sum",
    auc: str = "normalized",
    batch_size: int | None = 32,
    key=None,
) -> PerturbationCurve:
    """RISE deletion: most relevant pixels first, to a substrate.

    Definition, defaults and other protocols: docs/evaluation.md#insertion-and-deletion.

    Defaults are the RISE/IDG/GNL protocol: softmax of the class predicted on `x`,
    heat map `|sum_c A|`, 224 pixels per step, normalised trapezoid AUC (lower is
    better). The substrate `perturb_baseline` (Quantus' name) defaults to
    `"normalized_zero"`, the colour `mean` that is 0 after normalisation (RISE
    zeroed the normalised tensor; `jaxattr.baselines.normalized_zero(mean)`).
    Pass `mean=(127/255,) * 3` for EfficientNet-Lite0, whose normalisation is
    `(255 x - 127) / 128`. Also `"black"`, `"rise_blur"`, `"uniform"` (needs `key`),
    a scalar, an array or a callable `x -> image` (`_common.SUBSTRATES`; the old
    names `"mean"` and `"blur"` still work, with a DeprecationWarning).

    Args:
      model_fn: batched `[N, H, W, C] -> [N, K]`; pass it as an argument to jitted
        functions rather than closing over large weights.
      x: `[H, W, C]` pixels; attributions: `[H, W, C]` or `[H, W]`.
      step, output, auc, batch_size, reduction (if a name) are static.

    Returns:
      `PerturbationCurve` with `curve [ceil(H W / step) + 1]`.
    """
    return _named_curve(
        "deletion", model_fn, x, attributions, target=target, step=step,
        perturb_baseline=perturb_baseline, mean=mean, output=output,
        reduction=reduction, auc=auc, batch_size=batch_size, key=key,
    )  # fmt: skip


def insertion(
    model_fn,
    x,
    attributions,
    *,
    target=None,
    step: int = 224,
    perturb_baseline="rise_blur",
    mean=_common.IMAGENET_MEAN,
    output: str = "softmax",
    reduction="abs_sum",
    auc: str = "normalized",
    batch_size: int | None = 32,
    key=None,
) -> PerturbationCurve:
    """RISE insertion: most relevant pixels first, into a blur.

    Definition, defaults and other protocols: docs/evaluation.md#insertion-and-deletion.

    Starts from `perturb_baseline`, by default `"rise_blur"`, RISE's blur (11x11
    kernel, sigma 5, zero padding of the *normalised* image, i.e. `mean` padding in
    pixel space; see `_common.rise_blur`; not the baselines' `"blurred"`, a sigma-50
    Gaussian for Blur IG), and copies pixels of `x` in. Higher is better. Other
    arguments as `deletion`.
    """
    return _named_curve(
        "insertion", model_fn, x, attributions, target=target, step=step,
        perturb_baseline=perturb_baseline, mean=mean, output=output,
        reduction=reduction, auc=auc, batch_size=batch_size, key=key,
    )  # fmt: skip


@_deprecated.renamed(features_in_step="step")
def morf(
    model_fn,
    x,
    attributions,
    *,
    target=None,
    step: int = 224,
    perturb_baseline="normalized_zero",
    mean=_common.IMAGENET_MEAN,
    output: str = "softmax",
    reduction="abs_sum",
    auc: str = "normalized",
    batch_size: int | None = 32,
    key=None,
) -> PerturbationCurve:
    """Most-relevant-first pixel perturbation (DGA's MoRF).

    See docs/evaluation.md#morf-and-lerf.

    DGA reports the area under the softmax of the target class while pixels are
    removed (lower is better); its removal value and step are not stated, so the
    defaults are RISE's deletion ones (mean colour, 224 pixels per step), and
    `morf` equals `deletion` with the same arguments. `step` is pixels per step
    (static); `features_in_step=` (Quantus' name) is its deprecated alias.
    """
    return _named_curve(
        "morf", model_fn, x, attributions, target=target, step=step,
        perturb_baseline=perturb_baseline, mean=mean, output=output,
        reduction=reduction, auc=auc, batch_size=batch_size, key=key,
    )  # fmt: skip


@_deprecated.renamed(features_in_step="step")
def lerf(
    model_fn,
    x,
    attributions,
    *,
    target=None,
    step: int = 224,
    perturb_baseline="normalized_zero",
    mean=_common.IMAGENET_MEAN,
    output: str = "softmax",
    reduction="abs_sum",
    auc: str = "normalized",
    batch_size: int | None = 32,
    key=None,
) -> PerturbationCurve:
    """Least-relevant-first pixel perturbation (DGA's LeRF): higher is better.

    See docs/evaluation.md#morf-and-lerf.

    As `morf`, with pixels removed in ascending order of the heat map.
    """
    return _named_curve(
        "lerf", model_fn, x, attributions, target=target, step=step,
        perturb_baseline=perturb_baseline, mean=mean, output=output,
        reduction=reduction, auc=auc, batch_size=batch_size, key=key,
    )  # fmt: skip
