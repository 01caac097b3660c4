"""jaxattr: path-integral attribution (Integrated Gradients and its family) in JAX."""

from jaxattr import baselines, engine, filters, quadrature
from jaxattr import metrics as metrics
from jaxattr.base import Attribution
from jaxattr.batching import attribute
from jaxattr.methods import (
    NT_TYPES,
    adaptive_noising,
    distilled_gradient_aggregation,
    count_guided,
    gnl_integrated_gradients,
    guided,
    guided_backprop,
    input_x_gradient,
    integrated_decision_gradients,
    integrated_gradients,
    noise_tunnel,
    saliency,
    smooth_taylor,
)
from jaxattr.targets import OUTPUTS, from_flax, scalar_output

__version__ = "0.1.0"

__all__ = [
    "NT_TYPES",
    "OUTPUTS",
    "Attribution",
    "adaptive_noising",
    "attribute",
    "baselines",
    "distilled_gradient_aggregation",
    "engine",
    "filters",
    "from_flax",
    "count_guided",
    "gnl_integrated_gradients",
    "guided",
    "guided_backprop",
    "input_x_gradient",
    "integrated_decision_gradients",
    "integrated_gradients",
    "noise_tunnel",
    "quadrature",
    "saliency",
    "scalar_output",
    "smooth_taylor",
]
