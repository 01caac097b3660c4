"""Pytree inputs: every method and the generic metrics on a tuple or dict of arrays.

Reference: docs/integrated_gradients.md#pytree-inputs.

A model often takes more than one array: an image and its metadata, token embeddings
and positions. The methods accept such an `x` as a pytree (tuple, list, dict, any
registered node) of floating arrays, and return attributions of the same structure.
The one mechanism, in this module, is a wrapper (`accepts_pytrees`) that every
public method and generic metric carries: an array `x` goes straight to the function
(the same code path and speed as before); a pytree `x` is flattened to one vector
with `jax.flatten_util.ravel_pytree`, the function runs on that vector with
`f(unravel(v))`, and the attributions (and per-feature `aux` entries) are unravelled
back. A path method on the vector *is* the method on the pytree (the straight line
between two pytrees is the straight line between their vectors), so completeness
holds over all leaves: `delta = sum over leaves of sum(A) - (f(x) - f(x'))`.

What each argument becomes (`Spec` says which arguments a function has):

* `x`: each leaf must be a floating array. Integer leaves (token ids) are refused:
  they have no gradient; attribute to their embeddings (`x = embed(ids)`) instead.
  Leaves of different floating dtypes are promoted to one dtype for the vector and
  the attributions are cast back to each leaf's dtype.
* `baseline`: a pytree of `x`'s structure whose leaves are anything a baseline leaf
  may be (a name, a scalar, an array broadcasting to the leaf, a
  `jaxattr.baselines.Baseline`, `None` for zeros, a callable `leaf -> array`); or
  one such per-leaf default applied to every leaf (`"black"`, `0.5`, ...); or a
  callable `x -> pytree`; or a `list` of any of these (several baselines, averaged
  as for arrays; a tuple is not read as several). A list with `x`'s own structure
  is one per-leaf baseline.
* functions of `x` (`f`, AGI's `logits_fn`, DGA's `bias_fn`, the layer methods'
  `head`) are composed with `unravel`.
* per-sample draws (`references [R, ...]`, `noise [S, ...]`): a pytree of `x`'s
  structure with a common leading axis on every leaf.
* noise levels (`noise_tunnel`, `smooth_taylor`): **per leaf**. The relative level
  `stdev_spread` scales each leaf's own range `max(leaf) - min(leaf)` (an image in
  [0, 1] and metadata in other units each get noise of their own scale); `stdevs`
  is a scalar for every leaf or a pytree of per-leaf values; `aux["sigma"]` is then
  a pytree of `x`'s structure.

Methods that are image-specific refuse a pytree with a `TypeError` naming `x`, the
expected and the received: Blur IG (a blur over height and width), FullGrad (the
model's bias maps), DGA's `mask_features="pixels"`, SmoothTaylor's `normalisation`
and the adaptive-noising image scores (`"aupc"`, `"autvc"`: pass a callable
`score_fn(f, x, attributions, key)`, called with pytrees).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxattr import _checks, baselines
from jaxattr.base import Attribution
from jaxattr.typing import Array, BaselineLike, PRNGKey

PyTree = Any

_MISSING = object()


def is_pytree(x: Any) -> bool:
    """Whether `x` is a pytree container of arrays rather than one array.

    Anything with a `shape` (JAX and NumPy arrays, tracers), a scalar, `None` or a
    string is not: those take the array code path (and its errors) unchanged."""
    if x is None or hasattr(x, "shape") or isinstance(x, (str, bytes, int, float)):
        return False
    return not jax.tree_util.treedef_is_leaf(jax.tree.structure(x))


def _describe(tree: PyTree) -> str:
    """`tuple with 2 leaves: [(3,) float32, (2, 2) float32]` for messages."""
    leaves = jax.tree.leaves(tree)
    kinds = ", ".join(
        f"{tuple(np.shape(v))} {getattr(v, 'dtype', type(v).__name__)}"
        for v in leaves[:4]
    )
    more = ", ..." if len(leaves) > 4 else ""
    return f"{type(tree).__name__} with {len(leaves)} leaves: [{kinds}{more}]"


class Flat(NamedTuple):
    """A pytree input as one vector (`flatten`).

    Attributes:
      vector: `[n]` the leaves raveled and concatenated (one promoted dtype).
      unravel: `vector -> pytree`, each leaf cast back to its dtype.
      treedef: the structure of `x`.
      labels: each leaf's name in messages, e.g. `x['image']`.
      shapes: each leaf's shape.
    """

    vector: Array
    unravel: Callable[[Array], PyTree]
    treedef: Any
    labels: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def leaves(self, vector: Array) -> list[Array]:
        """The leaves of `unravel(vector)` (in `vector`'s dtype, reshaped)."""
        out, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape, dtype=int))
            out.append(vector[start : start + size].reshape(shape))
            start += size
        return out

    def ravel(self, tree: PyTree, caller: str, name: str) -> Array:
        """A pytree of `x`'s structure and leaf shapes (e.g. attributions) as a
        vector of `vector`'s dtype."""
        leaves = _leaves_like(tree, self, caller, name)
        return jnp.concatenate(
            [jnp.ravel(jnp.asarray(v)).astype(self.vector.dtype) for v in leaves]
        )

    def unravel_any(self, vector: Array) -> PyTree:
        """`unravel` of a vector of any floating dtype."""
        return self.unravel(jnp.asarray(vector).astype(self.vector.dtype))


