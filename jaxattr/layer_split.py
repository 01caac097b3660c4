"""A model cut at an intermediate activation, without hooks: `head: x -> h`, `tail: h -> y`.

Layer attribution (`jaxattr.methods.layer`, `jaxattr.methods.grad_cam`) explains the
output through an activation `h` inside the model. In JAX a model cut in two is just two
functions, so a model you write yourself needs nothing from this module:

>>> head = lambda x: features(params, x)              # one example -> h
>>> tail = lambda h: classifier(params, h)[target]    # h -> scalar
>>> jaxattr.layer_integrated_gradients(head, tail, x)

For a Flax model (the Linen ports in `jaxattr.models`, your own Linen module, or an
NNX module) `split_at` cuts it at a **submodule, by name**: by Flax's method
interception (`flax.linen.intercept_methods`) for Linen, by swapping the submodule in a
copy (`nnx.merge(*nnx.split(model))`) for NNX. `head` runs the model and returns that
submodule's output; `tail` runs the model at the explained `x` with that output
**replaced** by `h`, so that paths bypassing the submodule (a residual shortcut around
`'layer2.0/conv1'`) still see `x`, exactly as a Captum forward hook does:

>>> model = jaxattr.models.load("cifar_resnet20")
>>> cut = jaxattr.split_at(model.fn, "layer3.2", x, target=3)
>>> cut.head(x).shape, cut.tail(cut.head(x)) == f(x)      # (8, 8, 64), True
>>> jaxattr.grad_cam(cut.head, cut.tail, x)

Names are a submodule's path, `/`-separated (`'layer3.2'`, `'layer3.2/conv2'`, NNX
`'blocks/0'`), or a tuple of names; `layer_names(model_fn, x_batch)` lists them. A
point that is not the output of a submodule (a functional `nn.relu` after a BatchNorm)
cannot be named: wrap it in a module, or write `head` and `tail` yourself. `capture`
and `replace` are the two primitives. Linen's lifted transforms inside the model
(`nn.scan`, `nn.vmap`) are not supported.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr import _checks, targets

Array = jax.Array
Layer = str | tuple[str, ...]

__all__ = ["LayerSplit", "capture", "layer_names", "replace", "split_at"]


class LayerSplit(NamedTuple):
    """A model cut at one activation, for one example.

    Attributes:
      head: `x -> h`, one example to the activation (e.g. `[H', W', C]`).
      tail: `h -> scalar`, the explained output with the activation set to `h` (at
        the explained `x` for anything that bypasses the layer).
    """

    head: Callable[[Array], Array]
    tail: Callable[[Array], Array]


def _path(layer: Any, caller: str) -> tuple[str, ...]:
    if isinstance(layer, str) and layer:
        return tuple(layer.split("/"))
    if (
        isinstance(layer, tuple)
        and layer
        and all(isinstance(p, str) and p for p in layer)
    ):
        return layer
    raise TypeError(
        f"{caller}: layer must be a submodule's name such as 'layer3.2' or"
        f" 'layer3.2/conv2' (or a tuple of names); got {type(layer).__name__}"
        f" {layer!r}."
    )


def _name(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _interceptor(path: tuple[str, ...], on_call: Callable) -> tuple[Callable, dict]:
    """An interceptor that calls `on_call(next_fun, args, kwargs)` for the submodule at
    `path` and records the paths of every submodule called."""
    log: dict = {"seen": [], "calls": 0}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        where = tuple(context.module.path)
        if where != path:
            if where:
                log["seen"].append(where)
            return next_fun(*args, **kwargs)
        log["calls"] += 1
        return on_call(next_fun, args, kwargs)

    return interceptor, log


def _check_called(log: dict, path: tuple[str, ...], caller: str) -> None:
    if log["calls"] == 1:
        return
    name = _name(path)
    if log["calls"] > 1:
        raise ValueError(
            f"{caller}: layer {name!r} is called {log['calls']} times in one forward"
            " pass; expected a submodule called once (split at another one, or write"
            " head and tail yourself)."
        )
    names = list(dict.fromkeys(_name(p) for p in log["seen"]))
    top = [n for n in names if "/" not in n]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"{caller}: layer must name a Flax submodule called by the model, nested"
        f" names joined by '/'; got {name!r}.{hint} Top-level submodules:"
        f" {', '.join(top) or 'none (is the model a Flax Linen module?)'}."
    )


def _is_nnx(fn: Any) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - an old Flax
        return False
    return isinstance(fn, nnx.Module)


def _nnx_names(model) -> list[tuple[str, ...]]:
    from flax import nnx

    return [tuple(map(str, p)) for p, _ in nnx.iter_modules(model) if p]


def _nnx_child(parent, name: str):
    """`(key, child)` of an NNX module or list, `child` None when absent."""
    if hasattr(parent, "__getitem__") and name.isdigit():
        try:
            return int(name), parent[int(name)]
        except (IndexError, KeyError, TypeError):
            return int(name), None
    return name, getattr(parent, name, None)


class _Swap:
    """Stands in for an NNX submodule: `on_call(next_fun, args, kwargs)` per call."""

    def __init__(self, inner, on_call, log):
        self.inner, self.on_call, self.log = inner, on_call, log

    def __call__(self, *args, **kwargs):
        self.log["calls"] += 1
        return self.on_call(self.inner, args, kwargs)


def _run_nnx(model, path, on_call, caller, args, kwargs):
    """Calls a copy of the NNX `model` with the submodule at `path` swapped."""
    from flax import nnx

    copy = nnx.merge(*nnx.split(model))
    log: dict = {"seen": _nnx_names(model), "calls": 0}
    parent = copy
    for name in path[:-1]:
        parent = _nnx_child(parent, name)[1]
    key, inner = _nnx_child(parent, path[-1]) if parent is not None else (None, None)
    if not isinstance(inner, nnx.Module):
        _check_called(log, path, caller)
    swap = _Swap(inner, on_call, log)
    if isinstance(key, int):
        parent[key] = swap
    else:
        setattr(parent, key, swap)
    out = copy(*args, **kwargs)
    _check_called(log, path, caller)
    return out


def _run(fn, path, on_call, caller, args, kwargs):
    """`fn(*args, **kwargs)` with `on_call` in place of the submodule at `path`: a
    Linen interceptor, or a swapped copy of an NNX module."""
    if _is_nnx(fn):
        return _run_nnx(fn, path, on_call, caller, args, kwargs)
    interceptor, log = _interceptor(path, on_call)
    with nn.intercept_methods(interceptor):
        out = fn(*args, **kwargs)
    _check_called(log, path, caller)
    return out


def _first_arg(a: tuple, caller: str, path) -> Any:
    if not a:
        raise ValueError(
            f"{caller}: layer_input=True needs a positional input to layer"
            f" {_name(path)!r}; got none."
        )
    return a[0]


def capture(
    fn: Callable[..., Any],
    layer: Layer,
    *,
    layer_input: bool = False,
    caller: str = "capture",
) -> Callable[..., tuple[Any, Any]]:
    """`captured(*args) -> (fn(*args), h)`: `fn` run as is, with the output `h` of the
    submodule `layer` (called once by `fn`) returned alongside; its first positional
    input instead with `layer_input=True` (Captum's `attribute_to_layer_input`).

    `fn` is any function that applies Flax Linen modules (`model.fn`,
    `lambda x: module.apply(variables, x)`), or an NNX module (called as `fn(*args)`
    on a copy whose submodule is swapped; `fn` itself is not changed). `layer` and
    `layer_input` are static."""
    path = _path(layer, caller)

    def captured(*args, **kwargs):
        found = []

        def on_call(next_fun, a, kw):
            if layer_input:
                found.append(_first_arg(a, caller, path))
            out = next_fun(*a, **kw)
            if not layer_input:
                found.append(out)
            return out

        out = _run(fn, path, on_call, caller, args, kwargs)
        return out, found[0]

    return captured


def replace(
    fn: Callable[..., Any],
    layer: Layer,
    *,
    layer_input: bool = False,
    caller: str = "replace",
) -> Callable[..., Any]:
    """`replaced(h, *args) -> fn(*args)` with the output of the submodule `layer` set
    to `h` (same shape and dtype as that output, batch axis included); with
    `layer_input=True`, its first positional input.

    Everything else is computed from `args` as usual: a shortcut around `layer` still
    carries the input (Captum's forward-hook semantics). The replaced computation is
    dead code under `jit`. `layer` and `layer_input` are static."""
    path = _path(layer, caller)
    what = "input" if layer_input else "output"

    def replaced(h, *args, **kwargs):
        def check(like):
            if jnp.shape(h) != jnp.shape(like):
                raise ValueError(
                    f"{caller}: h must have the shape of layer {_name(path)!r}'s"
                    f" {what}, {tuple(jnp.shape(like))}; got {tuple(jnp.shape(h))}."
                )
            return jnp.asarray(h, jnp.result_type(like))

        def on_call(next_fun, a, kw):
            if layer_input:
                return next_fun(check(_first_arg(a, caller, path)), *a[1:], **kw)
            return check(next_fun(*a, **kw))

        return _run(fn, path, on_call, caller, args, kwargs)

    return replaced


def layer_names(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, ...]:
    """The `/`-joined names of the submodules `fn(*args)` calls, in call order (shapes
    only: `fn` is traced with `jax.eval_shape`); for an NNX module, those it holds."""
    if _is_nnx(fn):
        return tuple(_name(p) for p in _nnx_names(fn))
    interceptor, log = _interceptor((), lambda next_fun, a, kw: next_fun(*a, **kw))

    def run(*a, **kw):
        with nn.intercept_methods(interceptor):
            return fn(*a, **kw)

    jax.eval_shape(run, *args, **kwargs)
    return tuple(dict.fromkeys(_name(p) for p in log["seen"]))


def split_at(
    model_fn: Callable[[Array], Array],
    layer: Layer,
    x: Array,
    *,
    target: Any = None,
    output: str = "logit",
    batched: bool = True,
    layer_input: bool = False,
) -> LayerSplit:
    """Cuts a Flax model at the output of its submodule `layer`, for the example `x`.

    Args:
      model_fn: a function applying a Flax Linen module, or an NNX module, batched
        `[N, *x.shape] -> [N, K]` (e.g. `jaxattr.models.Model.fn`) or, with
        `batched=False`, one example to `[K]`.
      layer: the submodule's name, nested names joined by `/` (static).
      x: the explained example (no batch axis); `tail` evaluates the model at `x`.
      target: the class explained by `tail`, as in `jaxattr.scalar_output`: `None`
        for one output, an integer (traced or not) or a callable on the outputs at
        `x` such as `jnp.argmax`.
      output: `"logit"`, `"softmax"` or `"log_softmax"` (static).
      batched: whether `model_fn` takes a leading batch axis (static).
      layer_input: cut at the submodule's first positional input instead of its
        output (static; Captum's `attribute_to_layer_input`).

    Returns:
      `LayerSplit(head, tail)`: `head(x') -> h` the layer's output for one example
      `x'` (batch axis removed), `tail(h) -> scalar` the target's output at `x` with
      the layer's output set to `h`, so `tail(head(x)) == f(x)`.

    Raises:
      TypeError, ValueError: a `layer` that is not a name, or names no submodule the
        model calls exactly once (the message lists the top-level names); `h` of the
        wrong shape in `tail`.
    """
    caller = "split_at"
    path = _path(layer, caller)
    x = _checks.check_input(x, caller)
    grab = capture(model_fn, path, layer_input=layer_input, caller=caller)
    swap = replace(model_fn, path, layer_input=layer_input, caller=caller)
    add, drop = (lambda a: a[None], lambda a: a[0]) if batched else (lambda a: a,) * 2

    def head(xi: Array) -> Array:
        return drop(grab(add(xi))[1])

    if callable(target):
        target = target(jax.lax.stop_gradient(drop(model_fn(add(x)))))

    def tail(h: Array) -> Array:
        f = targets.scalar_output(
            lambda xb: swap(add(h) if batched else h, xb),
            target,
            output=output,
            batched=batched,
        )
        return f(x)

    return LayerSplit(head, tail)
