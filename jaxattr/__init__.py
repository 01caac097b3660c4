"""jaxattr: path-integral attribution (Integrated Gradients and its family) in JAX."""

from jaxattr import baselines, engine, filters, metrics, quadrature, sharding
from jaxattr.base import Attribution
from jaxattr.batching import attribute
from jaxattr.methods import (
    NT_TYPES,
    adaptive_integrated_gradients,
    adaptive_noising,
    adversarial_gradient_integration,
    blur_integrated_gradients,
    count_guided,
    distilled_gradient_aggregation,
    expected_gradients,
    full_gradients,
    gnl_integrated_gradients,
    guided,
    guided_backprop,
    guided_integrated_gradients,
    input_x_gradient,
    integrated_decision_gradients,
    integrated_gradients,
    noise_tunnel,
    saliency,
    smooth_taylor,
    split_integrated_gradients,
)
from jaxattr.targets import OUTPUTS, from_flax, scalar_output

__version__ = "0.1.0"

__all__ = [
    "NT_TYPES",
    "OUTPUTS",
    "Attribution",
    "adaptive_integrated_gradients",
    "adaptive_noising",
    "adversarial_gradient_integration",
    "attribute",
    "baselines",
    "blur_integrated_gradients",
    "count_guided",
    "distilled_gradient_aggregation",
    "engine",
    "expected_gradients",
    "filters",
    "from_flax",
    "full_gradients",
    "gnl_integrated_gradients",
    "guided",
    "guided_backprop",
    "guided_integrated_gradients",
    "input_x_gradient",
    "integrated_decision_gradients",
    "integrated_gradients",
    "metrics",
    "noise_tunnel",
    "quadrature",
    "saliency",
    "scalar_output",
    "sharding",
    "smooth_taylor",
    "split_integrated_gradients",
]