def check_leaves(x: PyTree, caller: str, name: str = "x") -> tuple[str, ...]:
    """Checks that every leaf of a pytree input is a floating, finite array (values
    only when concrete); returns each leaf's name in messages, e.g. `x['image']`.

    Raises:
      TypeError: a leaf that is not a floating array (integer token ids, Python
        numbers), naming the leaf.
      ValueError: an empty pytree, or a concrete leaf with NaN or inf.
    """
    pairs = jax.tree_util.tree_flatten_with_path(x)[0]
    if not pairs:
        raise ValueError(
            f"{caller}: {name} must be an array or a pytree of arrays; got an empty"
            f" {type(x).__name__}."
        )
    labels = []
    for path, leaf in pairs:
        label = name + jax.tree_util.keystr(path)
        labels.append(label)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not hasattr(leaf, "shape"):
            raise TypeError(
                f"{caller}: every leaf of {name} must be a floating array; {label} is"
                f" {type(leaf).__name__} {leaf!r}. Wrap numbers in jnp.asarray."
            )
        if jnp.issubdtype(dtype, jnp.integer) or dtype == bool:
            raise TypeError(
                f"{caller}: every leaf of {name} must have a floating dtype; {label}"
                f" has {dtype}. Integer inputs such as token ids cannot be attributed"
                " (they have no gradient): attribute to their embeddings instead,"
                " x = embed(ids) with f a function of the embeddings."
            )
        _checks.check_input(leaf, caller, label)
    return tuple(labels)


def flatten(x: PyTree, caller: str, name: str = "x") -> Flat:
    """Checks a pytree input leaf by leaf (`check_leaves`) and flattens it to a
    `Flat` vector."""
    labels = check_leaves(x, caller, name)
    vector, unravel = ravel_pytree(x)
    shapes = tuple(tuple(np.shape(leaf)) for leaf in jax.tree.leaves(x))
    return Flat(vector, unravel, jax.tree.structure(x), labels, shapes)


def _leaves_like(tree, flat: Flat, caller: str, name: str, lead: tuple = ()) -> list:
    """The leaves of `tree`, which must have `x`'s structure and leaf shapes (after
    a leading `lead` shape)."""
    if not is_pytree(tree) or jax.tree.structure(tree) != flat.treedef:
        raise ValueError(
            f"{caller}: {name} must be a pytree with the structure of x,"
            f" {flat.treedef}; got {_received(tree)}."
        )
    leaves = jax.tree.leaves(tree)
    for leaf, label, shape in zip(leaves, flat.labels, flat.shapes):
        got = tuple(np.shape(leaf))
        if got != (*lead, *shape):
            where = name + label[1:]
            raise ValueError(
                f"{caller}: {where} must have shape {(*lead, *shape)} (that of"
                f" {label}{' with a leading axis' if lead else ''}); got {got}."
            )
    return leaves


def _received(tree) -> str:
    if is_pytree(tree):
        return f"{jax.tree.structure(tree)}"
    shape = getattr(tree, "shape", None)
    return f"{type(tree).__name__}" + (f" of shape {tuple(shape)}" if shape else "")


