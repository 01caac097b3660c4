"""The path-integral engine: the one place where gradients along a path are evaluated.

Every path method (Integrated Gradients and the methods built on it) is a weighted
sum over nodes `alpha_k` of a path `gamma`:

    A = sum_k c_k * grad f(gamma(alpha_k)) * gamma'(alpha_k),

with `c_k = weights_k` by default, or `weight_fn(weights, values, slopes)` when a
method re-weights nodes from quantities known along the path (IDG's slope
weighting). Each node may carry a vector of `m` weights: the pass then returns `m`
integrals for the price of one (Split-IG's left and right parts). `path_integral` evaluates this in chunks of
`batch_size` nodes: one `vmap` of `jax.value_and_grad` per chunk, accumulated in
a carry, so that peak memory grows with the chunk and not with the number of
nodes (Captum's `internal_batch_size`;
docs/integrated_gradients.md#chunked-gradients-and-the-engine). The outputs
`values_k = f(gamma(alpha_k))` and the slopes `dF/dalpha = <grad f, gamma'>` come
for free and are returned along with the integral.

The pieces a path method is built from, so that a new one is its path, its weights
and a docstring:

* `chunked_sum` and `chunked_map`: the chunking primitive (a `lax.scan` over
  chunks of `batch_size` items), for sums (gradients) and for stacked outputs
  only (forward passes), shared with `noise_tunnel` and the metrics;
* `straight_line` / `straight_lines`: the straight path(s) from baselines to `x`;
* `baseline_nodes`: one quadrature rule laid out on `K` baselines, each path's
  weights divided by `K`, so that one `path_integral` returns the mean over
  baselines (the library's policy for several baselines, `jaxattr.baselines`);
* `path_integral` (gradients) and `path_values` (forward passes only) along a path;
* `endpoint_values` and `completeness_delta`: `f(x)`, `f(x')` and Captum's
  completeness error `sum(A) - (f(x) - mean f(x'))`, reported by every path
  method as `delta` with `aux["f_x"]` and `aux["f_baseline"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, fast_convolutions

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
DTypeLike = jax.typing.DTypeLike
PyTree = Any


def chunked_sum(
    fn: Callable[[PyTree], tuple[PyTree, PyTree]],
    xs: PyTree,
    *,
    batch_size: int | None = None,
) -> tuple[PyTree, PyTree]:
    """Sums and stacks the outputs of `fn` over the leading axis of `xs`, in chunks.

    `fn(x_i) -> (summed_i, stacked_i)`; returns `(sum_i summed_i, stack_i stacked_i)`.
    `fn` is `vmap`ped over chunks of `batch_size` items, and the chunks run in a
    `lax.scan`, so at most `batch_size` evaluations are alive at once (unrolled
    chunks would let XLA keep every chunk's activations alive: 1.7 GB of
    temporaries for 32 ResNet-50 steps in chunks of 8, against 0.45 GB in a scan).
    On CPU the chunk's convolutions go through `fast_convolutions`, without which
    XLA:CPU runs the gradient convolutions inside the scan's loop ~3x slower than
    outside it (benchmarks/README.md). When the
    number of items `n` is not a multiple of `batch_size`, the last chunk is padded
    with copies of the first item whose contributions are masked out.

    Args:
      fn: maps one item (a slice of `xs` along axis 0) to a pair of pytrees.
      xs: pytree of arrays with a common leading axis `n` (static).
      batch_size: items per chunk (static); `None` evaluates all `n` at once.

    Returns:
      `(summed, stacked)`: `summed` has the structure of `fn`'s first output,
      `stacked` that of its second output with a leading axis `n`.
    """
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("chunked_sum: xs must contain at least one array.")
    n = leaves[0].shape[0]
    batch_size = _checks.check_batch_size(batch_size, "chunked_sum")
    batched_fn = fast_convolutions.fast_convolutions(jax.vmap(fn))
    if batch_size is None or batch_size >= n:
        summed, stacked = batched_fn(xs)
        return jax.tree.map(lambda s: s.sum(0), summed), stacked

    n_chunks = -(-n // batch_size)
    pad = n_chunks * batch_size - n

    def to_chunks(a):
        a = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a
        return a.reshape(n_chunks, batch_size, *a.shape[1:])

    chunks = jax.tree.map(to_chunks, xs)
    valid = (np.arange(n_chunks * batch_size) < n).reshape(n_chunks, batch_size)

    summed_shape, _ = jax.eval_shape(fn, jax.tree.map(lambda a: a[0], xs))
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), summed_shape)

    def body(carry, chunk_and_mask):
        chunk, mask = chunk_and_mask
        summed, stacked = batched_fn(chunk)

        def masked_sum(s):
            m = mask.reshape(mask.shape + (1,) * (s.ndim - 1))
            return jnp.where(m, s, jnp.zeros((), s.dtype)).sum(0)

        carry = jax.tree.map(lambda c, s: c + masked_sum(s), carry, summed)
        return carry, stacked

    summed, stacked = jax.lax.scan(body, init, (chunks, jnp.asarray(valid)))
    stacked = jax.tree.map(
        lambda a: a.reshape(n_chunks * batch_size, *a.shape[2:])[:n], stacked
    )
    return summed, stacked


def chunked_map(
    fn: Callable[[PyTree], PyTree],
    xs: PyTree,
    *,
    batch_size: int | None = None,
) -> PyTree:
    """Stacks `fn(x_i)` over the leading axis of `xs`, in chunks: `jax.lax.map` with
    `chunked_sum`'s chunking (a `lax.scan` over `vmap`ped chunks of `batch_size`
    items, the padding of the last chunk, `fast_convolutions` on CPU).

    For forward passes (the outputs of `f` along a path, a perturbation curve):
    the same memory bound and speed as the gradient passes, with nothing summed.

    Args:
      fn: maps one item (a slice of `xs` along axis 0) to a pytree.
      xs: pytree of arrays with a common leading axis `n` (static).
      batch_size: items per chunk (static); `None` evaluates all `n` at once.

    Returns:
      `fn`'s output structure with a leading axis `n` on every leaf.
    """
    return chunked_sum(lambda item: ((), fn(item)), xs, batch_size=batch_size)[1]


def straight_line(x: Array, ref: Array) -> Callable[[Array], Array]:
    """`path(alpha) = ref + alpha * (x - ref)`: the straight line from `ref`
    (`alpha = 0`) to `x` (`alpha = 1`), both of one shape."""

    def path(alpha):
        return ref + alpha * (x - ref)

    return path


def straight_lines(x: Array, refs: Array) -> Callable[[Array, Array], Array]:
    """`path(alpha, i) = refs[i] + alpha * (x - refs[i])`: the straight lines from
    each reference `refs [K, *x.shape]` to `x`, for `path_integral` with the
    reference index `i` as the node argument (`baseline_nodes(...).paths`)."""

    def path(alpha, i):
        return straight_line(x, refs[i])(alpha)

    return path


class Nodes(NamedTuple):
    """Quadrature nodes laid out on `K` paths (`baseline_nodes`).

    Attributes:
      alphas: `[K n]` node positions, the rule's `n` nodes repeated per path.
      weights: `[K n]` the rule's weights divided by `K`.
      paths: `[K n]` the index of the path (baseline) each node belongs to.
    """

    alphas: Array
    weights: Array
    paths: Array


def baseline_nodes(
    alphas: ArrayLike, weights: ArrayLike, n_paths: int, dtype: DTypeLike
) -> Nodes:
    """One rule (`alphas`, `weights`, `[n]` each) on each of `n_paths` paths.

    The weights are divided by `n_paths`, so `path_integral` with
    `node_args=nodes.paths` and `straight_lines(x, refs)` returns the **mean** over
    baselines of their path integrals: the library's policy for several baselines
    (`jaxattr.baselines.resolve`). Computed in NumPy (static), then cast to `dtype`.
    """
    alphas, weights = np.asarray(alphas), np.asarray(weights)
    n = alphas.shape[0]
    return Nodes(
        jnp.asarray(np.tile(alphas, n_paths), dtype),
        jnp.asarray(np.tile(weights, n_paths) / n_paths, dtype),
        jnp.asarray(np.repeat(np.arange(n_paths), n)),
    )


class PathIntegral(NamedTuple):
    """Output of `path_integral`.

    Attributes:
      integral: `sum_k c_k grad f(gamma_k) * gamma'_k`, shape of a path point, or
        `[m, *point]` for `[n, m]` weights.
      values: `[n]` outputs `f(gamma(alpha_k))` along the path.
      slopes: `[n]` derivatives `dF/dalpha = <grad f(gamma_k), gamma'_k>`.
    """

    integral: Array
    values: Array
    slopes: Array


def path_integral(
    f: Callable[[Array], Array],
    path: Callable[..., Array],
    alphas: Array,
    weights: Array,
    *,
    node_args: PyTree = None,
    weight_fn: Callable[[Array, Array, Array], Array] | None = None,
    batch_size: int | None = None,
) -> PathIntegral:
    """Integrates `grad f` along `path`, node by node, in bounded memory.

    The path's velocity `gamma'(alpha)` comes from `jax.jvp` of `path` in `alpha`,
    so any differentiable path works (straight lines, blur paths, ...).

    Args:
      f: maps one path point to a scalar.
      path: `path(alpha)` or, with `node_args`, `path(alpha, node_arg)` -> a point.
      alphas: `[n]` nodes (`n` static).
      weights: `[n]` quadrature weights, or `[n, m]` for `m` integrals in one
        pass (e.g. the same rule masked to two parts of the path).
      node_args: optional pytree with leading axis `[n]`, one entry per node (e.g.
        the index of the baseline a node belongs to).
      weight_fn: optional `weight_fn(weights, values, slopes) -> c`, applied per
        node, e.g. IDG's `weights * slopes`.
      batch_size: nodes per chunk (static); `None` evaluates all nodes at once.

    Returns:
      A `PathIntegral`.
    """
    alphas = jnp.asarray(alphas)
    weights = jnp.asarray(weights)

    def node(item):
        alpha, weight, arg = item
        gamma = (lambda a: path(a)) if node_args is None else (lambda a: path(a, arg))
        point, velocity = jax.jvp(gamma, (alpha,), (jnp.ones_like(alpha),))
        value, grad = jax.value_and_grad(f)(point)
        slope = jnp.vdot(grad, velocity)
        c = weight if weight_fn is None else weight_fn(weight, value, slope)
        c = c.astype(grad.dtype).reshape(c.shape + (1,) * grad.ndim)
        return c * (grad * velocity), (value, slope)

    args = node_args if node_args is not None else jnp.zeros_like(alphas)
    integral, (values, slopes) = chunked_sum(
        node, (alphas, weights, args), batch_size=batch_size
    )
    return PathIntegral(integral, values, slopes)


def path_values(
    f: Callable[[Array], Array],
    path: Callable[..., Array],
    alphas: Array,
    *,
    node_args: PyTree = None,
    batch_size: int | None = None,
) -> Array:
    """`f(path(alpha_k))` for each node: forward passes only, in chunks.

    The same nodes, paths and chunking as `path_integral` (through `chunked_map`),
    without the gradients: for methods that need `f` along the path before they
    know their weights (Split-IG's split, IDG's allocation).

    Args:
      f: maps one path point to a scalar.
      path: `path(alpha)` or, with `node_args`, `path(alpha, node_arg)`.
      alphas: `[n]` nodes (`n` static).
      node_args: optional pytree with leading axis `[n]`, one entry per node.
      batch_size: nodes per chunk (static); `None` evaluates all nodes at once.

    Returns:
      `[n]` values of `f`.
    """
    alphas = jnp.asarray(alphas)
    if node_args is None:
        return chunked_map(lambda a: f(path(a)), alphas, batch_size=batch_size)
    return chunked_map(
        lambda item: f(path(*item)), (alphas, node_args), batch_size=batch_size
    )


def endpoint_values(
    f: Callable[[Array], Array], x: Array, refs: Array
) -> tuple[Array, Array]:
    """`(f(x), f(refs) [K])`: the outputs at the end and at the start of each path,
    for `completeness_delta` and the `aux` keys `f_x`, `f_baseline`."""
    return f(x), jax.vmap(f)(refs)


def completeness_delta(attributions: Array, f_x: Array, f_baseline: Array) -> Array:
    """Completeness error with Captum's sign: `sum(A) - (mean f_x - mean f_baseline)`.

    `f_x` and `f_baseline` are the outputs at the two ends of the path(s): scalars,
    or `[K]` per baseline, whose means are taken (the attributions of several
    baselines are their mean, `baseline_nodes`). A path method's `delta`; 0 up to
    the quadrature error when completeness holds.

    Returns:
      A scalar of the promoted dtype.
    """
    return jnp.sum(attributions) - (jnp.mean(f_x) - jnp.mean(f_baseline))
