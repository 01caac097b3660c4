"""Run an :class:`Experiment` over examples into a :class:`ResultStore`, resumably.

Each ``(image, method)`` is explained, scored by every metric and written in one
transaction, so a killed run loses nothing finished and a restart computes only what is
missing. Keys are derived from ``seed``, the image id and the method name, so a resumed run
gives bit-identical rows. Metrics that trace to one program (e.g. DGA's MoRF and RISE
deletion) are computed once per map and stored under each name.
"""

from __future__ import annotations

import hashlib
import operator
import sys
import time
import weakref
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from jaxattr.runs.data import Example
from jaxattr.runs.spec import Experiment
from jaxattr.runs.store import ResultStore


class RunSummary(NamedTuple):
    """What one call to :func:`run` did (counts of this call only, except ``done``)."""

    images: int  # examples seen
    computed: int  # (image, method) pairs computed and written now
    reused: int  # pairs found already done
    skipped: int  # images skipped now (misclassified)
    done: int  # pairs done for this config after the call
    seconds: float


def _hash32(text: str) -> int:
    """A stable 31-bit integer of a string (for ``fold_in``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") >> 1


def pair_key(seed: int, image_id: str, method: str) -> jax.Array:
    """The PRNG key of ``(image_id, method)``: independent of order and of other pairs."""
    key = jax.random.fold_in(jax.random.key(seed), _hash32("image:" + image_id))
    return jax.random.fold_in(key, _hash32("method:" + method))


def metric_key(key: jax.Array, metric: str) -> jax.Array:
    """The key a metric gets, derived from its pair's key and its name."""
    return jax.random.fold_in(key, _hash32("metric:" + metric))


@jax.jit
def _predict(model_fn, x):
    return jnp.argmax(model_fn(x[None])[0]).astype(jnp.int32)


_METHOD_JIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_METRIC_JIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _explain_call(explain):
    def call(model_fn, x, target, key):
        out = explain(model_fn, x, target, key)
        if hasattr(out, "attributions"):
            return out.attributions, getattr(out, "delta", None)
        return out, None

    return jax.jit(call)


def _cached(cache, fn, make):
    """``make(fn)``, reused across calls of :func:`run` (no recompiling when the same
    experiment runs again, e.g. on more data). The jitted wrapper refers to ``fn``, so an
    entry lives as long as the process: one per distinct method or metric function."""
    try:
        if fn not in cache:
            cache[fn] = make(fn)
        return cache[fn]
    except TypeError:  # not hashable or not weak-referenceable
        return make(fn)


def _program_hash(fn, args) -> str | None:
    """A hash of the program ``fn`` traces on ``args`` (jaxpr text and the constants of
    it and of every nested jaxpr), or ``None`` when it cannot be shared: its last
    argument (the PRNG key, which differs between metrics) is used, it calls back into
    Python, or tracing fails (the real call then raises as before)."""
    try:
        closed = jax.make_jaxpr(fn)(*args)
    except Exception:  # noqa: BLE001 -- the jitted call reports it
        return None
    key_var = closed.jaxpr.invars[-1]
    top = closed.jaxpr
    if any(v is key_var for e in top.eqns for v in e.invars) or any(
        v is key_var for v in top.outvars
    ):
        return None
    digest = hashlib.sha256(str(closed).encode())
    todo: list = [closed]
    while todo:
        item = todo.pop()
        if isinstance(item, (list, tuple)):
            todo.extend(item)
            continue
        if isinstance(item, jcore.ClosedJaxpr):
            for const in item.consts:
                if jax.dtypes.issubdtype(const.dtype, jax.dtypes.prng_key):
                    const = jax.random.key_data(const)
                a = np.asarray(const)
                digest.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
            item = item.jaxpr
        if isinstance(item, jcore.Jaxpr):
            for e in item.eqns:
                if "callback" in e.primitive.name:
                    return None
                todo.extend(e.params.values())
    return digest.hexdigest()


def _same_metrics(metrics, args, key) -> dict[str, str]:
    """``{name: earlier name}`` of the metrics whose programs on ``args + (key,)`` are
    the same (same jaxpr and constants, key unused): their ``(score, curve)`` are equal by
    construction, so the runner computes the earlier one only."""
    first: dict[str, str] = {}
    same = {}
    for name, fn in metrics.items():
        h = _program_hash(fn, (*args, key))
        if h is None:
            continue
        if h in first:
            same[name] = first[h]
        else:
            first[h] = name
    return same


def _rate(pair_times: dict[str, list[float]]) -> float:
    """Seconds per pair for the ETA: per method, the mean after its first (compiling)
    call when there is one, averaged over methods."""
    per = [np.mean(t[1:]) if len(t) > 1 else t[0] for t in pair_times.values()]
    return float(np.mean(per))


def _fmt_time(s: float) -> str:
    s = round(s)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _delta_extra(delta) -> dict:
    if delta is None:
        return {}
    d = np.asarray(delta, np.float64)
    if d.size == 0 or np.all(np.isnan(d)):
        return {}
    return {"delta": float(d) if d.ndim == 0 else [float(v) for v in d.ravel()]}


