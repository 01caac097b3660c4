"""Distilled Gradient Aggregation, DGA (Jeon, Jeong and Choi, NeurIPS 2022;
docs/dga.md).

DGA evaluates a local attribution, Uniform FullGrad (UFG), along a sequence of
"distilled" inputs `x~(n)`, `n = 0..N`, each the original input with a soft mask that
removes weak contributors (a growing fraction `n/N` of the smallest `|phi|`) and
extreme positive contributors (the top `1 - q` of `phi`), and sums the positive parts.

Decisions on the open questions (docs/dga.md#jaxattrs-dga):

* **n = 0 is included** (Algorithm 1: `N + 1` evaluations); `include_first=False`
  gives eq. 10's `n = 1..N`. The normaliser `Z` of eq. 10 is unspecified; we take
  `Z = 1` (Algorithm 1's plain sum): it only rescales the map.
* **Features** are the elements of `x` (`C*H*W`, the paper's "features j of x");
  `mask_features="pixels"` ranks channel-summed `phi` per pixel and masks whole pixels.
* **Target**: whatever scalar `f` returns (jaxattr's default is the logit, as
  FullGrad; the paper does not say).
* **Input space**: masking moves features to `baseline`, `x~ = b + M * (x - b)`, and
  UFG's input term is `(x~ - b) * grad f`. The default `None` (zeros: black pixels in
  jaxattr's pixel space) is the library-wide general choice, **not** the authors'
  setting: their Algorithm 1 multiplies the network's input by the mask, and that
  input is the ImageNet-normalised tensor of their torchvision models (their code is
  not public), i.e. masking towards the mean colour. `baseline=
  baselines.normalized_zero(mean)` with the model's mean
  (`baselines.normalisation_stats(model.normalise)[0]`; `"normalized_zero"` for
  ImageNet's) reproduces that exactly, since `x_n * grad_{x_n} = (x - mean) *
  grad_x` and `x_n * M = ((mean + M * (x - mean)) - mean) / std` for
  `x_n = (x - mean) / std`. `n_steps=30`, `q=0.9`, `beta=0` are the authors'.
* **UFG** by the completeness shortcut (docs/dga.md#uniform-fullgrad) where `f` is
  piecewise linear, else by an explicit bias route (`bias_fn`) or an error; see
  `distilled_gradient_aggregation`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, _interpret, baselines, engine, fast_convolutions
from jaxattr.base import Attribution
from jaxattr.typing import Array, ArrayLike, BaselineLike, PRNGKey, ScalarFn

UFG_ROUTES = ("auto", "shortcut", "explicit")
MASK_FEATURES = ("elements", "pixels")

# Primitives that are piecewise linear in each of their inputs (structural ops,
# comparisons, max/min/select, sums, and pooling by max or sum).
_PL_PRIMITIVES = frozenset(
    {
        "add",
        "add_any",
        "sub",
        "neg",
        "max",
        "min",
        "select_n",
        "clamp",
        "abs",
        "sign",
        "reduce_sum",
        "reduce_max",
        "reduce_min",
        "reduce_window_sum",
        "reduce_window_max",
        "reduce_window_min",
        "reduce_precision",
        "cumsum",
        "cummax",
        "cummin",
        "argmax",
        "argmin",
        "broadcast_in_dim",
        "reshape",
        "transpose",
        "squeeze",
        "expand_dims",
        "rev",
        "pad",
        "slice",
        "dynamic_slice",
        "dynamic_update_slice",
        "gather",
        "scatter",
        "scatter-add",
        "scatter_add",
        "concatenate",
        "convert_element_type",
        "copy",
        "copy_p",
        "stop_gradient",
        "sort",
        "iota",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "xor",
        "floor",
        "ceil",
        "round",
        "is_finite",
        "select_and_scatter_add",
        "select_and_gather_add",
        "pjit",
        "jit",
        "closed_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "remat",
        "checkpoint",
        "split",
        "optimization_barrier",
    }
)
# Linear in each input separately: piecewise linear if at most one input depends on x.
_BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated"})


def _scan_bodies(eqn, flags, found) -> list[bool]:
    """Which outputs of a higher-order `eqn` depend on tainted inputs (`flags`),
    scanning its bodies; a loop carry is tainted once its initial value or the
    loop body's output that is fed back to it is (iterated to a fixed point)."""
    found_bodies = _interpret.bodies(eqn)
    if not found_bodies:  # an unknown higher-order primitive: all may depend on x
        for sub in _interpret.jaxprs_in(eqn):
            _scan_jaxpr(sub, [True] * len(sub.invars), found)
        return [True] * len(eqn.outvars)
    out = [False] * len(eqn.outvars)
    while True:
        new = list(out)
        for body in found_bodies:
            body_flags = [
                flags[i] or (fed is not None and out[fed])
                for i, fed in zip(body.inputs, body.fed_back, strict=True)
            ]
            body_out = _scan_jaxpr(body.jaxpr, body_flags, found)
            for j, t in zip(body.outputs, body_out, strict=True):
                if j is not None and t:
                    new[j] = True
        if new == out:
            return out
        out = new


