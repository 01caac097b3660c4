"""What an experiment is: a model, named methods and named metrics (no state, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class Experiment(NamedTuple):
    """One comparison: every method explains every image, every metric scores every map.

    Attributes:
      name: experiment name, e.g. ``"idg"`` (part of the config hash).
      model: a ``jaxattr.models.Model`` (only ``model.fn`` is used: batched
        ``[N, H, W, 3] -> [N, K]``, a pytree ``Partial`` passed to jitted functions).
      methods: name -> ``explain(model_fn, x, target, key) -> jaxattr.Attribution`` (or a
        bare ``[H, W, 3]`` array). ``x``: ``[H, W, 3]`` pixels in [0, 1]; ``target``: traced
        int32 scalar; ``key``: PRNG key. Jitted once per method with ``model_fn`` as an
        argument, so everything else it closes over is static.
      metrics: name -> ``score(model_fn, x, attributions, target, key) -> (score, curve)``
        where ``attributions`` is the ``[H, W, 3]`` array (``Attribution.attributions``),
        ``score`` a scalar and ``curve`` a 1-D array or ``None``. Jitted once per metric.
      only_correct: skip (and record as skipped) images whose prediction differs from a
        known label.
      keep_maps: store the channel-summed ``[H, W]`` maps (and the image) of the first
        ``keep_maps`` evaluated images for heat-map grids.
    """

    name: str
    model: Any
    methods: Mapping[str, Callable]
    metrics: Mapping[str, Callable]
    only_correct: bool = True
    keep_maps: int = 8