def flatten_stacked(tree: PyTree, flat: Flat, caller: str, name: str) -> Array:
    """Per-sample draws `[S, *leaf]` on every leaf of `x`'s structure -> `[S, n]`
    (each sample raveled as `x` is)."""
    if not is_pytree(tree) or jax.tree.structure(tree) != flat.treedef:
        raise ValueError(
            f"{caller}: {name} must be a pytree with the structure of x,"
            f" {flat.treedef}, with a leading sample axis on every leaf; got"
            f" {_received(tree)}."
        )
    leaves = jax.tree.leaves(tree)
    lead = tuple(np.shape(leaves[0]))[:1]
    if not lead:
        raise ValueError(
            f"{caller}: {name} needs a leading sample axis on every leaf; got a"
            f" scalar at {name + flat.labels[0][1:]}."
        )
    leaves = _leaves_like(tree, flat, caller, name, lead)
    dtype = flat.vector.dtype
    return jnp.concatenate(
        [jnp.asarray(v).reshape(lead[0], -1).astype(dtype) for v in leaves], axis=1
    )


def _spec_leaf(v) -> bool:
    """One baseline for one leaf (not a container of them)."""
    return (
        v is None
        or isinstance(v, (str, baselines.Baseline, int, float, np.generic))
        or hasattr(v, "shape")
        or callable(v)
    )


def _matches(tree, flat: Flat) -> bool:
    try:
        return jax.tree.structure(tree, is_leaf=_spec_leaf) == flat.treedef
    except Exception:  # noqa: BLE001 - an unflattenable object matches nothing
        return False


def _one_baseline(spec, x, flat: Flat, key, caller: str, name: str) -> Array:
    """One baseline (a per-leaf default, a pytree of per-leaf ones, or a callable
    `x -> pytree`) as a vector."""
    if callable(spec) and not isinstance(spec, baselines.Baseline):
        spec = spec(x)
        if callable(spec) and not hasattr(spec, "shape"):
            raise TypeError(
                f"{caller}: a callable {name} must return a pytree of x's structure"
                f" or one value for every leaf; got {type(spec).__name__}."
            )
    if _matches(spec, flat):
        specs = jax.tree.leaves(spec, is_leaf=_spec_leaf)
    elif _spec_leaf(spec):
        specs = [spec] * len(flat.shapes)
    else:
        raise ValueError(
            f"{caller}: {name} must be a pytree with the structure of x,"
            f" {flat.treedef} (one baseline per leaf), one value applied to every leaf"
            " (a name such as 'black', a scalar, a Baseline, None), or a list of"
            f" these (several baselines, a list); got {_received(spec)}."
        )
    stochastic = any(isinstance(s, baselines.Baseline) and s.stochastic for s in specs)
    stochastic |= any(
        isinstance(s, str) and s in baselines.NAMED and baselines.NAMED[s]().stochastic
        for s in specs
    )
    keys = [None] * len(specs)
    if stochastic:
        _checks.check_key(key, caller, f"{name} is random")
        keys = list(jax.random.split(key, len(specs)))
    leaves = flat.leaves(flat.vector)
    out = []
    for s, k, leaf, label in zip(specs, keys, leaves, flat.labels):
        where = f"{caller} ({name} for {label})"
        b = baselines.resolve_one(s, leaf, k, where)
        out.append(b.reshape(-1).astype(flat.vector.dtype))
    return jnp.concatenate(out)


def flatten_baseline(
    baseline: BaselineLike | PyTree,
    x: PyTree,
    flat: Flat,
    key: PRNGKey | None,
    caller: str,
    name: str = "baseline",
) -> Array | list[Array] | None:
    """A baseline argument for a pytree `x` as what the method takes for the vector:
    `None` (the method's default, zeros), one vector `[n]`, or a list of vectors
    (several baselines). See the module docstring for the forms accepted.

    Raises:
      ValueError: a container that has neither `x`'s structure nor is a list of
        baselines, or a leaf that does not broadcast to its leaf of `x`.
    """
    if baseline is None:
        return None
    if _matches(baseline, flat) or not isinstance(baseline, list):
        # a tuple is one baseline here (for an array `x` it may list several):
        # `(0.0, (1.0, 2.0))` for a pair `x` is a mistake, not two baselines
        return _one_baseline(baseline, x, flat, key, caller, name)
    if not baseline:
        raise ValueError(f"{caller}: {name} list must not be empty.")
    keys = [None] * len(baseline)
    if key is not None:
        keys = list(jax.random.split(key, len(baseline)))
    return [
        _one_baseline(b, x, flat, k, caller, f"{name}[{i}]")
        for i, (b, k) in enumerate(zip(baseline, keys))
    ]