def _scan_jaxpr(jaxpr, tainted_in, found) -> list[bool]:
    """Marks the variables that depend on tainted inputs; records non-PL uses.
    Returns which outputs are tainted."""
    tainted = {v for v, t in zip(jaxpr.invars, tainted_in, strict=True) if t}

    def is_t(v):
        return not isinstance(v, jax.extend.core.Literal) and v in tainted

    for eqn in jaxpr.eqns:
        flags = [is_t(v) for v in eqn.invars]
        if not any(flags):
            continue
        name = eqn.primitive.name
        if _interpret.jaxprs_in(eqn):
            out = _scan_bodies(eqn, flags, found)
            tainted.update(v for v, t in zip(eqn.outvars, out, strict=True) if t)
            continue
        if name in _BILINEAR:
            if sum(flags) > 1:
                found.add(f"{name} of two x-dependent operands")
        elif name == "div":
            if flags[1]:
                found.add("div by an x-dependent value")
        elif name == "integer_pow" and eqn.params.get("y") == 1:
            pass
        elif name not in _PL_PRIMITIVES:
            found.add(name)
        tainted.update(eqn.outvars)
    return [is_t(v) for v in jaxpr.outvars]


def non_piecewise_linear_ops(f: Callable, x: ArrayLike) -> list[str]:
    """The operations that keep `f` from being piecewise linear in `x` (sorted).

    Traces `f` at `x`'s shape and follows the values that depend on `x` through the
    jaxpr (and the jaxprs nested in `jit`, `checkpoint`, `custom_jvp`/`custom_vjp`,
    `cond`, loops, with each body's inputs and outputs matched to the equation's,
    loop carries to a fixed point): an
    operation that depends on `x` is allowed if it is piecewise linear in it
    (affine maps, convolutions and products with one `x`-dependent operand,
    max/min/ReLU/ReLU6/clamp, select, max- and sum-pooling, reshapes, gathers,
    sums). Nonlinear primitives (`exp`, `log`, `tanh`, `logistic`, `erf`, `rsqrt`
    of an activation, products of two activations, ...) are reported. Operations
    on weights alone (e.g. eval-mode BatchNorm's `rsqrt(var + eps)`) do not count.
    An empty list means piecewise linear. The check is conservative: an unknown
    primitive is reported.
    """
    closed = jax.make_jaxpr(f)(x)
    found: set[str] = set()
    _scan_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.invars), found)
    return sorted(found)


def _counts_le(values):
    """`counts[j] = #{k : values[k] <= values[j]}` for a flat `values [d]`."""
    return jnp.searchsorted(jnp.sort(values), values, side="right")


