"""Convolutions rewritten into forms that XLA:CPU runs fast (same values).

Three slow paths of XLA:CPU (jaxlib 0.10.2) are avoided, measured in
benchmarks/README.md:

* **Kernel layout inside loops.** The gradient of a convolution with respect to
  its input is a convolution whose kernel JAX's transpose rule labels with input
  and output features swapped (`HWOI` for an `HWIO` model). XLA:CPU runs a
  convolution with its fast Eigen kernels only in the layout `NHWC`/`HWIO`; the
  pass that transposes other kernels (`ConvCanonicalization`) visits the entry
  computation only, so inside a `while` loop -- the `lax.scan` over chunks of path
  nodes in `jaxattr.engine` -- these convolutions fall back to a generic loop nest,
  about 3x slower. Here each such kernel is transposed to `HWIO` explicitly,
  behind an `optimization_barrier` so that XLA does not fold the transpose back
  into the dimension labels.
* **Depthwise convolutions** (`feature_group_count` equal to the number of input
  channels, one filter per channel: EfficientNet, MobileNet) run about 7x slower
  than the same sum written as `kh * kw` shifted, strided slices of the (padded,
  dilated) input times the per-channel filter taps, which XLA fuses into one
  elementwise loop. They are rewritten that way, forward and backward.
* **Convolutions use one core, matrix products both.** 1x1 convolutions become a
  `dot_general` over channels. Dense 3x3 stride-1 convolutions (and their input
  gradients, which are the same kind) become Winograd F(2x2, 3x3): 16 matrix
  products over channels on 2x2 output tiles, 2.25x fewer multiplications, with
  input and output transforms of adds and halvings that XLA fuses (Lavin and Gray,
  "Fast Algorithms for Convolutional Neural Networks", 2016). Relative error
  about 1e-6 in float32. Measured: ResNet-50 IG 10 % faster, VGG-16 20 %.

`fast_convolutions(fn)` re-evaluates `fn`'s jaxpr with these rewrites, inlining
`jit` calls and descending into every `while`, `scan`, `cond`, `checkpoint`,
`custom_jvp` and `custom_vjp` body that holds a convolution: those are rebuilt
(`lax.while_loop`, `lax.scan`, `lax.switch`, `jax.checkpoint`, `jax.custom_jvp`,
`jax.custom_vjp`) around the rewritten bodies, keeping the custom derivative rules
(a checkpoint's recomputation in a backward pass is inlined behind the optimization
barrier that its lowering adds), so wrapping a method whose model runs in its own loops (Guided IG, AGI, DGA) covers
those loops. It is idempotent: applied twice (an `engine.chunked_sum` inside a
wrapped method) it gives the program of one application. Results
equal `fn`'s up to float rounding (the products are summed in another order; in a
piecewise-linear network a pre-activation within rounding of a kink may then take
the other side of it, as between batch sizes or devices). It applies on the CPU
backend only (GPU and TPU compilers pick convolution algorithms and layouts
themselves), and not at all when the environment variable
`JAXATTR_FAST_CONVOLUTIONS=0` is set when a function is traced.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
from jax import lax

ENV_SWITCH = "JAXATTR_FAST_CONVOLUTIONS"
_INLINED = ("jit", "pjit", "closed_call", "core_call")


def _channels_last(spec) -> bool:
    n = len(spec) - 2
    return tuple(spec) == (0, n + 1, *range(1, n + 1))


def _kernel_to_hwio(rhs, rhs_spec):
    """The kernel with its axes in the order `[*spatial, in, out]`."""
    return lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))


def _is_depthwise(lhs, rhs, params) -> bool:
    dn = params["dimension_numbers"]
    channels = lhs.shape[dn.lhs_spec[1]]
    return (
        params["batch_group_count"] == 1
        and params["feature_group_count"] == channels > 1
        and rhs.shape[dn.rhs_spec[1]] == 1
        and rhs.shape[dn.rhs_spec[0]] == channels
    )


def _window_slices(x, params, window, out_spatial):
    """`(tap, slice)` for each kernel tap: the strided slice of the padded, dilated
    channels-last `x` that the tap multiplies, `[N, *out_spatial, C]`."""
    pad = [(0, 0, 0)]
    for (lo, hi), dil in zip(params["padding"], params["lhs_dilation"], strict=True):
        pad.append((lo, hi, dil - 1))
    x = lax.pad(x, jnp.zeros((), x.dtype), [*pad, (0, 0, 0)])
    strides, rhs_dil = params["window_strides"], params["rhs_dilation"]
    for tap in itertools.product(*(range(k) for k in window)):
        start = [0] + [t * d for t, d in zip(tap, rhs_dil, strict=True)] + [0]
        limit = (
            [x.shape[0]]
            + [
                s + (o - 1) * st + 1
                for s, o, st in zip(start[1:], out_spatial, strides)
            ]
            + [x.shape[-1]]
        )
        yield tap, lax.slice(x, start, limit, (1, *strides, 1))


def _depthwise_as_taps(lhs, rhs, params, out_aval):
    """A depthwise convolution of channels-last `lhs` as a sum of shifted taps."""
    taps = _kernel_to_hwio(rhs, params["dimension_numbers"].rhs_spec)[..., 0, :]
    window = taps.shape[:-1]  # taps: [*window, C]
    out_spatial = out_aval.shape[1 : len(window) + 1]
    acc = None
    for tap, window_slice in _window_slices(lhs, params, window, out_spatial):
        term = window_slice * taps[tap]
        acc = term if acc is None else acc + term
    return acc.astype(out_aval.dtype)


def _pointwise_as_matmul(lhs, rhs, params, out_aval):
    """A 1x1 convolution as a matrix product over channels, done on whichever of
    the input and output grids has fewer positions (padding, dilation and
    striding commute with it: they only move or insert zero positions)."""
    kernel = _kernel_to_hwio(rhs, params["dimension_numbers"].rhs_spec)
    kernel = kernel.reshape(kernel.shape[-2:])  # [C_in, C_out]
    window = (1,) * (lhs.ndim - 2)
    out_spatial = out_aval.shape[1:-1]

    def matmul(x):
        return lax.dot_general(
            x,
            kernel,
            (((x.ndim - 1,), (0,)), ((), ())),
            precision=params["precision"],
            preferred_element_type=params["preferred_element_type"],
        )

    if np.prod(out_spatial) <= np.prod(lhs.shape[1:-1]):
        ((_, moved),) = _window_slices(lhs, params, window, out_spatial)
        return matmul(moved).astype(out_aval.dtype)
    ((_, moved),) = _window_slices(matmul(lhs), params, window, out_spatial)
    return moved.astype(out_aval.dtype)


# Winograd F(2x2, 3x3) (Lavin & Gray, 2016): a 3x3 stride-1 convolution as 16
# matrix products over channels on 2x2 output tiles. Input transform B^T d B,
# kernel transform G g G^T, output transform A^T m A.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _combine(coefficients, terms):
    """`sum_i coefficients[i] * terms[i]`, skipping zeros; +-1 costs no product."""
    acc = None
    for c, t in zip(coefficients, terms, strict=True):
        if c == 0:
            continue
        term = t if c == 1 else -t if c == -1 else c * t
        acc = term if acc is None else acc + term
    return acc


def _is_winograd_3x3(lhs, rhs, params) -> bool:
    dn = params["dimension_numbers"]
    return (
        lhs.ndim == 4
        # the transforms round in the input's precision: not for 16-bit floats
        and lhs.dtype in (jnp.float32, jnp.float64)
        and rhs.dtype == lhs.dtype
        and tuple(rhs.shape[d] for d in dn.rhs_spec[2:]) == (3, 3)
        and tuple(params["window_strides"]) == (1, 1)
        and tuple(params["lhs_dilation"]) == (1, 1)
        and tuple(params["rhs_dilation"]) == (1, 1)
        and params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
        and all(lo >= 0 and hi >= 0 for lo, hi in params["padding"])
        # at least as many 2x2 output tiles as input channels: on fewer, the 16
        # products are too thin and the transformed kernel (16/9 of the kernel)
        # dominates (ResNet-50's 7x7x512 stage at 8 images: 2-3x slower)
        and lhs.shape[0] * lhs.shape[1] * lhs.shape[2] >= 4 * lhs.shape[3]
    )


def _winograd_3x3(lhs, rhs, params, out_aval):
    """A 3x3 stride-1 convolution of channels-last `lhs` by Winograd F(2x2, 3x3)."""
    kernel = _kernel_to_hwio(rhs, params["dimension_numbers"].rhs_spec)
    (plo, _), (qlo, _) = params["padding"]  # the high pads follow from the tiles
    n, h, w, _ = lhs.shape
    ho, wo = out_aval.shape[1:3]
    th, tw = -(-ho // 2), -(-wo // 2)
    zero = jnp.zeros((), lhs.dtype)
    x = lax.pad(
        lhs,
        zero,
        [
            (0, 0, 0),
            (plo, 2 * th + 2 - h - plo, 0),
            (qlo, 2 * tw + 2 - w - qlo, 0),
            (0, 0, 0),
        ],
    )
    d = [
        [x[:, a : a + 2 * th : 2, b : b + 2 * tw : 2] for b in range(4)]
        for a in range(4)
    ]
    rows = [
        [_combine(_BT[u], [d[a][b] for a in range(4)]) for b in range(4)]
        for u in range(4)
    ]
    v = [[_combine(_BT[t], rows[u]) for t in range(4)] for u in range(4)]
    g = _G.astype(kernel.dtype)
    u_kernel = jnp.einsum("ua,abio,tb->utio", g, kernel, g)
    m = [
        [
            lax.dot_general(
                v[i][j],
                u_kernel[i, j],
                (((3,), (0,)), ((), ())),
                precision=params["precision"],
                preferred_element_type=params["preferred_element_type"],
            )
            for j in range(4)
        ]
        for i in range(4)
    ]
    rows = [
        [_combine(_AT[p], [m[i][j] for i in range(4)]) for j in range(4)]
        for p in range(2)
    ]
    y = jnp.stack(
        [
            jnp.stack([_combine(_AT[q], rows[p]) for q in range(2)], axis=3)
            for p in range(2)
        ],
        axis=2,
    )  # [N, th, 2, tw, 2, C_out]
    y = y.reshape(n, 2 * th, 2 * tw, y.shape[-1])[:, :ho, :wo]
    return y.astype(out_aval.dtype)


def _rewrite_conv(eqn, lhs, rhs):
    """The rewritten convolution's output, or None to bind it unchanged."""
    params = eqn.params
    dn = params["dimension_numbers"]
    if not (_channels_last(dn.lhs_spec) and _channels_last(dn.out_spec)):
        return None
    out_aval = eqn.outvars[0].aval
    if _is_depthwise(lhs, rhs, params):
        return _depthwise_as_taps(lhs, rhs, params, out_aval)
    grouped = params["feature_group_count"] > 1 or params["batch_group_count"] > 1
    if grouped:
        return None
    if all(rhs.shape[d] == 1 for d in dn.rhs_spec[2:]):
        return _pointwise_as_matmul(lhs, rhs, params, out_aval)
    if _is_winograd_3x3(lhs, rhs, params):
        return _winograd_3x3(lhs, rhs, params, out_aval)
    n = len(dn.lhs_spec) - 2
    hwio = (n + 1, n, *range(n))
    if tuple(dn.rhs_spec) == hwio:
        return None
    rhs = lax.optimization_barrier(_kernel_to_hwio(rhs, dn.rhs_spec))
    canonical = lax.ConvDimensionNumbers(dn.lhs_spec, hwio, dn.out_spec)
    return eqn.primitive.bind(lhs, rhs, **dict(params, dimension_numbers=canonical))


