"""Convolutions rewritten into forms that XLA:CPU runs fast (same values).

Slow and memory-hungry paths of XLA:CPU (jaxlib 0.10.2) are avoided, measured in
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
  about 1e-6 in float32. Measured: ResNet-50 IG 10 % faster, VGG-16 20 %. Only
  layers with `WINOGRAD_MIN_CHANNELS` (64) channels or more in and out: thinner
  ones ran slower and cost compile time.
  Where the transformed tiles of one convolution would exceed
  `WINOGRAD_STRIP_BYTES` (64 MiB) it runs in strips of tile rows, one after the
  other, and each kernel's transform is computed where it is used, not hoisted out
  of the chunk loop (memory, below).
* **Max-pool derivatives.** The gradient of a max pool is a select-and-scatter
  over the pool's input, which keeps that input alive until the backward pass and
  which XLA:CPU expands into a scatter with 32-bit index arrays of the input's
  size. The rewrite keeps the index of each window's first maximum (int8) from the
  forward pass and spreads the gradient through masked taps (same values, ties
  to the first maximum as XLA and PyTorch), stored as the result of a reduction so
  that XLA does not recompute it in the backward pass from the float input.
* **ReLU masks.** XLA recomputes a ReLU's mask `x > 0` inside the backward pass,
  keeping the float `x` alive until then; masks of `PACKED_MASK_MIN_SIZE` (2**24)
  elements or more are kept as bits instead.
* **Order.** XLA:CPU drops `optimization_barrier` before it schedules, so the
  strips are ordered by data dependencies (`_after`). With all of the above,
  VGG-16's IG in chunks of 8 needs 0.48 GB of XLA temporaries instead of 2.0 GB
  (benchmarks/README.md).

`fast_convolutions(fn)` re-evaluates `fn`'s jaxpr with these rewrites
(`jaxattr._interpret`), inlining `jit` calls and descending into every `while`,
`scan`, `cond`, `checkpoint`, `custom_jvp` and `custom_vjp` body that holds a
convolution: those are rebuilt (`lax.while_loop`, `lax.scan`, `lax.switch`,
`jax.checkpoint`, `jax.custom_jvp`, `jax.custom_vjp`) around the rewritten bodies,
keeping the custom derivative rules (a checkpoint's recomputation in a backward
pass is inlined behind the optimization barrier that its lowering adds), so
wrapping a method whose model runs in its own loops (Guided IG, AGI, DGA) covers
those loops. It is idempotent: applied twice (an `engine.chunked_sum` inside a
wrapped method) it gives the program of one application. Results equal `fn`'s up
to float rounding (the products are summed in another order; in a
piecewise-linear network a pre-activation within rounding of a kink may then take
the other side of it, as between batch sizes or devices).

It applies on the CPU backend only (GPU and TPU compilers pick convolution
algorithms and layouts themselves). Whether it applies is decided when a function
is traced, by the first that is set of: `fast_convolutions(fn, enabled=...)`; the
context `use_fast_convolutions(enabled)` (which every method's gradients follow,
part of `jax.jit`'s cache key); the environment variable
`JAXATTR_FAST_CONVOLUTIONS` (`0`: off); on by default.
`fast_convolutions_enabled()` says which holds now (`jaxattr.runs` records it).
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

from jaxattr import _interpret

#: The environment variable that switches the rewrite off (`0`) where neither
#: `enabled` nor `use_fast_convolutions` says otherwise.
ENV_SWITCH = "JAXATTR_FAST_CONVOLUTIONS"


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


#: Fewest input and output channels of a convolution done by Winograd. Thinner
#: layers ran slower as Winograd than as XLA's convolution (16 -> 16: 2.2x, VGG's
#: 3 -> 64 stem: 1.8x), and Winograd on every layer gave CIFAR ResNet-20's IG no
#: speed-up for 2.4x the compile time of this rule (benchmarks/README.md, "Winograd on
#: thin layers").
WINOGRAD_MIN_CHANNELS = 64


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
        # and at least WINOGRAD_MIN_CHANNELS channels in and out: thinner products
        # gain nothing, and the 16 products and their transforms cost compile time
        and min(lhs.shape[3], rhs.shape[dn.rhs_spec[0]]) >= WINOGRAD_MIN_CHANNELS
    )


def _at_use(kernel, lhs):
    """`kernel` behind an `optimization_barrier` with the layer's input `lhs`, so that
    what is computed from it (a transposed copy, Winograd's transform) is not hoisted
    out of a loop by XLA, where every layer's copy would stay alive for the whole loop
    (VGG-16, IG in chunks of 8: 0.23 GB). (A data dependency on `lhs` instead, as
    `_after`, also places it late inside the loop's body: 130 MB fewer temporaries
    for VGG-16, but 12 % slower; benchmarks/README.md.)"""
    return lax.optimization_barrier((kernel, lhs))[0]


#: Most bytes that the transformed input and the 16 products of one strip of
#: Winograd tiles may take; larger convolutions are done in strips of tile rows, one
#: after the other (VGG-16's 224x224x64 layers at 8 images: 13 strips instead of
#: 0.8 GB of transformed tiles alive at once).
WINOGRAD_STRIP_BYTES = 64 << 20


def _winograd_strips(n, th, tw, c_in, c_out, itemsize) -> int:
    """How many strips of tile rows keep one strip's transformed input `[16, n, rows,
    tw, c_in]` and products `[16, n, rows, tw, c_out]` under the budget."""
    whole = 16 * n * th * tw * (c_in + c_out) * itemsize
    return int(min(th, max(1, -(-whole // WINOGRAD_STRIP_BYTES))))


def _winograd_tiles(x, u_kernel, params):
    """Winograd F(2x2, 3x3) of a padded channels-last `x` `[N, 2 th + 2, 2 tw + 2,
    C_in]` (every 4x4 window at even offsets is a tile) -> `[N, 2 th, 2 tw, C_out]`."""
    n = x.shape[0]
    th, tw = (x.shape[1] - 2) // 2, (x.shape[2] - 2) // 2
    d = [
        [x[:, a : a + 2 * th : 2, b : b + 2 * tw : 2] for b in range(4)]
        for a in range(4)
    ]
    rows = [
        [_combine(_BT[u], [d[a][b] for a in range(4)]) for b in range(4)]
        for u in range(4)
    ]
    v = [[_combine(_BT[t], rows[u]) for t in range(4)] for u in range(4)]
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
    return y.reshape(n, 2 * th, 2 * tw, y.shape[-1])


def _after(value: jax.Array, index: int) -> jax.Array:
    """`index`, as a traced integer computed from `value`: a slice at it reads only
    once `value` is computed. XLA:CPU drops `optimization_barrier` before it
    schedules (jaxlib 0.10.2), so only a data dependency orders two computations.
    `v > inf` is false for every float, NaN included."""
    probe = lax.slice(value, (0,) * value.ndim, (1,) * value.ndim).reshape(())
    return index + (probe > jnp.inf).astype(jnp.int32)


def _winograd_3x3(lhs, rhs, params, out_aval):
    """A 3x3 stride-1 convolution of channels-last `lhs` by Winograd F(2x2, 3x3), in
    strips of tile rows when the transformed tiles would be large
    (`WINOGRAD_STRIP_BYTES`): each strip's transforms and products are dead before
    the next strip starts (it reads its rows at an index computed from the previous
    strip's output, `_after`), and its output is written into the result in place. The kernel's transform is made where it
    is used (`_at_use`)."""
    rhs = _at_use(rhs, lhs)
    kernel = _kernel_to_hwio(rhs, params["dimension_numbers"].rhs_spec)
    (plo, _), (qlo, _) = params["padding"]  # the high pads follow from the tiles
    n, h, w, c_in = lhs.shape
    ho, wo = out_aval.shape[1:3]
    th, tw = -(-ho // 2), -(-wo // 2)
    zero = jnp.zeros((), lhs.dtype)

    def padded_rows(x, start, stop, after=None):
        """Rows `[start, stop)` of `x` padded to the tiles' `[N, 2 th + 2, 2 tw +
        2, C]` (only those rows are padded: no padded copy of the whole input);
        read only once `after` is computed (`_after`)."""
        lo, hi = start - plo, stop - plo  # rows of x
        first, last = min(max(lo, 0), h), min(max(hi, 0), h)
        if after is None:
            part = lax.slice_in_dim(x, first, last, axis=1)
        else:
            part = lax.dynamic_slice_in_dim(x, _after(after, first), last - first, 1)
        rows = (max(-lo, 0), stop - start - max(-lo, 0) - part.shape[1], 0)
        cols = (qlo, 2 * tw + 2 - w - qlo, 0)
        return lax.pad(part, zero, [(0, 0, 0), rows, cols, (0, 0, 0)])

    g = _G.astype(kernel.dtype)
    u_kernel = jnp.einsum("ua,abio,tb->utio", g, kernel, g)
    c_out = kernel.shape[-1]
    strips = _winograd_strips(n, th, tw, c_in, c_out, lhs.dtype.itemsize)
    if strips == 1:
        y = _winograd_tiles(padded_rows(lhs, 0, 2 * th + 2), u_kernel, params)
    else:
        bounds = np.linspace(0, th, strips + 1).round().astype(int)
        dtype = jnp.result_type(params["preferred_element_type"] or lhs.dtype)
        y = jnp.zeros((n, 2 * th, 2 * tw, c_out), dtype)
        part = None
        for r0, r1 in itertools.pairwise(bounds):
            rows = padded_rows(lhs, 2 * r0, 2 * r1 + 2, after=part)
            part = _winograd_tiles(rows, u_kernel, params).astype(dtype)
            y = lax.dynamic_update_slice_in_dim(y, part, 2 * r0, 1)
    return y[:, :ho, :wo].astype(out_aval.dtype)


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
    rhs = _at_use(rhs, lhs)
    rhs = lax.optimization_barrier(_kernel_to_hwio(rhs, dn.rhs_spec))
    canonical = lax.ConvDimensionNumbers(dn.lhs_spec, hwio, dn.out_spec)
    return eqn.primitive.bind(lhs, rhs, **dict(params, dimension_numbers=canonical))


def _has_conv(jaxpr) -> bool:
    """Whether `jaxpr` or a jaxpr nested in it holds a convolution."""
    return any(
        eqn.primitive is lax.conv_general_dilated_p
        or any(map(_has_conv, _interpret.jaxprs_in(eqn)))
        for eqn in jaxpr.eqns
    )


# Max pooling. The derivative of `reduce_window_max` is `select_and_scatter_add`
# of the output gradient over the pool's input, which keeps that f32 input alive
# until the backward pass and which XLA:CPU expands into a scatter with 32-bit
# index arrays the size of the input (VGG-16 at 8 images: about 1.2 GB of the
# chunk's 2.0 GB of temporaries). Rewritten: the forward pass stores the index of
# each window's first maximum (int8), and the backward pass adds the gradient
# through masked taps (`linear_transpose` of strided slices: pads and adds). Same
# values: the first maximum in row-major order gets the gradient, as XLA's `ge`
# selection and PyTorch do.


def _pool_taps(x, params, fill, out_shape):
    """The strided slice of the padded `x` that each window tap reads, in row-major
    tap order, each of `out_shape`."""
    window, strides = params["window_dimensions"], params["window_strides"]
    x = lax.pad(
        x, jnp.asarray(fill, x.dtype), [(lo, hi, 0) for lo, hi in params["padding"]]
    )
    for tap in itertools.product(*(range(k) for k in window)):
        limit = [t + (o - 1) * st + 1 for t, o, st in zip(tap, out_shape, strides)]
        yield lax.slice(x, tap, limit, strides)


def _first_max_index(x, y, params):
    """For each output of the max pool `y = reduce_window_max(x)`, the row-major
    index of the first window tap equal to it (int8 up to 127 taps; 0 where none
    is, a NaN), materialised: see `_materialised`."""
    n_taps = int(np.prod(params["window_dimensions"]))
    dtype = jnp.int8 if n_taps <= 127 else jnp.int32
    idx = jnp.zeros(y.shape, dtype)
    seen = None
    for k, tap in enumerate(_pool_taps(x, params, -jnp.inf, y.shape)):
        hit = tap == y
        first = hit if seen is None else hit & ~seen
        seen = hit if seen is None else seen | hit
        if k:
            idx = jnp.where(first, jnp.asarray(k, dtype), idx)
    return _materialised(idx)


def _materialised(a: jax.Array) -> jax.Array:
    """`a`, as the result of a reduction (a sum of `a` and zeros): XLA fuses an
    elementwise result into its consumers, so a max pool's index computed for the
    backward pass would be recomputed there from the pool's float input and output,
    both then kept alive from the forward pass (VGG-16, IG in chunks of 8: 0.11 GB);
    a reduction's result is stored. As fast as the comparisons alone (a minimum
    over the stacked taps ran 30x slower on XLA:CPU)."""
    return jnp.sum(jnp.stack([a, jnp.zeros_like(a)]), axis=0, dtype=a.dtype)


def _tiled_pool_backward(source, operand_aval, idx, params):
    """`_pool_backward` for windows that tile the input (stride = window, no
    padding): the gradient broadcast over each window, kept at the first-max tap,
    one elementwise pass and a reshape (no pads to add up)."""
    window = params["window_dimensions"]
    expanded, shape = [], []
    for d, k in enumerate(window):
        expanded += [idx.shape[d], k]
        shape.append(idx.shape[d] * k)
    at = [2 * d for d in range(len(window))]
    g = lax.broadcast_in_dim(source, expanded, at)
    idx = idx.astype(jnp.int32)
    mask, stride = None, 1
    for d in reversed(range(len(window))):  # the tap's offset along each axis
        k = window[d]
        if k > 1:
            offset = lax.broadcast_in_dim((idx // stride) % k, expanded, at)
            # a [k] constant, broadcast inside the fusion (a full-size iota would
            # be hoisted out of the chunk loop and stay alive)
            taps = lax.broadcast_in_dim(
                jnp.asarray(np.arange(k, dtype=np.int32)), expanded, (2 * d + 1,)
            )
            hit = offset == taps
            mask = hit if mask is None else mask & hit
        stride *= k
    dx = g if mask is None else jnp.where(mask, g, jnp.zeros((), g.dtype))
    dx = dx.reshape(shape)
    pads = [(0, full - part, 0) for full, part in zip(operand_aval.shape, shape)]
    return lax.pad(dx, jnp.zeros((), dx.dtype), pads)


def _pool_backward(source, operand_aval, idx, params):
    """`select_and_scatter_add(source, operand)` (max) from the first-max index."""
    if tuple(params["window_dimensions"]) == tuple(params["window_strides"]) and all(
        lo == hi == 0 for lo, hi in params["padding"]
    ):
        return _tiled_pool_backward(source, operand_aval, idx, params)

    def spread(t):
        out = None
        for k, tap in enumerate(_pool_taps(t, params, 0.0, idx.shape)):
            term = jnp.where(idx == k, tap, jnp.zeros((), tap.dtype))
            out = term if out is None else out + term
        return out

    shape = jax.ShapeDtypeStruct(operand_aval.shape, operand_aval.dtype)
    return jax.linear_transpose(spread, shape)(source)[0]


def _plain_pool(params) -> bool:
    return all(d == 1 for d in params.get("base_dilation", ())) and all(
        d == 1 for d in params.get("window_dilation", ())
    )


def _pool_operands(jaxpr, found=None) -> set:
    """The variables that a max pool's derivative (`select_and_scatter_add`) takes
    as its operand, in `jaxpr` and the jaxprs nested in it."""
    found = set() if found is None else found
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "select_and_scatter_add":
            found.add(eqn.invars[1])
        for sub in _interpret.jaxprs_in(eqn):
            _pool_operands(sub, found)
    return found


# ReLU masks. The derivative of `relu(x)` selects the gradient where `x > 0`; the
# comparison is made in the forward pass, but XLA fuses it into the backward
# pass's select, so `x` itself, four bytes per element, stays alive between them
# (VGG-16's first layer at 8 images: 98 MB). Rewritten: a comparison that
# predicates a `select_n`, on at least `PACKED_MASK_MIN_SIZE` elements, is stored
# as bits (a reduction over a short axis, which XLA does not recompute in its
# consumers) and unpacked where it is used. Same values.

_COMPARISONS = ("gt", "ge", "lt", "le")

#: Fewest elements of a comparison that predicates `select_n`s (a ReLU's mask) for
#: it to be kept as bits instead of recomputed from its float operand in the
#: backward pass. 2**24: VGG-16's 224x224x64 layers at 8 images (XLA temporaries
#: 763 -> 667 MB, same time); smaller ones saved memory at a cost in time
#: (ResNet-50 at 2**20: 488 -> 319 MB, 7 % slower; benchmarks/README.md).
PACKED_MASK_MIN_SIZE = 1 << 24


def _predicates(jaxpr, found=None) -> set:
    """The variables that a `select_n` takes as its predicate, in `jaxpr` and the
    jaxprs nested in it."""
    found = set() if found is None else found
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "select_n" and isinstance(eqn.invars[0], jcore.Var):
            found.add(eqn.invars[0])
        for sub in _interpret.jaxprs_in(eqn):
            _predicates(sub, found)
    return found


def _packed(mask):
    """`mask` through one bit per element along its first axis (not the last) of 2
    to 32 elements (a reduction, which XLA does not recompute inside its consumers);
    `mask` itself where there is no such axis."""
    axis = next((a for a, n in enumerate(mask.shape[:-1]) if 2 <= n <= 32), None)
    if axis is None:
        return mask
    n = mask.shape[axis]
    dtype = jnp.uint8 if n <= 8 else jnp.uint16 if n <= 16 else jnp.uint32
    # a [n] constant broadcast inside the fusions (a full-size iota would be
    # hoisted out of the chunk loop and stay alive)
    shifts = lax.broadcast_in_dim(jnp.asarray(np.arange(n), dtype), mask.shape, (axis,))
    packed = jnp.sum(mask.astype(dtype) << shifts, axis=axis, dtype=dtype)
    return (jnp.expand_dims(packed, axis) >> shifts) & 1 != 0


class _Rewrite(_interpret.Override):
    """Convolutions, max-pool derivatives and large ReLU masks rewritten; calls
    inlined; bodies (loops, branches, checkpoints, custom derivatives) rebuilt only
    when they hold a convolution. One instance per traced function: it remembers the
    first-max index of each max pool whose derivative comes later."""

    def __init__(self, jaxpr=None):
        self.pool_operands = set() if jaxpr is None else _pool_operands(jaxpr)
        self.predicates = set() if jaxpr is None else _predicates(jaxpr)
        self.first_max: dict[int, tuple] = {}

    def apply(self, eqn, invals):
        prim = eqn.primitive
        if prim is lax.conv_general_dilated_p:
            out = _rewrite_conv(eqn, *invals)
            return None if out is None else [out]
        if (
            prim.name in _COMPARISONS
            and eqn.outvars[0] in self.predicates
            and eqn.outvars[0].aval.size >= PACKED_MASK_MIN_SIZE
        ):
            return [_packed(prim.bind(*invals, **eqn.params))]
        if (
            prim.name == "reduce_window_max"
            and eqn.invars[0] in self.pool_operands
            and _plain_pool(eqn.params)
            and jnp.issubdtype(invals[0].dtype, jnp.floating)
        ):
            (x,) = invals
            y = prim.bind(x, **eqn.params)
            idx = _first_max_index(x, y, eqn.params)
            self.first_max[id(x)] = (x, idx)
            return [y]
        if (
            prim.name == "select_and_scatter_add"
            and eqn.params["select_prim"] is lax.ge_p
            and jnp.issubdtype(invals[1].dtype, jnp.floating)
        ):
            source, operand = invals
            cached = self.first_max.get(id(operand))
            if cached is not None and cached[0] is operand:
                idx = cached[1]
            else:  # e.g. recomputed by a checkpoint: the index from the operand
                y = lax.reduce_window_max_p.bind(
                    operand,
                    window_dimensions=eqn.params["window_dimensions"],
                    window_strides=eqn.params["window_strides"],
                    padding=eqn.params["padding"],
                    base_dilation=(1,) * operand.ndim,
                    window_dilation=(1,) * operand.ndim,
                )
                idx = _first_max_index(operand, y, eqn.params)
            return [_pool_backward(source, eqn.invars[1].aval, idx, eqn.params)]
        return None

    def descends(self, eqn) -> bool:
        return eqn.primitive.name in _interpret.CALLS or any(
            map(_has_conv, _interpret.jaxprs_in(eqn))
        )


_SETTING = jax.make_user_context(default_value=None)


def use_fast_convolutions(enabled: bool):
    """A context in which `fast_convolutions(fn)` rewrites (`True`) or not.

    Sets the default of `fast_convolutions`' `enabled` argument, and so whether
    every method's gradients on CPU go through the rewrite, for the functions
    traced inside it; it is part of `jax.jit`'s cache key, so a jitted function
    is traced again when it changes. It wins over the environment variable
    `JAXATTR_FAST_CONVOLUTIONS`. Use: `with use_fast_convolutions(False): ...`.
    """
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(
            f"use_fast_convolutions: enabled must be a bool, got {enabled!r}"
        )
    return _SETTING(bool(enabled))


def fast_convolutions_enabled(enabled: bool | None = None) -> bool:
    """Whether `fast_convolutions(fn, enabled=enabled)` rewrites if traced now.

    The first that is set of: `enabled`, the innermost `use_fast_convolutions`,
    the environment variable `JAXATTR_FAST_CONVOLUTIONS` (`0`: off, anything
    else: on); on by default. Never on a backend other than CPU.
    """
    if jax.default_backend() != "cpu":
        return False
    if enabled is None:
        enabled = _SETTING.value
    if enabled is None:
        return os.environ.get(ENV_SWITCH, "1") != "0"
    return bool(enabled)


def fast_convolutions(fn: Callable, *, enabled: bool | None = None) -> Callable:
    """`fn` with its convolutions in forms XLA:CPU runs fast (same values).

    Takes and returns the same pytrees as `fn`; `fn` is traced when the result is
    called, so it composes with `jit`, `vmap` and closures over traced values.

    Args:
      fn: any JAX function of positional pytree arguments.
      enabled: rewrite (`True`) or return `fn` itself (`False`); `None` (default):
        as `use_fast_convolutions` or, outside it, the environment variable
        `JAXATTR_FAST_CONVOLUTIONS` say, on if neither does, decided each time the
        result is traced (`fast_convolutions_enabled`). Never on a backend other
        than CPU (static).

    Returns:
      The function, rewritten or `fn` itself.
    """
    if enabled is not None and not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(
            f"fast_convolutions: enabled must be a bool or None, got {enabled!r}"
        )
    if jax.default_backend() != "cpu" or enabled is False:
        return fn

    def wrapped(*args):
        if not fast_convolutions_enabled(enabled):
            return fn(*args)
        return _interpret.run(fn, args, lambda closed: _Rewrite(closed.jaxpr))

    return wrapped
