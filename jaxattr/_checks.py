"""Argument checks shared by the public functions.

Each check runs at trace time (on shapes, dtypes and Python values), except the
finiteness check, which looks at values only when `x` is concrete (not traced).
Messages name the function, the argument, what was expected and what was received.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def check_input(x, caller: str, name: str = "x") -> jax.Array:
    """Returns `x` as a floating JAX array; rejects integer dtypes, NaN and inf."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{caller}: {name} must be an array, got {type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{caller}: {name} must have a floating dtype (pixels as float in [0, 1]);"
            f" got {x.dtype}. Convert with x.astype(jnp.float32) / 255 for uint8 images."
        )
    if not is_traced(x) and not bool(np.isfinite(np.asarray(x)).all()):
        bad = int((~np.isfinite(np.asarray(x))).sum())
        raise ValueError(
            f"{caller}: {name} must be finite; got {bad} NaN or inf entries."
        )
    return jnp.asarray(x)


def broadcasts_to(shape, target_shape) -> bool:
    """Whether an array of `shape` broadcasts to `target_shape` without changing it."""
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target_shape)) == tuple(
            target_shape
        )
    except ValueError:
        return False


def check_static_int(value, caller: str, name: str, minimum: int = 1) -> int:
    """Returns `value` as an int >= `minimum`; it must be a Python int (static)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{caller}: {name} must be a Python int (it sets shapes, so it is static);"
            f" got {type(value).__name__} {value!r}."
        )
    if value < minimum:
        raise ValueError(f"{caller}: {name} must be >= {minimum}; got {value}.")
    return int(value)


def check_batch_size(batch_size, caller: str, name: str = "batch_size"):
    """`None` (everything in one batch) or a static int >= 1."""
    if batch_size is None:
        return None
    return check_static_int(batch_size, caller, name)


def check_key(key, caller: str, why: str) -> None:
    """Raises unless `key` is a JAX PRNG key (typed or raw uint32)."""
    if key is None:
        raise ValueError(
            f"{caller}: key is required ({why}); pass key=jax.random.key(seed)."
        )
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or raw):
        raise TypeError(
            f"{caller}: key must be a single JAX PRNG key (jax.random.key(seed));"
            f" got {type(key).__name__} with dtype {dtype} and shape"
            f" {getattr(key, 'shape', None)}."
        )


def check_choice(value, choices, caller: str, name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{caller}: {name} must be one of {', '.join(map(repr, choices))};"
            f" got {value!r}."
        )
    return value


def check_scalar_fn(f, x, caller: str) -> None:
    """Raises unless `f(x)` is a floating scalar (checked on shapes only)."""
    if not callable(f):
        raise TypeError(
            f"{caller}: f must be a function of one example; got {type(f).__name__}."
        )
    out = jax.eval_shape(f, x)
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(
            f"{caller}: f must map one example to a scalar; got output"
            f" {getattr(out, 'shape', type(out).__name__)}. Build f with"
            " jaxattr.scalar_output(model_fn, target)."
        )