def _sub_jaxprs(params):
    """The jaxprs among an equation's parameters (loop bodies, branches, ...)."""
    for value in params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, jcore.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jcore.Jaxpr):
                yield v


def _has_conv(jaxpr) -> bool:
    """Whether `jaxpr` or a jaxpr nested in it holds a convolution."""
    return any(
        eqn.primitive is lax.conv_general_dilated_p
        or any(_has_conv(sub) for sub in _sub_jaxprs(eqn.params))
        for eqn in jaxpr.eqns
    )


def _eval_closed(closed, args) -> list:
    return _eval(closed.jaxpr, closed.consts, list(args))


def _while(params, invals):
    nc, nb = params["cond_nconsts"], params["body_nconsts"]
    cond_consts, body_consts, init = (
        invals[:nc],
        invals[nc : nc + nb],
        invals[nc + nb :],
    )
    # A vmapped loop whose predicate is batched has a per-lane predicate: as the
    # lowering of `while` does, it runs while any lane does, and a lane whose
    # predicate is false keeps its carry.
    batched = bool(params["cond_jaxpr"].out_avals[0].shape)

    def pred_of(carry):
        return _eval_closed(params["cond_jaxpr"], [*cond_consts, *carry])[0]

    def cond_fun(carry):
        pred = pred_of(carry)
        return jnp.any(pred) if batched else pred

    def body_fun(carry):
        new = _eval_closed(params["body_jaxpr"], [*body_consts, *carry])
        if not batched:
            return new
        pred = pred_of(carry)

        def keep(old, nxt):
            mask = lax.broadcast_in_dim(pred, jnp.shape(old), tuple(range(pred.ndim)))
            return lax.select(mask, nxt, old)

        return [keep(o, n) for o, n in zip(carry, new, strict=True)]

    return list(lax.while_loop(cond_fun, body_fun, list(init)))


