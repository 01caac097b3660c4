"""Error-controlled Integrated Gradients: adaptive bisection with nested nodes.

Along the straight path `F(alpha) = f(x' + alpha (x - x'))`, the integral of the
slope `F'` over any interval `[a, b]` is known exactly: `F(b) - F(a)`. Both `F`
and `F'` come with every gradient (`engine.path_integral` returns the values and
the slopes), so every interval of a composite rule carries an exact error
indicator

    e_j = (b - a) sum_i w_i F'(alpha_ji) - (F(b) - F(a)),

and the completeness delta (Captum's sign, algorithms.md §1.2) is `sum_j e_j`.
The intervals with the largest `|e_j|` are bisected until
`sum_j |e_j| <= max(atol, rtol |F(1) - F(0)|)`. The stopping rule uses
`sum_j |e_j|`, an upper bound on `|delta|`: `delta` itself can be small by
cancellation between intervals that are each inaccurate, the bound cannot.

Each interval carries a closed Newton-Cotes rule (nodes include both ends):
trapezoid (2 nodes), Simpson (3) or Boole (5). Their nodes are nested under
bisection: the children of an interval with `k` panels reuse all `k + 1` of the
parent's nodes and need only `k` new gradients, and neighbours share their
common end node, so no gradient is ever thrown away. (Composite Gauss-Legendre
on each interval, the first version of this module, discards the parent's `p`
nodes and pays `2p` gradients and a forward pass per bisection; on the ReLU
test network and on EfficientNet-Lite0 it needed more gradients; see
benchmarks/README.md.)

What the indicator controls is the completeness error (the sum of the
attributions), as Captum's and the IG paper's convergence checks do (§1.1-§1.2);
it does not bound each feature's error separately, and an interval whose
quadrature errors cancel inside it looks exact.

Exact IG for piecewise-linear networks (ReLU, ReLU6, max-pool): `F'` is then
piecewise constant along the path, and IG is exact given one gradient per linear
piece. Finding the pieces means locating every activation's kinks along the line
(a root of each pre-activation, linear in `alpha` only inside the current
piece): a walk with a data-dependent number of steps, and an ImageNet network
has so many kinks along a path that the walk costs more gradients than
quadrature does. Bisection on the exact local error isolates the kinks that
matter for completeness (an interval without a kink has `e_j = 0` for every
rule here) and keeps static shapes (one `while_loop`, `jit`/`vmap` safe;
algorithms.md §10), so it is what is implemented here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, baselines, engine
from jaxattr.base import Attribution

# Closed Newton-Cotes weights on [0, 1] with k panels (k + 1 equispaced nodes).
RULES = {
    "trapezoid": np.array([1, 1]) / 2,
    "simpson": np.array([1, 4, 1]) / 6,
    "boole": np.array([7, 32, 12, 32, 7]) / 90,
}


def _check_tolerance(value, caller: str, name: str):
    """A non-negative finite scalar; checked when concrete, passed through when traced."""
    if _checks.is_traced(value):
        return value
    arr = np.asarray(value)
    if isinstance(value, bool) or arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise TypeError(f"{caller}: {name} must be a real scalar; got {value!r}.")
    if not np.isfinite(float(arr)) or float(arr) < 0:
        raise ValueError(f"{caller}: {name} must be finite and >= 0; got {value!r}.")
    return value


def adaptive_integrated_gradients(
    f,
    x,
    baseline=None,
    *,
    rtol: float = 0.01,
    atol: float = 0.0,
    rule: str = "trapezoid",
    initial_intervals: int = 1,
    split_per_round: int = 1,
    max_steps: int = 256,
    stop_on: str = "delta",
    batch_size: int | None = None,
    key=None,
) -> Attribution:
    """Integrated Gradients refined until the completeness error is below a tolerance.

    A composite closed Newton-Cotes `rule` (k panels per interval: trapezoid 1,
    Simpson 2, Boole 4) along the straight path from `baseline` to `x`. It
    starts from `initial_intervals` (m0) equal intervals, `m0 k + 1` gradients;
    each round bisects the `split_per_round` (s) intervals with the largest
    exact local error `|e_j|` (module docstring) at `s k` new gradients, until
    `sum_j |e_j| <= max(atol, rtol * |f(x) - f(x')|)` or a further round would
    exceed `max_steps` gradients. Gradients live in a static node buffer
    `[max_nodes, *x.shape]` and are combined with each node's final weight once,
    at the end (no running sums to subtract from). Two extra forward passes give
    `f(x)` and `f(x')` for the tolerance and the delta.

    Under `jax.vmap` (e.g. `jaxattr.attribute`) the loop runs until every
    example has converged; converged examples are frozen, so each example's
    result is the one it gets alone.

    Args:
      f: maps one example to a scalar (see `jaxattr.scalar_output`).
      x: one example; floating, finite.
      baseline: one baseline, anything `jaxattr.baselines` accepts except a
        list of several (`None`: zeros).
      rtol: tolerance relative to `|f(x) - f(x')|` (may be traced).
      atol: absolute tolerance (may be traced); the larger of the two applies.
      rule: `"trapezoid"`, `"simpson"` or `"boole"` (static).
      initial_intervals: equal intervals to start from, m0 (static, >= s).
      split_per_round: intervals bisected per round, s (static).
      max_steps: budget of gradient evaluations (static, >= `m0 k + 1`).
      stop_on: `"delta"` stops when `|delta| <= tol`, the check Captum users
        make on IG (exact here too); `"bound"` when `sum_j |e_j| <= tol`, which
        also guards against errors cancelling between intervals but, on
        EfficientNet-Lite0, cost 5-15x more gradients (static).
      batch_size: path nodes per chunk (static); `None` runs a round at once.
      key: PRNG key, required only for a random baseline.

    Returns:
      `Attribution` with `attributions` of `x.shape`, `delta = sum(attributions)
      - (f(x) - f(x'))` and `aux`: `n_evals` (gradients used, int), `converged`
      (bool), `error_bound` (`sum_j |e_j| >= |delta|` up to rounding),
      `tolerance`, `n_intervals`, `intervals [max_intervals, 2]` (bounds sorted
      by start, unused rows NaN), `errors [max_intervals]` (local `e_j` in the
      same order, unused 0), `f_x`, `f_baseline [1]`.

    Raises:
      TypeError, ValueError: for an integer or non-finite `x`, several baselines,
        negative or non-finite tolerances, an unknown `rule`, a non-int or < 1
        static argument, `split_per_round > initial_intervals`, `max_steps`
        below the first pass's `m0 k + 1` gradients, or `f` not scalar.
    """
    caller = "adaptive_integrated_gradients"
    x = _checks.check_input(x, caller)
    rtol = _check_tolerance(rtol, caller, "rtol")
    atol = _check_tolerance(atol, caller, "atol")
    _checks.check_choice(rule, tuple(RULES), caller, "rule")
    _checks.check_choice(stop_on, ("bound", "delta"), caller, "stop_on")
    m0 = _checks.check_static_int(initial_intervals, caller, "initial_intervals")
    s = _checks.check_static_int(split_per_round, caller, "split_per_round")
    max_steps = _checks.check_static_int(max_steps, caller, "max_steps")
    k = len(RULES[rule]) - 1  # panels per interval
    n_first = m0 * k + 1
    if s > m0:
        raise ValueError(
            f"{caller}: split_per_round must be <= initial_intervals (each round"
            f" bisects that many distinct intervals); got split_per_round={s},"
            f" initial_intervals={m0}."
        )
    if max_steps < n_first:
        raise ValueError(
            f"{caller}: max_steps must be >= initial_intervals * {k} + 1 = {n_first}"
            f" (the first pass of rule={rule!r}); got {max_steps}."
        )
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    refs = baselines.resolve(baseline, x, key, caller)
    if refs.shape[0] != 1:
        raise ValueError(
            f"{caller}: takes one baseline; got a list of {refs.shape[0]}. Average"
            " per-baseline calls yourself, or use integrated_gradients."
        )
    ref = refs[0]
    dtype = x.dtype
    n_rounds = (max_steps - n_first) // (s * k)
    size = m0 + s * n_rounds  # intervals after the last affordable round
    n_nodes = n_first + s * k * n_rounds
    w = jnp.asarray(RULES[rule], dtype)

    def path(alpha):
        return ref + alpha * (x - ref)

    def gradients(alphas):
        """Per-node `grad f * (x - x')` `[q, *x.shape]`, values and slopes `[q]`."""
        eye = jnp.eye(alphas.shape[0], dtype=dtype)  # one weight column per node
        r = engine.path_integral(f, path, alphas, eye, batch_size=batch_size)
        return r.integral, r.values, r.slopes

    def local_errors(a, b, idx, values, slopes):
        """`e_j` of intervals `[a, b]` whose nodes are `idx [q, k + 1]`."""
        quad = (b - a) * (slopes[idx] @ w)
        return quad - (values[idx[:, -1]] - values[idx[:, 0]])

    # First pass: m0 intervals, nodes 0..m0 k in order along the path.
    alphas0 = jnp.linspace(0.0, 1.0, n_first, dtype=dtype)
    g0, v0, s0 = gradients(alphas0)
    idx0 = np.arange(m0)[:, None] * k + np.arange(k + 1)  # [m0, k + 1], static
    pad_n, pad_i = n_nodes - n_first, size - m0

    def grow(v, pad, fill=0):
        return jnp.concatenate([v, jnp.full((pad, *v.shape[1:]), fill, v.dtype)])

    state = {
        "grads": grow(g0, pad_n),
        "values": grow(v0, pad_n),
        "slopes": grow(s0, pad_n),
        "alphas": grow(alphas0, pad_n),
        "a": grow(alphas0[idx0[:, 0]], pad_i),
        "b": grow(alphas0[idx0[:, -1]], pad_i),
        "idx": grow(jnp.asarray(idx0, jnp.int32), pad_i),
        "round": jnp.asarray(0, jnp.int32),
    }
    state["err"] = grow(
        local_errors(state["a"][:m0], state["b"][:m0], idx0, v0, s0), pad_i
    )

    f_x = f(x)
    f_ref = f(ref)
    tol = jnp.maximum(
        jnp.asarray(atol, dtype), jnp.asarray(rtol, dtype) * jnp.abs(f_x - f_ref)
    )

    def bound(st):
        return jnp.abs(st["err"]).sum()  # unused slots hold 0

    def measure(st):
        return bound(st) if stop_on == "bound" else jnp.abs(st["err"].sum())

    def keep_going(st):
        return (measure(st) > tol) & (st["round"] < n_rounds)

    # Bisection of an interval with nodes n_0..n_k: the 2k + 1 nodes of the two
    # children interleave the parent's (even positions) with k new ones (odd).
    odd = np.arange(1, 2 * k, 2)
    fine = (np.arange(2 * k + 1) / (2 * k))[odd]  # new nodes' relative positions

    def refine(st):
        n_used = m0 + s * st["round"]
        in_use = jnp.arange(size) < n_used
        score = jnp.where(in_use, jnp.abs(st["err"]), -jnp.ones((), dtype))
        parents = jax.lax.top_k(score, s)[1]  # s distinct slots in use (s <= m0)
        a, b, pidx = st["a"][parents], st["b"][parents], st["idx"][parents]
        new_alphas = (a[:, None] + (b - a)[:, None] * fine).reshape(-1)  # [s k]
        g, v, sl = gradients(new_alphas)
        first_new = n_first + s * k * st["round"]
        new_idx = (first_new + jnp.arange(s * k)).reshape(s, k).astype(jnp.int32)
        both = jnp.zeros((s, 2 * k + 1), jnp.int32)
        both = both.at[:, ::2].set(pidx).at[:, odd].set(new_idx)
        mid = 0.5 * (a + b)
        ca = jnp.concatenate([a, mid])
        cb = jnp.concatenate([mid, b])
        cidx = jnp.concatenate([both[:, : k + 1], both[:, k:]])
        new = dict(st)
        put = lambda buf, val: jax.lax.dynamic_update_slice_in_dim(
            buf, val, first_new, axis=0
        )
        new["grads"] = put(st["grads"], g)
        new["values"] = put(st["values"], v)
        new["slopes"] = put(st["slopes"], sl)
        new["alphas"] = put(st["alphas"], new_alphas)
        err = local_errors(ca, cb, cidx, new["values"], new["slopes"])
        # Left halves take their parent's slot, right halves the next free slots.
        slots = jnp.concatenate([parents, n_used + jnp.arange(s)])
        new["a"] = st["a"].at[slots].set(ca)
        new["b"] = st["b"].at[slots].set(cb)
        new["idx"] = st["idx"].at[slots].set(cidx)
        new["err"] = st["err"].at[slots].set(err)
        new["round"] = st["round"] + 1
        return new

    st = jax.lax.while_loop(keep_going, refine, state)

    n_used = m0 + s * st["round"]
    in_use = jnp.arange(size) < n_used
    # Each node's weight: the sum over the intervals it belongs to of h_j w_i.
    contrib = jnp.where(in_use[:, None], (st["b"] - st["a"])[:, None] * w, 0)
    node_w = (
        jnp.zeros(n_nodes, dtype).at[st["idx"].reshape(-1)].add(contrib.reshape(-1))
    )
    attributions = jnp.tensordot(node_w, st["grads"], axes=1)
    delta = attributions.sum() - (f_x - f_ref)
    order = jnp.argsort(jnp.where(in_use, st["a"], jnp.inf))
    bounds = jnp.stack([st["a"], st["b"]], axis=1)
    aux = {
        "n_evals": n_first + st["round"] * (s * k),
        "converged": measure(st) <= tol,
        "error_bound": bound(st),
        "tolerance": tol,
        "n_intervals": n_used,
        "intervals": jnp.where(in_use[:, None], bounds, jnp.nan)[order],
        "errors": jnp.where(in_use, st["err"], 0)[order],
        "f_x": f_x,
        "f_baseline": f_ref[None],
    }
    return Attribution(attributions, delta, aux)
