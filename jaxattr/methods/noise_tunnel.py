"""NoiseTunnel: SmoothGrad, SmoothGrad-squared and VarGrad around any method.

`smoothgrad = mean_i A(x + e_i)`, `smoothgrad_sq = mean_i A(x + e_i)^2` and
`vargrad = smoothgrad_sq - smoothgrad^2`, with `e_i ~ N(0, sigma^2)` (Smilkov et
al. 2017; Captum's `NoiseTunnel` computes exactly these;
docs/integrated_gradients.md#noisetunnel-and-smoothgrad).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxattr import _checks, engine
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, PRNGKey, ScalarFn

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")

DEFAULT_STDEV_SPREAD = 0.15


def noise_tunnel(
    method: Callable[..., Attribution],
    f: ScalarFn,
    x: ArrayLike,
    /,
    *args: Any,
    key: PRNGKey | None = None,
    nt_type: str = "smoothgrad",
    nt_samples: int = 5,
    stdevs: ArrayLike | None = None,
    stdev_spread: ArrayLike | None = None,
    noise: ArrayLike | None = None,
    nt_samples_batch_size: int | None = None,
    **method_kwargs: Any,
) -> Attribution:
    """Averages `method` over noisy copies of `x` (Captum's `NoiseTunnel`).

    The noise scale is either absolute, `stdevs` (Captum), or relative,
    `stdev_spread * (max(x) - min(x))` (PAIR saliency and the SmoothGrad paper);
    give at most one. With neither, `stdev_spread=0.15` (the paper's 10-20 %, PAIR's
    default). Both may be traced, so a sweep over noise levels is one `vmap`.

    Args:
      method: any jaxattr method, e.g. `jaxattr.saliency`.
      f: maps one example to a scalar.
      x: one example; for a pytree `x` the relative noise level is per leaf,
        `stdev_spread * (max(leaf) - min(leaf))`, and `stdevs` may be a pytree of
        per-leaf levels (docs/integrated_gradients.md#pytree-inputs).
      *args: passed to `method` after `x` (e.g. a baseline).
      key: PRNG key; required unless `noise` is given. It is split into the noise
        key and one key per sample for `method` (for random baselines).
      nt_type: `"smoothgrad"`, `"smoothgrad_sq"` or `"vargrad"` (static).
      nt_samples: number of noisy samples (static).
      stdevs: absolute standard deviation of the noise.
      stdev_spread: standard deviation as a fraction of `max(x) - min(x)`.
      noise: optional standard-normal draws `[nt_samples, *x.shape]` used instead
        of drawing from `key` (common random numbers across methods, or parity
        with another library); they are scaled by the noise level.
      nt_samples_batch_size: noisy samples per chunk (static); `None` runs all.
      **method_kwargs: keyword arguments of `method` (e.g. `n_steps`, or IG's
        quadrature `rule=`; the first three arguments are positional-only).

    Returns:
      `Attribution` with the smoothed `attributions [*x.shape]`, `delta
      [nt_samples]` (the inner method's delta per sample, as Captum) and `aux`
      holding `sigma`, the absolute noise level used.
    """
    caller = "noise_tunnel"
    x = _checks.check_input(x, caller)
    _checks.check_choice(nt_type, NT_TYPES, caller, "nt_type")
    nt_samples = _checks.check_static_int(nt_samples, caller, "nt_samples")
    if stdevs is not None and stdev_spread is not None:
        raise ValueError(
            f"{caller}: give stdevs (absolute) or stdev_spread (fraction of the input"
            f" range), not both; got stdevs={stdevs!r}, stdev_spread={stdev_spread!r}."
        )
    if stdevs is not None:
        sigma = jnp.asarray(stdevs, x.dtype)
    else:
        spread = DEFAULT_STDEV_SPREAD if stdev_spread is None else stdev_spread
        sigma = jnp.asarray(spread, x.dtype) * (x.max() - x.min())
    if noise is None:
        _checks.check_key(key, caller, "the noise is random")
        noise_key, method_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, (nt_samples, *x.shape), x.dtype)
    else:
        if tuple(noise.shape) != (nt_samples, *x.shape):
            raise ValueError(
                f"{caller}: noise must have shape (nt_samples, *x.shape) ="
                f" {(nt_samples, *x.shape)}; got {tuple(noise.shape)}."
            )
        method_key = key
    # Without a key, the inner method gets none (and complains if it needs one).
    method_keys = (
        None if method_key is None else jax.random.split(method_key, nt_samples)
    )

    def sample(item):
        eps, k = item
        r = method(f, x + sigma * eps, *args, key=k, **method_kwargs)
        a = r.attributions
        return (a, a * a), r.delta

    (s1, s2), deltas = engine.chunked_sum(
        sample, (noise, method_keys), batch_size=nt_samples_batch_size
    )
    mean, mean_sq = s1 / nt_samples, s2 / nt_samples
    attributions = {
        "smoothgrad": mean,
        "smoothgrad_sq": mean_sq,
        "vargrad": mean_sq - mean * mean,
    }[nt_type]
    return Attribution(attributions, deltas, {"sigma": sigma})