def _below_order_statistic(values, m):
    """`#{k: values[k] <= values[j]} <= m` for each `j` (`_counts_le(values) <= m`),
    as `values[j] <` the `(m + 1)`-th smallest value, found without sorting: floats
    map to unsigned integers of the same order, and the order statistic is built
    bit by bit from the most significant one (one counting pass per bit)."""
    zero = jnp.zeros((), values.dtype)
    flat = jnp.where(values == 0, zero, values)  # -0.0 -> +0.0, equal as floats
    nbits = 8 * flat.dtype.itemsize
    udtype = jnp.dtype(f"uint{nbits}")
    bits = jax.lax.bitcast_convert_type(flat, udtype)
    sign = jnp.asarray(1 << (nbits - 1), udtype)
    # negative floats: all bits flipped (larger magnitude, smaller key); others:
    # the sign bit set (above every negative)
    key = jnp.where(bits & sign != 0, ~bits, bits | sign)
    k = jnp.asarray(m, jnp.int32) + 1
    found = jnp.zeros((), udtype)
    for bit in reversed(range(nbits)):
        candidate = found | jnp.asarray(1 << bit, udtype)
        below = (key < candidate).sum(dtype=jnp.int32)
        found = jnp.where(below < k, candidate, found)
    d = flat.shape[0]
    return jnp.where(k > d, True, jnp.where(k < 1, False, key < found))


