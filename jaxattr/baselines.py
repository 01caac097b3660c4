"""Baselines: the reference inputs path methods integrate from.

Reference: docs/integrated_gradients.md#baselines.

jaxattr's inputs are pixels in [0, 1] with normalisation inside the model function,
so **baselines live in pixel space**. The two "zero" images of the literature are:

* `black()` / `"black"`: pixel 0, the IG paper's and SmoothTaylor's black image
  (`"zeros"`, Captum's and PAIR's word, is an alias: `ALIASES`);
* `normalized_zero(mean)` / `"normalized_zero"`: the image that is 0 *after*
  `(x - mean) / std`, i.e. the mean colour (ImageNet mean by default); this is the
  "zero baseline" of IDG, GNL and RISE, which applied zeros to normalised tensors.

Library defaults are black (`None`), a general choice that needs no knowledge of the
model. To use the papers' normalised zero with a model whose normalisation is not
ImageNet's, read its mean off the model: `mean, std =
normalisation_stats(model.normalise)`, then `normalized_zero(mean)` (127/255 for
EfficientNet-Lite0's `(255 x - 127) / 128`).

A baseline argument may be: `None` (zeros), one of the names above or `"uniform"`,
`"blurred"`; a Python or array scalar; an array that broadcasts to `x.shape`; a
`Baseline` recipe from this module (stochastic ones need a `key`); a callable
`x -> array`; or a list/tuple of any of these.

One policy for several baselines. A method that integrates from a baseline takes
the list through `resolve` and returns the **mean** of the attributions from each
baseline, with `delta = sum(A) - (f(x) - mean_k f(x'_k))` and `aux["f_baseline"]`
`[K]` (`jaxattr.engine.baseline_nodes`, `completeness_delta`). A method for which a
mean over baselines means nothing (the baseline is where masked features go, or an
adaptive rule refines one path) takes `resolve_one`, which raises a `ValueError` for
a list of several.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, filters

if TYPE_CHECKING:  # jaxattr.typing imports Baseline from here
    from jaxattr.typing import ArrayLike, BaselineLike

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


def normalized_zero(mean: ArrayLike = IMAGENET_MEAN) -> Baseline:
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


def normalisation_stats(
    normalise: Callable[[jax.Array], jax.Array], channels: int = 3
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`(mean, std)` per channel of an affine normalisation `x -> (x - mean) / std`.

    Read off `normalise` (e.g. `model.normalise` of a `jaxattr.models` port) at the
    pixel values 0, 1 and 1/2 (evaluated at trace time, so it also works inside
    `jit`), so it needs no knowledge of how the model was built:
    `normalised_zero = mean` is the pixel colour that the model sees as 0 (the
    papers' "zero baseline") and `std` converts a noise level given in normalised
    units into pixels (`sigma_pixels = sigma_normalised * std`, per channel).
    ImageNet's torchvision normalisation gives `((0.485, 0.456, 0.406), (0.229, 0.224,
    0.225))`; EfficientNet-Lite0's `(255 x - 127) / 128` gives `((127/255,) * 3,
    (128/255,) * 3)`.

    Args:
      normalise: maps pixels `[..., channels]` to the model's input, per channel
        affine and increasing or decreasing (not constant).
      channels: size of the last axis.

    Returns:
      `(mean, std)`, two tuples of `channels` Python floats (`std` may be negative
      only if `normalise` flips a channel's sign).

    Raises:
      ValueError: if `normalise` is not per-channel affine (its value at 1/2 is not
        the midpoint of its values at 0 and 1) or is constant in some channel.
    """
    # Concrete even under `jit` (e.g. called inside a jitted function).
    with jax.ensure_compile_time_eval():
        pix = jnp.asarray([0.0, 0.5, 1.0], jnp.float32)[:, None, None, None]
        out = normalise(jnp.broadcast_to(pix, (3, 1, 1, channels)))
        out = np.asarray(out, np.float64)
    if out.shape != (3, 1, 1, channels):
        raise ValueError(
            "normalisation_stats: normalise must keep the shape [..., channels];"
            f" expected {(3, 1, 1, channels)}, got {out.shape}."
        )
    v0, vh, v1 = out[0, 0, 0], out[1, 0, 0], out[2, 0, 0]
    slope = v1 - v0  # = 1 / std
    if np.any(np.abs(slope) < 1e-12):
        raise ValueError(
            f"normalisation_stats: normalise is constant in a channel; slopes {slope}."
        )
    if not np.allclose(vh, (v0 + v1) / 2, rtol=1e-4, atol=1e-5 * np.abs(slope)):
        raise ValueError(
            "normalisation_stats: normalise must be affine per channel, (x - mean) /"
            f" std; its value at 1/2 is {vh}, expected the midpoint {(v0 + v1) / 2}."
        )
    mean = -v0 / slope
    std = 1.0 / slope
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


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
    """Gaussian blur of `x` (`[H, W, C]`) with static `sigma` (Blur IG's max is 50).

    Not the metrics' substrate `"rise_blur"` (RISE's fixed 11 x 11 kernel of sigma 5
    around the mean colour, `jaxattr.metrics.rise_blur`)."""
    return Baseline(lambda x, key: filters.gaussian_blur(x, sigma), False, "blurred")


#: The baseline names: name -> recipe factory (called with no arguments).
NAMED = {
    "black": black,
    "normalized_zero": normalized_zero,
    "uniform": uniform,
    "blurred": blurred,
}

#: Other names of `NAMED` baselines, accepted everywhere a name is (no warning):
#: `"zeros"` is Captum's and PAIR's word for the black image (pixel space).
ALIASES = {"zeros": "black"}


def _recipe(spec, caller):
    """`None` and names become `Baseline` recipes; anything else is returned as is."""
    if spec is None:
        return black()
    if isinstance(spec, str):
        name = ALIASES.get(spec, spec)
        if name not in NAMED:
            raise ValueError(
                f"{caller}: baseline name must be one of"
                f" {', '.join(map(repr, [*NAMED, *ALIASES]))}; got {spec!r}."
            )
        return NAMED[name]()
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


def resolve(
    baseline: BaselineLike, x: jax.Array, key: jax.Array | None, caller: str
) -> jax.Array:
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


def resolve_one(
    baseline: BaselineLike, x: jax.Array, key: jax.Array | None, caller: str
) -> jax.Array:
    """Turns a baseline argument that must be one baseline into an array of
    `x.shape` (a list of one entry is accepted).

    Raises:
      ValueError: for a list or tuple of several baselines, naming `caller`.
    """
    if isinstance(baseline, (list, tuple)) and len(baseline) > 1:
        raise ValueError(
            f"{caller}: baseline must be a single baseline (the method takes one"
            f" baseline; got a list of {len(baseline)}). Average per-baseline calls"
            " yourself, or use a method that averages baselines, e.g."
            " integrated_gradients."
        )
    return resolve(baseline, x, key, caller)[0]
