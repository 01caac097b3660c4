"""Baselines: the reference inputs path methods integrate from (algorithms.md §0, §1.3).

jaxattr's inputs are pixels in [0, 1] with normalisation inside the model function,
so **baselines live in pixel space**. The two "zero" images of the literature are:

* `black()` / `"black"` / `"zeros"`: pixel 0, the IG paper's and SmoothTaylor's
  black image;
* `normalized_zero(mean)` / `"normalized_zero"`: the image that is 0 *after*
  `(x - mean) / std`, i.e. the mean colour (ImageNet mean by default); this is the
  "zero baseline" of IDG, GNL and RISE, which applied zeros to normalised tensors.

A baseline argument may be: `None` (zeros), one of the names above or `"uniform"`,
`"blurred"`; a Python or array scalar; an array that broadcasts to `x.shape`; a
`Baseline` recipe from this module (stochastic ones need a `key`); a callable
`x -> array`; or a list/tuple of any of these, whose path integrals are averaged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, filters

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A recipe `fn(x, key) -> array of x.shape`; `stochastic` ones need a key."""

    fn: Callable[[jax.Array, jax.Array | None], jax.Array]
    stochastic: bool
    name: str


def black() -> Baseline:
    """All pixels 0 (pixel space)."""
    return Baseline(lambda x, key: jnp.zeros_like(x), False, "black")


def constant(value: float) -> Baseline:
    """All entries equal to `value` (traced, so it can be swept)."""
    return Baseline(lambda x, key: jnp.full_like(x, value), False, "constant")


def normalized_zero(mean=IMAGENET_MEAN) -> Baseline:
    """The image that is 0 after normalisation: the per-channel `mean` (last axis)."""

    def fn(x, key):
        m = jnp.asarray(mean, x.dtype)
        if m.ndim and m.shape[-1] != x.shape[-1]:
            raise ValueError(
                f"normalized_zero: mean has {m.shape[-1]} channels but x has"
                f" {x.shape[-1]} (last axis of x.shape={tuple(x.shape)})."
            )
        return jnp.broadcast_to(m, x.shape)

    return Baseline(fn, False, "normalized_zero")


def uniform(low: float = 0.0, high: float = 1.0) -> Baseline:
    """Uniform noise in `[low, high)` (SmoothTaylor's and the IG authors' noise)."""
    return Baseline(
        lambda x, key: jax.random.uniform(key, x.shape, x.dtype, low, high),
        True,
        "uniform",
    )


def gaussian(sigma: float = 0.15, clip: tuple[float, float] | None = (0.0, 1.0)):
    """`x + sigma * N(0, 1)`, clipped to `clip` (pixel range) unless it is None."""

    def fn(x, key):
        b = x + sigma * jax.random.normal(key, x.shape, x.dtype)
        return b if clip is None else jnp.clip(b, *clip)

    return Baseline(fn, True, "gaussian")


def blurred(sigma: float = 50.0) -> Baseline:
    """Gaussian blur of `x` (`[H, W, C]`) with static `sigma` (Blur IG's max is 50)."""
    return Baseline(lambda x, key: filters.gaussian_blur(x, sigma), False, "blurred")


NAMED = {
    "zeros": black,
    "black": black,
    "normalized_zero": normalized_zero,
    "uniform": uniform,
    "blurred": blurred,
}


def _recipe(spec, caller):
    """`None` and names become `Baseline` recipes; anything else is returned as is."""
    if spec is None:
        return black()
    if isinstance(spec, str):
        if spec not in NAMED:
            raise ValueError(
                f"{caller}: baseline name must be one of {', '.join(map(repr, NAMED))};"
                f" got {spec!r}."
            )
        return NAMED[spec]()
    return spec


def _one(spec, x, key, caller) -> jax.Array:
    if isinstance(spec, Baseline):
        if spec.stochastic:
            _checks.check_key(key, caller, f"baseline {spec.name!r} is random")
        b = spec.fn(x, key)
    elif callable(spec):
        b = spec(x)
    else:
        b = spec
    if not hasattr(b, "shape"):
        b = np.asarray(b)
    if not (jnp.issubdtype(b.dtype, jnp.number) or b.dtype == bool):
        raise TypeError(f"{caller}: baseline must be numeric; got dtype {b.dtype}.")
    if not _checks.broadcasts_to(b.shape, x.shape):
        raise ValueError(
            f"{caller}: baseline must broadcast to x.shape {tuple(x.shape)}; got shape"
            f" {tuple(b.shape)}. Methods explain one example: drop the batch axis, or"
            " use jaxattr.attribute / jax.vmap for batches."
        )
    if not _checks.is_traced(b) and not bool(np.isfinite(np.asarray(b)).all()):
        raise ValueError(f"{caller}: baseline must be finite; it has NaN or inf.")
    return jnp.broadcast_to(jnp.asarray(b, x.dtype), x.shape)


def resolve(baseline, x: jax.Array, key: jax.Array | None, caller: str) -> jax.Array:
    """Turns a baseline argument into an array `[K, *x.shape]` of K >= 1 baselines.

    A list or tuple gives one baseline per entry (their attributions are averaged
    by the methods); stochastic entries get independent keys split from `key`.
    """
    specs = list(baseline) if isinstance(baseline, (list, tuple)) else [baseline]
    if not specs:
        raise ValueError(f"{caller}: baseline list must not be empty.")
    specs = [_recipe(s, caller) for s in specs]
    needs_key = any(isinstance(s, Baseline) and s.stochastic for s in specs)
    keys = [None] * len(specs)
    if needs_key:
        _checks.check_key(key, caller, "a baseline is random")
        keys = list(jax.random.split(key, len(specs)))
    return jnp.stack([_one(s, x, k, caller) for s, k in zip(specs, keys)])
