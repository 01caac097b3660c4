"""Gradient methods: saliency (the input gradient) and input x gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxattr import _checks
from jaxattr.base import Attribution
from jaxattr.fast_convolutions import fast_convolutions
from jaxattr.typing import ArrayLike, PRNGKey, ScalarFn


def saliency(
    f: ScalarFn, x: ArrayLike, *, abs: bool = True, key: PRNGKey | None = None
) -> Attribution:
    """Gradient of `f` at `x` (Simonyan et al., 2014), Captum's `Saliency`.

    Args:
      f: maps one example to a scalar.
      x: one example, e.g. `[H, W, C]`.
      abs: return `|grad|` (Captum's default) or the signed gradient (static).
      key: unused; accepted so that every method has the same calling convention.

    Returns:
      `Attribution(attributions=[*x.shape], delta=NaN, aux={"f_x": f(x)})`.
    """
    x = _checks.check_input(x, "saliency")
    _checks.check_scalar_fn(f, x, "saliency")
    value, grad = fast_convolutions(jax.value_and_grad(f))(x)
    a = jnp.abs(grad) if abs else grad
    return Attribution(a, jnp.full((), jnp.nan, value.dtype), {"f_x": value})


def input_x_gradient(
    f: ScalarFn, x: ArrayLike, *, key: PRNGKey | None = None
) -> Attribution:
    """`x * grad f(x)` (Shrikumar et al., 2016), Captum's `InputXGradient`.

    Args:
      f: maps one example to a scalar.
      x: one example.
      key: unused; accepted for a uniform calling convention.

    Returns:
      `Attribution(attributions=[*x.shape], delta=NaN, aux={"f_x": f(x)})`.
    """
    x = _checks.check_input(x, "input_x_gradient")
    _checks.check_scalar_fn(f, x, "input_x_gradient")
    value, grad = fast_convolutions(jax.value_and_grad(f))(x)
    return Attribution(x * grad, jnp.full((), jnp.nan, value.dtype), {"f_x": value})
