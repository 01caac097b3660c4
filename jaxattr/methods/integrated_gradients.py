"""Integrated Gradients (Sundararajan, Taly and Yan, ICML 2017)."""

from __future__ import annotations

from jaxattr import _checks, _deprecated, baselines, engine, quadrature
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, BaselineLike, PRNGKey, ScalarFn


@_deprecated.renamed(method="rule")
def integrated_gradients(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    key: PRNGKey | None = None,
) -> Attribution:
    """Integrated Gradients along the straight line from `baseline` to `x`.

    `IG_i = (x_i - x'_i) * int_0^1 df/dx_i (x' + a (x - x')) da`, approximated by the
    quadrature rule `method` with `n_steps` gradient evaluations
    (docs/integrated_gradients.md#integrated-gradients,
    docs/integrated_gradients.md#quadrature-rules).
    Captum's names and defaults: 50 steps of Gauss-Legendre. With
    several baselines (a list), the attributions are the mean of the IGs from each
    baseline and `f(x')` in the delta is the mean over baselines.

    Args:
      f: maps one example to a scalar (see `jaxattr.scalar_output`).
      x: one example, e.g. `[H, W, C]` pixels in [0, 1]; floating, finite. Or a
        pytree of such arrays (a tuple, a dict), with attributions of its structure
        and a baseline per leaf (docs/integrated_gradients.md#pytree-inputs).
      baseline: `None` (zeros), a name, a scalar, an array broadcasting to
        `x.shape`, a `jaxattr.baselines.Baseline`, a callable `x -> array`, or a
        list of these (averaged); see `jaxattr.baselines`.
      n_steps: gradient evaluations per baseline (static).
      rule: quadrature rule, one of `jaxattr.quadrature.RULES` (static); Captum's
        `method=`, accepted as a deprecated alias.
      batch_size: path nodes per chunk (static), Captum's `internal_batch_size`:
        peak memory grows with it, not with `n_steps`; `None` runs all at once.
      key: PRNG key, required only for random baselines.

    Returns:
      `Attribution` with `attributions` of `x.shape`, the completeness `delta =
      sum(attributions) - (f(x) - mean f(x'))` (Captum's sign) and `aux` holding
      `alphas [n_steps]`, `values [K, n_steps]` (f along each path) and
      `f_x`, `f_baseline [K]`.

    Raises:
      TypeError, ValueError: for an integer or non-finite `x`, a baseline that does
        not broadcast to `x.shape`, `n_steps < 1`, an unknown `rule`, a random
        baseline without `key`, or `f` not returning a scalar.
    """
    caller = "integrated_gradients"
    x = _checks.check_input(x, caller)
    quadrature.check_rule(rule, n_steps, caller=caller)
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    refs = baselines.resolve(baseline, x, key, caller)  # [K, *x.shape]
    n_refs = refs.shape[0]

    alphas, weights = quadrature.nodes_and_weights(rule, n_steps)
    nodes = engine.baseline_nodes(alphas, weights, n_refs, x.dtype)
    result = engine.path_integral(
        f,
        engine.straight_lines(x, refs),
        nodes.alphas,
        nodes.weights,
        node_args=nodes.paths,
        batch_size=batch_size,
    )
    f_x, f_refs = engine.endpoint_values(f, x, refs)
    aux = {
        "alphas": nodes.alphas[:n_steps],
        "values": result.values.reshape(n_refs, n_steps),
        "f_x": f_x,
        "f_baseline": f_refs,
    }
    delta = engine.completeness_delta(result.integral, f_x, f_refs)
    return Attribution(result.integral, delta, aux)
