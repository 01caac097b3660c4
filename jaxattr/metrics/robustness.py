"""Sensitivity-n (Ancona et al.), max-sensitivity and infidelity (Yeh et al.).

Definitions: docs/evaluation.md. Each evaluates many perturbed inputs: the model
(sensitivity-n, infidelity) or the explainer (max-sensitivity, re-run on every
perturbed input) is `vmap`ped over them in chunks of `batch_size` through
`jaxattr.engine.chunked_map`. All randomness comes from the explicit `key`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, engine
from jaxattr.metrics import _common

Array = jax.Array


def _pearson(a: Array, b: Array) -> Array:
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return (a * b).sum(-1) / jnp.sqrt((a * a).sum(-1) * (b * b).sum(-1))


class SensitivityN(NamedTuple):
    """Result of `sensitivity_n`.

    Attributes:
      score: `[len(n)]` Pearson correlation per subset size (a scalar for an int n).
      attribution_sums: `[len(n), n_subsets]` sums of the heat map over each subset.
      output_drops: `[len(n), n_subsets]` `f(x) - f(x with the subset removed)`.
    """

    score: Array
    attribution_sums: Array
    output_drops: Array


def subset_masks(key, shape, n: int, n_subsets: int) -> Array:
    """`[n_subsets, *shape]` boolean masks of `n` random pixels each.

    Subset `i` is the `n` smallest entries of `jax.random.uniform(keys[i], (H W,))`
    with `keys = jax.random.split(key, n_subsets)` (a uniform random subset).
    """
    size = int(np.prod(shape))

    def one(k):
        u = jax.random.uniform(k, (size,))
        ranks = jnp.zeros(size, jnp.int32).at[jnp.argsort(u)].set(jnp.arange(size))
        return (ranks < n).reshape(shape)

    return jax.vmap(one)(jax.random.split(key, n_subsets))


def sensitivity_n(
    f,
    x,
    attributions,
    *,
    n,
    key,
    n_subsets: int = 100,
    perturb_baseline=0.0,
    mean=_common.IMAGENET_MEAN,
    reduction="sum",
    batch_size: int | None = None,
) -> SensitivityN:
    """Ancona et al.'s sensitivity-n: corr(sum_S R, f(x) - f(x_[S = baseline])).

    Features are pixels: a subset replaces all channels of its pixels by
    `perturb_baseline` (0 = black by default, as Ancona's `x_S = 0`;
    `"normalized_zero"`, `"rise_blur"`, arrays as in `deletion`), and `R` is the
    channel-summed signed attribution (`reduction="sum"`). This is the paper's
    estimator, not Quantus' cumulative `SensitivityN`
    (docs/evaluation.md#sensitivity-n).

    Args:
      f: one example -> scalar (`jaxattr.scalar_output`), the explained output.
      x: `[H, W, C]`; attributions: `[H, W, C]` or `[H, W]`.
      n: subset size in pixels, or a tuple of sizes (static); one curve point each.
      key: PRNG key; size `n[j]` uses `subset_masks(split(key, len(n))[j], ...)`.
      n_subsets: random subsets per size (static).
      batch_size: perturbed images per chunk (static).

    Returns:
      `SensitivityN`.
    """
    caller = "sensitivity_n"
    x = _common.check_image(x, caller)
    a = _common.check_attributions(attributions, x, caller)
    _checks.check_key(key, caller, "subsets are random")
    _checks.check_scalar_fn(f, x, caller)
    n_subsets = _checks.check_static_int(n_subsets, caller, "n_subsets", minimum=2)
    batch_size = _checks.check_batch_size(batch_size, caller)
    scalar = isinstance(n, (int, np.integer))
    sizes = (n,) if scalar else tuple(n)
    n_pix = x.shape[0] * x.shape[1]
    for s in sizes:
        _checks.check_static_int(s, caller, "n")
        if s > n_pix:
            raise ValueError(f"{caller}: n must be <= H W = {n_pix}; got {s}.")
    base = _common.substrate(
        perturb_baseline, x, mean, None, caller, "perturb_baseline"
    )
    heat = _common.heatmap(a, reduction, caller)
    f_x = f(x)
    keys = jax.random.split(key, len(sizes))

    def one_size(size, k):
        masks = subset_masks(k, heat.shape, size, n_subsets)

        def item(m):
            img = jnp.where(m[..., None], base, x)
            return jnp.where(m, heat, 0).sum(), f_x - f(img)

        sums, drops = engine.chunked_map(item, masks, batch_size=batch_size)
        return sums, drops

    sums, drops = map(jnp.stack, zip(*[one_size(s, k) for s, k in zip(sizes, keys)]))
    score = _pearson(sums, drops)
    return SensitivityN(score[0] if scalar else score, sums, drops)


class MaxSensitivity(NamedTuple):
    """Result of `sensitivity_max`.

    Attributes:
      score: the largest relative change over the samples (scalar).
      sensitivities: `[n_perturb_samples]` `||A(y_i) - A(x)|| / ||A(x)||`.
    """

    score: Array
    sensitivities: Array


def _norm(v: Array, ord) -> Array:
    v = v.reshape(-1)
    if ord in ("fro", 2):
        return jnp.sqrt((v * v).sum())
    if ord in ("inf", np.inf):
        return jnp.abs(v).max()
    if ord == 1:
        return jnp.abs(v).sum()
    raise ValueError(
        f"sensitivity_max: norm_ord must be 'fro', 1, 2 or 'inf'; got {ord!r}."
    )


def sensitivity_max(
    explainer: Callable,
    f,
    x,
    *args,
    key,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm_ord="fro",
    batch_size: int | None = None,
    **explainer_kwargs,
) -> MaxSensitivity:
    """Max-sensitivity (Yeh et al.), Captum's `sensitivity_max`.

    Definition, defaults and other protocols: docs/evaluation.md#max-sensitivity.

    `max_i ||A(y_i) - A(x)|| / ||A(x)||` over `y_i = x + U(-r, r)` (uniform in the
    L-inf ball, Captum's default perturbation); `||A(x)|| = 0` counts as 1 (Captum's
    guard). Captum's defaults: `r = 0.02`, 10 samples, Frobenius norm; Quantus'
    `MaxSensitivity` defaults: `perturb_radius=0.2, n_perturb_samples=200`; Yeh's
    code: 0.2 and 50. The explainer is re-run on all samples as one `vmap`.

    Args:
      explainer: any jaxattr method, `explainer(f, x, *args, key=..., **kw)`.
      f: one example -> scalar; x: one example (any shape).
      *args, **explainer_kwargs: passed to `explainer` (e.g. a baseline, n_steps).
      key: PRNG key, split into the perturbation key and one explainer key, which
        is the *same* for `x` and every `y_i` (a stochastic explainer's own noise
        is not counted as sensitivity).
      perturb_radius: L-inf radius r (may be traced).
      n_perturb_samples, norm_ord, batch_size: static.
    """
    caller = "sensitivity_max"
    x = _checks.check_input(x, caller)
    _checks.check_key(key, caller, "perturbations are random")
    n = _checks.check_static_int(n_perturb_samples, caller, "n_perturb_samples")
    batch_size = _checks.check_batch_size(batch_size, caller)
    if not callable(explainer):
        raise TypeError(
            f"{caller}: explainer must be a jaxattr method; got"
            f" {type(explainer).__name__}."
        )
    _norm(jnp.zeros(1), norm_ord)  # validates norm_ord
    k_noise, k_explain = jax.random.split(key)

    def explain(z):
        return explainer(f, z, *args, key=k_explain, **explainer_kwargs).attributions

    a_x = explain(x)
    denom = _norm(a_x, norm_ord)
    denom = jnp.where(denom == 0, 1, denom)
    noise = jax.random.uniform(
        k_noise, (n, *x.shape), x.dtype, -perturb_radius, perturb_radius
    )

    def item(e):
        return _norm(explain(x + e) - a_x, norm_ord) / denom

    sens = engine.chunked_map(item, noise, batch_size=batch_size)
    return MaxSensitivity(sens.max(), sens)


class Infidelity(NamedTuple):
    """Result of `infidelity`.

    Attributes:
      score: mean over samples of `(beta I.A - (f(x) - f(x - I)))^2` (scalar).
      dot: `[n_perturb_samples]` `I . A`.
      output_drops: `[n_perturb_samples]` `f(x) - f(x - I)`.
      beta: the scale applied (1 unless `normalize`).
    """

    score: Array
    dot: Array
    output_drops: Array
    beta: Array


PERTURBATIONS = ("gaussian", "square")


def infidelity(
    f,
    x,
    attributions,
    *,
    key,
    perturb_func="gaussian",
    n_perturb_samples: int = 10,
    noise_scale: float = 0.2,
    patch_size: int = 4,
    perturb_baseline="black",
    mean=_common.IMAGENET_MEAN,
    normalize: bool = False,
    batch_size: int | None = None,
) -> Infidelity:
    """Infidelity (Yeh et al.), `E[(I.A - (f(x) - f(x - I)))^2]`.

    Definition, defaults and other protocols: docs/evaluation.md#infidelity.

    Captum's `infidelity` has no default perturbation; `perturb_func` is one of:

    * `"gaussian"`: `I = noise_scale * N(0, 1)` on every entry (the perturbation of
      Captum's examples, with Yeh's sigma 0.2);
    * `"square"`: `x - I` is `x` with one `patch_size` square at a uniformly random
      position set to `perturb_baseline` in all channels (Quantus' `Infidelity`
      defaults: patch 4, black, 10 samples; Quantus slides the patch over a grid,
      here its position is drawn);
    * a callable `perturb_func(key, x) -> (I, x - I)`, Captum's contract with a key.

    `normalize=True` applies Yeh's optimal scale `beta = E[I.A df] / E[(I.A)^2]`
    (Captum's `normalize`, always on in Yeh's code); Captum's default is False.

    Args:
      f: one example -> scalar; x: `[H, W, C]` (any shape for "gaussian");
      attributions: `x.shape`.
      key: PRNG key; sample `i` uses `jax.random.split(key, n)[i]`.
      n_perturb_samples, patch_size, normalize, batch_size: static.
    """
    caller = "infidelity"
    x = _checks.check_input(x, caller)
    a = _common.check_attributions(attributions, x, caller, spatial=False)
    _checks.check_key(key, caller, "perturbations are random")
    _checks.check_scalar_fn(f, x, caller)
    n = _checks.check_static_int(n_perturb_samples, caller, "n_perturb_samples")
    batch_size = _checks.check_batch_size(batch_size, caller)
    if callable(perturb_func):
        perturb = perturb_func
    else:
        _checks.check_choice(perturb_func, PERTURBATIONS, caller, "perturb_func")
        if perturb_func == "gaussian":

            def perturb(k, z):
                i = noise_scale * jax.random.normal(k, z.shape, z.dtype)
                return i, z - i

        else:
            x = _common.check_image(x, caller)
            p = _checks.check_static_int(patch_size, caller, "patch_size")
            h, w = x.shape[:2]
            if p > min(h, w):
                raise ValueError(
                    f"{caller}: patch_size must be <= {min(h, w)}; got {p}."
                )
            base = _common.substrate(
                perturb_baseline, x, mean, None, caller, "perturb_baseline"
            )
            rows = jnp.arange(h)[:, None, None]
            cols = jnp.arange(w)[None, :, None]

            def perturb(k, z):
                r0 = jax.random.randint(k, (), 0, h - p + 1)
                c0 = jax.random.randint(jax.random.fold_in(k, 1), (), 0, w - p + 1)
                m = (rows >= r0) & (rows < r0 + p) & (cols >= c0) & (cols < c0 + p)
                zp = jnp.where(m, base, z)
                return z - zp, zp

    f_x = f(x)

    def item(k):
        i, xp = perturb(k, x)
        return (i * a).sum(), f_x - f(xp)

    dot, drops = engine.chunked_map(
        item, jax.random.split(key, n), batch_size=batch_size
    )
    if normalize:
        beta = (dot * drops).mean() / (dot * dot).mean()
    else:
        beta = jnp.ones((), dot.dtype)
    return Infidelity(((beta * dot - drops) ** 2).mean(), dot, drops, beta)
