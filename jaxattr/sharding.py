"""Scale-out: a batch split across every device with `jax.sharding`.

`sharded(fn)` runs a function of batches (e.g. `jaxattr.attribute`, or a metric
vmapped over examples) with its batched arguments split along a 1-D device mesh
named `"batch"`; `attribute` is `jaxattr.attribute` run that way. Each device
explains `N / n_devices` examples; nothing is communicated between devices
except the final gather when `N` had to be padded. Results are those of the
one-device `jaxattr.attribute` call (the same per-example PRNG keys), up to the
last-ulp rounding that XLA's kernels may change with the per-device batch size.

One process (a GPU machine, a TPU VM, or CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` for testing)::

    out = jaxattr.sharding.attribute(jaxattr.integrated_gradients, model.fn, x, t)

Several processes (a TPU pod slice or several GPU hosts), the same script on
every host::

    jax.distributed.initialize()                 # before any other JAX call
    mesh = jaxattr.sharding.batch_mesh()         # jax.devices(): every host's devices
    x_local, t_local = my_slice_of_the_data(jax.process_index())
    out = jaxattr.sharding.attribute(
        jaxattr.integrated_gradients, model.fn, x_local, t_local, mesh=mesh,
        inputs_are_process_local=True,
    )  # global arrays; this host's rows: out.attributions.addressable_shards

With `inputs_are_process_local=True` each process passes its own rows (the
global batch is their concatenation in process order, built with
`jax.make_array_from_process_local_data`), and each process's row count must be
a multiple of its number of devices (no padding across hosts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxattr import _checks, _deprecated, batching
from jaxattr.base import Attribution
from jaxattr.typing import Array, ArrayLike, BaselineLike, PRNGKey

AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis `"batch"` over `devices` (default `jax.devices()`,
    which after `jax.distributed.initialize()` holds the devices of every host)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(
            "batch_mesh: devices must be a non-empty sequence of jax.Device (e.g."
            f" jax.devices()); got {devices!r}."
        )
    return Mesh(np.asarray(devices), (AXIS,))


def _check_mesh(mesh, caller: str) -> Mesh:
    if mesh is None:
        return batch_mesh()
    if not isinstance(mesh, Mesh) or AXIS not in mesh.axis_names:
        raise TypeError(
            f"{caller}: mesh must be a jax.sharding.Mesh with a {AXIS!r} axis (see"
            f" jaxattr.sharding.batch_mesh); got {mesh!r}."
        )
    return mesh


def _padded_size(n: int, mesh: Mesh) -> int:
    d = mesh.shape[AXIS]
    return -(-n // d) * d


def _local_batch_rows(mesh: Mesh) -> int:
    """How many positions of the `"batch"` axis hold a device of this process."""
    devices = np.moveaxis(mesh.devices, mesh.axis_names.index(AXIS), 0)
    me = jax.process_index()
    rows = devices.reshape(devices.shape[0], -1)
    return sum(any(d.process_index == me for d in row) for row in rows)


_DYNAMIC = object()  # marks a keyword leaf passed as a traced (replicated) array


def _name(prefix: str, path) -> str:
    return prefix + jax.tree_util.keystr(path)


def _batch_size(args, caller: str) -> int:
    """The common leading size `N` of every positional leaf."""
    leaves = jax.tree_util.tree_flatten_with_path(args)[0]
    if not leaves:
        raise ValueError(
            f"{caller}: fn needs at least one positional (batched) array argument;"
            " got none."
        )
    sizes = {}
    for path, leaf in leaves:
        name = _name("args", path)
        if _checks.is_traced(leaf):
            raise TypeError(
                f"{caller}: call it outside jax.jit (it compiles fn itself); got a"
                f" traced {name}."
            )
        shape = getattr(leaf, "shape", None)
        if shape is None or len(shape) == 0:
            raise ValueError(
                f"{caller}: every positional argument must be an array with a leading"
                f" batch axis [N, ...]; got {name} of shape {shape} ({type(leaf).__name__})."
                " Pass unbatched values as keyword arguments."
            )
        sizes[name] = shape[0]
    if len(set(sizes.values())) > 1:
        got = ", ".join(f"{k} with {v}" for k, v in sizes.items())
        raise ValueError(
            f"{caller}: every positional argument must have the same leading batch"
            f" size N; got {got}."
        )
    n = next(iter(sizes.values()))
    if n < 1:
        raise ValueError(f"{caller}: the batch is empty (N = 0); need N >= 1.")
    return n


def _pad(a, n_pad: int):
    """`a` with its last row repeated up to `n_pad` rows."""
    pad = n_pad - a.shape[0]
    if pad == 0:
        return a
    xp = np if isinstance(a, np.ndarray) else jnp
    return xp.concatenate([a, xp.repeat(a[-1:], pad, axis=0)])


def _split_kwargs(kwargs, caller: str):
    """Array leaves (traced, replicated) and a hashable description of the rest."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(kwargs)
    dynamic, static = [], []
    for path, leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, np.number, np.bool_)):
            dynamic.append(leaf)
            static.append(_DYNAMIC)
            continue
        try:
            hash(leaf)
        except TypeError:
            raise TypeError(
                f"{caller}: keyword argument {_name('kwargs', path)} must be an array"
                " (traced) or hashable (static, e.g. an int, a string or a function);"
                f" got an unhashable {type(leaf).__name__}."
            ) from None
        static.append(leaf)
    return dynamic, (treedef, tuple(static))


