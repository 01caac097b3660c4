"""Map a PyTorch state dict to Flax variables (``params``, ``batch_stats``). No I/O.

The ports name their Flax modules after PyTorch's module paths, so the torch key of a
Flax leaf is ``'.'.join(module_path) + '.' + torch_leaf``, where (Flax -> torch):

* conv ``kernel`` ``[kh, kw, I, O]`` <- ``weight`` ``[O, I, kh, kw]``, by
  ``transpose(2, 3, 1, 0)`` (depthwise convs too: ``[C, 1, k, k]`` -> ``[k, k, 1, C]``);
* dense ``kernel`` ``[I, O]`` <- ``weight`` ``[O, I]``, transposed;
* ``bias`` <- ``bias``; BatchNorm ``scale`` <- ``weight``;
* ``batch_stats`` ``mean`` / ``var`` <- ``running_mean`` / ``running_var``.

``num_batches_tracked`` entries are ignored. This is the only module with NCHW code: a
dense layer that reads a flattened NCHW feature map (torchvision VGG's ``classifier.0``)
is re-ordered to the NHWC flattening when listed in ``flatten_nchw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["flax_to_torch", "torch_to_flax"]

_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _flatten(
    tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix + (str(key),)))
        else:
            out[prefix + (str(key),)] = value
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


class _Leaf:
    """How one Flax leaf maps to one torch tensor."""

    def __init__(
        self, collection: str, path: tuple[str, ...], shape: tuple[int, ...], nchw
    ):
        self.collection, self.path, self.shape = collection, path, tuple(shape)
        module, leaf = path[:-1], path[-1]
        self.module = ".".join(module)
        self.kind = "copy"
        if collection == "batch_stats":
            names = {"mean": "running_mean", "var": "running_var"}
        elif leaf == "kernel" and len(self.shape) == 4:
            names, self.kind = {"kernel": "weight"}, "conv"
        elif leaf == "kernel" and len(self.shape) == 2:
            names, self.kind = {"kernel": "weight"}, "dense"
        else:
            names = {"scale": "weight", "bias": "bias"}
        if leaf not in names:
            raise ValueError(
                "torch_to_flax: no torch name for Flax leaf "
                f"{collection}/{'/'.join(path)} with shape {self.shape}"
            )
        self.key = f"{self.module}.{names[leaf]}" if self.module else names[leaf]
        self.nchw = None
        if self.kind == "dense" and self.module in nchw:
            c, h, w = (int(v) for v in nchw[self.module])
            if c * h * w != self.shape[0]:
                raise ValueError(
                    f"torch_to_flax: flatten_nchw[{self.module!r}] = {(c, h, w)} has "
                    f"{c * h * w} elements, but the dense kernel has {self.shape[0]} "
                    "inputs"
                )
            self.nchw = (c, h, w)

    @property
    def torch_shape(self) -> tuple[int, ...]:
        s = self.shape
        if self.kind == "conv":
            return (s[3], s[2], s[0], s[1])
        if self.kind == "dense":
            return (s[1], s[0])
        return s

    def to_flax(self, w: np.ndarray) -> np.ndarray:
        if self.kind == "conv":
            return w.transpose(2, 3, 1, 0)
        if self.kind == "dense":
            if self.nchw is not None:
                c, h, ww = self.nchw
                w = (
                    w.reshape(w.shape[0], c, h, ww)
                    .transpose(0, 2, 3, 1)
                    .reshape(w.shape[0], -1)
                )
            return w.T
        return w

    def to_torch(self, v: np.ndarray) -> np.ndarray:
        if self.kind == "conv":
            return v.transpose(3, 2, 0, 1)
        if self.kind == "dense":
            w = v.T
            if self.nchw is not None:
                c, h, ww = self.nchw
                w = (
                    w.reshape(w.shape[0], h, ww, c)
                    .transpose(0, 3, 1, 2)
                    .reshape(w.shape[0], -1)
                )
            return w
        return v


def _leaves(template: Mapping[str, Any], nchw: Mapping[str, Any]) -> list[_Leaf]:
    leaves = []
    for collection in ("params", "batch_stats"):
        for path, value in _flatten(template.get(collection, {})).items():
            leaves.append(_Leaf(collection, path, np.shape(value), nchw))
    if not leaves:
        raise ValueError(
            "torch_to_flax: template has no 'params' or 'batch_stats' leaves"
        )
    return leaves


def torch_to_flax(
    state_dict: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    flatten_nchw: Mapping[str, tuple[int, int, int]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Map ``state_dict`` (torch names and layouts) onto the structure of ``template``.

    ``template`` is a Flax variable tree (arrays or ``jax.ShapeDtypeStruct``, e.g. from
    ``jax.eval_shape(module.init, ...)``) with ``params`` and optionally
    ``batch_stats``. ``flatten_nchw`` maps a dense layer's torch module name to the
    ``(C, H, W)`` of the NCHW map it flattens. Returns ``{'params': ..., 'batch_stats':
    ...}`` of float numpy arrays with the template's dtypes. A missing, extra or
    mis-shaped key raises ``ValueError`` naming the key (and both shapes).
    """
    leaves = _leaves(template, flatten_nchw or {})
    used = {leaf.key for leaf in leaves}
    missing = [leaf.key for leaf in leaves if leaf.key not in state_dict]
    extra = [
        k
        for k in state_dict
        if k not in used and not str(k).endswith(_IGNORED_SUFFIXES)
    ]
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"missing keys {missing[:10]}" + (" ..." if len(missing) > 10 else "")
            )
        if extra:
            parts.append(
                f"unexpected keys {extra[:10]}" + (" ..." if len(extra) > 10 else "")
            )
        raise ValueError(
            f"torch_to_flax: state_dict does not match the model ({len(missing)} "
            "missing, "
            f"{len(extra)} unexpected): " + "; ".join(parts)
        )
    template_flat = {
        (c, p): v
        for c in ("params", "batch_stats")
        for p, v in _flatten(template.get(c, {})).items()
    }
    out: dict[str, dict[tuple[str, ...], Any]] = {"params": {}, "batch_stats": {}}
    for leaf in leaves:
        value = np.asarray(state_dict[leaf.key])
        if value.shape != leaf.torch_shape:
            raise ValueError(
                f"torch_to_flax: state_dict[{leaf.key!r}] has shape {value.shape}, "
                f"expected {leaf.torch_shape} (torch layout of Flax "
                f"{leaf.collection}/{'/'.join(leaf.path)} with shape {leaf.shape})"
            )
        dtype = getattr(
            template_flat[(leaf.collection, leaf.path)], "dtype", np.float32
        )
        out[leaf.collection][leaf.path] = np.ascontiguousarray(
            leaf.to_flax(value), dtype=dtype
        )
    result = {"params": _unflatten(out["params"])}
    if out["batch_stats"]:
        result["batch_stats"] = _unflatten(out["batch_stats"])
    return result


def flax_to_torch(
    variables: Mapping[str, Any],
    *,
    flatten_nchw: Mapping[str, tuple[int, int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """Inverse of :func:`torch_to_flax`: Flax ``params``/``batch_stats`` to a
    torch-layout state dict ``{name: np.ndarray}`` (without ``num_batches_tracked``)."""
    out = {}
    flat = {
        (c, p): v
        for c in ("params", "batch_stats")
        for p, v in _flatten(variables.get(c, {})).items()
    }
    for leaf in _leaves(variables, flatten_nchw or {}):
        out[leaf.key] = np.ascontiguousarray(
            leaf.to_torch(np.asarray(flat[(leaf.collection, leaf.path)]))
        )
    return out