def run(
    experiment: Experiment,
    data: Iterable[Example],
    store: ResultStore,
    *,
    seed: int = 0,
    progress: bool = True,
    share_metrics: bool = True,
) -> RunSummary:
    """Explain and score every example not yet done; returns a :class:`RunSummary`.

    ``data``: :class:`Example` items (ids must be unique and stable across runs).
    For each example with missing pairs: predict (jit); with ``only_correct``, an image
    whose known label differs from the prediction is recorded by ``store.skip`` and never
    recomputed; ``target`` is the predicted class. Each method and metric is jitted once
    (``model_fn`` is an argument, not a constant). The first ``keep_maps`` evaluated images
    keep their channel-summed maps and the image. Progress on stderr when ``progress``.
    ``KeyboardInterrupt``: the pair in flight is not written, a resume hint is printed, and
    the interrupt is re-raised. With ``share_metrics``, metrics that trace to the same
    program (same jaxpr and constants, key unused; e.g. DGA's MoRF and RISE deletion
    with one substrate and step) are computed once per map and their row is written
    under each name (values and curves identical to computing each; ``metric_seconds``
    is the time actually spent, about 0 for the copies). Checked once per input and map
    shape by tracing each metric.
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(
            f"experiment: expected jaxattr.runs.Experiment, got {type(experiment).__name__}"
        )
    if not experiment.methods:
        raise ValueError("experiment.methods: expected at least one method, got none")
    model_fn = experiment.model.fn
    methods = {
        n: _cached(_METHOD_JIT, f, _explain_call) for n, f in experiment.methods.items()
    }
    metrics = {
        n: _cached(_METRIC_JIT, f, jax.jit) for n, f in experiment.metrics.items()
    }
    done, skipped = store.done(), store.skipped()
    total = operator.length_hint(data)
    total_pairs = total * len(methods) if total else None
    out = {"images": 0, "computed": 0, "reused": 0, "skipped": 0}
    t0 = time.perf_counter()
    pair_times: dict[str, list[float]] = {}  # seconds per pair written, by method
    tty = progress and sys.stderr.isatty()
    seen_ids: set[str] = set()
    evaluated = 0  # images evaluated or already done, for keep_maps
    same_by_shape: dict[tuple, dict[str, str]] = {}  # metrics sharing one program

    def say(msg: str, final: bool = False):
        if progress:
            end = "\n" if final or not tty else ""
            print(
                ("\r\033[K" if tty else "") + msg, end=end, file=sys.stderr, flush=True
            )

    current = None
    try:
        for ex in data:
            out["images"] += 1
            i = out["images"]
            if ex.id in seen_ids:
                raise ValueError(
                    f"data: image id {ex.id!r} appears twice; ids must be unique"
                )
            seen_ids.add(ex.id)
            if ex.id in skipped:
                continue
            todo = [m for m in methods if (ex.id, m) not in done]
            out["reused"] += len(methods) - len(todo)
            if not todo:
                evaluated += 1
                continue
            x = jnp.asarray(ex.image, jnp.float32)
            predicted = int(_predict(model_fn, x))
            if (
                experiment.only_correct
                and ex.label is not None
                and ex.label != predicted
            ):
                store.skip(ex.id, "misclassified", ex.label, predicted)
                out["skipped"] += 1
                say(
                    f"[{i}/{total or '?'}] {ex.id} skipped (label {ex.label}, predicted {predicted})"
                )
                continue
            keep = evaluated < experiment.keep_maps
            evaluated += 1
            if keep:
                store.put_image(ex.id, ex.image)
            target = jnp.int32(predicted)
            for name in todo:
                current = (ex.id, name)
                left = ""
                if total_pairs and pair_times:
                    remaining = max(total_pairs - out["computed"] - out["reused"], 0)
                    left = f"  ETA {_fmt_time(remaining * _rate(pair_times))}"
                say(f"[{i}/{total or '?'}] {ex.id} {name}{left}")
                key = pair_key(seed, ex.id, name)
                ts = time.perf_counter()
                attr, delta = methods[name](model_fn, x, target, key)
                attr = jax.block_until_ready(attr)
                seconds = time.perf_counter() - ts
                extra = _delta_extra(delta)
                shapes = (x.shape, x.dtype, attr.shape, attr.dtype)
                if share_metrics and shapes not in same_by_shape:
                    same_by_shape[shapes] = same = _same_metrics(
                        experiment.metrics, (model_fn, x, attr, target), key
                    )
                    if same:
                        pairs = ", ".join(f"{a} = {b}" for a, b in same.items())
                        say(f"same program, computed once: {pairs}", final=True)
                same = same_by_shape.get(shapes, {})
                rows, scored = [], {}
                for mname, metric in metrics.items():
                    tm = time.perf_counter()
                    if mname in same:
                        score, curve = scored[same[mname]]
                    else:
                        score, curve = metric(
                            model_fn, x, attr, target, metric_key(key, mname)
                        )
                        score = float(score)
                        curve = None if curve is None else np.asarray(curve)
                        scored[mname] = score, curve
                    rows.append({
                        "metric": mname, "value": score, "curve": curve, "label": ex.label,
                        "predicted": predicted, "seconds": seconds,
                        "extra": {**extra, "metric_seconds": time.perf_counter() - tm},
                    })  # fmt: skip
                heat = None
                if keep:  # a channel sum, or the map itself for [H, W] methods
                    heat = np.asarray(attr, np.float32)
                    heat = heat.sum(-1) if heat.ndim == x.ndim else heat
                store.add(ex.id, name, rows, heat=heat)
                done.add((ex.id, name))
                out["computed"] += 1
                pair_times.setdefault(name, []).append(time.perf_counter() - ts)
                current = None
    except KeyboardInterrupt:
        say(
            f"interrupted{' during ' + repr(current) if current else ''}; "
            f"{out['computed']} pairs written now, {len(done)} done in total for config "
            f"{store.config_hash} in {str(store.path)!r}. Run the same command again to "
            "resume: finished pairs are kept and not recomputed.",
            final=True,
        )
        raise
    summary = RunSummary(**out, done=len(done), seconds=time.perf_counter() - t0)
    say(
        f"done: {summary.images} images, {summary.computed} pairs computed, {summary.reused} "
        f"reused, {summary.skipped} skipped in {_fmt_time(summary.seconds)} "
        f"(config {store.config_hash})",
        final=True,
    )
    return summary