def _place_batch(args, n_pad: int, mesh: Mesh, process_local: bool):
    batch = NamedSharding(mesh, P(AXIS))
    if process_local:
        return jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(batch, np.asarray(a)), args
        )
    return jax.tree.map(lambda a: jax.device_put(_pad(a, n_pad), batch), args)


@functools.partial(jax.jit, static_argnames=("fn", "mesh", "static", "n"))
def _run(args, dynamic, *, fn, mesh, static, n):
    """`fn(*args, **kwargs)` on the padded, sharded batch; outputs cut back to `n`."""
    treedef, leaves = static
    it = iter(dynamic)
    kwargs = jax.tree_util.tree_unflatten(
        treedef, [next(it) if s is _DYNAMIC else s for s in leaves]
    )
    out = fn(*args, **kwargs)
    n_pad = jax.tree.leaves(args)[0].shape[0]
    batch = NamedSharding(mesh, P(AXIS))

    def cut(path, a):
        if getattr(a, "ndim", 0) < 1 or a.shape[0] != n_pad:
            raise ValueError(
                "sharded: every output of fn must have the batch axis first, of size"
                f" {n_pad} (N = {n} padded to a multiple of {mesh.shape[AXIS]}"
                f" devices); got output{jax.tree_util.keystr(path)} of shape"
                f" {getattr(a, 'shape', None)}. Reduce over the batch after the call:"
                " padding repeats the last example, so a reduction inside fn would"
                " count it more than once."
            )
        a = jax.lax.with_sharding_constraint(a, batch)
        if n == n_pad:
            return a
        return jax.lax.with_sharding_constraint(a[:n], NamedSharding(mesh, P()))

    return jax.tree_util.tree_map_with_path(cut, out)


def sharded(
    fn: Callable, *, mesh: Mesh | None = None, inputs_are_process_local: bool = False
) -> Callable:
    """`fn` with its positional arguments split across the devices of `mesh`.

    The returned `g(*args, **kwargs)` runs `jax.jit(fn)(*args, **kwargs)` with:

    * every positional argument a pytree of arrays `[N, ...]` (the same `N >= 1`),
      padded to a multiple of the device count by repeating the last example and
      placed with `NamedSharding(mesh, P("batch"))`;
    * keyword arguments not batched: array leaves (weights in a model pytree, a
      PRNG key) are traced and replicated on every device; other leaves (ints,
      strings, functions) are static, so a new value recompiles.

    `fn` must return a pytree whose every leaf has the batch axis first (a
    reduction over the batch inside `fn` would count padded rows; it raises).
    Outputs are sharded along `"batch"` when `N` is a multiple of the device
    count; otherwise they are cut back to `N` rows and replicated on every device.
    The compiled function is cached on `fn`, the static arguments and the shapes:
    call `g` again with the same `fn` and shapes and nothing retraces. Call `g`
    outside `jax.jit`; pass models as keyword arguments so their weights are traced
    (replicate them once with `jax.device_put(params, NamedSharding(mesh, P()))` to
    avoid a copy per call).

    Args:
      fn: function of batches, e.g. `lambda x, t, *, model_fn: ...`; hashable.
      mesh: a `jax.sharding.Mesh` with a `"batch"` axis (other axes replicate);
        default `batch_mesh()` over `jax.devices()`, built at each call.
      inputs_are_process_local: positional arguments hold this process's rows only
        (multi-host, after `jax.distributed.initialize()`); each process's `N`
        must be a multiple of its device count in `mesh`, and outputs are global
        arrays of the concatenated batch.
    """
    caller = "sharded"
    if not callable(fn):
        raise TypeError(f"{caller}: fn must be callable; got {type(fn).__name__}.")
    try:
        hash(fn)
    except TypeError:
        raise TypeError(
            f"{caller}: fn must be hashable (it is a static argument of jax.jit); got"
            f" an unhashable {type(fn).__name__}."
        ) from None
    if not isinstance(inputs_are_process_local, bool):
        raise TypeError(
            f"{caller}: inputs_are_process_local must be a bool; got"
            f" {inputs_are_process_local!r}."
        )
    if mesh is not None:
        _check_mesh(mesh, caller)

    @functools.wraps(fn)
    def g(*args, **kwargs):
        m = _check_mesh(mesh, caller)
        n = _batch_size(args, caller)
        if inputs_are_process_local:
            local = _local_batch_rows(m)
            if local == 0 or n % local:
                raise ValueError(
                    f"{caller}: with inputs_are_process_local, each process's batch"
                    f" size must be a multiple of its {local} devices on the {AXIS!r}"
                    f" axis of mesh; got N = {n}."
                )
            placed = _place_batch(args, n, m, True)
            n = n_pad = jax.tree.leaves(placed)[0].shape[0]
        else:
            n_pad = _padded_size(n, m)
            placed = _place_batch(args, n_pad, m, False)
        dynamic, static = _split_kwargs(kwargs, caller)
        replicated = NamedSharding(m, P())
        dynamic = [jax.device_put(a, replicated) for a in dynamic]
        return _run(placed, dynamic, fn=fn, mesh=m, static=static, n=n)

    return g