def per_leaf(value: Any, flat: Flat, caller: str, name: str) -> Array:
    """A per-leaf quantity (a scalar for every leaf, or a pytree of `x`'s structure
    whose leaves broadcast to their leaf) as a vector `[n]`."""
    if is_pytree(value) and not _matches(value, flat):
        raise ValueError(
            f"{caller}: {name} must be a scalar or a pytree with the structure of x,"
            f" {flat.treedef}; got {_received(value)}."
        )
    specs = jax.tree.leaves(value) if is_pytree(value) else [value] * len(flat.shapes)
    out = []
    for v, shape, label in zip(specs, flat.shapes, flat.labels):
        v = jnp.asarray(v, flat.vector.dtype)
        if not _checks.broadcasts_to(v.shape, shape):
            raise ValueError(
                f"{caller}: {name} for {label} must broadcast to its shape {shape};"
                f" got shape {tuple(v.shape)}."
            )
        out.append(jnp.broadcast_to(v, shape).reshape(-1))
    return jnp.concatenate(out)


# ------------------------------------------------------------------ per-function specs
class Spec(NamedTuple):
    """How a public function's arguments relate to `x` (see `accepts_pytrees`).

    Attributes:
      x: the name of the explained input.
      fns: arguments that are functions of `x` (composed with `unravel`).
      baseline: the baseline argument's name, or None.
      stacked: arguments with a leading sample axis on every leaf.
      like: arguments with `x`'s structure and shapes (e.g. a metric's
        attributions).
      per_feature: `aux` keys holding arrays of `x`'s shape (unravelled).
      unravel: whether the result's attributions have `x`'s shape (False for the
        layer methods, whose attributions are an activation).
      refuse: why a pytree `x` is refused (the function is image-specific), or None.
      hook: `hook(arguments, flat, x, caller) -> post` for what is particular to a
        function: it edits the bound arguments in place and returns a function
        applied to the result (or None).
    """

    x: str = "x"
    fns: tuple[str, ...] = ("f",)
    baseline: str | None = None
    stacked: tuple[str, ...] = ()
    like: tuple[str, ...] = ()
    per_feature: tuple[str, ...] = ()
    unravel: bool = True
    refuse: str | None = None
    hook: Callable | None = None


def refusal(caller: str, x: PyTree, why: str) -> TypeError:
    """The error of an image-specific function given a pytree `x`."""
    return TypeError(
        f"{caller}: x must be one array ({why}); got a pytree, {_describe(x)}."
        " Pytree inputs work with the methods that do not depend on an image layout,"
        " e.g. integrated_gradients (docs/integrated_gradients.md#pytree-inputs)."
    )


def _with_aux(result: Attribution, **aux) -> Attribution:
    return result._replace(aux={**(result.aux or {}), **aux})


def _noise_scale(default_spread: float, allow_normalisation: bool):
    """The hook of `noise_tunnel` and `smooth_taylor`: noise levels per leaf."""

    def hook(a, flat, x, caller):
        if not allow_normalisation and a.get("normalisation") is not None:
            raise refusal(
                caller,
                x,
                "normalisation=(mean, std) is per image channel; for a pytree give"
                " stdevs per leaf instead",
            )
        stdevs, spread = a.get("stdevs"), a.get("stdev_spread")
        if stdevs is not None and spread is not None:
            return None  # the function's own error: give one of them
        if stdevs is not None:
            if not is_pytree(stdevs):
                return None  # one absolute level for every leaf, as for an array
            a["stdevs"] = per_leaf(stdevs, flat, caller, "stdevs")
            sigma = stdevs
        else:
            spread = default_spread if spread is None else spread
            sigma = jax.tree.unflatten(
                flat.treedef,
                [
                    jnp.asarray(spread, flat.vector.dtype) * (v.max() - v.min())
                    for v in flat.leaves(flat.vector)
                ],
            )
            a["stdevs"] = per_leaf(sigma, flat, caller, "stdevs")
            a["stdev_spread"] = None
        return lambda r: _with_aux(r, sigma=sigma)

    return hook


def _inner_method(name: str):
    """Hook of `noise_tunnel` / `sensitivity_max`: the method they call on noisy
    copies of `x` is called on the pytree (with its own pytree arguments, e.g. a
    baseline), and its attributions raveled."""

    def hook(a, flat, x, caller):
        method, f = a[name], a["f"]
        if not callable(method):
            return

        def on_vector(_f, v, *args, **kwargs):
            r = method(f, flat.unravel_any(v), *args, **kwargs)
            return r._replace(
                attributions=flat.ravel(r.attributions, caller, "attributions")
            )

        a[name] = on_vector
        return

    return hook


