"""Argument checks shared by the public functions.

Each check runs at trace time (on shapes, dtypes and Python values), except the
finiteness check, which looks at values only when `x` is concrete (not traced).
Messages name the function, the argument, what was expected and what was received.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings

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


def one_example_hint(caller: str) -> str:
    """The sentence that tells a user of batches (Captum's habit) what to do."""
    from jaxattr import methods  # not at import: methods import this module

    batch = "jax.vmap"
    if caller in methods.__all__:
        batch = (
            f"jaxattr.attribute(jaxattr.{caller}, model_fn, inputs, target) or {batch}"
        )
    return (
        f"{caller} takes one example: x without a batch axis (an image is [H, W, C])"
        " and f(x) a scalar, e.g. f = jaxattr.scalar_output(model_fn, target), which"
        f" adds the batch axis a batched model needs. For a batch use {batch}."
    )


def check_scalar_fn(f, x, caller: str) -> None:
    """Raises unless `f(x)` is a floating scalar (checked on shapes only).

    A batch passed to a one-example method (an `x` with a leading batch axis, or a
    batched model as `f`) is the commonest mistake: the message, or a note added to
    the error `f(x)` raised, says the method takes one example and how to explain a
    batch."""
    if not callable(f):
        raise TypeError(
            f"{caller}: f must be a function of one example; got {type(f).__name__}."
        )
    shape = tuple(getattr(x, "shape", ()))
    try:
        out = jax.eval_shape(f, x)
    except Exception as err:
        err.add_note(
            f"{caller}: evaluating f(x) failed for x of shape {shape}. "
            + one_example_hint(caller)
        )
        raise
    if not hasattr(out, "shape") or out.shape != ():
        got = getattr(out, "shape", type(out).__name__)
        batch = (
            hasattr(out, "shape")
            and len(out.shape) >= 1
            and len(shape) >= 1
            and out.shape[0] == shape[0]
        )
        raise ValueError(
            f"{caller}: f must map one example to a scalar; got output {got} for x of"
            f" shape {shape}"
            + (" (the same leading axis: a batch?)" if batch else "")
            + ". Build f with jaxattr.scalar_output(model_fn, target). "
            + one_example_hint(caller)
        )


def check_batched_model(model_fn, inputs, caller: str) -> int:
    """For `attribute`: `model_fn` maps a batch of one example `[1, *inputs.shape[1:]]`
    to `[1, K]` (or `[1]`); returns K (1 for `[1]`). Checked on shapes only. An
    `inputs` that is one example without a batch axis usually fails here."""
    if not callable(model_fn):
        raise TypeError(
            f"{caller}: model_fn must be a batched model function [N, ...] -> [N, K];"
            f" got {type(model_fn).__name__}."
        )
    example = tuple(inputs.shape[1:])
    hint = (
        f"{caller} explains a batch: inputs [N, *example_shape] (images"
        " [N, H, W, C]) and model_fn batched, [N, ...] -> [N, K]; it calls model_fn"
        f" on one example at a time, with shape (1, {', '.join(map(str, example))})."
        " For one example x, pass x[None], or call the method directly:"
        " method(jaxattr.scalar_output(model_fn, target), x)."
    )
    one = jax.ShapeDtypeStruct((1, *example), inputs.dtype)
    try:
        out = jax.eval_shape(model_fn, one)
    except Exception as err:
        err.add_note(
            f"{caller}: model_fn failed on one example of inputs {tuple(inputs.shape)}."
            f" {hint}"
        )
        raise
    got = getattr(out, "shape", None)
    if got is None or len(got) not in (1, 2) or got[0] != 1:
        raise ValueError(
            f"{caller}: model_fn must map a batch [N, ...] to outputs [N, K] or [N];"
            f" given shape {(1, *example)} it returned"
            f" {got if got is not None else type(out).__name__}. {hint}"
        )
    return 1 if len(got) == 1 else int(got[1])


def check_pixels(x, caller: str, name: str = "x") -> None:
    """Warns when concrete float pixels are clearly not in [0, 1]: pixels in 0-255
    (maximum above 2) or normalised ones (minimum below -1). Values a little outside
    [0, 1] (noise, an adversarial step) pass. Traced values (under `jit`, `grad`,
    `vmap`) cannot be looked at and are not checked."""
    if (
        is_traced(x)
        or not hasattr(x, "dtype")
        or not jnp.issubdtype(x.dtype, jnp.floating)
    ):
        return
    a = np.asarray(x)
    if a.size == 0:
        return
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi > 2.0:
        why = (
            "pixels in 0-255; divide by 255 (x / 255.0), or load images with"
            " jaxattr.images.load_image"
        )
    elif lo < -1.0:
        why = (
            "pixels normalised with a mean and standard deviation; the models"
            " normalise inside, so pass pixels in [0, 1]"
        )
    else:
        return
    warnings.warn(
        f"{caller}: {name} should hold float pixels in [0, 1]; got values in"
        f" [{lo:.4g}, {hi:.4g}], which look like {why}. (Only checked for concrete"
        " arrays: under jax.jit the values are traced and not checked.)",
        UserWarning,
        stacklevel=3,
    )


# An unknown keyword argument -> the names it may mean (the first that the function
# takes is suggested), mostly Captum's names.
ARGUMENT_NAMES: dict[str, tuple[str, ...]] = {
    "internal_batch_size": ("batch_size", "nt_samples_batch_size"),
    "max_examples_per_batch": ("batch_size",),
    "perturbations_per_eval": ("batch_size",),
    "batch": ("batch_size",),
    "baselines": ("baseline", "perturb_baseline", "references"),
    "baseline": ("baselines", "perturb_baseline", "references"),
    "inputs": ("x",),
    "input": ("x",),
    "forward_func": ("f", "model_fn", "logits_fn"),
    "model": ("f", "model_fn", "logits_fn"),
    "steps": ("n_steps",),
    "num_steps": ("n_steps",),
    "m_steps": ("n_steps",),
    "n_samples": ("n_samples", "nt_samples", "n_steps", "n_roots"),
    "num_samples": ("n_samples", "nt_samples", "n_steps", "n_roots"),
    "stdev": ("stdevs",),
    "sigma": ("stdevs", "max_sigma"),
    "seed": ("key",),
    "rng": ("key",),
    "prng_key": ("key",),
    "random_state": ("key",),
}
# Captum arguments with no counterpart of that name: what to do instead.
ARGUMENT_WAYS: dict[str, str] = {
    "target": (
        "the methods explain a scalar function f of one example: build it with"
        " f = jaxattr.scalar_output(model_fn, target), or pass target to"
        " jaxattr.attribute for a batch"
    ),
    "additional_forward_args": (
        "close over them in f, e.g. f = lambda x: model_fn(x, *args) or"
        " functools.partial"
    ),
    "return_convergence_delta": "every result carries it: result.delta",
    "abs": "take jnp.abs(result.attributions)",
    "method": "this method has no quadrature rule",
    "draw_baseline_from_distrib": (
        "jaxattr.expected_gradients draws baselines from references"
    ),
}
_CAPTUM = {
    "internal_batch_size",
    "max_examples_per_batch",
    "perturbations_per_eval",
    "baselines",
    "inputs",
    "forward_func",
}


def _argument_hint(name: str, params) -> str | None:
    if name in params:  # a positional-only argument given by name
        return f"{name!r} is positional-only: pass it by position"
    for alias in ARGUMENT_NAMES.get(name, ()):
        if alias in params:
            whose = "Captum's" if name in _CAPTUM else "not"
            return f"jaxattr uses {alias}= ({whose} {name})"
    if name in ARGUMENT_WAYS:
        return f"in jaxattr, {ARGUMENT_WAYS[name]}"
    close = difflib.get_close_matches(name, list(params), n=1, cutoff=0.7)
    return f"did you mean {close[0]}=" if close else None


def argument_hints(fn, module: str | None = None):
    """Wraps a public function: an unexpected keyword argument raises a `TypeError`
    that names ours for Captum's (e.g. "jaxattr uses batch_size= (Captum's
    internal_batch_size)"). The signature, the docstring and the speed of a correct
    call are unchanged (`inspect.signature` sees the original). `module`: where the
    wrapper is bound under the function's name (so that it pickles)."""
    params = None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TypeError:
            nonlocal params
            if params is None:
                params = inspect.signature(fn).parameters
            if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                raise
            unknown = [
                k
                for k in kwargs
                if k not in params or params[k].kind is params[k].POSITIONAL_ONLY
            ]
            if not unknown:
                raise
            lines = []
            for k in unknown:
                hint = _argument_hint(k, params)
                lines.append(
                    f"{fn.__name__}() got an unexpected keyword argument {k!r}"
                    + (f"; {hint}." if hint else ".")
                )
            raise TypeError(" ".join(lines)) from None

    if module is not None:
        wrapper.__module__ = module
    return wrapper