def _attribute_body(
    inputs, target, baseline, *, method, model_fn, target_fn, shared, key, options
):
    t = target_fn if target is None else target
    b = shared if baseline is None else baseline
    return batching.attribute(
        method, model_fn, inputs, t, baseline=b, key=key, **options
    )


@_deprecated.renamed(baselines="baseline")
def attribute(
    method: Callable[..., Attribution],
    model_fn: Callable[[jax.Array], jax.Array],
    inputs: ArrayLike,
    /,
    target: ArrayLike | Callable[[Array], Array] | None = None,
    *,
    baseline: BaselineLike = None,
    key: PRNGKey | None = None,
    mesh: Mesh | None = None,
    inputs_are_process_local: bool = False,
    **method_kwargs: Any,
) -> Attribution:
    """`jaxattr.attribute` with the batch split across the devices of `mesh`.

    Same arguments and result as `jaxattr.attribute` (`output=` and the method's
    hyperparameters go in `**method_kwargs`, static), plus `mesh` and
    `inputs_are_process_local` of `sharded`. `inputs [N, ...]`, an array
    `target [N]` and per-example `baseline [N, ...]` are split across devices;
    `model_fn` (a pytree: its weights are traced), shared baselines and `key` are
    replicated; a callable target (static: pass the same function again to reuse
    the compilation) is evaluated on the sharded batch. Per-example keys are those
    of the one-device call (`jax.random.split(key, N)`); if padding would change
    them (a non-threefry PRNG, or `jax_threefry_partitionable` off), it raises.

    Returns:
      An `Attribution` with leading axis `[N]`, sharded along `"batch"` when `N`
      is a multiple of the device count (else replicated; see `sharded`).
    """
    caller = "sharding.attribute"
    _checks.check_input(inputs, caller, "inputs")
    if inputs.ndim < 1:
        raise ValueError(
            f"{caller}: inputs must have a leading batch axis; got a scalar."
        )
    if not callable(model_fn):
        raise TypeError(
            f"{caller}: model_fn must be callable; got {type(model_fn).__name__}."
        )
    m = _check_mesh(mesh, caller)
    n = inputs.shape[0]
    target_fn = target if callable(target) else None
    if target is not None and target_fn is None:
        target = np.asarray(batching.check_target(target, inputs, model_fn, caller))
    else:
        target = None
    per_example = hasattr(baseline, "shape") and tuple(baseline.shape) == tuple(
        inputs.shape
    )
    if key is not None:
        _checks.check_key(key, caller, "the method is random")
        n_pad = n if inputs_are_process_local else _padded_size(max(n, 1), m)
        _check_split_is_prefix(key, n, n_pad, caller)
    run = sharded(
        _attribute_body, mesh=m, inputs_are_process_local=inputs_are_process_local
    )
    return run(
        inputs,
        target,
        baseline if per_example else None,
        method=method,
        model_fn=model_fn,
        target_fn=target_fn,
        shared=None if per_example else baseline,
        key=key,
        options=method_kwargs,
    )


def _check_split_is_prefix(key, n: int, n_pad: int, caller: str) -> None:
    """Padding keeps the per-example keys only if `split(key, n_pad)[:n]` equals
    `split(key, n)`: true for threefry keys with `jax_threefry_partitionable` (the
    default since JAX 0.5), where the i-th key does not depend on the count."""
    if n_pad == n or n < 1:
        return
    a = jax.random.key_data(jax.random.split(key, n))
    b = jax.random.key_data(jax.random.split(key, n_pad))[:n]
    if not np.array_equal(np.asarray(a), np.asarray(b)):
        raise ValueError(
            f"{caller}: padding N = {n} to {n_pad} (a multiple of the device count)"
            " would change the per-example keys, because jax.random.split(key, n)"
            " depends on n for this key (jax_threefry_partitionable is off or the"
            " PRNG is not threefry). Pass a batch whose size is a multiple of the"
            " device count, or set jax.config.update('jax_threefry_partitionable',"
            " True)."
        )