def _scan(params, invals):
    nc, ncarry = params["num_consts"], params["num_carry"]
    consts, init, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]

    def body(carry, x):
        outs = _eval_closed(params["jaxpr"], [*consts, *carry, *x])
        return outs[:ncarry], outs[ncarry:]

    carry, ys = lax.scan(
        body,
        list(init),
        list(xs),
        length=params["length"],
        reverse=params["reverse"],
        unroll=params["unroll"],
    )
    return [*carry, *ys]


def _cond(params, invals):
    index, ops = invals[0], invals[1:]
    branches = [
        (lambda *a, branch=branch: _eval_closed(branch, a))
        for branch in params["branches"]
    ]
    return list(lax.switch(index, branches, *ops))


def _checkpoint(params, invals):
    jaxpr, prevent_cse = params["jaxpr"], params["prevent_cse"]

    def fun(*args):
        return _eval(jaxpr, (), list(args))

    if not params["differentiated"]:
        # still to be differentiated: keep it a checkpoint
        return jax.checkpoint(fun, prevent_cse=prevent_cse, policy=params["policy"])(
            *invals
        )
    # The backward pass's recomputation: what its lowering does, an optimization
    # barrier on the inputs (so XLA cannot share it with the forward pass), then
    # the body inlined.
    flags = (
        (prevent_cse,) * len(invals) if isinstance(prevent_cse, bool) else prevent_cse
    )
    barred = [i for i, f in enumerate(flags) if f]
    args = list(invals)
    if barred:
        kept = lax.optimization_barrier([jnp.asarray(args[i]) for i in barred])
        for i, a in zip(barred, kept, strict=True):
            args[i] = a
    return fun(*args)


