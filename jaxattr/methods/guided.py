"""Guided non-linearities as a function transform: Guided Backprop and GNL-IG.

`guided(f)` returns a function with the same forward values as `f` (bit for bit)
whose backward pass lets only positive gradients through ReLU, ReLU6 and max-pool
(Kwon et al., ICPR 2020, docs/gnl.md; Springenberg et al. 2015). It works
on any JAX function, including models we did not write, without module hooks: `f`
is traced to a jaxpr (`jax.make_jaxpr`) and re-evaluated equation by equation,
binding every primitive as it was, except these, which get a `jax.custom_vjp`:

* **ReLU** -- `jax.nn.relu` (and `flax.linen.relu`, the same function: its
  `custom_jvp_call`, recognised by its source name) and every `max(z, 0)` /
  `max(0, z)` whose other operand is a constant zero (a literal, or a constant
  reached through `convert_element_type`/`broadcast_in_dim`/`reshape`, e.g.
  `jnp.maximum(z, 0)`, `jnp.clip(z, 0)`). Backward: `max(g * 1[z > 0], 0)`
  (Captum's `GuidedBackprop` rule; the gradient at `z = 0` is 0, as in PyTorch).
* **ReLU6** -- `jax.nn.relu6`, and `min(r, 6)` with `r` the output of a ReLU above
  (e.g. `jnp.clip(z, 0, 6)`). Backward: `max(g * 1[0 < z < 6], 0)`.
* **Max-pool** -- `lax.reduce_window_max` (`flax.linen.max_pool`), two rules
  (docs/gnl.md#definition): `"positive"` routes `max(g, 0)` to each window's argmax
  (the described method; default); `"sign_mask"` routes `g` to the argmax and then
  multiplies by the nearest-neighbour upsampling of `1[g > 0]` to the input size
  (the GNL authors' code; equal to `"positive"` for non-overlapping windows, only
  approximately "positive gradients" for overlapping ones such as ResNet's 3x3/s2
  stem, docs/gnl.md#deviations-of-the-authors-code); `"none"` leaves max-pool
  unchanged (Springenberg's and Captum's Guided Backprop guide ReLUs only).

Scope (decided; docs/gnl.md): every ReLU and ReLU6 reached through plain
code, `jit`/`pjit` calls, `checkpoint` and the bodies of `scan`, `while` and `cond`
is guided (the loops and branches are rebuilt around guided bodies by
`jaxattr._interpret`; a `while` loop has no reverse-mode gradient, so there it
changes nothing but the count); ReLUs inside other custom-derivative functions
(`custom_jvp`/`custom_vjp` other than `jax.nn.relu`, `relu6`) keep their own rule,
as do `where(z > 0, z, 0)`-style ReLUs, global `reduce_max` and integer
`max`/`min` (index clamps).
`count_guided(f, *args)` reports how many operations of each kind were changed, so
the scope can be checked on a given model (the GNL authors' hooks missed the
functional ReLUs of GoogLeNet, docs/gnl.md). Forward values are bit-equal to `f` because
the same primitives are bound with the same operands; only gradients change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, _deprecated, _interpret
from jaxattr.base import Attribution
from jaxattr.fast_convolutions import fast_convolutions
from jaxattr.methods.integrated_gradients import integrated_gradients
from jaxattr.typing import ArrayLike, BaselineLike, PRNGKey, ScalarFn

MAX_POOL_RULES = ("positive", "sign_mask", "none")
_CONST_PASSTHROUGH = (
    "convert_element_type",
    "broadcast_in_dim",
    "reshape",
    "squeeze",
    "expand_dims",
    "copy",
)


# --------------------------------------------------------------------------------
# backward rules


def _with_backward(fwd: Callable, backward: Callable) -> Callable:
    """`fwd` (one array in, one out) with the backward rule `g -> backward(z, g)`."""

    @jax.custom_vjp
    def guided_op(z):
        return fwd(z)

    guided_op.defvjp(lambda z: (fwd(z), z), lambda z, g: (backward(z, g),))
    return guided_op


def _relu_backward(z, g):
    """ReLU: `max(g * 1[z > 0], 0)`."""
    zero = jnp.zeros((), g.dtype)
    return jnp.where(z > 0, jnp.maximum(g, zero), zero)


def _relu6_backward(z, g):
    """ReLU6: `max(g * 1[0 < z < 6], 0)`."""
    zero = jnp.zeros((), g.dtype)
    return jnp.where((z > 0) & (z < 6), jnp.maximum(g, zero), zero)


def _upper_clamp_backward(upper) -> Callable:
    """`min(r, upper)`: `g * 1[r < upper]` (strict, as PyTorch)."""
    return lambda r, g: jnp.where(r < upper, g, jnp.zeros((), g.dtype))


def _upsample_nearest(mask: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Nearest-neighbour resize of `mask` to `shape`, PyTorch's `interpolate` index
    rule `src = floor(dst * size_in / size_out)` on every axis (static indices)."""
    for axis, (n_in, n_out) in enumerate(zip(mask.shape, shape, strict=True)):
        if n_in != n_out:
            idx = np.minimum((np.arange(n_out) * n_in) // n_out, n_in - 1)
            mask = jnp.take(mask, idx, axis=axis)
    return mask


def _max_pool_backward(fwd: Callable, rule: str) -> Callable:
    """`reduce_window_max` (`fwd`): the `"positive"` or `"sign_mask"` rule."""

    def backward(z, g):
        _, route = jax.vjp(fwd, z)
        zero = jnp.zeros((), g.dtype)
        if rule == "positive":
            return route(jnp.maximum(g, zero))[0]
        (routed,) = route(g)
        return routed * _upsample_nearest((g > 0).astype(g.dtype), z.shape)

    return backward


# --------------------------------------------------------------------------------
# which equations are guided (the jaxpr walk itself: jaxattr._interpret)


def _uniform_value(value):
    """The scalar every entry of a concrete array equals, else None."""
    if isinstance(value, jax.core.Tracer) or np.size(value) > 4096:
        return None
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - tokens, keys, ...
        return None
    if a.size == 0 or a.size > 4096 or a.dtype.kind not in "fiub":
        return None
    first = a.reshape(-1)[0]
    return float(first) if bool((a == first).all()) else None


def _custom_jvp_name(eqn) -> str | None:
    """`"relu"`/`"relu6"` for jax.nn's own custom_jvp functions, else None."""
    call = eqn.params.get("call_jaxpr")
    info = getattr(getattr(call, "jaxpr", call), "debug_info", None)
    src = getattr(info, "func_src_info", None) or ""
    name, _, where = src.partition(" at ")
    if name in ("relu", "relu6") and "jax" in where and "nn" in where:
        return name
    return None


class _Options:
    def __init__(self, relu: bool, relu6: bool, max_pool: str):
        self.relu, self.relu6, self.max_pool = relu, relu6, max_pool
        self.counts = {"relu": 0, "relu6": 0, "max_pool": 0}


def _classify(jaxpr, const_of: dict, relu_in: set):
    """Pre-pass: which equations are guided ReLUs, ReLU6 clamps or max-pools.

    `const_of[var]` is the uniform value of a known constant; `relu_in` the input
    variables that are ReLU outputs. Returns `({eqn index: (kind, position of the
    varying operand)}, set of variables holding ReLU outputs, constants)`.
    """
    const_of = dict(const_of)
    relu_out = set(relu_in)
    kinds: dict[int, tuple[str, int]] = {}
    max_eqn_of: dict = {}
    consumers: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if isinstance(v, jcore.Var):
                consumers.setdefault(v, []).append(i)

    def const(v):
        if isinstance(v, jcore.Literal):
            return _uniform_value(v.val)
        return const_of.get(v)

    for i, eqn in enumerate(jaxpr.eqns):
        name = eqn.primitive.name
        ins = eqn.invars
        if name in ("max", "min", "reduce_window_max") and not _floating(eqn):
            continue  # e.g. integer index clamps: never guided
        if (
            name in _CONST_PASSTHROUGH
            and ins
            and all(const(v) is not None for v in ins)
        ):
            const_of[eqn.outvars[0]] = const(ins[0])
        elif name == "max" and len(ins) == 2:
            c0, c1 = const(ins[0]), const(ins[1])
            if (c0 == 0.0 and _var(ins[1], c1)) or (c1 == 0.0 and _var(ins[0], c0)):
                kinds[i] = ("relu", 0 if c1 == 0.0 else 1)
                relu_out.add(eqn.outvars[0])
                max_eqn_of[eqn.outvars[0]] = i
        elif name == "min" and len(ins) == 2:
            c0, c1 = const(ins[0]), const(ins[1])
            pos = 0 if (c1 == 6.0 and _var(ins[0], c0)) else None
            pos = 1 if (c0 == 6.0 and _var(ins[1], c1)) else pos
            if pos is not None and ins[pos] in relu_out:
                kinds[i] = ("relu6_upper", pos)
                j = max_eqn_of.get(ins[pos])
                if j is not None and all(
                    kinds.get(k, ("",))[0] == "relu6_upper"
                    for k in consumers.get(ins[pos], [])
                ):
                    kinds[j] = ("relu6_lower", kinds[j][1])
        elif name == "custom_jvp_call":
            which = _custom_jvp_name(eqn)
            if which is not None:
                kinds[i] = (which + "_fn", 0)
                if which == "relu":
                    relu_out.add(eqn.outvars[0])
        elif name == "reduce_window_max":
            kinds[i] = ("max_pool", 0)
    return kinds, relu_out, const_of


def _floating(eqn) -> bool:
    dtypes = [getattr(v.aval, "dtype", None) for v in eqn.outvars]
    return all(d is not None and jnp.issubdtype(d, jnp.floating) for d in dtypes)


def _var(v, const) -> bool:
    """Whether `v` is a varying operand (a variable not known to be constant)."""
    return isinstance(v, jcore.Var) and const is None


def _bind(eqn) -> Callable:
    prim, params = eqn.primitive, eqn.params

    def fwd(*xs):
        with eqn.ctx.manager:
            out = prim.bind(*xs, **prim.get_bind_params(params))
        return out[0] if prim.multiple_results else out

    return fwd


def _guided_eqn(eqn, kind: str, pos: int, invals: list, opts: _Options):
    """One guided equation's outputs, or None to bind it unchanged."""
    bound = _bind(eqn)

    def fwd(z):
        args = list(invals)
        args[pos] = z
        return bound(*args)

    z = invals[pos]
    if kind == "max_pool":
        if opts.max_pool == "none":
            return None
        opts.counts["max_pool"] += 1
        return [_with_backward(fwd, _max_pool_backward(fwd, opts.max_pool))(z)]
    if kind in ("relu", "relu_fn"):
        if not opts.relu:
            return None
        opts.counts["relu"] += 1
        return [_with_backward(fwd, _relu_backward)(z)]
    if not opts.relu6:
        return None
    if kind == "relu6_fn":
        opts.counts["relu6"] += 1
        return [_with_backward(fwd, _relu6_backward)(z)]
    if kind == "relu6_upper":
        opts.counts["relu6"] += 1
        upper = _upper_clamp_backward(jnp.asarray(6.0, z.dtype))
        return [_with_backward(fwd, upper)(z)]
    return [_with_backward(fwd, _relu_backward)(z)]  # relu6_lower: max(z, 0) of a ReLU6


def _atom_info(v, const_of: dict, relu_out: set) -> tuple:
    """`(uniform constant value or None, whether a ReLU output)` of an operand."""
    if isinstance(v, jcore.Literal):
        return _uniform_value(v.val), False
    return const_of.get(v), v in relu_out


class _Guided(_interpret.Override):
    """The guided equations of one jaxpr (`_classify`), given what is known of its
    inputs: `in_const[i]` the uniform value of input `i` or None, `in_relu[i]`
    whether it is a ReLU output."""

    def __init__(self, jaxpr, consts, in_const, in_relu, opts: _Options):
        const_of = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            if (u := _uniform_value(c)) is not None:
                const_of[v] = u
        for v, c in zip(jaxpr.invars, in_const, strict=True):
            if c is not None:
                const_of[v] = c
        relu_in = {v for v, r in zip(jaxpr.invars, in_relu, strict=True) if r}
        kinds, self.relu_out, self.const_of = _classify(jaxpr, const_of, relu_in)
        self.kinds = {id(jaxpr.eqns[i]): kind for i, kind in kinds.items()}
        self.opts = opts

    def apply(self, eqn, invals):
        kind = self.kinds.get(id(eqn))
        return None if kind is None else _guided_eqn(eqn, *kind, invals, self.opts)

    def descends(self, eqn) -> bool:
        # other custom-derivative functions keep their own rules (module docstring)
        return eqn.primitive.name not in ("custom_jvp_call", "custom_vjp_call")

    def inside(self, eqn, body: _interpret.Body) -> _Guided:
        # what holds of a body input on every evaluation: a loop carry may change
        info = [
            _atom_info(eqn.invars[i], self.const_of, self.relu_out)
            if fed is None
            else (None, False)
            for i, fed in zip(body.inputs, body.fed_back, strict=True)
        ]
        return _Guided(
            body.jaxpr,
            body.consts,
            [c for c, _ in info],
            [r for _, r in info],
            self.opts,
        )


def _check_options(max_pool, caller: str) -> None:
    _checks.check_choice(max_pool, MAX_POOL_RULES, caller, "max_pool")


def _run(f, opts: _Options, args):
    def top(closed):
        n = len(closed.jaxpr.invars)
        return _Guided(closed.jaxpr, closed.consts, [None] * n, [False] * n, opts)

    return _interpret.run(f, args, top)


def guided(
    f: Callable,
    *,
    max_pool: str = "positive",
    relu: bool = True,
    relu6: bool = True,
) -> Callable:
    """Returns `f` with guided backward rules for ReLU, ReLU6 and max-pool.

    The result takes the same (positional, pytree) arguments as `f` and returns
    bit-identical values; `jax.grad` of it is the guided gradient (see the module
    docstring for exactly which operations change). `f` is re-traced each time the
    result is traced, so it composes with `jit`, `vmap` and closures over traced
    values.

    Args:
      f: any JAX function, e.g. `jaxattr.scalar_output(model.fn, target)`.
      max_pool: `"positive"` (default: route `max(g, 0)`), `"sign_mask"` (the GNL
        authors' rule) or `"none"` (docs/gnl.md#definition) (static).
      relu: guide ReLUs (static).
      relu6: guide ReLU6 clamps (static). Captum's `GuidedBackprop` hooks
        `torch.nn.ReLU` modules only, so it leaves ReLU6 unguided.

    Returns:
      The guided function.

    Raises:
      ValueError: for an unknown `max_pool` rule.
    """
    _check_options(max_pool, "guided")

    def guided_f(*args):
        return _run(f, _Options(bool(relu), bool(relu6), max_pool), args)

    return guided_f


def count_guided(
    f: Callable,
    *args: Any,
    max_pool: str = "positive",
    relu: bool = True,
    relu6: bool = True,
) -> dict[str, int]:
    """How many ReLU, ReLU6 and max-pool operations `guided(f)` changes at `args`.

    Traces only (no evaluation). Returns `{"relu": n, "relu6": n, "max_pool": n}`.
    """
    _check_options(max_pool, "count_guided")
    opts = _Options(bool(relu), bool(relu6), max_pool)
    jax.eval_shape(lambda *a: _run(f, opts, a), *args)
    return dict(opts.counts)


def guided_backprop(
    f: ScalarFn,
    x: ArrayLike,
    *,
    max_pool: str = "none",
    relu6: bool = True,
    key: PRNGKey | None = None,
) -> Attribution:
    """Guided Backprop (Springenberg et al., 2015): the gradient of `guided(f)` at `x`.

    Captum's `GuidedBackprop` (docs/comparison_methods.md): ReLU backward replaced by
    `max(g * 1[z > 0], 0)`; max-pool unchanged by default (`max_pool="none"`, as
    Springenberg and Captum). ReLU6 is guided by default (treated as a ReLU, as
    GNL does, docs/gnl.md); `relu6=False` matches Captum, which hooks `nn.ReLU` only.

    Args:
      f: maps one example to a scalar.
      x: one example, e.g. `[H, W, C]`.
      max_pool: max-pool rule of `guided` (static).
      relu6: guide ReLU6 (static).
      key: unused; accepted for the common calling convention.

    Returns:
      `Attribution(attributions=[*x.shape], delta=NaN, aux={"f_x": f(x)})`
      (`aux["value"]`, the old name of `f_x`, is kept for now).
    """
    caller = "guided_backprop"
    x = _checks.check_input(x, caller)
    _check_options(max_pool, caller)
    _checks.check_scalar_fn(f, x, caller)
    guided_f = guided(f, max_pool=max_pool, relu6=relu6)
    value, grad = fast_convolutions(jax.value_and_grad(guided_f))(x)
    delta = jnp.full((), jnp.nan, x.dtype)
    aux = {"f_x": value, "value": value}  # value: deprecated, the old name of f_x
    return Attribution(grad.astype(x.dtype), delta, aux)


@_deprecated.renamed(method="rule")
def gnl_integrated_gradients(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int | None = None,
    max_pool: str = "positive",
    relu6: bool = True,
    key: PRNGKey | None = None,
) -> Attribution:
    """Integrated Gradients with guided non-linearities, GNL (Kwon et al., ICPR 2020).

    `integrated_gradients(guided(f, max_pool=...), x, baseline, ...)`: IG whose
    gradients pass only positive values through ReLU, ReLU6 and max-pool
    (docs/gnl.md#definition). Completeness does not hold, so `delta` is reported but
    is not expected to be small.

    Defaults versus the authors' settings (Captum's IG defaults on normalised
    tensors, their hook code for max-pool):

    * `n_steps=50`, `rule="gausslegendre"`: the authors'.
    * `baseline=None` (black, pixel 0): a general choice, the library-wide
      default of every path method; **not** the authors', whose "zero baseline"
      was zero in normalised space, i.e. the mean colour. Pass
      `baseline=baselines.normalized_zero(mean)` with the model's mean
      (`baselines.normalisation_stats(model.normalise)[0]`; `"normalized_zero"`
      is ImageNet's mean, 127/255 for EfficientNet-Lite0).
    * `max_pool="positive"`: the rule the paper describes (route `max(g, 0)` to
      the argmax), a documented choice; **not** the authors' code, which is
      `max_pool="sign_mask"`. The two agree on non-overlapping pools and differ
      on overlapping ones (e.g. ResNet's 3x3/s2 stem), so pass `"sign_mask"` to
      reproduce their numbers.
    * `relu6=True`: the authors' nets (torchvision VGG/ResNet/GoogLeNet) have no
      ReLU6; guiding it like ReLU is our extension.

    Args:
      f, x, baseline, n_steps, rule, batch_size, key: as `integrated_gradients`
        (`n_steps`, `rule`, `batch_size` static; `method=`: the deprecated name of
        `rule=`).
      max_pool: `"positive"`, `"sign_mask"` or `"none"` (static).
      relu6: guide ReLU6 clamps as ReLUs (static).

    Returns:
      `integrated_gradients`' `Attribution`, with `aux["f_x"]`, `aux["values"]`
      the (unchanged) values of `f`.
    """
    _check_options(max_pool, "gnl_integrated_gradients")
    g = guided(f, max_pool=max_pool, relu6=relu6)
    return integrated_gradients(
        g,
        x,
        baseline,
        n_steps=n_steps,
        rule=rule,
        batch_size=batch_size,
        key=key,
    )