def dga_masks(phi: ArrayLike, n: ArrayLike, n_total: int, q: ArrayLike):
    """The soft mask `M = (n/N) M^WC + (1 - n/N) M^EPC` of step `n`
    (docs/dga.md#masks).

    Args:
      phi: `[d]` local attributions (flat).
      n: the step, `0..N` (may be traced).
      n_total: `N` (static).
      q: EPC quantile (traced).

    Returns:
      `(mask [d], wc [d], epc [d])`: `wc_j = 0` iff `#{k: |phi_k| <= |phi_j|} / d <=
      n/N` (compared exactly in integers), `epc_j = 1` iff `#{k: phi_k <= phi_j} <=
      q * d`.
    """
    d = phi.shape[0]
    # `count_j <= m` (an integer m) iff fewer than m + 1 values are <= phi_j, i.e.
    # iff phi_j is below the (m + 1)-th smallest: no sort or search (`_counts_le`
    # gives the same masks; two sorts and searches per step took most of DGA's
    # time on a 224x224 image, benchmarks/README.md).
    # wc: `count * N <= n * d` iff `count <= floor(n d / N)`, in integers.
    wc_zero = _below_order_statistic(jnp.abs(phi), (n * d) // n_total)
    wc = jnp.where(wc_zero, 0.0, 1.0).astype(phi.dtype)
    # `count / d <= q` as `count <= q * d`: XLA divides by multiplying with 1 / d,
    # which puts e.g. 9 / 10 above 0.9; a product is correctly rounded. An integer
    # count is <= q * d iff it is <= floor(q * d).
    qd = jnp.floor(q * d)
    m = jnp.where(jnp.isnan(qd), -1, jnp.clip(qd, -1, d)).astype(jnp.int32)
    epc = jnp.where(_below_order_statistic(phi, m), 1.0, 0.0).astype(phi.dtype)
    frac = (jnp.asarray(n) / n_total).astype(phi.dtype)
    return frac * wc + (1 - frac) * epc, wc, epc


def _ufg(f, x, b, ufg, bias_fn, caller):
    """Resolves the UFG route; returns `local(x~) -> (f(x~), phi [*x.shape])`."""
    if bias_fn is not None and not callable(bias_fn):
        raise TypeError(
            f"{caller}: bias_fn must be a function x -> scalar; got"
            f" {type(bias_fn).__name__}."
        )
    if ufg == "auto":
        bad = non_piecewise_linear_ops(f, x)
        if not bad:
            ufg = "shortcut"
        elif bias_fn is not None:
            ufg = "explicit"
        else:
            raise ValueError(
                f"{caller}: f is not piecewise linear in x (found: {', '.join(bad)}),"
                " so the UFG completeness shortcut (docs/dga.md) does not hold;"
                " expected a piecewise-linear f (e.g. output='logit' of a ReLU"
                " network), bias_fn= for the explicit FullGrad route, or"
                " ufg='shortcut' to use the shortcut anyway."
            )
    if ufg == "explicit" and bias_fn is None:
        raise ValueError(
            f"{caller}: ufg='explicit' needs bias_fn (x -> sum_l <b_l, df/db_l>);"
            " got bias_fn=None."
        )
    d = x.size

    def local(xt):
        value, g = jax.value_and_grad(f)(xt)
        moved = xt - b
        if ufg == "shortcut":
            bias = value - jnp.vdot(moved, g)
        else:
            bias = jnp.vdot(b, g) + jnp.asarray(bias_fn(xt), g.dtype)
        return value, moved * g + bias / d

    # DGA's steps run in a lax.scan: rewrite the convolutions of each step (CPU).
    return fast_convolutions.fast_convolutions(local)


def uniform_fullgrad(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    key: PRNGKey | None = None,
    ufg: str = "auto",
    bias_fn: Callable[[Array], Array] | None = None,
) -> Attribution:
    """Uniform FullGrad (DGA's eq. 2): `(x - b) * grad f(x) + (B / d) * 1`.

    `B` is the total bias contribution, by the completeness shortcut or `bias_fn`
    (see `distilled_gradient_aggregation` for `ufg`, `bias_fn` and `baseline`).

    Returns:
      `Attribution` with `attributions [*x.shape]`, `delta = sum(attributions) -
      f(x)` (0 up to rounding for the shortcut; for the explicit route, FullGrad's
      completeness error, 0 only for piecewise-linear networks) and `aux` with
      `f_x`.
    """
    caller = "uniform_fullgrad"
    x = _checks.check_input(x, caller)
    _checks.check_choice(ufg, UFG_ROUTES, caller, "ufg")
    _checks.check_scalar_fn(f, x, caller)
    b = baselines.resolve_one(baseline, x, key, caller)
    value, phi = _ufg(f, x, b, ufg, bias_fn, caller)(x)
    delta = engine.completeness_delta(phi, value, jnp.zeros_like(value))
    return Attribution(phi, delta, {"f_x": value})


def distilled_gradient_aggregation(
    f: ScalarFn,
    x: ArrayLike,
    baseline: BaselineLike = None,
    *,
    key: PRNGKey | None = None,
    n_steps: int = 30,
    q: ArrayLike = 0.9,
    beta: ArrayLike = 0.0,
    ufg: str = "auto",
    bias_fn: Callable | None = None,
    include_first: bool = True,
    mask_features: str = "elements",
) -> Attribution:
    """DGA: `sum_n max(phi_n, 0) + beta * min(phi_n, 0)` over distilled inputs.

    `phi_n = UFG(x~(n))` with `x~(0) = x` and `x~(n+1) = b + M_n * (x - b)`, where
    `M_n` is the soft mask of `dga_masks` computed from `phi_n` (always applied to
    the original `x`). The sequence is one `lax.scan` over `n = 0..N` with one
    `jax.value_and_grad` of `f` per step.

    UFG (eq. 2) is `(x~ - b) * g + (B / d) * 1` with `g = grad f(x~)`, `d = x.size`
    and `B` the total bias contribution (FullGrad's `sum_l <b_l, grad_{b_l} f>`):

    * `ufg="shortcut"`: `B = f(x~) - <x~ - b, g>`, the local affine offset, exact
      for piecewise-linear networks by the full-gradient completeness (docs/dga.md); one
      gradient per step, no bias bookkeeping. (For clamps like ReLU6 it also
      counts the saturation level as an implicit bias.)
    * `ufg="explicit"`: `B = <b, g> + bias_fn(x~)`, where `bias_fn(x) -> scalar`
      is the caller's `sum_l <b_l, df/db_l>` (`models.model_bias_fn(model, target)`
      builds it for the `jaxattr.models` ports);
    * `ufg="auto"` (default): the shortcut when `non_piecewise_linear_ops(f, x)`
      finds no nonlinear operation on `x`; otherwise the explicit route if
      `bias_fn` is given, else a `ValueError` naming the operations found (e.g. a
      softmax target's `exp`).

    Args:
      f: maps one example to a scalar (a logit for the shortcut).
      x: one example, e.g. `[H, W, C]`.
      baseline: where masked features go, and the reference of UFG's input term:
        `None` (zeros; black pixels: a general default, not the authors'),
        `normalized_zero(mean)` / `"normalized_zero"` (the authors' masking of
        normalised tensors, with the model's mean), a scalar or an array of
        `x.shape`; one baseline.
      key: unused (DGA is deterministic); accepted for the common signature.
      n_steps: `N` (static); authors' 30.
      q: EPC quantile (traced); authors' 0.9.
      beta: weight of the negative parts (traced); authors' 0.
      ufg: `"auto"`, `"shortcut"` or `"explicit"` (static).
      bias_fn: `x -> scalar` total bias contribution, for the explicit route.
      include_first: sum from `n = 0` (Algorithm 1, default) or `n = 1` (eq. 10)
        (static); `x~(0)` is evaluated either way, as the masks need it.
      mask_features: `"elements"` (rank all of `x`'s entries) or `"pixels"` (rank
        channel sums of `phi` over the last axis, mask whole pixels) (static).

    Returns:
      `Attribution` with `attributions [*x.shape]`, `delta` NaN (no completeness)
      and `aux`: `values [N + 1]` (`f(x~(n))`, which each `phi_n` sums to),
      `kept [N + 1]` (mean mask applied after step `n`) and `f_x` (`values[0]`).

    Raises:
      TypeError: for a bad `x`.
      ValueError: for a list of several baselines, an unknown `ufg` or
        `mask_features`, a non-piecewise-linear `f` with `ufg="auto"` and no
        `bias_fn`, `ufg="explicit"` without `bias_fn`, `n_steps < 1`, or a
        non-finite `x`.
    """
    caller = "distilled_gradient_aggregation"
    x = _checks.check_input(x, caller)
    n_steps = _checks.check_static_int(n_steps, caller, "n_steps")
    _checks.check_choice(ufg, UFG_ROUTES, caller, "ufg")
    _checks.check_choice(mask_features, MASK_FEATURES, caller, "mask_features")
    _checks.check_scalar_fn(f, x, caller)
    if mask_features == "pixels" and x.ndim < 2:
        raise ValueError(
            f"{caller}: mask_features='pixels' needs a channel axis (x.ndim >= 2);"
            f" got x.shape={tuple(x.shape)}."
        )
    b = baselines.resolve_one(baseline, x, key, caller)  # masked features go to it
    local = _ufg(f, x, b, ufg, bias_fn, caller)
    q = jnp.asarray(q, x.dtype)
    beta = jnp.asarray(beta, x.dtype)

    def step(xt, n):
        value, phi = local(xt)
        if mask_features == "elements":
            mask, _, _ = dga_masks(phi.reshape(-1), n, n_steps, q)
            mask = mask.reshape(x.shape)
        else:
            per_pixel = phi.sum(-1)
            mask, _, _ = dga_masks(per_pixel.reshape(-1), n, n_steps, q)
            mask = mask.reshape(per_pixel.shape)[..., None]
        use = (n > 0) | include_first
        contribution = jnp.maximum(phi, 0) + beta * jnp.minimum(phi, 0)
        contribution = jnp.where(use, contribution, jnp.zeros_like(contribution))
        nxt = b + mask * (x - b)
        return nxt, (contribution, value, jnp.broadcast_to(mask, x.shape).mean())

    def body(carry, n):
        xt, acc = carry
        nxt, (contribution, value, kept) = step(xt, n)
        return (nxt, acc + contribution), (value, kept)

    steps = jnp.asarray(np.arange(n_steps + 1))
    (_, total), (values, kept) = jax.lax.scan(body, (x, jnp.zeros_like(x)), steps)
    nan = jnp.full((), jnp.nan, x.dtype)
    aux = {"values": values, "kept": kept, "f_x": values[0]}
    return Attribution(total, nan, aux)


def __getattr__(name: str):
    # Deprecated alias: methods do not import `jaxattr.models`; the model ports' bias
    # function lives there now.
    if name == "model_bias_fn":
        import warnings

        from jaxattr import models

        warnings.warn(
            "jaxattr.methods.dga.model_bias_fn moved to jaxattr.models.model_bias_fn"
            " (same arguments); the old name will be removed.",
            DeprecationWarning,
            stacklevel=2,
        )
        return models.model_bias_fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
