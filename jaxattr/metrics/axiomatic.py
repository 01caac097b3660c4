"""Completeness (with a tolerance), complexity (entropy) and sparseness (Gini)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxattr import _checks, baselines
from jaxattr.metrics import _common

Array = jax.Array


class Completeness(NamedTuple):
    """Result of `completeness`.

    Attributes:
      delta: `sum(A) - (f(x) - f(x'))`, Captum's sign (scalar).
      relative: `|delta| / |f(x) - f(x')|` (inf when the difference is 0).
      passed: `|delta| <= atol + rtol |f(x) - f(x')|` (bool scalar).
    """

    delta: Array
    relative: Array
    passed: Array


def completeness(
    f,
    x,
    attributions,
    baseline=None,
    *,
    rtol: float = 0.05,
    atol: float = 1e-6,
    key=None,
) -> Completeness:
    """Completeness error with a tolerance (docs/evaluation.md#completeness).

    The IG paper's rule is a 5 % relative error (`rtol=0.05`). Unlike Quantus'
    `Completeness` (exact float equality after normalising the attributions, so
    almost always False), the attributions are used as given and compared within
    `atol + rtol |f(x) - f(x')|`.

    Args:
      f: one example -> scalar; x: one example; attributions: `x.shape`.
      baseline: anything `jaxattr.baselines` accepts (one baseline; `None` is
        black); a list of several raises a `ValueError`, as in every method; key:
        for random baselines.
      rtol, atol: may be traced.
    """
    caller = "completeness"
    x = _checks.check_input(x, caller)
    a = _common.check_attributions(attributions, x, caller, spatial=False)
    _checks.check_scalar_fn(f, x, caller)
    ref = baselines.resolve_one(baseline, x, key, caller)  # ValueError for several
    diff = f(x) - f(ref)
    delta = a.sum() - diff
    rel = jnp.abs(delta) / jnp.abs(diff)
    return Completeness(delta, rel, jnp.abs(delta) <= atol + rtol * jnp.abs(diff))


def complexity(attributions, *, reduction=None, eps: float = 0.0) -> Array:
    """Entropy of `p = |a| / sum |a|` (Quantus' `Complexity`); lower = simpler.

    `reduction=None` uses every entry; a name/callable of `REDUCTIONS` first reduces
    `[H, W, C]` to a heat map. `0 log 0 = 0`. Returns a scalar.
    """
    a = jnp.asarray(attributions)
    if reduction is not None:
        a = _common.heatmap(a, reduction, "complexity")
    p = jnp.abs(a).reshape(-1) + eps
    p = p / p.sum()
    return -jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0).sum()


def sparseness(attributions, *, reduction=None, eps: float = 1e-7) -> Array:
    """Gini index of `|a| + eps`, sorted ascending (Quantus' `Sparseness`).

    `sum_i (2 i - n - 1) a_(i) / (n sum a)` with `i = 1..n`; 0 for a uniform map,
    close to 1 when one entry holds all the mass. Returns a scalar.
    """
    a = jnp.asarray(attributions)
    if reduction is not None:
        a = _common.heatmap(a, reduction, "sparseness")
    v = jnp.sort(jnp.abs(a).reshape(-1) + eps)
    n = v.shape[0]
    i = jnp.arange(1, n + 1, dtype=v.dtype)
    return ((2 * i - n - 1) * v).sum() / (n * v.sum())