def _custom_jvp(prim, params, invals):
    def original(*args):  # the call as it was: its own derivative rule
        return prim.bind(*args, **prim.get_bind_params(params))

    @jax.custom_jvp
    def fun(*args):
        return _eval_closed(params["call_jaxpr"], args)

    @fun.defjvp
    def fun_jvp(primals, tangents):
        return jax.jvp(original, primals, tangents)

    return fun(*invals)


def _custom_vjp(prim, params, invals):
    # The call's leading `num_consts` inputs are closed-over values that it cannot
    # be differentiated by: closed over here too.
    consts, primals = invals[: params["num_consts"]], invals[params["num_consts"] :]

    def original(*args):
        return prim.bind(*consts, *args, **prim.get_bind_params(params))

    @jax.custom_vjp
    def fun(*args):
        return _eval_closed(params["call_jaxpr"], [*consts, *args])

    def fwd(*args):
        return jax.vjp(original, *args)  # (outputs, pullback as the residuals)

    def bwd(pullback, cotangents):
        return pullback(cotangents)

    fun.defvjp(fwd, bwd)
    return fun(*primals)


#: Equations whose bodies are re-evaluated with the rewrite (when they hold a
#: convolution): loops, branches, checkpoints and custom derivatives are rebuilt
#: around the rewritten bodies, keeping their derivative rules.
_DESCEND = {
    "while": lambda prim, params, invals: _while(params, invals),
    "scan": lambda prim, params, invals: _scan(params, invals),
    "cond": lambda prim, params, invals: _cond(params, invals),
    "checkpoint": lambda prim, params, invals: _checkpoint(params, invals),
    "remat": lambda prim, params, invals: _checkpoint(params, invals),
    "remat2": lambda prim, params, invals: _checkpoint(params, invals),
    "custom_jvp_call": _custom_jvp,
    "custom_vjp_call": _custom_vjp,
}


def _eval(jaxpr, consts, args) -> list:
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        prim, params = eqn.primitive, eqn.params
        out = None
        if prim is lax.conv_general_dilated_p:
            with eqn.ctx.manager:
                out = _rewrite_conv(eqn, *invals)
        if out is not None:
            outs = [out]
        elif prim.name in _INLINED and "jaxpr" in params:
            sub = params["jaxpr"]
            outs = _eval(getattr(sub, "jaxpr", sub), getattr(sub, "consts", ()), invals)
        elif prim.name in _DESCEND and any(map(_has_conv, _sub_jaxprs(params))):
            with eqn.ctx.manager:
                outs = _DESCEND[prim.name](prim, params, invals)
        else:
            with eqn.ctx.manager:
                outs = prim.bind(*invals, **prim.get_bind_params(params))
            if not prim.multiple_results:
                outs = [outs]
        for v, val in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = val
    return [read(v) for v in jaxpr.outvars]


def fast_convolutions(fn: Callable) -> Callable:
    """`fn` with its convolutions in forms XLA:CPU runs fast (same values).

    Takes and returns the same pytrees as `fn`; `fn` is traced when the result is
    called, so it composes with `jit`, `vmap` and closures over traced values. On
    a backend other than CPU, or with `JAXATTR_FAST_CONVOLUTIONS=0`, it returns
    `fn` itself.
    """
    if jax.default_backend() != "cpu" or os.environ.get(ENV_SWITCH, "1") == "0":
        return fn

    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return wrapped
