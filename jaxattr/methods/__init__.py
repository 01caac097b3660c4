"""Attribution methods: pure functions `method(f, x, ...) -> Attribution`."""

from jaxattr.methods.gradient import input_x_gradient, saliency
from jaxattr.methods.integrated_gradients import integrated_gradients
from jaxattr.methods.noise_tunnel import NT_TYPES, noise_tunnel

__all__ = [
    "NT_TYPES",
    "input_x_gradient",
    "integrated_gradients",
    "noise_tunnel",
    "saliency",
]