def _noise_tunnel_hook(a, flat, x, caller):
    # the module (`jaxattr.methods.noise_tunnel` is also the function's name)
    module = importlib.import_module("jaxattr.methods.noise_tunnel")
    _inner_method("method")(a, flat, x, caller)
    return _noise_scale(module.DEFAULT_STDEV_SPREAD, True)(a, flat, x, caller)


def _smooth_taylor_hook(a, flat, x, caller):
    module = importlib.import_module("jaxattr.methods.smooth_taylor")
    hook = _noise_scale(module.DEFAULT_STDEV_SPREAD, False)
    return hook(a, flat, x, caller)


def _adaptive_noising_hook(a, flat, x, caller):
    if a.get("normalisation") is not None:
        raise refusal(caller, x, "normalisation=(mean, std) is per image channel")
    score_fn, f = a.get("score_fn", "aupc"), _original(a["f"])
    if isinstance(score_fn, str):
        raise refusal(
            caller,
            x,
            f"score_fn={score_fn!r} scores an image heat map; for a pytree pass a"
            " callable score_fn(f, x, attributions, key) -> scalar, which is called"
            " with pytrees",
        )
    if callable(score_fn):
        a["score_fn"] = lambda _f, v, heat, key: score_fn(
            f, flat.unravel_any(v), flat.unravel_any(heat), key
        )


def _expected_gradients_hook(a, flat, x, caller):
    if is_pytree(a.get("stdevs")):
        raise ValueError(
            f"{caller}: stdevs must be one scalar for every leaf of a pytree x; got"
            f" {_received(a['stdevs'])}."
        )


def _dga_hook(a, flat, x, caller):
    if a.get("mask_features", "elements") == "pixels":
        raise refusal(caller, x, "mask_features='pixels' masks pixels of an image")


def _reduction_hook(a, flat, x, caller):
    if a.get("reduction") is not None:
        raise refusal(
            caller,
            x,
            f"reduction={a['reduction']!r} reduces the channels of an image; use"
            " reduction=None, every entry of every leaf",
        )


def _sensitivity_n_hook(a, flat, x, caller):
    """Features are the entries of all leaves: the vector as an `[n, 1, 1]` image
    (each entry one pixel of one channel)."""
    base = a.get("perturb_baseline", 0.0)
    if isinstance(base, str) and base != "black":
        raise refusal(
            caller,
            x,
            f"perturb_baseline={base!r} is an image substrate; use a"
            " scalar, 'black' or a pytree of per-leaf values",
        )
    if isinstance(base, str):
        base = 0.0
    n = flat.vector.shape[0]
    a["perturb_baseline"] = per_leaf(base, flat, caller, "perturb_baseline")[
        :, None, None
    ]
    f = a["f"]  # already a function of the vector
    a["f"] = lambda img: f(img.reshape(n))
    a["x"] = a["x"].reshape(n, 1, 1)
    a["attributions"] = a["attributions"].reshape(n, 1, 1)


def _infidelity_hook(a, flat, x, caller):
    perturb = a.get("perturb_func", "gaussian")
    if perturb == "square":
        raise refusal(caller, x, "perturb_func='square' moves a square of an image")
    if callable(perturb):

        def on_vector(key, v):
            i, xp = perturb(key, flat.unravel_any(v))
            return (
                flat.ravel(i, caller, "perturb_func's I"),
                flat.ravel(xp, caller, "perturb_func's x - I"),
            )

        a["perturb_func"] = on_vector


_PATH = Spec(baseline="baseline")
_LAYER = Spec(fns=("head",), baseline="baseline", unravel=False)

