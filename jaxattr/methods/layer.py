"""Layer and neuron attribution: layer IG, layer conductance, neuron IG.

Each takes the model cut at an activation `h` as two functions, `head: x -> h` and
`tail: h -> scalar` (write them yourself, or cut a Flax model by a submodule's name
with `jaxattr.split_at`), and one example `x` with an input-space `baseline`:

>>> cut = jaxattr.split_at(model.fn, "layer3.2", x, target=3)
>>> a = jaxattr.layer_integrated_gradients(cut.head, cut.tail, x, "black")
>>> a.attributions.shape, a.delta           # (8, 8, 64), ~0: completeness at the layer
>>> jaxattr.layer_conductance(cut.head, cut.tail, x, "black")
>>> jaxattr.neuron_integrated_gradients(cut.head, (3, 4, 10), x, "black")  # [*x.shape]

Captum's semantics (`LayerIntegratedGradients`, `LayerConductance`,
`NeuronIntegratedGradients`): the baseline is given for the input and mapped to the
layer by `head`; attributions have the activation's shape. Layer IG is a path method on
`tail` from `head(x')` to `head(x)`, so any of `jaxattr.methods` fits (`attribute=`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, baselines, engine, quadrature
from jaxattr.base import Attribution
from jaxattr.methods.integrated_gradients import integrated_gradients

Array = jax.Array

__all__ = [
    "layer_conductance",
    "layer_integrated_gradients",
    "neuron_integrated_gradients",
]


def _check_head(head, x: Array, caller: str) -> jax.ShapeDtypeStruct:
    if not callable(head):
        raise TypeError(
            f"{caller}: head must be a function x -> h; got {type(head).__name__}."
        )
    h = jax.eval_shape(head, x)
    if not isinstance(h, jax.ShapeDtypeStruct) or not jnp.issubdtype(
        h.dtype, jnp.floating
    ):
        raise TypeError(
            f"{caller}: head must return one floating array (the activation); got"
            f" {h!r}."
        )
    return h


def _check_tail(tail, h: jax.ShapeDtypeStruct, caller: str) -> None:
    if not callable(tail):
        raise TypeError(
            f"{caller}: tail must be a function h -> scalar; got {type(tail).__name__}."
        )
    out = jax.eval_shape(tail, h)
    if getattr(out, "shape", None) != ():
        raise ValueError(
            f"{caller}: tail must map the activation {tuple(h.shape)} to a scalar;"
            f" got shape {getattr(out, 'shape', type(out).__name__)}. Select the"
            " target class (jaxattr.split_at(..., target=) or jaxattr.scalar_output)."
        )


def _layer_baselines(head, x, baseline, key, caller: str) -> Array:
    refs = baselines.resolve(baseline, x, key, caller)  # [K, *x.shape]
    return jax.vmap(head)(refs)  # [K, *h.shape]


def layer_integrated_gradients(
    head: Callable[[Array], Array],
    tail: Callable[[Array], Array],
    x: Array,
    baseline: Any = None,
    *,
    attribute: Callable[..., Attribution] = integrated_gradients,
    key: Array | None = None,
    **kwargs: Any,
) -> Attribution:
    """Layer Integrated Gradients: a path method on `tail`, from `head(x')` to `head(x)`.

    Captum's `LayerIntegratedGradients`: the layer's activation is interpolated
    between the activation of the input baseline and that of the input, and the
    gradient is taken at the layer. Completeness holds at the layer: `sum(A) =
    tail(head(x)) - tail(head(x'))` up to the quadrature error, which is `f(x) - f(x')`
    unless a path bypasses the layer (then `tail` keeps `x` on it, as Captum does).

    Args:
      head: one example `x -> h` (the activation, e.g. `[H', W', C]`).
      tail: `h -> scalar`, the explained output from the activation on.
      x: one example, e.g. `[H, W, C]`; floating, finite.
      baseline: the input baseline (any form of `jaxattr.baselines`, a list of
        several: their activations' attributions are averaged by `attribute`).
      attribute: a path method `attribute(f, x, baseline, **kwargs)`, default
        `integrated_gradients` (`expected_gradients` and the baseline-free methods
        do not fit its calling convention).
      key: PRNG key for a random baseline (resolved in input space).
      **kwargs: passed to `attribute` (`n_steps`, the quadrature rule, `batch_size`;
        static where `attribute` says so).

    Returns:
      `attribute`'s `Attribution` with `attributions` of `h`'s shape, `delta` the
      completeness error at the layer and its `aux` (`f_x = tail(head(x))`,
      `f_baseline [K]`).

    Raises:
      TypeError, ValueError: a bad `x` or baseline, `head` not returning one
        floating array, `tail` not returning a scalar, or `attribute`'s own errors.
    """
    caller = "layer_integrated_gradients"
    x = _checks.check_input(x, caller)
    h_shape = _check_head(head, x, caller)
    _check_tail(tail, h_shape, caller)
    h_refs = _layer_baselines(head, x, baseline, key, caller)
    h_baseline = h_refs[0] if h_refs.shape[0] == 1 else list(h_refs)
    return attribute(tail, head(x), h_baseline, **kwargs)


def layer_conductance(
    head: Callable[[Array], Array],
    tail: Callable[[Array], Array],
    x: Array,
    baseline: Any = None,
    *,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    key: Array | None = None,
) -> Attribution:
    """Layer conductance (Dhamdhere, Sundararajan and Yan, 2018): the input's straight
    path, seen at the layer.

    `Cond_j = int_0^1 dtail/dh_j (h(a)) * dh_j/da da` with `h(a) = head(x' + a (x -
    x'))`: the gradient at the layer times the activation's own velocity along the
    input path (a `jax.jvp` of `head`), by the quadrature rule `rule`. Completeness
    at the layer holds for any `head`: `sum(Cond) = tail(head(x)) - tail(head(x'))`
    up to quadrature error. Captum's `LayerConductance` approximates the same integral
    by differences of the activation between its `n_steps + 1` nodes (a
    Riemann-Stieltjes sum), so the two agree as `n_steps` grows.

    Args:
      head, tail, x, baseline, key: as in `layer_integrated_gradients`.
      n_steps: gradient evaluations per baseline (static).
      rule: quadrature rule, one of `jaxattr.quadrature.RULES` (static).
      batch_size: path nodes per chunk (static); `None` runs all at once.

    Returns:
      `Attribution` with `attributions` of `h`'s shape, `delta = sum(A) -
      (tail(head(x)) - mean tail(head(x')))` and `aux` with `alphas [n_steps]`,
      `values [K, n_steps]`, `f_x`, `f_baseline [K]`.
    """
    caller = "layer_conductance"
    x = _checks.check_input(x, caller)
    quadrature.check_rule(rule, n_steps, caller=caller)
    batch_size = _checks.check_batch_size(batch_size, caller)
    h_shape = _check_head(head, x, caller)
    _check_tail(tail, h_shape, caller)
    refs = baselines.resolve(baseline, x, key, caller)
    n_refs = refs.shape[0]
    alphas, weights = quadrature.nodes_and_weights(rule, n_steps)
    nodes = engine.baseline_nodes(alphas, weights, n_refs, x.dtype)
    line = engine.straight_lines(x, refs)
    result = engine.path_integral(
        tail,
        lambda a, i: head(line(a, i)),
        nodes.alphas,
        nodes.weights,
        node_args=nodes.paths,
        batch_size=batch_size,
    )
    f_x, f_refs = tail(head(x)), jax.vmap(lambda r: tail(head(r)))(refs)
    aux = {
        "alphas": nodes.alphas[:n_steps],
        "values": result.values.reshape(n_refs, n_steps),
        "f_x": f_x,
        "f_baseline": f_refs,
    }
    delta = engine.completeness_delta(result.integral, f_x, f_refs)
    return Attribution(result.integral, delta, aux)


def _neuron_fn(head, neuron, h_shape, caller: str) -> Callable[[Array], Array]:
    if callable(neuron):
        return lambda xi: neuron(head(xi))
    index = neuron if isinstance(neuron, tuple) else (neuron,)
    ok = len(index) == len(h_shape.shape) and all(
        isinstance(i, (int, np.integer)) and -n <= i < n
        for i, n in zip(index, h_shape.shape)
    )
    if not ok:
        raise ValueError(
            f"{caller}: neuron must be an index into the activation of shape"
            f" {tuple(h_shape.shape)} (a tuple of {len(h_shape.shape)} ints in range)"
            f" or a callable h -> scalar; got {neuron!r}."
        )
    return lambda xi: head(xi)[index]


def neuron_integrated_gradients(
    head: Callable[[Array], Array],
    neuron: tuple[int, ...] | int | Callable[[Array], Array],
    x: Array,
    baseline: Any = None,
    *,
    attribute: Callable[..., Attribution] = integrated_gradients,
    **kwargs: Any,
) -> Attribution:
    """Neuron Integrated Gradients: a path method on one neuron of the activation.

    Captum's `NeuronIntegratedGradients`: the input attributions of `head(x)[neuron]`.
    Completeness holds for that neuron: `sum(A) = h_j(x) - h_j(x')`.

    Args:
      head: one example `x -> h`.
      neuron: an index into `h` (static ints, one per axis of `h`), or a callable
        `h -> scalar` (Captum's `neuron_selector`, e.g. a sum over a channel).
      x: one example; floating, finite.
      baseline: the input baseline, as in `attribute`.
      attribute: a path method `attribute(f, x, baseline, **kwargs)`, default
        `integrated_gradients`.
      **kwargs: passed to `attribute` (`n_steps`, the rule, `batch_size`, `key`).

    Returns:
      `attribute`'s `Attribution` with `attributions` of `x.shape`.

    Raises:
      ValueError: an index of the wrong length or out of range for `h`'s shape.
    """
    caller = "neuron_integrated_gradients"
    x = _checks.check_input(x, caller)
    h_shape = _check_head(head, x, caller)
    return attribute(_neuron_fn(head, neuron, h_shape, caller), x, baseline, **kwargs)
