"""From model functions to the scalar function `f(x)` that methods explain.

Methods take `f`, mapping **one** unbatched example to a scalar. `scalar_output`
builds it from a model function (batched `[N, ...] -> [N, K]`, as Flax modules
and PyTorch-style models are, or unbatched), a target class and the output
transform (`"logit"`, `"softmax"` or `"log_softmax"`;
docs/integrated_gradients.md#targets-and-the-output-transform: the default is the
logit, as IG in Captum, IDG, SmoothTaylor and FullGrad).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks
from jaxattr.typing import ArrayLike

OUTPUTS = {
    "logit": lambda z: z,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
}


def from_flax(apply_fn: Callable, variables: Any, **apply_kwargs: Any) -> Callable:
    """Turns a Flax `(apply_fn, variables)` pair into a model function `x -> outputs`.

    `apply_kwargs` (e.g. `train=False`) are passed to every call. The variables are
    closed over; build the model function inside your jitted function from traced
    variables if new weights must not recompile.
    """
    return lambda x: apply_fn(variables, x, **apply_kwargs)


def check_target_value(target: ArrayLike, n_outputs: int, caller: str) -> None:
    """Raises if a concrete `target` is not one integer class in `[0, n_outputs)`.

    A traced `target` is not checked here (`scalar_output` turns an out-of-range
    traced target into NaN). `caller` names the function in the message.
    """
    if _checks.is_traced(target):
        return  # checked by the NaN fill in `_select`
    t = np.asarray(target)
    if t.ndim != 0 or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(
            f"{caller}: target must be one integer class index per example; got"
            f" {t.dtype} array of shape {t.shape}. For a batch, use"
            " jaxattr.attribute or jax.vmap over targets."
        )
    if not 0 <= int(t) < n_outputs:
        raise ValueError(
            f"{caller}: target must be in [0, {n_outputs}) for a model with"
            f" {n_outputs} outputs; got {int(t)}."
        )


def _select(outputs: jax.Array, target, caller: str) -> jax.Array:
    if target is None:
        if outputs.size != 1:
            raise ValueError(
                f"{caller}: target is None, so the model must have one output per"
                f" example; got outputs of shape {tuple(outputs.shape)}. Pass a target"
                " class index."
            )
        return outputs.reshape(())
    if outputs.ndim != 1:
        raise ValueError(
            f"{caller}: a target index needs outputs of shape [K] per example; got"
            f" {tuple(outputs.shape)}."
        )
    check_target_value(target, outputs.shape[0], caller)
    # A traced target out of range gives NaN values and gradients rather than a
    # clamped, wrong class.
    k = outputs.shape[0]
    valid = (target >= 0) & (target < k)
    picked = jnp.take(outputs, jnp.clip(target, 0, k - 1))
    return picked * jnp.where(valid, 1.0, jnp.nan).astype(outputs.dtype)


def _batch_of_one(x: Any) -> Any:
    return jax.tree.map(lambda v: jnp.asarray(v)[None], x)


def scalar_output(
    model_fn: Callable[[jax.Array], jax.Array],
    target: ArrayLike | None = None,
    *,
    output: str = "logit",
    batched: bool = True,
    x: jax.Array | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """Returns `f(x) -> scalar`: the chosen output of `model_fn` for one example.

    Args:
      model_fn: the model; with `batched=True` (default) it maps `[N, *x.shape]` to
        `[N, K]` (or `[N]`), otherwise one example to `[K]` (or a scalar).
      target: the class to explain: `None` for single-output models, an integer
        (Python int or a traced scalar, so changing it does not recompile), or a
        callable on the model's outputs at `x` such as `jnp.argmax`, which then
        needs `x` (the class is chosen once, at the explained input, not at every
        point of the path).
      output: `"logit"` (raw outputs), `"softmax"` or `"log_softmax"` (static).
      batched: whether `model_fn` expects a leading batch axis (static).
      x: the explained input; required only when `target` is callable.

    Returns:
      `f`, mapping one example to a scalar. A traced target outside `[0, K)` makes
      `f` return NaN; a concrete one raises `ValueError`.
    """
    caller = "scalar_output"
    transform = OUTPUTS.get(output) if isinstance(output, str) else None
    if transform is None:
        raise ValueError(
            f"{caller}: output must be one of {', '.join(map(repr, OUTPUTS))}; got"
            f" {output!r}."
        )

    def outputs(x):
        if not batched:
            return model_fn(x)
        # a pytree example (a tuple, a dict of arrays) gets the axis on every leaf
        return model_fn(x[None] if hasattr(x, "shape") else _batch_of_one(x))[0]

    if callable(target):
        if x is None:
            raise ValueError(
                f"{caller}: a callable target ({getattr(target, '__name__', target)})"
                " needs x=, the explained input, to choose the class."
            )
        target = target(outputs(x))
    if target is not None and not _checks.is_traced(target):
        t = np.asarray(target)
        if not np.issubdtype(t.dtype, np.integer) or t.ndim:
            raise TypeError(
                f"{caller}: target must be None, an integer class index or a callable;"
                f" got {t.dtype} array of shape {t.shape}. For a batch, use"
                " jaxattr.attribute or jax.vmap over targets."
            )

    def f(x):
        return _select(transform(outputs(x)), target, caller)

    return f
