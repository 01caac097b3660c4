"""`attribute`: any method over a batch of examples and targets, by `jax.vmap`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, _deprecated, targets
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
      inputs: `[N, *example_shape]`.
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
    n = inputs.shape[0]
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
        if k is None:
            k = _checks.check_batched_model(model_fn, inputs, caller)
        t = np.asarray(target)
        if t.min() < 0 or t.max() >= k:
            raise ValueError(
                f"{caller}: target must be in [0, {k}) for a model with {k}"
                f" outputs; got values in [{t.min()}, {t.max()}]."
            )
    return target
