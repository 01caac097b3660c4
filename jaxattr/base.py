"""The result type shared by every attribution method."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PyTree = Any


class Attribution(NamedTuple):
    """What every method returns; a pytree, so it passes through `jit` and `vmap`.

    Attributes:
        attributions: same shape and dtype as the explained input `x` (the same
            structure, for a pytree `x`: docs/integrated_gradients.md#pytree-inputs).
        delta: completeness error with Captum's sign,
            `sum(attributions) - (f(x) - f(baseline))`; scalar for path methods,
            `[nt_samples]` under `noise_tunnel` (one per noisy sample, as Captum) and
            NaN for methods without a completeness property (e.g. `saliency`).
        aux: method diagnostics (a dict of arrays), e.g. the nodes `alphas` and the
            outputs `values` of `f` along the path. One name per quantity across
            methods: `f_x` is `f(x)` and `f_baseline` the output at the start of
            each path (`[K]` for `K` baselines), whenever a method evaluates them.
    """

    attributions: Array
    delta: Array
    aux: PyTree = None
