"""Channel reductions `[..., C] -> [...]`: one registry, one meaning per name.

Heat maps reduce an attribution `[H, W, C]` to `[H, W]` before pixels are ranked
(`jaxattr.metrics`) or drawn (`jaxattr.viz`). Both use this table:

* `"sum"`: `sum_c A` (signed; SmoothTaylor's heat map).
* `"mean"`: `mean_c A` (signed).
* `"abs_sum"`: `|sum_c A|` (the magnitude of the sum; RISE, IDG and GNL rank pixels
  by it).
* `"sum_abs"`: `sum_c |A|` (total magnitude; PAIR's grey maps).
* `"max_abs"`: `max_c |A|` (the largest magnitude, >= 0).
* `"signed_max_abs"`: `A_c` at `c = argmax_c |A_c|` (the signed value of largest
  magnitude; ties: the first channel).
* `"l2"`: `sqrt(sum_c A^2)`.

A reduction is computed with NumPy for NumPy input (float64 stays float64) and with
`jax.numpy` otherwise (under `jit` included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["REDUCTIONS", "reduce"]


def _xp(a: Any):
    return np if isinstance(a, np.ndarray) else jnp


def _signed_max_abs(a):
    xp = _xp(a)
    idx = xp.abs(a).argmax(axis=-1)[..., None]
    return xp.take_along_axis(a, idx, axis=-1)[..., 0]


#: name -> `[..., C] -> [...]` (NumPy in, NumPy out; JAX in, JAX out).
REDUCTIONS: dict[str, Callable[[Any], Any]] = {
    "sum": lambda a: a.sum(axis=-1),
    "mean": lambda a: a.mean(axis=-1),
    "abs_sum": lambda a: _xp(a).abs(a.sum(axis=-1)),
    "sum_abs": lambda a: _xp(a).abs(a).sum(axis=-1),
    "max_abs": lambda a: _xp(a).abs(a).max(axis=-1),
    "signed_max_abs": _signed_max_abs,
    "l2": lambda a: _xp(a).sqrt((a * a).sum(axis=-1)),
}


def reduce(a: Any, reduction: str | Callable[[Any], Any]) -> Any:
    """`a [..., C] -> [...]` by a name of `REDUCTIONS` or a callable (applied as is).

    Raises `ValueError` naming the known reductions for an unknown name.
    """
    if callable(reduction):
        return reduction(a)
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: expected one of {list(REDUCTIONS)} or a callable; got"
            f" {reduction!r}."
        )
    return REDUCTIONS[reduction](a)
