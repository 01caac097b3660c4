"""Attribution methods: pure functions `method(f, x, ...) -> Attribution`.

`x` is one array or a pytree of arrays (a tuple, a dict); attributions have its
structure (`jaxattr.pytrees`, docs/integrated_gradients.md#pytree-inputs).

The layer methods (`LAYER_METHODS`) take the model cut at an activation instead,
`method(head, tail, x, ...)` (`jaxattr.split_at`), and attribute to that activation;
they are not in `jaxattr.registry`, whose entries explain a model's input.
"""

from jaxattr import _checks as _checks
from jaxattr import pytrees as _pytrees
from jaxattr.methods.adaptive_ig import adaptive_integrated_gradients
from jaxattr.methods.agi import adversarial_gradient_integration
from jaxattr.methods.blur_ig import blur_integrated_gradients
from jaxattr.methods.dga import distilled_gradient_aggregation
from jaxattr.methods.expected_gradients import expected_gradients
from jaxattr.methods.fullgrad import full_gradients
from jaxattr.methods.grad_cam import grad_cam, grad_cam_plus_plus
from jaxattr.methods.gradient import input_x_gradient, saliency
from jaxattr.methods.guided import (
    count_guided,
    gnl_integrated_gradients,
    guided,
    guided_backprop,
)
from jaxattr.methods.guided_ig import guided_integrated_gradients
from jaxattr.methods.idg import integrated_decision_gradients
from jaxattr.methods.integrated_gradients import integrated_gradients
from jaxattr.methods.layer import (
    layer_conductance,
    layer_integrated_gradients,
    neuron_integrated_gradients,
)
from jaxattr.methods.noise_tunnel import NT_TYPES, noise_tunnel
from jaxattr.methods.smooth_taylor import adaptive_noising, smooth_taylor
from jaxattr.methods.split_ig import split_integrated_gradients

#: The methods on a model cut at a layer, `method(head, tail, x, ...)`.
LAYER_METHODS = (
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_conductance",
    "layer_integrated_gradients",
    "neuron_integrated_gradients",
)

__all__ = [
    "LAYER_METHODS",
    "NT_TYPES",
    "adaptive_integrated_gradients",
    "adaptive_noising",
    "adversarial_gradient_integration",
    "blur_integrated_gradients",
    "count_guided",
    "distilled_gradient_aggregation",
    "expected_gradients",
    "full_gradients",
    "gnl_integrated_gradients",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided",
    "guided_backprop",
    "guided_integrated_gradients",
    "input_x_gradient",
    "integrated_decision_gradients",
    "integrated_gradients",
    "layer_conductance",
    "layer_integrated_gradients",
    "neuron_integrated_gradients",
    "noise_tunnel",
    "saliency",
    "smooth_taylor",
    "split_integrated_gradients",
]

# An unexpected keyword argument (e.g. Captum's `internal_batch_size=`) raises a
# TypeError naming ours, and `x` may be a pytree of arrays (`jaxattr.pytrees`;
# an array `x` takes the function's own code path); `jaxattr.methods.X` and
# `jaxattr.X` are the wrapped ones.
for _name in set(__all__) - {"LAYER_METHODS", "NT_TYPES", "count_guided", "guided"}:
    _fn = globals()[_name]
    if _name in _pytrees.SPECS:  # a method without a spec takes arrays only
        _fn = _pytrees.accepts_pytrees(_fn)
    globals()[_name] = _checks.argument_hints(_fn, __name__)
del _name, _fn
