"""Evaluation metrics: pure functions that run under `jit` and `vmap` over images.

Each metric takes a model function (batched `[N, H, W, C] -> [N, K]`) or a scalar
function `f`, one image, an attribution and, where random, an explicit `key`, and
returns a NamedTuple holding the score and the curve behind it. Perturbed images
are scored as batched forward passes in chunks of `batch_size`
(`jaxattr.engine.chunked_map`). Definitions, defaults and protocols: docs/evaluation.md.

* `insertion`, `deletion`, `morf`, `lerf`: pixel-perturbation curves (RISE, DGA).
* `aupc`: SmoothTaylor's region perturbation; `autvc`: its multi-scale total
  variation.
* `sensitivity_n`, `sensitivity_max`, `infidelity`: Ancona's and Yeh's measures.
* `completeness`, `complexity`, `sparseness`.

`completeness`, `complexity`, `sparseness`, `sensitivity_n`, `sensitivity_max` and
`infidelity` also take a pytree `x` (a tuple, a dict of arrays) with attributions of
its structure (docs/integrated_gradients.md#pytree-inputs).
"""

import inspect as _inspect

from jaxattr import _checks as _checks
from jaxattr import pytrees as _pytrees
from jaxattr.metrics._common import REDUCTIONS, rise_blur, rise_kernel
from jaxattr.metrics.axiomatic import (
    Completeness,
    completeness,
    complexity,
    sparseness,
)
from jaxattr.metrics.noise import TotalVariationCurve, autvc, average_total_variation
from jaxattr.metrics.perturbation import (
    PerturbationCurve,
    deletion,
    insertion,
    lerf,
    morf,
    perturbation_curve,
)
from jaxattr.metrics.region import RegionPerturbation, aupc
from jaxattr.metrics.robustness import (
    Infidelity,
    MaxSensitivity,
    SensitivityN,
    infidelity,
    sensitivity_max,
    sensitivity_n,
    subset_masks,
)

__all__ = [
    "REDUCTIONS",
    "Completeness",
    "Infidelity",
    "MaxSensitivity",
    "PerturbationCurve",
    "RegionPerturbation",
    "SensitivityN",
    "TotalVariationCurve",
    "aupc",
    "autvc",
    "average_total_variation",
    "completeness",
    "complexity",
    "deletion",
    "infidelity",
    "insertion",
    "lerf",
    "morf",
    "perturbation_curve",
    "rise_blur",
    "rise_kernel",
    "sensitivity_max",
    "sensitivity_n",
    "sparseness",
    "subset_masks",
]

# An unexpected keyword argument (e.g. Captum's `max_examples_per_batch=`) raises a
# TypeError naming ours; every public function is wrapped (a no-op unless a call fails).
# The metrics that are not image-specific also take a pytree `x` (`jaxattr.pytrees`).
for _name in __all__:
    if _inspect.isfunction(globals()[_name]):
        _fn = globals()[_name]
        if _name in _pytrees.SPECS:
            _fn = _pytrees.accepts_pytrees(_fn)
        globals()[_name] = _checks.argument_hints(_fn, __name__)
del _name, _fn
