"""Expected Gradients (Erion et al., Nature MI 2021) and Captum's GradientShap.

`EG(x) = E_{x' ~ D, a ~ U(0, 1)} [(x - x') * grad f(x' + a (x - x'))]`, estimated by
Monte Carlo: each of `n_samples` gradient evaluations draws one reference from the
background set `D` and one `a` (docs/integrated_gradients.md#expected-gradients).
It is IG with a random
baseline and a one-node random quadrature, so it runs on the same engine, in
chunks of `batch_size` samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxattr import _checks, engine
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, PRNGKey, ScalarFn


def expected_gradients(
    f: ScalarFn,
    x: ArrayLike,
    references: ArrayLike,
    *,
    n_samples: int = 50,
    key: PRNGKey | None = None,
    stdevs: ArrayLike = 0.0,
    indices: ArrayLike | None = None,
    alphas: ArrayLike | None = None,
    noise: ArrayLike | None = None,
    batch_size: int | None = None,
) -> Attribution:
    """Expected Gradients / GradientShap of `f` at `x` against a background set.

    References are drawn uniformly **with replacement** (i.i.d. Monte Carlo, as
    Captum's GradientShap; path_explain draws without replacement when it can, which
    only matters for small background sets). `stdevs > 0` adds Gaussian noise to `x`
    in each sample, as GradientShap does (its default is 0); the multiplier is then
    `x + noise - x'`. Captum's default is `n_samples=5`, path_explain's 50 (ours).

    Args:
      f: maps one example to a scalar.
      x: one example.
      references: background set `[R, *x.shape]` (e.g. training images); for a
        pytree `x`, a pytree of its structure with `R` leading on every leaf.
      n_samples: gradient evaluations (static).
      key: PRNG key for the draws; not needed when `indices`, `alphas` (and
        `noise`, if `stdevs` is not 0) are all given.
      stdevs: standard deviation of the input noise (may be traced).
      indices: optional `[n_samples]` integer draws into `references`.
      alphas: optional `[n_samples]` draws in [0, 1].
      noise: optional `[n_samples, *x.shape]` standard-normal draws.
      batch_size: samples per chunk (static); `None` runs all at once.

    Returns:
      `Attribution` with `attributions [*x.shape]`, `delta = sum(attributions) -
      (f(x) - mean_i f(x'_i))` (Captum's sign; it vanishes only in expectation, and
      without noise), and `aux` holding the draws `indices`, `alphas`, `values`
      (f at each sampled point), `f_x` and `f_baseline [n_samples]` (f at each
      drawn reference).

    Raises:
      ValueError, TypeError: for references that do not match `x`, draws of the
        wrong shape, or random draws needed without a `key`.
    """
    caller = "expected_gradients"
    x = _checks.check_input(x, caller)
    references = _checks.check_input(references, caller, "references")
    if tuple(references.shape[1:]) != tuple(x.shape) or references.shape[0] < 1:
        raise ValueError(
            f"{caller}: references must have shape [R, *x.shape] = [R,"
            f" {', '.join(map(str, x.shape))}] with R >= 1; got"
            f" {tuple(references.shape)}."
        )
    n_samples = _checks.check_static_int(n_samples, caller, "n_samples")
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    stdevs = jnp.asarray(stdevs, x.dtype)
    noiseless = not _checks.is_traced(stdevs) and float(stdevs) == 0.0
    needs_key = indices is None or alphas is None or (noise is None and not noiseless)
    if needs_key:
        _checks.check_key(
            key, caller, "references, alphas and noise are drawn at random"
        )
        k_idx, k_alpha, k_noise = jax.random.split(key, 3)
    if indices is None:
        indices = jax.random.randint(k_idx, (n_samples,), 0, references.shape[0])
    if alphas is None:
        alphas = jax.random.uniform(k_alpha, (n_samples,), x.dtype)
    if noise is None:
        noise = (
            jnp.zeros((n_samples, *x.shape), x.dtype)
            if noiseless
            else jax.random.normal(k_noise, (n_samples, *x.shape), x.dtype)
        )
    for name, value, shape in (
        ("indices", indices, (n_samples,)),
        ("alphas", alphas, (n_samples,)),
        ("noise", noise, (n_samples, *x.shape)),
    ):
        if tuple(jnp.shape(value)) != shape:
            raise ValueError(
                f"{caller}: {name} must have shape {shape} (n_samples={n_samples});"
                f" got {tuple(jnp.shape(value))}."
            )
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"{caller}: indices must be integers; got {indices.dtype}.")
    alphas = jnp.asarray(alphas, x.dtype)

    def path(alpha, draw):
        i, eps = draw
        return engine.straight_line(x + stdevs * eps, references[i])(alpha)

    weights = jnp.full((n_samples,), 1 / n_samples, x.dtype)
    result = engine.path_integral(
        f, path, alphas, weights, node_args=(indices, noise), batch_size=batch_size
    )
    f_x, f_refs = engine.endpoint_values(f, x, references[indices])
    delta = engine.completeness_delta(result.integral, f_x, f_refs)
    aux = {
        "indices": indices,
        "alphas": alphas,
        "values": result.values,
        "f_x": f_x,
        "f_baseline": f_refs,
    }
    return Attribution(result.integral, delta, aux)
