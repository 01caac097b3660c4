"""Train a CIFAR-10 classifier with Flax and optax, the way the flax examples do.

A pure ``train_step(state, images, labels, key)`` over a :class:`TrainState` (params,
BatchNorm statistics, optimizer state, step), jitted once by :func:`train_and_evaluate`;
a pure ``eval_step``. Everything random comes from one seed: ``jax.random.key(seed)`` is
split into an init key, a data key (the example order of epoch ``e`` is a permutation
drawn from ``fold_in(data_key, e)``) and a step key (step ``s`` augments and drops out
with ``fold_in(step_key, s)``). The batch of a step is therefore a function of the seed
and the step alone, which is why a run stopped at any step and resumed from its
checkpoint gives bit-identical weights to an uninterrupted one.

Checkpoints are one ``.npz`` (``<workdir>/checkpoint.npz``): every leaf of ``params``,
``batch_stats`` and ``opt_state`` under its tree path, the ``step``, the ``rng`` (key
data) and the ``config`` (JSON), written atomically. Exported weights are a
torch-layout state dict in ``.npz`` (optionally float16) that ``jaxattr.models.load(name,
weights=PATH)`` reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from experiments.train import input_pipeline
from jaxattr import models
from jaxattr.models.torchvision_cifar import DEFAULT_WIDTH

__all__ = [
    "TrainResult",
    "TrainState",
    "create_learning_rate_fn",
    "create_model",
    "create_optimizer",
    "create_train_state",
    "eval_step",
    "evaluate",
    "export_weights",
    "restore_checkpoint",
    "save_checkpoint",
    "train_and_evaluate",
    "train_step",
]

CHECKPOINT = "checkpoint.npz"
#: Config keys that may change between a run and its resumption (they do not change
#: the weights).
_RESUMABLE_KEYS = (
    "eval_data",
    "eval_limit",
    "eval_batch_size",
    "eval_every_epochs",
    "log_every_steps",
    "checkpoint_every_steps",
)


class TrainState(train_state.TrainState):
    """flax's ``TrainState`` (``step``, ``params``, ``opt_state``, ``apply_fn``,
    ``tx``) plus the BatchNorm running statistics."""

    batch_stats: Any


class TrainResult(NamedTuple):
    """What :func:`train_and_evaluate` returns.

    ``state``: the final (or stopped) :class:`TrainState`; ``step``: steps done;
    ``finished``: all epochs done; ``test_accuracy``/``test_loss``: on ``eval_data``
    after the last epoch (``None`` when stopped early or without eval data);
    ``export``: path of the exported weights or ``None``; ``sha256``: their hash;
    ``seconds``: wall time of this call.
    """

    state: TrainState
    step: int
    finished: bool
    test_accuracy: float | None
    test_loss: float | None
    export: str | None
    sha256: str | None
    seconds: float


# ------------------------------------------------------------------ model, optimizer
def width_of(config: Mapping[str, Any]) -> int:
    """The config's width, or the model's default."""
    return int(config["width"] or DEFAULT_WIDTH[config["model"]])


def create_model(config: Mapping[str, Any]):
    """``(module, normalise)`` of ``config['model']`` at ``config['width']``; the
    ``normalise`` is the one ``jaxattr.models.load`` uses."""
    name = config["model"]
    if name not in DEFAULT_WIDTH:
        raise ValueError(
            f"create_model: model must be one of {list(DEFAULT_WIDTH)}, got {name!r}"
        )
    dropout = float(config["dropout"]) if "vgg" in name else None
    return _model(name, width_of(config), dropout), models.MODELS[name].normalise


@functools.cache
def _model(name: str, width: int, dropout: float | None):
    """One module object per setting, so that ``module.apply`` (a static field of the
    train state) compares equal across runs and the jitted step is reused."""
    kwargs: dict[str, Any] = {"width": width}
    if dropout is not None:
        kwargs["dropout"] = dropout
    return models.MODELS[name].make(**kwargs)


def create_learning_rate_fn(
    config: Mapping[str, Any], steps_per_epoch: int
) -> optax.Schedule:
    """Linear warm-up from 0 to ``learning_rate`` over ``warmup_epochs``, then cosine
    decay to 0 at the end of ``num_epochs`` (flax imagenet's schedule)."""
    warmup = max(round(config["warmup_epochs"] * steps_per_epoch), 1)
    total = int(config["num_epochs"]) * steps_per_epoch
    return optax.warmup_cosine_decay_schedule(
        0.0, config["learning_rate"], warmup, max(total, warmup + 1), 0.0
    )


def _decay_mask(params: Any) -> Any:
    """Weight decay on conv and dense kernels only (not biases, not BatchNorm)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(
    config: Mapping[str, Any], learning_rate_fn: optax.Schedule
) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and L2 weight decay, or AdamW."""
    kind = config["optimizer"]
    if kind == "sgd":
        return optax.chain(
            optax.add_decayed_weights(config["weight_decay"], mask=_decay_mask),
            optax.sgd(
                learning_rate_fn,
                momentum=config["momentum"],
                nesterov=bool(config["nesterov"]),
            ),
        )
    if kind == "adamw":
        return optax.adamw(
            learning_rate_fn, weight_decay=config["weight_decay"], mask=_decay_mask
        )
    raise ValueError(
        f"create_optimizer: optimizer must be 'sgd' or 'adamw', got {kind!r}"
    )


def create_train_state(
    key: jax.Array, module, tx: optax.GradientTransformation
) -> TrainState:
    """Initialise ``module`` on a ``[1, 32, 32, 3]`` input with ``key``."""
    variables = _init(module, key)
    state = TrainState.create(
        apply_fn=module.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables["batch_stats"],
    )
    # an int32 array, as the train step returns it: the second step does not recompile
    return state.replace(step=jnp.asarray(0, jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def _init(module, key: jax.Array) -> Any:
    return module.init(key, jnp.zeros((1, 32, 32, 3), jnp.float32))


@functools.cache
def _optimizer(
    items: tuple[tuple[str, Any], ...], steps_per_epoch: int
) -> optax.GradientTransformation:
    """:func:`create_optimizer` of a config given as sorted items, cached: the
    optimizer is a static field of the train state, so equal settings must give the
    same object for the jitted step to be reused (a resumed run, the tests)."""
    config = dict(items)
    return create_optimizer(config, create_learning_rate_fn(config, steps_per_epoch))


# ----------------------------------------------------------------------- the steps
def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy, ``[N, K]`` logits and ``[N]`` integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    normalise: Callable[[jax.Array], jax.Array],
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on a batch: ``images`` uint8 ``[B, 32, 32, 3]``, ``labels`` ``[B]``.

    Augments with ``key`` (crop + flip), normalises, runs the model in training mode
    (batch statistics; running statistics updated; dropout from ``key``) and applies
    the optimizer. Returns the new state and ``{'loss', 'accuracy'}`` of the batch.
    ``normalise`` is static.
    """
    aug_key, dropout_key = jax.random.split(key)
    x = normalise(input_pipeline.augment(aug_key, images))

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        return cross_entropy_loss(logits, labels), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return state, {"loss": loss, "accuracy": accuracy}


_train_step_jit = jax.jit(train_step, static_argnames="normalise")


def eval_step(
    apply_fn: Callable,
    variables: Any,
    images: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    *,
    normalise: Callable[[jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array]:
    """``(number correct, summed loss)`` over the rows where ``mask`` is true, in eval
    mode (BatchNorm running statistics, no dropout). ``apply_fn`` and ``normalise``
    are static."""
    x = normalise(images.astype(jnp.float32) / 255.0)
    logits = apply_fn(variables, x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels) & mask
    return correct.sum(), jnp.where(mask, losses, 0.0).sum()


_eval_step_jit = jax.jit(eval_step, static_argnums=0, static_argnames="normalise")


def evaluate(
    state: TrainState,
    data: input_pipeline.Dataset,
    *,
    batch_size: int,
    normalise: Callable[[jax.Array], jax.Array],
) -> tuple[float, float]:
    """``(accuracy, mean loss)`` of ``state`` on ``data``; the last batch is padded and
    masked, so one shape compiles once."""
    step = functools.partial(_eval_step_jit, state.apply_fn, normalise=normalise)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    n = len(data.labels)
    correct, loss = 0, 0.0
    for start in range(0, n, batch_size):
        images = data.images[start : start + batch_size]
        labels = data.labels[start : start + batch_size]
        m = len(labels)
        mask = np.arange(batch_size) < m
        if m < batch_size:
            images = np.concatenate(
                [images, np.zeros((batch_size - m, *images.shape[1:]), images.dtype)]
            )
            labels = np.concatenate([labels, np.zeros(batch_size - m, labels.dtype)])
        c, s = step(variables, images, labels, mask)
        correct += int(c)
        loss += float(s)
    return correct / n, loss / n


# --------------------------------------------------------------------- checkpoints
def _flat(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        f"{prefix}/{jax.tree_util.keystr(path, simple=True, separator='/')}": np.asarray(
            leaf
        )
        for path, leaf in leaves
    }


def save_checkpoint(
    path: str | os.PathLike, state: TrainState, rng: jax.Array, config: Mapping
) -> None:
    """Write ``state`` (params, batch_stats, opt_state, step), the base ``rng`` and the
    ``config`` to ``path`` (``.npz``), atomically (a temporary file, then a rename)."""
    arrays = {
        **_flat("params", state.params),
        **_flat("batch_stats", state.batch_stats),
        **_flat("opt_state", state.opt_state),
        "step": np.asarray(state.step),
        "rng": np.asarray(jax.random.key_data(rng)),
        "config": np.asarray(json.dumps(dict(config), sort_keys=True)),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def restore_checkpoint(
    path: str | os.PathLike, state: TrainState
) -> tuple[TrainState, jax.Array, dict[str, Any]]:
    """``(state, rng, config)`` from ``path``; ``state`` is a template with the same
    structure (a fresh :func:`create_train_state`), whose leaves are all replaced. A
    missing key or a different shape or dtype raises ``ValueError`` naming it."""
    with np.load(path, allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}

    def fill(prefix: str, tree: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
        out = []
        for p, leaf in leaves:
            key = f"{prefix}/{jax.tree_util.keystr(p, simple=True, separator='/')}"
            if key not in saved:
                raise ValueError(f"restore_checkpoint({str(path)!r}): no entry {key!r}")
            value = saved[key]
            if value.shape != np.shape(leaf) or value.dtype != np.asarray(leaf).dtype:
                raise ValueError(
                    f"restore_checkpoint({str(path)!r}): {key!r} is {value.dtype}"
                    f"{list(value.shape)}, expected {np.asarray(leaf).dtype}"
                    f"{list(np.shape(leaf))}"
                )
            out.append(jnp.asarray(value))
        return jax.tree_util.tree_unflatten(treedef, out)

    state = state.replace(
        step=jnp.asarray(saved["step"], jnp.int32),
        params=fill("params", state.params),
        batch_stats=fill("batch_stats", state.batch_stats),
        opt_state=fill("opt_state", state.opt_state),
    )
    rng = jax.random.wrap_key_data(jnp.asarray(saved["rng"]))
    return state, rng, json.loads(str(saved["config"]))


def export_weights(
    state: TrainState, path: str | os.PathLike, *, float16: bool = False
) -> str:
    """Write the eval variables as a torch-layout state dict ``.npz`` (``float16``:
    halve the size; ``load`` casts back to float32). Returns its SHA-256."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    sd = models.flax_to_torch(jax.tree.map(np.asarray, variables))
    if float16:
        sd = {k: v.astype(np.float16) for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **sd)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -------------------------------------------------------------------------- driver
def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], path) -> None:
    diff = sorted(
        k
        for k in set(saved) | set(config)
        if k not in _RESUMABLE_KEYS and saved.get(k) != config.get(k)
    )
    if diff:
        raise ValueError(
            f"train_and_evaluate: checkpoint {str(path)!r} was written with a different "
            "config: "
            + ", ".join(f"{k}={saved.get(k)!r} (now {config.get(k)!r})" for k in diff)
            + "; use another workdir or the same settings"
        )


def train_and_evaluate(
    config: Mapping[str, Any],
    workdir: str | os.PathLike,
    *,
    train_data: input_pipeline.Dataset | None = None,
    eval_data: input_pipeline.Dataset | None = None,
    stop_after: int | None = None,
    export: str | os.PathLike | None = None,
    float16: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``config`` in ``workdir``, resuming from its checkpoint when there is one.

    ``train_data``/``eval_data``: arrays to use instead of ``config['data']`` /
    ``config['eval_data']`` (tests). ``stop_after``: stop (with a checkpoint) once this
    many steps are done in total. ``export``: write the final weights there (see
    :func:`export_weights`). Progress (loss, accuracy, learning rate, seconds per step,
    ETA) goes to ``log`` and, as JSON lines, to ``<workdir>/metrics.jsonl``; a
    ``<workdir>/summary.json`` is written when all epochs are done.
    """
    start_time = time.perf_counter()
    config = dict(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if train_data is None:
        train_data = input_pipeline.load(config["data"], limit=config["train_limit"])
        log(
            f"read {len(train_data.labels)} images of {config['data']} in "
            f"{time.perf_counter() - start_time:.1f} s"
        )
    n = len(train_data.labels)
    batch_size = int(config["batch_size"])
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"train_and_evaluate: batch_size {batch_size} is larger than the "
            f"{n} training images"
        )
    total_steps = int(config["num_epochs"]) * steps_per_epoch

    module, normalise = create_model(config)
    learning_rate_fn = create_learning_rate_fn(config, steps_per_epoch)
    tx = _optimizer(
        tuple(sorted((k, v) for k, v in config.items() if k not in _RESUMABLE_KEYS)),
        steps_per_epoch,
    )
    rng = jax.random.key(int(config["seed"]))
    ckpt = workdir / CHECKPOINT
    init_key, _, _ = jax.random.split(rng, 3)
    state = create_train_state(init_key, module, tx)
    if ckpt.exists():
        state, rng, saved = restore_checkpoint(ckpt, state)
        _check_resume(saved, config, ckpt)
        log(f"resumed from {ckpt} at step {int(state.step)}")
    _, data_key, step_key = jax.random.split(rng, 3)

    def load_eval() -> input_pipeline.Dataset | None:
        nonlocal eval_data
        if eval_data is None and config["eval_data"]:
            eval_data = input_pipeline.load(
                config["eval_data"], limit=config["eval_limit"]
            )
        return eval_data

    p_train_step = functools.partial(_train_step_jit, normalise=normalise)
    metrics_file = workdir / "metrics.jsonl"

    def record(row: dict[str, Any]) -> None:
        with open(metrics_file, "a") as f:
            f.write(json.dumps(row) + "\n")

    step = int(state.step)
    first = step
    timed_from, timed_steps, perm, epoch = None, 0, None, -1
    test_accuracy = test_loss = None
    log(
        f"{config['model']} width {width_of(config)}: {n} images, {steps_per_epoch} "
        f"steps/epoch, {total_steps} steps, batch {batch_size}"
    )
    while step < total_steps and (stop_after is None or step < stop_after):
        e, i = divmod(step, steps_per_epoch)
        if e != epoch:
            epoch = e
            perm = input_pipeline.epoch_permutation(data_key, epoch, n)
        idx = perm[i * batch_size : (i + 1) * batch_size]
        state, metrics = p_train_step(
            state,
            train_data.images[idx],
            train_data.labels[idx],
            jax.random.fold_in(step_key, step),
        )
        step += 1
        if step == first + 1:  # the first step compiles: time from the second on
            jax.block_until_ready(state)
            timed_from = time.perf_counter()
        else:
            timed_steps += 1
        epoch_end = step % steps_per_epoch == 0
        if step % int(config["log_every_steps"]) == 0 or step == total_steps:
            metrics = {k: float(v) for k, v in metrics.items()}
            rate = None
            speed = "compiling (no ETA yet)"
            if timed_steps:
                rate = (time.perf_counter() - timed_from) / timed_steps
                speed = f"{rate:.3f} s/step ETA {_hms(rate * (total_steps - step))}"
            log(
                f"step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} "
                f"loss {metrics['loss']:.4f} acc {metrics['accuracy']:.3f} "
                f"lr {float(learning_rate_fn(step - 1)):.4f} {speed}"
            )
            record({"step": step, **metrics, "seconds_per_step": rate})
        if epoch_end or step % int(config["checkpoint_every_steps"]) == 0:
            save_checkpoint(ckpt, state, rng, config)
        every = int(config["eval_every_epochs"] or 0)
        last = step == total_steps
        if epoch_end and (last or (every and (step // steps_per_epoch) % every == 0)):
            eval_start = time.perf_counter()
            data = load_eval()
            if data is not None:
                acc, loss = evaluate(
                    state,
                    data,
                    batch_size=int(config["eval_batch_size"]),
                    normalise=normalise,
                )
                log(
                    f"eval after epoch {step // steps_per_epoch}: accuracy "
                    f"{100 * acc:.2f} % loss {loss:.4f} on {len(data.labels)} images"
                )
                record({"step": step, "test_accuracy": acc, "test_loss": loss})
                if last:
                    test_accuracy, test_loss = acc, loss
            if timed_from is not None:  # evaluation is not training time
                timed_from += time.perf_counter() - eval_start
    save_checkpoint(ckpt, state, rng, config)
    finished = step >= total_steps
    digest = None
    if finished and export is not None:
        digest = export_weights(state, export, float16=float16)
        log(f"exported {export} (sha256 {digest})")
    seconds = time.perf_counter() - start_time
    if finished:
        summary = {
            "config": config,
            "width": width_of(config),
            "steps": step,
            "test_accuracy": test_accuracy,
            "test_loss": test_loss,
            "export": None if export is None else str(export),
            "sha256": digest,
            "seconds_last_call": seconds,
        }
        (workdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return TrainResult(
        state,
        step,
        finished,
        test_accuracy,
        test_loss,
        None if export is None or not finished else str(export),
        digest,
        seconds,
    )
