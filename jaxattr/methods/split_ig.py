"""Split Integrated Gradients and left-IG (Miglani et al., ICML 2020 WHI workshop;
IDG's "LIG" baseline, Walker et al., AAAI 2024).

The IG path is split at the first node where the output crosses a threshold: the
left part (baseline side, where the output is still rising) and the right part
(input side, often saturated). `left + right = IG` exactly, node by node, since
both are the same quadrature sum with complementary masks, evaluated in one pass.

Two definitions of the split (docs/integrated_gradients.md#split-ig-and-left-ig):

* `"relative"` (Miglani et al.): threshold `tau = f(x') + threshold * (f(x) -
  f(x'))`, default `threshold=0.5` (their notebook's experiment uses 0.95). The
  parts are sums with the rule's weights, so each keeps its share of completeness:
  `sum(left) ~ f(gamma(b)) - f(x')`, `sum(right) ~ f(x) - f(gamma(b))`, where `b`
  is the total weight of the left nodes (the end of the left part for Riemann rules).
  Their notebook: `n_steps=200, rule="riemann_right"`. When `f(x) < f(x')` the
  crossing is taken downwards (their `>` test assumes a rising output).
* `"idg"` (IDG's evaluation): `tau = threshold * max_k f(gamma(alpha_k))`, default
  `threshold=0.9`, and the left attribution is `(x - x')` times the plain **mean** of
  the left gradients (not their share of the integral); at least one node is left,
  and one node when `f` never exceeds `tau` (when `max f <= 0`), as in the authors'
  code. IDG: `n_steps=50, rule="riemann_trapezoid"` (their
  `linspace(0, 1, 50)` nodes), `baseline="normalized_zero"`.

The outputs along the path are needed before the split is known, so the method
spends `n_steps` forward passes (about a third of the gradient pass) before its one
gradient pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxattr import _checks, _deprecated, baselines, engine, quadrature
from jaxattr.base import Attribution
from jaxattr.typing import ArrayLike, BaselineLike, PRNGKey, ScalarFn

DEFINITIONS = ("relative", "idg")
SIDES = ("left", "right")
_DEFAULT_THRESHOLD = {"relative": 0.5, "idg": 0.9}


@_deprecated.renamed(method="rule")
def split_integrated_gradients(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    side: str = "left",
    definition: str = "relative",
    threshold: ArrayLike | None = None,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    key: PRNGKey | None = None,
) -> Attribution:
    """The left or right part of Integrated Gradients, split where `f` crosses a
    threshold along the path (see the module docstring for the definitions).

    Args:
      f: maps one example to a scalar.
      x: one example, e.g. `[H, W, C]` pixels in [0, 1].
      baseline: as in `integrated_gradients`; with several baselines each path is
        split at its own node and the parts are averaged.
      side: `"left"` (Left-IG, the default) or `"right"`, the part returned as
        `attributions` (static); both are in `aux`.
      definition: `"relative"` or `"idg"` (static).
      threshold: the fraction `r` of the definition; may be traced (a sweep over
        thresholds is one `vmap`). Default 0.5 (relative) or 0.9 (idg).
      n_steps, rule, batch_size, key: as in `integrated_gradients` (`method=`: the
        deprecated name of `rule=`).

    Returns:
      `Attribution` with `attributions [*x.shape]` and `delta` of Captum's sign:
      `sum(left) - (f(gamma(b)) - f(x'))` or `sum(right) - (f(x) - f(gamma(b)))`
      for `"relative"`; for `"idg"`'s left part, whose scale is an average slope,
      `sum(left) - (f(gamma(b)) - f(x')) / b`. `aux`: `left` and `right` (the
      rule-weighted parts, `left + right = IG`), `split_index [K]` (the number of
      nodes in the left part of each path), `boundary [K]` (`b`), `threshold [K]`
      (`tau`), `alphas [n_steps]`, `values [K, n_steps]`, `f_x` and
      `f_baseline [K]`.

    Raises:
      ValueError, TypeError: as `integrated_gradients`, and for an unknown `side`
        or `definition`, a non-scalar `threshold`, or `definition="idg"` with
        `side="right"` (IDG defines only a left part).
    """
    caller = "split_integrated_gradients"
    x = _checks.check_input(x, caller)
    _checks.check_choice(side, SIDES, caller, "side")
    _checks.check_choice(definition, DEFINITIONS, caller, "definition")
    if definition == "idg" and side == "right":
        raise ValueError(
            f"{caller}: definition='idg' defines only the left part (the mean of the"
            " left gradients); got side='right'. Use definition='relative'."
        )
    quadrature.check_rule(rule, n_steps, caller=caller)
    batch_size = _checks.check_batch_size(batch_size, caller)
    _checks.check_scalar_fn(f, x, caller)
    if threshold is None:
        threshold = _DEFAULT_THRESHOLD[definition]
    threshold = jnp.asarray(threshold, x.dtype)
    if threshold.ndim:
        raise ValueError(
            f"{caller}: threshold must be a scalar; got shape {tuple(threshold.shape)}."
        )
    refs = baselines.resolve(baseline, x, key, caller)  # [K, *x.shape]
    n_refs = refs.shape[0]
    path = engine.straight_lines(x, refs)

    alphas, weights = quadrature.nodes_and_weights(rule, n_steps)
    dtype = x.dtype
    nodes = engine.baseline_nodes(alphas, weights, n_refs, dtype)

    # Forward pass: f along each path, to place the split.
    values = engine.path_values(
        f, path, nodes.alphas, node_args=nodes.paths, batch_size=batch_size
    )
    values = values.reshape(n_refs, n_steps)
    f_x, f_refs = engine.endpoint_values(f, x, refs)
    if definition == "relative":
        tau = f_refs + threshold * (f_x - f_refs)
        # "Crosses" in the direction in which f changes from x' to x.
        direction = jnp.where(f_x >= f_refs, 1, -1).astype(dtype)
    else:
        tau = threshold * values.max(axis=1)
        direction = jnp.ones((n_refs,), dtype)
    above = direction[:, None] * (values - tau[:, None]) > 0
    # Nodes before the first crossing. Never crossing: all nodes (relative), or one
    # node (idg: the authors' fallback, which also turns an empty left part into 1).
    never = n_steps if definition == "relative" else 1
    split = jnp.where(above.any(axis=1), jnp.argmax(above, axis=1), never)
    if definition == "idg":
        split = jnp.maximum(split, 1)
    is_left = jnp.arange(n_steps)[None, :] < split[:, None]  # [K, n]
    w = jnp.asarray(weights, dtype)[None, :]
    columns = [jnp.where(is_left, w, 0), jnp.where(is_left, 0, w)]
    if definition == "idg":
        columns.append(jnp.where(is_left, 1 / split[:, None].astype(dtype), 0))
    node_weights = jnp.stack(columns, axis=-1).reshape(n_refs * n_steps, -1) / n_refs

    result = engine.path_integral(
        f,
        path,
        nodes.alphas,
        node_weights,
        node_args=nodes.paths,
        batch_size=batch_size,
    )
    left, right = result.integral[0], result.integral[1]
    boundary = jnp.where(is_left, w, 0).sum(axis=1)  # [K]
    f_split = jax.vmap(lambda b, i: f(path(b, i)))(boundary, jnp.arange(n_refs))
    if side == "right":
        attributions = right
        delta = engine.completeness_delta(right, f_x, f_split)
    else:
        # The change of f over each path's left part, as one difference per path
        # (better conditioned than a difference of means when `boundary` is small).
        change = f_split - f_refs
        if definition == "relative":
            attributions = left
        else:
            attributions, change = result.integral[2], change / boundary
        delta = engine.completeness_delta(attributions, change, jnp.zeros((), dtype))
    aux = {
        "left": left,
        "right": right,
        "split_index": split,
        "boundary": boundary,
        "threshold": tau,
        "alphas": nodes.alphas[:n_steps],
        "values": values,
        "f_x": f_x,
        "f_baseline": f_refs,
    }
    return Attribution(attributions, delta, aux)
