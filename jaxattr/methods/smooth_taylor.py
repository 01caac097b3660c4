"""SmoothTaylor and adaptive noising (Goh, Lapuschkin, Weber, Samek and Binder, ICPR
2020, arXiv 2004.10484; docs/smooth_taylor.md).

SmoothTaylor averages first-order Taylor terms over random expansion points ("roots")
`z_i = x + sigma * eps_i`, `eps_i ~ N(0, I)`:

    ST(x) = (1/N) sum_i (x - z_i) * grad f(z_i) = -(sigma/N) sum_i eps_i * grad f(z_i).

Adaptive noising searches, per image, for the `sigma` that minimises a score of the
SmoothTaylor heat map (the authors' AUPC by default, or AUTVC), with the authors' step
rule (docs/smooth_taylor.md#adaptive-noising).

**Units: library defaults versus the authors' setting.** The authors' input is the
ImageNet-normalised image `x_n = (x - mean) / std` and their noise levels are absolute
in those units: `sigma = 0.5` for SmoothTaylor; `sigma_0 = mean|x_n|` and a step of 0.1
for adaptive noising. A pure function of `f` and `x` does not know the model's
normalisation, so without `normalisation=` the defaults are documented general choices
in the units of `x`:

* `smooth_taylor`: `sigma = 0.1 * (max(x) - min(x))`. For a full-range pixel image
  (range 1) that is 0.1 pixel units, i.e. 0.1 / std = 0.437, 0.446, 0.444 normalised
  units (ImageNet's std per channel), close to but not the authors' 0.5; on a
  low-contrast image it shrinks with the range.
* `adaptive_noising`: `sigma_0 = mean|x|` and `learning_rate = 0.1` in pixel units,
  i.e. about 2.2 normalised units for a mid-grey image and 0.44 normalised units per
  step, against the authors' `mean|x_n|` (about 1 on natural images) and 0.1.

Pass `normalisation=(mean, std)` (per channel; `jaxattr.baselines.normalisation_stats(
model.normalise)` reads it off a model) to work in the authors' units: noise levels
are then in normalised units, the roots are `x + sigma * std * eps` (per channel), and
the defaults become the authors' exactly (`sigma = 0.5`; `sigma_0 = mean|x_n|`, step
0.1). This equals running the authors' code on `x_n`: each Taylor term `(x - z) * grad
f(z)` is unchanged by a per-channel affine change of units (`x - z` scales by `std`,
the gradient by `1 / std`), so the heat maps are the same, not just similar.
`smooth_taylor(..., stdevs=0.5 * np.asarray(std))` is the same SmoothTaylor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, engine
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, BaselineLike, PRNGKey, ScalarFn

#: Default relative noise level without `normalisation`: `sigma = 0.1 * (max(x) -
#: min(x))`, a documented general choice, not the authors' setting (module
#: docstring): for a full-range pixel image it is 0.437-0.446 ImageNet-normalised
#: units against the authors' absolute 0.5, and it shrinks on low-contrast images.
DEFAULT_STDEV_SPREAD = 0.1

#: The authors' absolute noise level in normalised units, the default of
#: `smooth_taylor` when `normalisation` is given (docs/smooth_taylor.md#noise-units).
AUTHORS_STDEVS = 0.5


def _normalisation(normalisation, x, caller):
    """`(mean, std)` as arrays of `x.dtype` that broadcast to `x`, or None."""
    if normalisation is None:
        return None
    if not isinstance(normalisation, (tuple, list)) or len(normalisation) != 2:
        raise ValueError(
            f"{caller}: normalisation must be a pair (mean, std), e.g."
            " jaxattr.baselines.normalisation_stats(model.normalise); got"
            f" {normalisation!r}."
        )
    mean, std = (jnp.asarray(v, x.dtype) for v in normalisation)
    for name, v in (("mean", mean), ("std", std)):
        if not _checks.broadcasts_to(v.shape, x.shape):
            raise ValueError(
                f"{caller}: normalisation's {name} must broadcast to x.shape"
                f" {tuple(x.shape)} (one value per channel, last axis); got shape"
                f" {tuple(v.shape)}."
            )
    if not _checks.is_traced(std) and not bool(np.all(np.asarray(std) != 0)):
        raise ValueError(
            f"{caller}: normalisation's std must be non-zero; got {np.asarray(std)}."
        )
    return mean, std


def noise_level(
    x: ArrayLike,
    *,
    stdevs: ArrayLike | None = None,
    stdev_spread: ArrayLike | None = None,
    normalisation: tuple[ArrayLike, ArrayLike] | None = None,
    caller: str = "noise_level",
):
    """The absolute noise level `sigma` (units of `x`) that `smooth_taylor` uses.

    Without `normalisation`: `stdevs`, or `stdev_spread * (max(x) - min(x))`, or
    `DEFAULT_STDEV_SPREAD` of the range (as `noise_tunnel`). With `normalisation=(mean,
    std)`: the same three rules in normalised units, `x_n = (x - mean) / std`
    (`stdev_spread` of `max(x_n) - min(x_n)`, the default `AUTHORS_STDEVS = 0.5`),
    multiplied by `std` per channel. Traced; broadcasts to `x`.

    Raises:
      ValueError: for both `stdevs` and `stdev_spread`, a bad `normalisation`, or a
        `stdevs` that does not broadcast to `x.shape`.
    """
    if stdevs is not None and stdev_spread is not None:
        raise ValueError(
            f"{caller}: give stdevs (absolute) or stdev_spread (fraction of the input"
            f" range), not both; got stdevs={stdevs!r}, stdev_spread={stdev_spread!r}."
        )
    norm = _normalisation(normalisation, x, caller)
    z = x if norm is None else (x - norm[0]) / norm[1]
    if stdevs is not None:
        sigma = jnp.asarray(stdevs, x.dtype)
        if not _checks.broadcasts_to(sigma.shape, x.shape):
            raise ValueError(
                f"{caller}: stdevs must be a scalar or broadcast to x.shape"
                f" {tuple(x.shape)} (e.g. one value per channel); got shape"
                f" {tuple(sigma.shape)}."
            )
    elif stdev_spread is None and norm is not None:
        sigma = jnp.asarray(AUTHORS_STDEVS, x.dtype)
    else:
        spread = DEFAULT_STDEV_SPREAD if stdev_spread is None else stdev_spread
        sigma = jnp.asarray(spread, x.dtype) * (z.max() - z.min())
    return sigma if norm is None else sigma * norm[1]


def _no_baseline(baseline, caller):
    if baseline is not None:
        raise ValueError(
            f"{caller}: SmoothTaylor takes no baseline (its roots are x + noise);"
            f" expected baseline=None, got {type(baseline).__name__}."
        )


def _draw_noise(x, key, noise, n_roots, caller):
    if noise is None:
        _checks.check_key(key, caller, "the roots are random")
        return jax.random.normal(key, (n_roots, *x.shape), x.dtype)
    if tuple(noise.shape) != (n_roots, *x.shape):
        raise ValueError(
            f"{caller}: noise must have shape (n_roots, *x.shape) ="
            f" {(n_roots, *x.shape)}; got {tuple(noise.shape)}."
        )
    return jnp.asarray(noise, x.dtype)


def _smooth_taylor(f, x, eps, sigma, batch_size):
    """`(attributions [*x.shape], values f(z_i) [N])` for standard-normal `eps`."""

    def root(e):
        z = x + sigma * e
        value, grad = jax.value_and_grad(f)(z)
        # x - z = -sigma * e exactly (no cancellation in x - (x + sigma * e)).
        return -sigma * e * grad, value

    total, values = engine.chunked_sum(root, eps, batch_size=batch_size)
    return total / eps.shape[0], values


def smooth_taylor(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    key: PRNGKey | None = None,
    n_roots: int = 150,
    stdevs: ArrayLike | None = None,
    stdev_spread: ArrayLike | None = None,
    normalisation: tuple[ArrayLike, ArrayLike] | None = None,
    noise: ArrayLike | None = None,
    batch_size: int | None = 50,
) -> Attribution:
    """SmoothTaylor: the mean Taylor term `(x - z_i) * grad f(z_i)` over noisy roots.

    `z_i = x + sigma * eps_i`, `eps_i ~ N(0, I)` drawn from `key`
    (docs/smooth_taylor.md#definition), evaluated in chunks of `batch_size` through
    `engine.chunked_sum` (one `jax.value_and_grad` per root), so peak memory grows
    with the chunk, not with `n_roots`. The noise level follows `noise_tunnel`:
    absolute `stdevs`, or `stdev_spread * (max(x) - min(x))`; both are traced, so a
    sweep over noise levels is one `vmap`. As `sigma -> 0` with fixed draws,
    `ST / sigma -> -(1/N) sum_i eps_i * grad f(x)`, and `ST = 0` at `sigma = 0`.

    Defaults: `n_roots=150` is the authors'. The noise level is the authors' only
    with `normalisation=(mean, std)` (then `sigma = 0.5` normalised units, i.e.
    `0.5 * std` pixels per channel, exactly their setting); without it the default
    `0.1 * (max(x) - min(x))` is a general choice in the units of `x` (0.44
    normalised units for a full-range image with ImageNet's std, smaller on
    low-contrast images; module docstring). `noise_level` returns the `sigma` used.

    Args:
      f: maps one example to a scalar (the authors explain the logit,
        docs/smooth_taylor.md#paper-settings).
      x: one example, e.g. `[H, W, C]`; floating, finite. A pytree `x` gets noise
        per leaf, as `noise_tunnel` (docs/integrated_gradients.md#pytree-inputs).
      baseline: must be `None` (SmoothTaylor has no baseline); accepted so that the
        method has the common signature.
      key: PRNG key for the roots; required unless `noise` is given.
      n_roots: number of roots `N` (static); authors' default 150.
      stdevs: absolute noise level `sigma` in the units of `x` (normalised units
        with `normalisation`); a scalar or an array that broadcasts to `x` (e.g.
        per channel: `stdevs=0.5 * np.asarray(std)` is the authors' setting).
      stdev_spread: noise level as a fraction of `max(x) - min(x)` (of `x_n` with
        `normalisation`); default 0.1 when neither is given and there is no
        `normalisation` (`DEFAULT_STDEV_SPREAD`, a general choice, not the
        authors').
      normalisation: `(mean, std)` per channel of the model's input normalisation
        `x_n = (x - mean) / std` (`jaxattr.baselines.normalisation_stats(
        model.normalise)`): noise levels in normalised units, default
        `AUTHORS_STDEVS = 0.5`, the authors' setting.
      noise: optional standard-normal draws `[n_roots, *x.shape]` used instead of
        drawing from `key` (scaled by `sigma`).
      batch_size: roots per chunk (static); authors' 50; `None` runs all at once.

    Returns:
      `Attribution` with `attributions [*x.shape]`; `delta = sum(attributions) -
      (f(x) - mean_i f(z_i))`, the first-order Taylor residual (0 for an affine
      `f`; SmoothTaylor has no completeness property,
      docs/smooth_taylor.md#definition); `aux` with `sigma`
      (absolute, units of `x`; per channel where the noise is), `values [n_roots]` (`f(z_i)`), `f_x` and `f_baseline` (the
      mean root value, the "baseline" of that delta).

    Raises:
      TypeError, ValueError: for a bad `x`, a non-`None` baseline, both noise
        levels given, a missing key, a wrongly shaped `noise` or a non-scalar `f`.
    """
    caller = "smooth_taylor"
    x = _checks.check_input(x, caller)
    _no_baseline(baseline, caller)
    n_roots = _checks.check_static_int(n_roots, caller, "n_roots")
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    sigma = noise_level(
        x,
        stdevs=stdevs,
        stdev_spread=stdev_spread,
        normalisation=normalisation,
        caller=caller,
    )
    eps = _draw_noise(x, key, noise, n_roots, caller)
    attributions, values = _smooth_taylor(f, x, eps, sigma, batch_size)
    f_x, f_roots = f(x), values.mean()
    delta = engine.completeness_delta(attributions, f_x, f_roots)
    aux = {"sigma": sigma, "values": values, "f_x": f_x, "f_baseline": f_roots}
    return Attribution(attributions, delta, aux)


# ----------------------------------------------------------------- adaptive noising


class _SearchState(NamedTuple):
    phase: jax.Array  # 0: evaluate sigma_init; 1: try sigma + lr; 2: sigma - lr
    it: jax.Array  # steps done
    n_evals: jax.Array  # objective evaluations done (sets the next key)
    sigma: jax.Array
    lr: jax.Array
    score: jax.Array  # A_cur, the score of the current sigma
    stop: jax.Array  # consecutive worse steps
    done: jax.Array
    best_sigma: jax.Array
    best_score: jax.Array
    best_heatmap: jax.Array
    sigmas: jax.Array  # [max_iterations + 1], NaN where not reached
    scores: jax.Array  # [max_iterations + 1]


def _search(
    objective: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    sigma_init,
    heatmap_like,
    *,
    learning_rate,
    learning_decay,
    max_stop: int,
    max_iterations: int,
) -> _SearchState:
    """The authors' step rule (docs/smooth_taylor.md#adaptive-noising) as one
    `lax.while_loop`.

    `objective(sigma, i) -> (score, heatmap)` is called with the running evaluation
    index `i` (0, 1, ...), from which the caller derives a fresh key. Each step
    tries `|sigma + lr|`; only if that scores worse than the current `sigma` does it
    evaluate and move to `|sigma - lr|`. A step that ends worse than the current
    score decays `lr` by `learning_decay`; the `max_stop + 1`-th consecutive worse
    step ends the search. The best (lowest) score seen wins, the initial one
    included. The loop body evaluates the objective exactly once (a small state
    machine over `phase`), so the objective is compiled once and, under `vmap`,
    each iteration costs one evaluation per lane, not both branches of a `cond`.
    """
    sigma0 = jnp.asarray(sigma_init)
    score_aval, _ = jax.eval_shape(objective, sigma0, jnp.asarray(0, jnp.int32))
    dtype = score_aval.dtype
    nan = jnp.full((max_iterations + 1,), jnp.nan, dtype)
    inf = jnp.full((), jnp.inf, dtype)
    zero = jnp.asarray(0, jnp.int32)
    state = _SearchState(
        phase=zero,
        it=zero,
        n_evals=zero,
        sigma=sigma0.astype(dtype),
        lr=jnp.asarray(learning_rate, dtype),
        score=inf,
        stop=zero,
        done=jnp.asarray(False),
        best_sigma=sigma0.astype(dtype),
        best_score=inf,
        best_heatmap=jnp.zeros_like(heatmap_like),
        sigmas=nan,
        scores=nan,
    )

    def cond(s):
        return (s.phase == 0) | ((s.it < max_iterations) & ~s.done)

    def body(s):
        candidate = jnp.where(
            s.phase == 0,
            s.sigma,
            jnp.where(s.phase == 1, jnp.abs(s.sigma + s.lr), jnp.abs(s.sigma - s.lr)),
        )
        score, heat = objective(candidate, s.n_evals)
        first = s.phase == 0
        retry = (s.phase == 1) & (score > s.score)  # up was worse: try down next
        step = ~first & ~retry  # a step ends at `candidate`
        worse = step & (score > s.score)
        done = worse & (s.stop >= max_stop)
        better = first | (step & ~worse & (score < s.best_score))
        index = jnp.where(first, 0, s.it + 1)
        record = first | step
        return _SearchState(
            phase=jnp.where(retry, 2, 1).astype(jnp.int32),
            it=s.it + step.astype(jnp.int32),
            n_evals=s.n_evals + 1,
            sigma=jnp.where(record, candidate, s.sigma),
            lr=jnp.where(worse & ~done, s.lr * learning_decay, s.lr),
            score=jnp.where(record, score, s.score),
            stop=jnp.where(worse, s.stop + 1, jnp.where(step, 0, s.stop)),
            done=done,
            best_sigma=jnp.where(better, candidate, s.best_sigma),
            best_score=jnp.where(better, score, s.best_score),
            best_heatmap=jnp.where(better, heat, s.best_heatmap),
            sigmas=jnp.where(record, s.sigmas.at[index].set(candidate), s.sigmas),
            scores=jnp.where(record, s.scores.at[index].set(score), s.scores),
        )

    return jax.lax.while_loop(cond, body, state)


def _named_score_fn(name, caller, score_kwargs):
    """The score function for `score_fn="aupc"` or `"autvc"`, lower is better
    (docs/smooth_taylor.md#evaluation-measures)."""
    from jaxattr import metrics

    if name == "autvc":
        return lambda f, x, attributions, key: (
            metrics.autvc(attributions, **score_kwargs).score
        )

    def aupc_score(f, x, attributions, key):
        # aupc scores a batched model [N, ...] -> [N, K]; f is the explained scalar.
        def model_fn(images):
            return jax.vmap(f)(images)[:, None]

        result = metrics.aupc(
            model_fn, x, attributions, key=key, target=0, **score_kwargs
        )
        return result.score

    return aupc_score


def adaptive_noising(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    key: PRNGKey | None = None,
    score_fn: Callable | str = "aupc",
    score_kwargs: dict | None = None,
    n_roots: int = 150,
    batch_size: int | None = 50,
    sigma_init: ArrayLike | None = None,
    learning_rate: ArrayLike = 0.1,
    learning_decay: ArrayLike = 0.9,
    max_stop: int = 3,
    max_iterations: int = 20,
    normalisation: tuple[ArrayLike, ArrayLike] | None = None,
) -> Attribution:
    """SmoothTaylor with the per-image noise level that minimises `score_fn`
    (docs/smooth_taylor.md#adaptive-noising).

    Starting at `sigma_init` (default `mean(|x|)`, the authors' choice), each of at
    most `max_iterations` steps tries `|sigma + lr|` and, if that scores worse than
    the current `sigma`, moves to `|sigma - lr|` instead; a step that ends worse
    than the previous one multiplies `lr` by `learning_decay`, and the
    `max_stop + 1`-th such step in a row stops the search. The heat map with the
    lowest score seen is returned. Everything runs in one `lax.while_loop`, so the
    search is jit- and vmap-able; every objective evaluation recomputes
    SmoothTaylor with fresh roots (the authors' objective is stochastic,
    docs/smooth_taylor.md#pitfalls), from keys derived from `key` and the evaluation
    index, so a key fixes the whole search. Up to `1 + 2 * max_iterations`
    SmoothTaylor runs.

    Units and defaults. `learning_decay`, `max_stop`, `max_iterations`, `n_roots`
    and the AUPC objective are the authors' defaults. `sigma`, `sigma_init` and
    `learning_rate` are absolute, in the units of `x` unless `normalisation` is
    given. The authors' `x` is ImageNet-normalised, where their `sigma_init =
    mean|x_n|` and step 0.1 live; on jaxattr's pixels in [0, 1] the defaults
    `mean|x|` and 0.1 are a general choice that is *not* the authors' (about 2.2
    and 0.44 normalised units for a mid-grey image with ImageNet's std). To run
    the authors' search exactly, pass `normalisation=(mean, std)`
    (`jaxattr.baselines.normalisation_stats(model.normalise)`): `sigma`,
    `sigma_init` and `learning_rate` are then in normalised units, the roots are
    `x + sigma * std * eps` per channel, and `sigma_init` defaults to
    `mean|(x - mean) / std|` (module docstring: the heat maps are those of the
    authors' code on `x_n`).

    Args:
      f: maps one example to a scalar.
      x: one example, e.g. `[H, W, C]`.
      baseline: must be `None` (as `smooth_taylor`).
      key: PRNG key (required).
      score_fn: what the search minimises
        (docs/smooth_taylor.md#evaluation-measures): `"aupc"` (default: AUPC of `f`
        itself, `jaxattr.metrics.aupc` with `f` as a one-output model), `"autvc"`
        (`jaxattr.metrics.autvc` of the heat map), or a function
        `score_fn(f, x, attributions, key) -> scalar`, lower is better.
      score_kwargs: keyword arguments of the named score (e.g. AUPC's
        `n_regions`, `batch_size`); only with `"aupc"` or `"autvc"`.
      n_roots: roots per SmoothTaylor run (static).
      batch_size: roots per chunk (static).
      sigma_init: initial noise level (traced); default `mean(|x|)`, or
        `mean(|x_n|)` with `normalisation` (the authors').
      learning_rate: initial step of `sigma` (traced); 0.1, the authors' value
        only in normalised units (with `normalisation`).
      learning_decay: factor applied to the step after a worse step (traced); 0.9.
      max_stop: consecutive worse steps tolerated (static); authors' 3.
      max_iterations: maximum number of steps (static); authors' 20.
      normalisation: `(mean, std)` per channel of the model's normalisation;
        puts `sigma`, `sigma_init` and `learning_rate` in normalised units.

    Returns:
      `Attribution` with the best SmoothTaylor `attributions [*x.shape]`, `delta`
      NaN, and `aux`: `sigma` and `score` of the best heat map (`sigma` in the
      search's units; `noise` its absolute noise level in the units of `x`), `sigmas` and
      `scores [max_iterations + 1]` (the trajectory, NaN after the stop),
      `n_iterations` and `n_evaluations` (SmoothTaylor runs).
    """
    caller = "adaptive_noising"
    x = _checks.check_input(x, caller)
    _no_baseline(baseline, caller)
    _checks.check_key(key, caller, "the roots are random")
    n_roots = _checks.check_static_int(n_roots, caller, "n_roots")
    batch_size = _checks.check_batch_size(batch_size, caller)
    max_stop = _checks.check_static_int(max_stop, caller, "max_stop", minimum=0)
    max_iterations = _checks.check_static_int(
        max_iterations, caller, "max_iterations", minimum=0
    )
    _checks.check_scalar_fn(f, x, caller)
    if isinstance(score_fn, str):
        _checks.check_choice(score_fn, ("aupc", "autvc"), caller, "score_fn")
        score_fn = _named_score_fn(score_fn, caller, dict(score_kwargs or {}))
    elif score_kwargs:
        raise ValueError(
            f"{caller}: score_kwargs configure a named score only; expected"
            f" score_kwargs=None with a custom score_fn, got {score_kwargs!r}."
        )
    elif not callable(score_fn):
        raise TypeError(
            f"{caller}: score_fn must be a function (f, x, attributions, key) ->"
            f" scalar; got {type(score_fn).__name__}."
        )
    norm = _normalisation(normalisation, x, caller)
    scale = jnp.ones((), x.dtype) if norm is None else norm[1]
    if sigma_init is None:
        z = x if norm is None else (x - norm[0]) / norm[1]
        sigma_init = jnp.abs(z).mean()

    def objective(sigma, i):
        root_key, score_key = jax.random.split(jax.random.fold_in(key, i))
        eps = jax.random.normal(root_key, (n_roots, *x.shape), x.dtype)
        heat, _ = _smooth_taylor(f, x, eps, sigma.astype(x.dtype) * scale, batch_size)
        score = jnp.asarray(score_fn(f, x, heat, score_key))
        if score.shape != ():
            raise ValueError(
                f"{caller}: score_fn must return a scalar; got shape {score.shape}."
            )
        return score, heat

    s = _search(
        objective,
        jnp.asarray(sigma_init, x.dtype),
        x,
        learning_rate=learning_rate,
        learning_decay=learning_decay,
        max_stop=max_stop,
        max_iterations=max_iterations,
    )
    aux = {
        "sigma": s.best_sigma,
        "noise": s.best_sigma * scale,
        "score": s.best_score,
        "sigmas": s.sigmas,
        "scores": s.scores,
        "n_iterations": s.it,
        "n_evaluations": s.n_evals,
    }
    nan = jnp.full((), jnp.nan, s.best_heatmap.dtype)
    return Attribution(s.best_heatmap, nan, aux)