#: Public function name -> its `Spec`: every method of `jaxattr.registry` (and the
#: layer methods), and the metrics that are not image-specific.
SPECS: dict[str, Spec] = {
    "integrated_gradients": _PATH,
    "adaptive_integrated_gradients": _PATH,
    "gnl_integrated_gradients": _PATH,
    "split_integrated_gradients": _PATH._replace(per_feature=("left", "right")),
    "integrated_decision_gradients": _PATH,
    "guided_integrated_gradients": _PATH,
    "blur_integrated_gradients": Spec(
        refuse="Blur IG blurs an image [H, W, C] over its height and width"
    ),
    "expected_gradients": Spec(
        stacked=("references", "noise"), hook=_expected_gradients_hook
    ),
    "distilled_gradient_aggregation": Spec(
        fns=("f", "bias_fn"), baseline="baseline", hook=_dga_hook
    ),
    "adversarial_gradient_integration": Spec(fns=("logits_fn",)),
    "full_gradients": Spec(
        refuse="FullGrad sums the bias gradients of an image model's feature maps"
    ),
    "saliency": Spec(),
    "input_x_gradient": Spec(),
    "guided_backprop": Spec(),
    "noise_tunnel": Spec(fns=(), stacked=("noise",), hook=_noise_tunnel_hook),
    "smooth_taylor": Spec(stacked=("noise",), hook=_smooth_taylor_hook),
    "adaptive_noising": Spec(hook=_adaptive_noising_hook),
    "layer_integrated_gradients": _LAYER,
    "layer_conductance": _LAYER,
    "neuron_integrated_gradients": _LAYER._replace(unravel=True),
    "grad_cam": Spec(fns=("head",), unravel=False),
    "grad_cam_plus_plus": Spec(fns=("head",), unravel=False),
    # metrics
    "completeness": Spec(baseline="baseline", like=("attributions",)),
    "complexity": Spec(x="attributions", fns=(), hook=_reduction_hook),
    "sparseness": Spec(x="attributions", fns=(), hook=_reduction_hook),
    "sensitivity_n": Spec(like=("attributions",), hook=_sensitivity_n_hook),
    "infidelity": Spec(like=("attributions",), hook=_infidelity_hook),
    "sensitivity_max": Spec(fns=(), hook=_inner_method("explainer")),
}


def _call(fn, signature, spec: Spec, caller: str, x, args, kwargs):
    """`fn` on the flattened pytree `x`."""
    if spec.refuse is not None:
        raise refusal(caller, x, spec.refuse)
    bound = signature.bind(*args, **kwargs)
    a = bound.arguments
    flat = flatten(x, caller, "x" if spec.x == "x" else spec.x)
    key = a.get("key")
    if spec.baseline is not None and a.get(spec.baseline) is not None:
        a[spec.baseline] = flatten_baseline(a[spec.baseline], x, flat, key, caller)
    for name in spec.like:
        if name in a:
            a[name] = flat.ravel(a[name], caller, name)
    for name in spec.stacked:
        if a.get(name) is not None:
            a[name] = flatten_stacked(a[name], flat, caller, name)
    for name in spec.fns:
        g = a.get(name)
        if callable(g):
            a[name] = functools.partial(_on_vector, g, flat.unravel)
    a[spec.x] = flat.vector
    post = spec.hook(a, flat, x, caller) if spec.hook is not None else None
    result = fn(*bound.args, **bound.kwargs)
    if isinstance(result, Attribution):
        result = _unravel_result(result, spec, flat)
    return post(result) if post is not None else result


def _on_vector(g, unravel, v, *args, **kwargs):
    return g(unravel(v), *args, **kwargs)


def _original(g):
    """The function of the pytree that `_call` composed with `unravel`."""
    if isinstance(g, functools.partial) and g.func is _on_vector:
        return g.args[0]
    return g


def _unravel_result(result: Attribution, spec: Spec, flat: Flat) -> Attribution:
    if spec.unravel:
        result = result._replace(attributions=flat.unravel_any(result.attributions))
    aux = result.aux
    if spec.per_feature and isinstance(aux, dict):
        aux = dict(aux)
        for k in spec.per_feature:
            if k in aux:
                aux[k] = flat.unravel_any(aux[k])
        result = result._replace(aux=aux)
    return result


def accepts_pytrees(fn: Callable, spec: Spec | None = None) -> Callable:
    """Wraps a public method or metric so that `x` may be a pytree of arrays.

    An array `x` calls `fn` directly: the same code path, results and speed. A
    pytree `x` runs `fn` on its flattened vector as the module docstring says and
    returns attributions of `x`'s structure. `spec` defaults to `SPECS[fn.__name__]`.
    The signature and docstring stay `fn`'s (`inspect.signature` sees the original).
    """
    spec = SPECS[fn.__name__] if spec is None else spec
    signature = inspect.signature(fn)
    names = list(signature.parameters)
    position = names.index(spec.x)
    caller = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        x = args[position] if len(args) > position else kwargs.get(spec.x, _MISSING)
        if x is _MISSING or not is_pytree(x):
            return fn(*args, **kwargs)
        return _call(fn, signature, spec, caller, x, args, kwargs)

    return wrapper


def add_batch_axis(x: PyTree) -> PyTree:
    """`x[None]` on every leaf (one example as a batch of one)."""
    return jax.tree.map(lambda v: v[None], x)
