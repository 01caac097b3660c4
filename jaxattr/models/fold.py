"""Eval-mode BatchNorm folded into the convolution before it: ``fold_batchnorm``.

An eval-mode BatchNorm after a convolution is an affine map per output channel,
``y = s * (conv(x, k) + b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so
the pair is one convolution with kernel ``k * s`` (scaled along the output axis) and
bias ``s * (b - mean) + beta``. Folding removes the BatchNorm's pass from the forward
and the backward graph; logits and gradients change only by float rounding (the
products are rounded once more).

The folded variables have no entry for the BatchNorm layers (no ``batch_stats``) and
a ``bias`` on every convolution that had a BatchNorm after it. The ports need no
second module: the folded variables mark each folded layer in a ``folded_batchnorm``
collection, where :func:`jaxattr.models.layers.batch_norm` is then the identity and
:func:`jaxattr.models.layers.conv` has a bias. See docs/models.md#batchnorm-folding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models.layers import FOLDED

__all__ = ["FOLDED", "batchnorm_pairs", "fold_batchnorm", "fold_variables", "is_folded"]


def batchnorm_pairs(
    module: nn.Module, variables: Mapping[str, Any], input_shape: tuple[int, ...]
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``[(conv_path, bn_path), ...]``: each BatchNorm of ``module`` and the
    convolution whose output it normalises, as module paths (tuples of names).

    Found by tracing ``module.apply(variables, x)`` (shapes only) for an input of
    ``input_shape`` (``[N, H, W, C]``, static) and matching each BatchNorm's input
    to the convolution output it is. Raises ``ValueError`` naming a BatchNorm whose
    input is not a convolution's output (it cannot be folded).
    """
    conv_out: dict[int, tuple[str, ...]] = {}
    pairs: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    unpaired: list[str] = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        mod = context.module
        if isinstance(mod, nn.Conv):
            conv_out[id(out)] = tuple(mod.scope.path)
        elif isinstance(mod, nn.BatchNorm):
            src = conv_out.get(id(args[0]))
            if src is None:
                unpaired.append("/".join(mod.scope.path))
            else:
                pairs.append((src, tuple(mod.scope.path)))
        return out

    def run(v, x):
        with nn.intercept_methods(interceptor):
            return module.apply(v, x)

    jax.eval_shape(run, variables, jax.ShapeDtypeStruct(input_shape, jnp.float32))
    if unpaired:
        raise ValueError(
            "fold_batchnorm: BatchNorm layers "
            f"{unpaired[:5]} do not take a convolution's output directly; expected "
            "every BatchNorm right after a convolution"
        )
    convs = [c for c, _ in pairs]
    if len(set(convs)) != len(convs):
        raise ValueError(
            "fold_batchnorm: a convolution feeds several BatchNorm layers; expected "
            f"one BatchNorm per convolution, got pairs {pairs}"
        )
    return pairs


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _to_dict(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _delete(tree: dict, path: tuple[str, ...]) -> None:
    """Removes ``path`` and every dict left empty above it."""
    parents = [tree]
    for key in path[:-1]:
        parents.append(parents[-1][key])
    del parents[-1][path[-1]]
    for depth in range(len(path) - 1, 0, -1):
        if not parents[depth]:
            del parents[depth - 1][path[depth - 1]]


def is_folded(variables: Mapping[str, Any]) -> bool:
    """Whether ``variables`` come from :func:`fold_variables`: they hold the
    ``folded_batchnorm`` collection, an empty array ``[0]`` at the path of every folded
    convolution and removed BatchNorm (each layer reads its own mark)."""
    return FOLDED in variables


def fold_variables(
    module: nn.Module,
    variables: Mapping[str, Any],
    input_shape: tuple[int, ...],
    epsilon: float,
) -> dict[str, Any]:
    """The variables of ``module`` with every eval-mode BatchNorm folded into the
    convolution before it (see the module docstring).

    Args:
      module: a port of :mod:`jaxattr.models` (its BatchNorm layers follow
        convolutions).
      variables: ``{'params': ..., 'batch_stats': ...}``.
      input_shape: ``[N, H, W, C]`` of an input to trace the module with (static).
      epsilon: the BatchNorm epsilon (``module.bn_epsilon``).

    Returns:
      Variables with ``params`` only (plus a ``folded_batchnorm`` marker when there
      was something to fold): each folded convolution has ``kernel`` ``[..., Cout]``
      scaled by ``s`` and ``bias`` ``[Cout]``; the BatchNorm entries are gone.
    """
    if FOLDED in variables:
        raise ValueError("fold_variables: variables are folded already")
    pairs = batchnorm_pairs(module, variables, input_shape)
    params = _to_dict(variables["params"])
    stats = _to_dict(variables.get("batch_stats", {}))
    for conv_path, bn_path in pairs:
        bn = _get(params, bn_path)
        st = _get(stats, bn_path)
        conv_p = dict(_get(params, conv_path))
        scale = bn["scale"] / jnp.sqrt(st["var"] + epsilon)
        bias = conv_p.get("bias", jnp.zeros_like(st["mean"]))
        conv_p["kernel"] = conv_p["kernel"] * scale
        conv_p["bias"] = (bias - st["mean"]) * scale + bn["bias"]
        _set(params, conv_path, conv_p)
        _delete(params, bn_path)
        _delete(stats, bn_path)
    out: dict[str, Any] = {"params": params}
    if stats:
        raise ValueError(
            "fold_variables: batch_stats left after folding: "
            f"{list(jax.tree_util.tree_flatten_with_path(stats)[0])[:3]}"
        )
    extra = {k: v for k, v in variables.items() if k not in ("params", "batch_stats")}
    out.update(extra)
    if pairs:
        marks: dict[str, Any] = {}
        for path in (p for pair in pairs for p in pair):
            node = marks
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = jnp.zeros((0,), jnp.float32)
        out[FOLDED] = marks
    return out


def fold_batchnorm(model: Any) -> Any:
    """``model`` (a :class:`jaxattr.models.Model`) with its eval-mode BatchNorm layers
    folded into the convolutions before them: same logits up to float rounding,
    one elementwise pass less per BatchNorm, forward and backward.

    The result's ``variables`` are folded (:func:`fold_variables`), ``fn`` uses
    them, ``apply`` and ``module`` are unchanged (the ports read the folding from
    the variables), and ``unfolded`` is ``model``: FullGrad
    (:func:`jaxattr.models.layers.fullgrad_model`) uses it, because its bias terms
    are the BatchNorms' own. A model without BatchNorm, or one folded already, is
    returned as it is. ``load(name, fold_batchnorm=True)`` does the same.
    """
    if getattr(model, "unfolded", None) is not None or not model.variables.get(
        "batch_stats"
    ):
        return model
    h, w = model.input_size
    variables = fold_variables(
        model.module, model.variables, (1, h, w, 3), model.module.bn_epsilon
    )
    return model._replace(
        fn=jax.tree_util.Partial(model.apply, variables),
        variables=variables,
        unfolded=model,
    )
