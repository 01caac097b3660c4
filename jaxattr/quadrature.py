"""Quadrature rules on [0, 1]: the nodes and weights of every path integral.

A path integral `int_0^1 g(alpha) d alpha` is approximated by `sum_k w_k g(alpha_k)`.
Nodes and weights are static NumPy arrays (they depend only on the rule and the
number of nodes), so they are constants at trace time and never cause a retrace.

Rule names follow Captum (docs/integrated_gradients.md#quadrature-rules):

=====================  =================================  ==========================
rule                   nodes                              weights (sum)
=====================  =================================  ==========================
``riemann_left``       ``k/n, k=0..n-1``                  ``1/n`` (1)
``riemann_right``      ``k/n, k=1..n`` (IG paper, eq. 3)  ``1/n`` (1)
``riemann_middle``     ``(k+1/2)/n``                      ``1/n`` (1)
``riemann_trapezoid``  ``linspace(0, 1, n)``              ``1/(n-1)``, ends halved (1)
``gausslegendre``      ``(1+xi_k)/2`` (``leggauss``)      ``omega_k/2`` (1)
``captum_trapezoid``   ``linspace(0, 1, n)``              ``1/n``, ends halved ((n-1)/n)
=====================  =================================  ==========================

``riemann_trapezoid`` is the correct composite trapezoid rule. Captum's own
``riemann_trapezoid`` weights sum to ``(n-1)/n`` (attributions ~2 % low at
``n=50``, docs/integrated_gradients.md#quadrature-rules); it is offered only as
``captum_trapezoid`` for bit-compatibility with Captum.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxattr import _deprecated

RULES = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
    "captum_trapezoid",
)

# The smallest number of nodes each rule is defined for.
_MIN_NODES = {"riemann_trapezoid": 2, "captum_trapezoid": 2}


@_deprecated.renamed(method="rule")
def check_rule(rule: str, n_steps: int, *, caller: str = "quadrature") -> None:
    """Raises a `ValueError`/`TypeError` unless `rule` and `n_steps` are valid.

    `method=` is the deprecated name of `rule=`."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(
            f"{caller}: rule must be one of {', '.join(RULES)}; got {rule!r}."
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)):
        raise TypeError(
            f"{caller}: n_steps must be a Python int (it sets shapes, so it is static);"
            f" got {type(n_steps).__name__} {n_steps!r}."
        )
    low = _MIN_NODES.get(rule, 1)
    if n_steps < low:
        raise ValueError(
            f"{caller}: n_steps must be >= {low} for rule={rule!r}; got {n_steps}."
        )


@functools.lru_cache(maxsize=256)
def _nodes_and_weights(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n, dtype=np.float64)
    if rule == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if rule == "riemann_right":
        return (k + 1) / n, np.full(n, 1.0 / n)
    if rule == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    if rule == "riemann_trapezoid":
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), w
    if rule == "captum_trapezoid":
        w = np.full(n, 1.0 / n)
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), w
    xi, omega = np.polynomial.legendre.leggauss(n)
    return (xi + 1) / 2, omega / 2


@_deprecated.renamed(method="rule")
def nodes_and_weights(
    rule: str = "gausslegendre", n_steps: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes `alphas` in [0, 1] and weights of a quadrature rule, both `[n_steps]`.

    Args:
        rule: a rule name from `RULES` (static); `method=` is its deprecated name.
        n_steps: number of nodes, i.e. of gradient evaluations (static).

    Returns:
        `(alphas, weights)`: float64 NumPy arrays of shape `[n_steps]`, read-only.
    """
    check_rule(rule, n_steps, caller="nodes_and_weights")
    alphas, weights = _nodes_and_weights(rule, int(n_steps))
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights
