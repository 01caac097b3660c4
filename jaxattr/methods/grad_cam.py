"""Grad-CAM (Selvaraju et al., ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018).

Class activation maps at a convolutional layer, from the model cut there into `head: x
-> h [H', W', C]` and `tail: h -> scalar` (`jaxattr.split_at` cuts a Flax model by a
submodule's name):

>>> cut = jaxattr.split_at(model.fn, "layer3.2", x, target=3)
>>> cam = jaxattr.grad_cam(cut.head, cut.tail, x, size=x.shape[:2])
>>> cam.attributions.shape                                  # (32, 32)

Channels are the last axis (NHWC, Captum's are the second). `interpolate` is Captum's
`LayerAttribution.interpolate` for channel-last maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks
from jaxattr.base import Attribution
from jaxattr.methods.layer import _check_head, _check_tail

Array = jax.Array

__all__ = ["INTERPOLATIONS", "grad_cam", "grad_cam_plus_plus", "interpolate"]

#: Upsampling modes of `interpolate`, with PyTorch's `F.interpolate` semantics.
INTERPOLATIONS = ("nearest", "bilinear")


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """PyTorch's `'nearest'`: output `i` reads input `floor(i * n_in / n_out)`."""
    return np.minimum(np.floor(np.arange(n_out) * (n_in / n_out)), n_in - 1).astype(
        np.int32
    )


def interpolate(
    attributions: Array, size: Sequence[int], *, mode: str = "nearest"
) -> Array:
    """Resizes a map `[*spatial]` or `[*spatial, C]` to `[*size]` / `[*size, C]`.

    Captum's `LayerAttribution.interpolate` (PyTorch's `F.interpolate`): `"nearest"`
    reads input `floor(i * in / out)`, `"bilinear"` uses half-pixel centres
    (`align_corners=False`) without antialiasing. `size` and `mode` are static.
    """
    caller = "interpolate"
    if mode not in INTERPOLATIONS:
        raise ValueError(
            f"{caller}: mode must be one of {', '.join(map(repr, INTERPOLATIONS))};"
            f" got {mode!r}."
        )
    size = tuple(size) if isinstance(size, (tuple, list)) else size
    a = jnp.asarray(attributions)
    if (
        not isinstance(size, tuple)
        or not size
        or len(size) > a.ndim
        or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size)
    ):
        raise ValueError(
            f"{caller}: size must be a tuple of at most {a.ndim} positive ints (the"
            f" spatial size of the output); got {size!r}."
        )
    rest = a.shape[len(size) :]
    if mode == "bilinear":
        return jax.image.resize(a, (*size, *rest), "linear", antialias=False)
    for axis, n_out in enumerate(size):
        a = jnp.take(a, _nearest_index(a.shape[axis], int(n_out)), axis=axis)
    return a


def _activation_and_grad(head, tail, x, caller: str):
    x = _checks.check_input(x, caller)
    h_shape = _check_head(head, x, caller)
    _check_tail(tail, h_shape, caller)
    h = head(x)
    value, grad = jax.value_and_grad(tail)(h)
    return h, value, grad


def _finish(cam, value, weights, relu, size, mode) -> Attribution:
    if relu:
        cam = jax.nn.relu(cam)
    if size is not None:
        cam = interpolate(cam, size, mode=mode)
    return Attribution(
        cam,
        jnp.full((), jnp.nan, value.dtype),
        {
            "f_x": value,
            "weights": weights,
        },
    )


def grad_cam(
    head: Callable[[Array], Array],
    tail: Callable[[Array], Array],
    x: Array,
    *,
    relu: bool = True,
    sum_channels: bool = True,
    size: Sequence[int] | None = None,
    mode: str = "nearest",
    key: Array | None = None,
) -> Attribution:
    """Grad-CAM: channel weights from the spatially averaged gradient at the layer.

    `w_c = mean_{ij} dtail/dh_{ijc}`, `cam_{ij} = ReLU(sum_c w_c h_{ijc})`. Captum's
    `LayerGradCam` (whose `relu_attributions` defaults to False; the paper's ReLU is
    on here). An activation without spatial axes (`[C]`) takes the gradient as the
    weights, as Captum does.

    Args:
      head: one example `x -> h [*spatial, C]`, e.g. `[H', W', C]`.
      tail: `h -> scalar`, the explained output from the layer on.
      x: one example, e.g. `[H, W, 3]`; floating, finite.
      relu: apply the ReLU (static; Captum's `relu_attributions`).
      sum_channels: sum over channels (static; Captum's `attr_dim_summation`);
        `False` keeps `w_c h_{ijc}` of `h`'s shape.
      size: upsample to this spatial size, e.g. `x.shape[:2]` (static; Captum's
        `LayerAttribution.interpolate` after `attribute`), or `None`.
      mode: `"nearest"` or `"bilinear"`, as `interpolate` (static).
      key: unused; the same calling convention as the other methods.

    Returns:
      `Attribution` with `attributions [*spatial]` (or `[*size]`; `[*spatial, C]`
      with `sum_channels=False`), `delta` NaN (no completeness) and `aux` holding
      `f_x = tail(head(x))` and the channel `weights [C]`.
    """
    h, value, grad = _activation_and_grad(head, tail, x, "grad_cam")
    weights = grad.mean(axis=tuple(range(h.ndim - 1))) if h.ndim > 1 else grad
    cam = weights * h
    if sum_channels:
        cam = cam.sum(-1)
    return _finish(cam, value, weights, relu, size, mode)


def grad_cam_plus_plus(
    head: Callable[[Array], Array],
    tail: Callable[[Array], Array],
    x: Array,
    *,
    size: Sequence[int] | None = None,
    mode: str = "nearest",
    eps: float = 1e-6,
    key: Array | None = None,
) -> Attribution:
    """Grad-CAM++: pixel-weighted positive gradients as channel weights.

    With `g = dtail/dh` (the gradient of the score itself, the closed form of the
    paper's exponential score, as `pytorch-grad-cam`):
    `alpha_{ijc} = g^2 / (2 g^2 + sum_{ab} h_{abc} g^3 + eps)` (0 where `g = 0`),
    `w_c = sum_{ij} alpha_{ijc} ReLU(g_{ijc})`, `cam = ReLU(sum_c w_c h_{ijc})`.

    Args:
      head: one example `x -> h [*spatial, C]` with at least one spatial axis.
      tail, x, size, mode, key: as in `grad_cam`.
      eps: added to the denominator of `alpha`.

    Returns:
      `Attribution` with `attributions [*spatial]` (or `[*size]`), `delta` NaN and
      `aux` holding `f_x` and the channel `weights [C]`.
    """
    caller = "grad_cam_plus_plus"
    h, value, grad = _activation_and_grad(head, tail, x, caller)
    if h.ndim < 2:
        raise ValueError(
            f"{caller}: head must return an activation with spatial axes [*spatial,"
            f" C]; got shape {tuple(h.shape)}."
        )
    spatial = tuple(range(h.ndim - 1))
    g2 = grad**2
    denom = 2 * g2 + h.sum(spatial) * g2 * grad + eps
    alpha = jnp.where(grad != 0, g2 / denom, 0.0)
    weights = (alpha * jax.nn.relu(grad)).sum(spatial)
    return _finish((weights * h).sum(-1), value, weights, True, size, mode)
