"""`attribute`: any method over a batch of examples and targets, by `jax.vmap`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, _deprecated, pytrees, targets
from jaxattr.base import Attribution
from jaxattr.typing import Array, ArrayLike, BaselineLike, ModelFn, PRNGKey


@_deprecated.renamed(baselines="baseline")
def attribute(
    method: Callable[..., Attribution],
    model_fn: Callable[[jax.Array], jax.Array],
    inputs: jax.Array,
    /,
    target: ArrayLike | Callable[[Array], Array] | None = None,
    *,
    baseline: BaselineLike = None,
    output: str = "logit",
    key: PRNGKey | None = None,
    **method_kwargs: Any,
) -> Attribution:
    """Explains a batch: `method` on each example of `inputs`, vmapped.

    Args:
      method: a jaxattr method, e.g. `jaxattr.integrated_gradients`.
      model_fn: batched model `[N, ...] -> [N, K]`.
      inputs: `[N, *example_shape]`, or a pytree of arrays (a tuple, a dict) with
        the batch axis `N` leading on every leaf
        (docs/integrated_gradients.md#pytree-inputs).
      target: `None`, an int for every example, an integer array `[N]`, or a
        callable on the model outputs `[N, K] -> [N]` such as
        `lambda z: jnp.argmax(z, -1)`, evaluated once on `inputs`.
      baseline: `None`, anything a single example accepts (shared by all
        examples), or an array `[N, *example_shape]` with one baseline per example
        (`baselines=`: its deprecated name, Captum's).
      output: `"logit"`, `"softmax"` or `"log_softmax"` (static).
      key: PRNG key for stochastic methods; split into one key per example.
      **method_kwargs: the method's hyperparameters (e.g. `n_steps`, or IG's
        quadrature `rule=`; the first three arguments are positional-only).

    Returns:
      An `Attribution` whose fields have a leading axis `[N]`.
    """
    caller = "attribute"
    tree = pytrees.is_pytree(inputs)
    if tree:
        n = _pytree_batch(inputs, caller)
        n_outputs = _check_pytree_model(model_fn, inputs, caller)
    else:
        inputs = _checks.check_input(inputs, caller, "inputs")
        if inputs.ndim < 1:
            raise ValueError(
                f"{caller}: inputs must have a leading batch axis; got a scalar."
            )
        n_outputs = _checks.check_batched_model(model_fn, inputs, caller)
        n = inputs.shape[0]
    if callable(target):
        outputs = model_fn(inputs)
        target = target(outputs)
        if jnp.shape(target) != (n,):
            # e.g. jnp.argmax(z) without an axis: one flat index, which would be
            # broadcast to every example and, traced, give NaN instead of an error
            raise ValueError(
                f"{caller}: a callable target must map the outputs"
                f" {tuple(outputs.shape)} to one class per example, shape ({n},); got"
                f" shape {tuple(jnp.shape(target))}. E.g. lambda z: jnp.argmax(z, -1)."
            )
    if target is not None:
        target = check_target(target, inputs, model_fn, caller, n_outputs=n_outputs)
    if tree:
        per_example_baseline = _same_shapes(baseline, inputs)
    else:
        per_example_baseline = hasattr(baseline, "shape") and tuple(
            baseline.shape
        ) == tuple(inputs.shape)
    if key is not None:
        _checks.check_key(key, caller, "the method is random")
    keys = None if key is None else jax.random.split(key, n)
    extra = {} if baseline is None else {"baseline": baseline}

    def one(x, t, b, k):
        f = targets.scalar_output(model_fn, t, output=output)
        kwargs = dict(method_kwargs, **extra)
        if per_example_baseline:
            kwargs["baseline"] = b
        return method(f, x, key=k, **kwargs)

    b_axis = 0 if per_example_baseline else None
    b_arg = baseline if per_example_baseline else None
    return jax.vmap(one, in_axes=(0, 0 if target is not None else None, b_axis, 0))(
        inputs, target, b_arg, keys
    )


def check_target(
    target: ArrayLike,
    inputs: ArrayLike,
    model_fn: ModelFn,
    caller: str,
    *,
    n_outputs: int | None = None,
) -> jax.Array:
    """`target` (an int, or ints `[N]`) as an integer array `[N]`; its values are
    checked against the model's number of outputs (`n_outputs`, else found with
    `jax.eval_shape`) when they are concrete."""
    n = jax.tree.leaves(inputs)[0].shape[0]
    target = jnp.asarray(target)
    if target.ndim == 0:
        target = jnp.broadcast_to(target, (n,))
    if target.shape != (n,):
        raise ValueError(
            f"{caller}: target must be an int or have shape [N] = ({n},); got shape"
            f" {tuple(target.shape)}."
        )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{caller}: target must be integer; got {target.dtype}.")
    if not _checks.is_traced(target):
        k = n_outputs
        if k is None and pytrees.is_pytree(inputs):
            k = _check_pytree_model(model_fn, inputs, caller)
        elif k is None:
            k = _checks.check_batched_model(model_fn, inputs, caller)
        t = np.asarray(target)
        if t.min() < 0 or t.max() >= k:
            raise ValueError(
                f"{caller}: target must be in [0, {k}) for a model with {k}"
                f" outputs; got values in [{t.min()}, {t.max()}]."
            )
    return target


def _pytree_batch(inputs: Any, caller: str) -> int:
    """The common leading axis of a pytree batch (its leaves are checked as `x`)."""
    pytrees.check_leaves(inputs, caller, "inputs")
    pairs = jax.tree_util.tree_flatten_with_path(inputs)[0]
    sizes = set()
    for path, leaf in pairs:
        label = "inputs" + jax.tree_util.keystr(path)
        if getattr(leaf, "ndim", 0) < 1:
            raise ValueError(
                f"{caller}: every leaf of inputs needs a leading batch axis; {label} has"
                f" shape {tuple(getattr(leaf, 'shape', ()))}."
            )
        sizes.add(leaf.shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"{caller}: every leaf of inputs must have the same leading batch axis N;"
            f" got {sorted(sizes)}."
        )
    return sizes.pop()


def _check_pytree_model(model_fn: ModelFn, inputs: Any, caller: str) -> int:
    """`model_fn` maps a pytree batch of one example to `[1, K]` (or `[1]`); K."""
    if not callable(model_fn):
        raise TypeError(
            f"{caller}: model_fn must be a batched model function of the pytree"
            f" inputs -> [N, K]; got {type(model_fn).__name__}."
        )
    one = jax.tree.map(
        lambda v: jax.ShapeDtypeStruct((1, *v.shape[1:]), v.dtype), inputs
    )
    out = jax.eval_shape(model_fn, one)
    got = getattr(out, "shape", None)
    if got is None or len(got) not in (1, 2) or got[0] != 1:
        raise ValueError(
            f"{caller}: model_fn must map a pytree batch (N leading on every leaf) to"
            f" outputs [N, K] or [N]; given one example it returned"
            f" {got if got is not None else type(out).__name__}."
        )
    return 1 if len(got) == 1 else int(got[1])


def _same_shapes(baseline: Any, inputs: Any) -> bool:
    """Whether `baseline` is a pytree of `inputs`' structure and leaf shapes (one
    baseline per example)."""
    if not pytrees.is_pytree(baseline):
        return False
    if jax.tree.structure(baseline) != jax.tree.structure(inputs):
        return False
    return all(
        tuple(getattr(b, "shape", ())) == tuple(v.shape)
        for b, v in zip(jax.tree.leaves(baseline), jax.tree.leaves(inputs))
    )
