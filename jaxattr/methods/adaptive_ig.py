"""Error-controlled Integrated Gradients: a tolerance on the attribution map.

Reference: docs/integrated_gradients.md#error-controlled-ig.

Along the straight path `gamma(alpha) = x' + alpha (x - x')`, IG is the integral
of the per-feature integrand `g(alpha) = grad f(gamma(alpha)) * (x - x')`
(shape of `x`). The path is cut into intervals `[a, b]` (`h = b - a`); each
carries three nodes `a, m = (a + b) / 2, b` and two nested rules on them, per
feature:

    T1_j = h/2 (g(a) + g(b))                one trapezoid
    T2_j = h/4 (g(a) + 2 g(m) + g(b))       two trapezoids (the result)

The attribution map `A = sum_j T2_j` is the composite trapezoid rule on every
node. Bisecting an interval turns its three nodes into the ends and midpoint of
its children and costs two new gradients; neighbours share their end node, so
no gradient is ever thrown away.

Error estimate (free: same nodes). Per interval and feature
`D_j = T2_j - T1_j = h/4 (2 g(m) - g(a) - g(b))`. For a ReLU network the slope
is piecewise constant along the line; if feature `i` jumps once by `J` inside
`[a, b]`, at `a + tau h`, T2's error is `h (tau - 1/4) J` (`tau < 1/2`) or
`h (tau - 3/4) J`, while `|D_ji| = h |J| / 4`: one kink is always seen and
always bounded. For a smooth slope `|D_j|` is 3x T2's error. The exact local
completeness error `e_j = sum(T2_j) - (F(b) - F(a))` (the values come with
the gradients) is also free, and `|e_j| <= ||T2_j - exact_j||_1`.

Norm: L1 over all features, `||v|| = sum_i |v_i|`. It is the norm in which the
free completeness error is a lower bound of the map error (`|e_j| <= ||error_j||`,
`|delta| <= ||A - A_true||`), so the two can be combined, and in which the
per-interval bounds add up exactly. With `delta = sum_j e_j`:

* indicator of interval `j`: `eta_j = max(||D_j||, |e_j|)`;
* estimate (the stopping rule), per feature the larger of the signed sum and
  the root sum of squares of the local differences:
  `E = max(sum_i max(|sum_j D_ji|, sqrt(sum_j D_ji^2)), |delta|)`;
* bound: `B = sum_j eta_j >= E`, an upper bound on `||A - A_true||` whenever
  each feature's slope is, on each interval, linear but for at most one jump.

The signed sum is the classic embedded estimate (two trapezoids against one on
the whole grid); it is right when the local errors of a feature share a sign
(a smooth slope) and lets them cancel otherwise. The root sum of squares is
what independent signs add up to, and is at least the largest single `|D_ji|`,
so one kink is never hidden by cancellation. `B` adds every `|D_ji|`: rigorous
for few kinks, but on a real network each feature's slope has many kinks per
interval whose errors have random signs, and `B` was about 5x the true error on
EfficientNet-Lite0 photos, `E` about 2-2.5x (benchmarks/README.md). On random
ReLU networks (one hidden layer of 8) `E` fell short of the true error on 2-7
of 200 (by at most 1.75x: two same-sign errors), while the result stayed within
the tolerance.

The loop bisects the `split_per_round` intervals with the largest `eta_j`
until `E <= max(atol, rtol ||A||)` or the budget is spent.

First pass: `initial_intervals` equal intervals. `f(z) = relu(z0 - 1/4) +
relu(z1 - 3/4)` from 0 to `(1, 1)` has a completeness error of 0 on one
interval with one trapezoid per interval (each feature wrong by 1/4, in
opposite directions), which is what fooled an indicator built on the sum; here
`D = (1/4, -1/4)` per feature and the loop goes on. What can still hide is a
bump of one feature between two nodes with `g(m)` exactly the mean of `g(a)`
and `g(b)` and the sum over features exact as well; more initial intervals
(default 4) make that rarer, nothing with finitely many nodes excludes it.

Static shapes: gradients live in a buffer `[max_nodes, *x.shape]`, one
`while_loop`, so the function is `jit`/`vmap` safe. The running per-feature sums
of `T2_j`, `D_j` and `D_j^2` (for the stopping rule) are updated per bisection
(rounding of order eps times the largest local term); the returned map is
recomputed once from each node's final weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, baselines, engine
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, BaselineLike, PRNGKey, ScalarFn


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


def _l1(v, axes):
    return jnp.abs(v).sum(axis=axes)


def _local(h, g):
    """Nested rules of intervals of widths `h [q]` on their nodes `g [q, 3, ...]`:
    `T2 [q, ...]` (two trapezoids) and `D = T2 - T1 [q, ...]`."""
    hb = h.reshape(h.shape + (1,) * (g.ndim - 2))
    t2 = hb / 4 * (g[:, 0] + 2 * g[:, 1] + g[:, 2])
    d = hb / 4 * (2 * g[:, 1] - g[:, 0] - g[:, 2])
    return t2, d


def adaptive_integrated_gradients(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    rtol: float = 0.01,
    atol: float = 0.0,
    initial_intervals: int = 4,
    split_per_round: int = 1,
    max_steps: int = 256,
    batch_size: int | None = None,
    key: PRNGKey | None = None,
) -> Attribution:
    """Integrated Gradients refined until the estimated map error is below a tolerance.

    Composite trapezoid rule along the straight path from `baseline` to `x`
    on intervals that carry three nodes each (ends and midpoint; module
    docstring). It starts from `initial_intervals` (m0) equal intervals,
    `2 m0 + 1` gradients; each round bisects the `split_per_round` (s)
    intervals with the largest indicator `eta_j` at `2 s` new gradients, until
    the estimated L1 map error `E` (module docstring; never below
    `|delta|`) is `<= max(atol, rtol * ||A||_1)` or a further round would exceed
    `max_steps` gradients. `||v||_1 = sum_i |v_i|` over all features of `x`.

    Under `jax.vmap` (e.g. `jaxattr.attribute`) the loop runs until every
    example has converged; converged examples are frozen, so each example's
    result is the one it gets alone.

    Args:
      f: maps one example to a scalar (see `jaxattr.scalar_output`).
      x: one example; floating, finite.
      baseline: one baseline, anything `jaxattr.baselines` accepts except a
        list of several (`None`: zeros).
      rtol: tolerance relative to `||A||_1` (may be traced).
      atol: absolute tolerance on `E`, in the units of `A` (may be traced);
        the larger of the two applies.
      initial_intervals: equal intervals to start from, m0 (static, >= s).
      split_per_round: intervals bisected per round, s (static).
      max_steps: budget of gradient evaluations (static, >= `2 m0 + 1`).
      batch_size: path nodes per chunk (static); `None` runs a round at once.
      key: PRNG key, required only for a random baseline.

    Returns:
      `Attribution` with `attributions` of `x.shape`, `delta = sum(attributions)
      - (f(x) - f(x'))` (a diagnostic; not the stopping rule) and `aux`:
      `n_evals` (gradients used, int), `converged` (bool), `error_estimate`
      (`E`, what the tolerance is checked on), `error_bound` (`B = sum_j eta_j
      >= E`, rigorous for at most one kink per feature and interval),
      `tolerance` (`max(atol, rtol ||A||_1)` at the end), `n_intervals`,
      `intervals [max_intervals, 2]` (bounds sorted by start, unused rows NaN),
      `indicators [max_intervals]` (`eta_j`, same order, unused 0), `errors
      [max_intervals]` (local completeness errors `e_j`, unused 0), `f_x`,
      `f_baseline [1]`.

    Raises:
      TypeError, ValueError: for an integer or non-finite `x`, several baselines,
        negative or non-finite tolerances, a non-int or < 1 static argument,
        `split_per_round > initial_intervals`, `max_steps` below the first
        pass's `2 m0 + 1` gradients, or `f` not scalar.
    """
    caller = "adaptive_integrated_gradients"
    x = _checks.check_input(x, caller)
    rtol = _check_tolerance(rtol, caller, "rtol")
    atol = _check_tolerance(atol, caller, "atol")
    m0 = _checks.check_static_int(initial_intervals, caller, "initial_intervals")
    s = _checks.check_static_int(split_per_round, caller, "split_per_round")
    max_steps = _checks.check_static_int(max_steps, caller, "max_steps")
    n_first = 2 * m0 + 1
    if s > m0:
        raise ValueError(
            f"{caller}: split_per_round must be <= initial_intervals (each round"
            f" bisects that many distinct intervals); got split_per_round={s},"
            f" initial_intervals={m0}."
        )
    if max_steps < n_first:
        raise ValueError(
            f"{caller}: max_steps must be >= initial_intervals * 2 + 1 = {n_first}"
            f" (the first pass); got {max_steps}."
        )
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    ref = baselines.resolve_one(baseline, x, key, caller)
    dtype = x.dtype
    feat = tuple(range(1, x.ndim + 1))  # feature axes of a [q, *x.shape] array
    n_rounds = (max_steps - n_first) // (2 * s)
    size = m0 + s * n_rounds  # intervals after the last affordable round
    n_nodes = n_first + 2 * s * n_rounds

    path = engine.straight_line(x, ref)

    def gradients(alphas):
        """Per-node `grad f * (x - x')` `[q, *x.shape]`, values and slopes `[q]`."""
        eye = jnp.eye(alphas.shape[0], dtype=dtype)  # one weight column per node
        r = engine.path_integral(f, path, alphas, eye, batch_size=batch_size)
        return r.integral, r.values, r.slopes

    def describe(a, b, g, slopes, f_a, f_b):
        """Intervals `[a, b]` from their nodes' `g [q, 3, ...]`, `slopes [q, 3]`
        and end values: `T2`, `D`, `eta`, `e`."""
        t2, d = _local(b - a, g)
        w = jnp.asarray([0.25, 0.5, 0.25], dtype)
        e = (b - a) * (slopes @ w) - (f_b - f_a)
        return t2, d, jnp.maximum(_l1(d, feat), jnp.abs(e)), e

    # First pass: m0 intervals, nodes 0..2 m0 in order along the path.
    alphas0 = jnp.linspace(0.0, 1.0, n_first, dtype=dtype)
    g0, v0, s0 = gradients(alphas0)
    idx0 = jnp.asarray(np.arange(m0)[:, None] * 2 + np.arange(3), jnp.int32)
    a0, b0 = alphas0[idx0[:, 0]], alphas0[idx0[:, 2]]
    t2, d, eta, e = describe(a0, b0, g0[idx0], s0[idx0], v0[idx0[:, 0]], v0[idx0[:, 2]])
    pad_n, pad_i = n_nodes - n_first, size - m0

    def grow(v, pad, fill=0):
        return jnp.concatenate([v, jnp.full((pad, *v.shape[1:]), fill, v.dtype)])

    state = {
        "grads": grow(g0, pad_n),
        "values": grow(v0, pad_n),
        "slopes": grow(s0, pad_n),
        "alphas": grow(alphas0, pad_n),
        "a": grow(a0, pad_i),
        "b": grow(b0, pad_i),
        "idx": grow(idx0, pad_i),
        "eta": grow(eta, pad_i),
        "err": grow(e, pad_i),
        "map": t2.sum(0),  # running sum_j T2_j
        "diff": d.sum(0),  # running sum_j D_j
        "square": (d * d).sum(0),  # running sum_j D_j^2
        "round": jnp.asarray(0, jnp.int32),
    }
    f_ref, f_x = v0[0], v0[-1]  # F(0) and F(1) come with the first pass

    def estimate(st):
        rss = jnp.sqrt(jnp.maximum(st["square"], 0))  # clamp: running-sum rounding
        per_feature = jnp.maximum(jnp.abs(st["diff"]), rss)
        return jnp.maximum(per_feature.sum(), jnp.abs(st["err"].sum()))

    def tolerance(st):
        scale = jnp.asarray(rtol, dtype) * _l1(st["map"], None)
        return jnp.maximum(jnp.asarray(atol, dtype), scale)

    def keep_going(st):
        return (estimate(st) > tolerance(st)) & (st["round"] < n_rounds)

    def refine(st):
        n_used = m0 + s * st["round"]
        in_use = jnp.arange(size) < n_used
        score = jnp.where(in_use, st["eta"], -jnp.ones((), dtype))
        parents = jax.lax.top_k(score, s)[1]  # s distinct slots in use (s <= m0)
        a, b, pidx = st["a"][parents], st["b"][parents], st["idx"][parents]
        h = b - a
        new_alphas = jnp.stack([a + h / 4, a + 3 * h / 4], 1).reshape(-1)  # [2 s]
        g, v, sl = gradients(new_alphas)
        # The children's nodes, gathered before the buffers are updated (in place).
        gp, sp, vp = st["grads"][pidx], st["slopes"][pidx], st["values"][pidx]
        gn, sn = g.reshape(s, 2, *g.shape[1:]), sl.reshape(s, 2)

        def children(p, n):  # (a, a + h/4, m) and (m, a + 3h/4, b)
            left = jnp.stack([p[:, 0], n[:, 0], p[:, 1]], 1)
            return jnp.concatenate([left, jnp.stack([p[:, 1], n[:, 1], p[:, 2]], 1)])

        first_new = n_first + 2 * s * st["round"]
        new_idx = (first_new + jnp.arange(2 * s)).reshape(s, 2).astype(jnp.int32)
        mid = 0.5 * (a + b)
        ca, cb = jnp.concatenate([a, mid]), jnp.concatenate([mid, b])
        f_a = jnp.concatenate([vp[:, 0], vp[:, 1]])
        f_b = jnp.concatenate([vp[:, 1], vp[:, 2]])
        t2, d, eta, e = describe(ca, cb, children(gp, gn), children(sp, sn), f_a, f_b)
        pt2, pd = _local(h, gp)
        new = dict(st)
        put = lambda buf, val: jax.lax.dynamic_update_slice_in_dim(
            buf, val, first_new, axis=0
        )
        for name, val in (("grads", g), ("values", v), ("slopes", sl)):
            new[name] = put(st[name], val)
        new["alphas"] = put(st["alphas"], new_alphas)
        cidx = children(pidx, new_idx)
        new["map"] = st["map"] + (t2.sum(0) - pt2.sum(0))
        new["diff"] = st["diff"] + (d.sum(0) - pd.sum(0))
        new["square"] = st["square"] + ((d * d).sum(0) - (pd * pd).sum(0))
        # Left halves take their parent's slot, right halves the next free slots.
        slots = jnp.concatenate([parents, n_used + jnp.arange(s)])
        for name, val in (
            ("a", ca),
            ("b", cb),
            ("idx", cidx),
            ("eta", eta),
            ("err", e),
        ):
            new[name] = st[name].at[slots].set(val)
        new["round"] = st["round"] + 1
        return new

    st = jax.lax.while_loop(keep_going, refine, state)

    n_used = m0 + s * st["round"]
    in_use = jnp.arange(size) < n_used
    # Each node's weight: the sum over the intervals it belongs to of h/4 (1, 2, 1).
    w = jnp.asarray([0.25, 0.5, 0.25], dtype)
    contrib = jnp.where(in_use[:, None], (st["b"] - st["a"])[:, None] * w, 0)
    node_w = (
        jnp.zeros(n_nodes, dtype).at[st["idx"].reshape(-1)].add(contrib.reshape(-1))
    )
    attributions = jnp.tensordot(node_w, st["grads"], axes=1)
    delta = engine.completeness_delta(attributions, f_x, f_ref)
    order = jnp.argsort(jnp.where(in_use, st["a"], jnp.inf))
    bounds = jnp.stack([st["a"], st["b"]], axis=1)
    est, tol = estimate(st), tolerance(st)
    aux = {
        "n_evals": n_first + st["round"] * (2 * s),
        "converged": est <= tol,
        "error_estimate": est,
        "error_bound": jnp.where(in_use, st["eta"], 0).sum(),
        "tolerance": tol,
        "n_intervals": n_used,
        "intervals": jnp.where(in_use[:, None], bounds, jnp.nan)[order],
        "indicators": jnp.where(in_use, st["eta"], 0)[order],
        "errors": jnp.where(in_use, st["err"], 0)[order],
        "f_x": f_x,
        "f_baseline": f_ref[None],
    }
    return Attribution(attributions, delta, aux)
