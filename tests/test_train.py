"""`python -m experiments.train` and the max-pool CIFAR models (issue 20): training
lowers the loss, a stopped and resumed run is bit-identical to an uninterrupted one,
exported weights load, the augmentation is a crop + flip, the shipped weights reach
their stated accuracy, and `guided` on both trained models keeps the forward pass and
follows its two max-pool rules. Training at tiny widths (4) and batches (8-16 images);
the real CIFAR images only where `../shared` exists."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxattr
from experiments.train import config as train_config
from experiments.train import input_pipeline, train
from jaxattr import models
from jaxattr.models.layers import max_pool
from jaxattr.runs.data import shared_dir

RNG = np.random.default_rng(20)


def _synthetic(n: int, seed: int = 0) -> input_pipeline.Dataset:
    """Learnable images: a class-dependent colour plus noise, uint8."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.int32)
    colours = rng.uniform(0, 255, (10, 1, 1, 3))
    images = colours[labels] + rng.normal(0, 30, (n, 32, 32, 3))
    return input_pipeline.Dataset(np.clip(images, 0, 255).astype(np.uint8), labels)


def _zip_or_skip(spec: str):
    rel = input_pipeline._ZIPS[spec][0]
    if not (shared_dir() / rel).exists():
        pytest.skip(
            f"{shared_dir() / rel} not found (../shared beside the repository, or "
            "$JAXATTR_SHARED)"
        )


# ---------------------------------------------------------------------- training
def test_a_few_train_steps_on_a_tiny_batch_lower_the_loss():
    # ResNet-18 here; the VGG trains in the resume test below
    config = train_config.get_config("cifar_resnet18", "debug")
    module, normalise = train.create_model(config)
    tx = optax.sgd(0.05, momentum=0.9)
    state = train.create_train_state(jax.random.key(0), module, tx)
    data = _synthetic(16)
    key = jax.random.key(1)

    @jax.jit
    def batch_loss(state):  # training-mode loss of the batch, one fixed augmentation
        x = normalise(input_pipeline.augment(key, data.images))
        logits, _ = state.apply_fn(
            {"params": state.params, "batch_stats": state.batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return train.cross_entropy_loss(logits, data.labels)

    step = jax.jit(lambda s, k: train.train_step(s, *data, k, normalise=normalise))
    before = float(batch_loss(state))
    for i in range(3):
        state, metrics = step(state, jax.random.fold_in(key, i))
        assert np.isfinite(float(metrics["loss"]))
    assert int(state.step) == 3
    assert float(batch_loss(state)) < before
    # the running statistics moved off their initial values (train-mode BatchNorm)
    means = jax.tree.leaves(state.batch_stats)
    assert any(float(jnp.abs(m).max()) > 0 for m in means[::2])


def _leaves(state) -> dict[str, np.ndarray]:
    return {
        **train._flat("params", state.params),
        **train._flat("batch_stats", state.batch_stats),
        **train._flat("opt_state", state.opt_state),
    }


def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    # 2 epochs of 3 steps (24 images, batch 8); dropout on, so the step keys matter;
    # the stop falls inside the second epoch.
    config = train_config.get_config(
        "cifar_vgg11_bn",
        "debug",
        batch_size=8,
        eval_data="",
        dropout=0.5,
        checkpoint_every_steps=100,
    )
    data = _synthetic(24)
    quiet = lambda _: None
    full = train.train_and_evaluate(
        config,
        tmp_path / "a",
        train_data=data,
        export=tmp_path / "w.npz",
        log=quiet,
    )
    assert full.finished and full.step == 6
    stopped = train.train_and_evaluate(
        config, tmp_path / "b", train_data=data, stop_after=4, log=quiet
    )
    assert not stopped.finished and stopped.step == 4
    resumed = train.train_and_evaluate(
        config, tmp_path / "b", train_data=data, log=quiet
    )
    assert resumed.finished and resumed.step == 6
    a, b = _leaves(full.state), _leaves(resumed.state)
    assert a.keys() == b.keys() and any(k.startswith("opt_state/") for k in a)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    # the comparison can fail: the stopped state is not the final one
    s = _leaves(stopped.state)
    assert not all(np.array_equal(s[k], a[k]) for k in a)
    rows = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(r) for r in rows]
    assert [r["step"] for r in metrics if "loss" in r] == list(range(1, 7))

    # the exported weights load through jaxattr.models.load and give the same logits
    model = models.load("cifar_vgg11_bn", weights=str(tmp_path / "w.npz"), width=4)
    x = jnp.asarray(data.images[:4], jnp.float32) / 255.0
    variables = {"params": full.state.params, "batch_stats": full.state.batch_stats}
    expected = full.state.apply_fn(variables, model.normalise(x))
    np.testing.assert_allclose(model.fn(x), expected, rtol=1e-5, atol=1e-5)
    half = train.export_weights(full.state, tmp_path / "h.npz", float16=True)
    assert (
        len(half) == 64
        and (tmp_path / "h.npz").stat().st_size < (tmp_path / "w.npz").stat().st_size
    )
    model16 = models.load("cifar_vgg11_bn", weights=str(tmp_path / "h.npz"), width=4)
    assert jax.tree.leaves(model16.variables)[0].dtype == jnp.float32
    np.testing.assert_allclose(model16.fn(x), expected, rtol=0.02, atol=0.02)

    # a different config in the same workdir is refused, naming the key
    with pytest.raises(ValueError, match="seed=0 \\(now 1\\)"):
        train.train_and_evaluate(
            {**config, "seed": 1}, tmp_path / "b", train_data=data, log=quiet
        )


def test_learning_rate_warms_up_then_decays_to_zero():
    config = train_config.get_config("cifar_resnet18", num_epochs=10, warmup_epochs=1)
    lr = train.create_learning_rate_fn(config, 100)
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(float(lr(50)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(lr(100)), 0.1, rtol=1e-6)
    # cosine: half-way through the decay, half the peak
    np.testing.assert_allclose(float(lr(550)), 0.05, rtol=1e-5)
    assert float(lr(1000)) == pytest.approx(0.0, abs=1e-7)


def test_augment_is_a_padded_crop_and_a_flip():
    images = RNG.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    out = np.asarray(input_pipeline.augment(jax.random.key(3), images))
    assert out.shape == images.shape and out.dtype == np.float32
    padded = np.pad(images / np.float32(255.0), ((0, 0), (4, 4), (4, 4), (0, 0)))
    flips = 0
    for n in range(len(images)):
        found = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.array_equal(
                out[n],
                padded[n, dy : dy + 32, dx : dx + 32][:, ::-1]
                if flip
                else padded[n, dy : dy + 32, dx : dx + 32],
            )
        ]
        assert found, n
        flips += found[0][2]
    # 6 images, crops and flips from one key: not all identical choices
    again = np.asarray(input_pipeline.augment(jax.random.key(3), images))
    assert np.array_equal(out, again)
    assert not np.array_equal(
        out, np.asarray(input_pipeline.augment(jax.random.key(4), images))
    )


def test_epoch_permutation_depends_on_key_and_epoch_only():
    key = jax.random.key(0)
    p0 = input_pipeline.epoch_permutation(key, 0, 50)
    assert sorted(p0) == list(range(50))
    assert np.array_equal(p0, input_pipeline.epoch_permutation(key, 0, 50))
    assert not np.array_equal(p0, input_pipeline.epoch_permutation(key, 1, 50))


def test_bad_config_values_name_the_argument():
    with pytest.raises(ValueError, match="unknown keys \\['epochs'\\]"):
        train_config.get_config("cifar_vgg11_bn", epochs=3)
    with pytest.raises(ValueError, match="model must be one of"):
        train_config.get_config("vgg11_bn")
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw'"):
        train.create_optimizer({"optimizer": "adam"}, lambda s: 0.1)
    with pytest.raises(ValueError, match="spec must be one of"):
        input_pipeline.load("cifar100")
    with pytest.raises(ValueError, match="x must be \\[N, 32, 32, 3\\]"):
        models.load("cifar_resnet18", weights="random", width=4).fn(
            jnp.zeros((1, 64, 64, 3))
        )


# ----------------------------------------------------------------- real CIFAR data
def test_cifar10_zips_read_interleaved_classes_and_train_one_step(tmp_path):
    _zip_or_skip("cifar10-train")
    _zip_or_skip("cifar10-test")
    tr = input_pipeline.load("cifar10-train", limit=20)
    te = input_pipeline.load("cifar10-test", limit=12)
    assert tr.images.shape == (20, 32, 32, 3) and tr.images.dtype == np.uint8
    assert tr.labels.tolist() == list(range(10)) * 2
    assert te.labels.tolist() == [*range(10), 0, 1]
    assert 30 < float(tr.images.mean()) < 230  # real photos, not blank
    # the same first test images as jaxattr.runs.data's cifar10-test spec
    first = next(jaxattr.runs.data.examples("cifar10-test", size=32, resize=None))
    np.testing.assert_allclose(first.image, te.images[0] / 255.0, atol=1 / 255)
    config = train_config.get_config(
        "cifar_resnet18", "debug", num_epochs=1, batch_size=10, train_limit=20
    )
    result = train.train_and_evaluate(
        config, tmp_path, train_data=tr, eval_data=te, log=lambda _: None
    )
    assert result.finished and result.step == 2
    assert 0.0 <= result.test_accuracy <= 1.0 and np.isfinite(result.test_loss)


# ------------------------------------------------------- the weights that ship
#: Accuracy on the first 1,000 CIFAR-10 test JPEGs stated in docs/models.md#trained-here.
STATED_FIRST_1000 = {"cifar_resnet18": 0.849, "cifar_vgg11_bn": 0.850}


def test_every_shipped_model_has_a_stated_accuracy():
    assert set(STATED_FIRST_1000) == set(models.registry.TRAINED)
    doc = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    for name, acc in STATED_FIRST_1000.items():
        assert f"{100 * acc:.1f} %" in doc, (name, acc)


@pytest.mark.parametrize("name", sorted(STATED_FIRST_1000))
def test_shipped_weights_reach_their_stated_accuracy(name):
    """The packaged weights (checked against their SHA-256 on load) on the first 1,000
    test images: the stated accuracy to within a point, logits deterministic."""
    _zip_or_skip("cifar10-test")
    data = input_pipeline.load("cifar10-test", limit=1000)
    model = models.load(name)
    x = jnp.asarray(data.images, jnp.float32) / 255.0
    fn = jax.jit(model.fn)
    logits = np.concatenate([fn(x[i : i + 250]) for i in range(0, 1000, 250)])
    again = np.asarray(jax.jit(models.load(name).fn)(x[:250]))
    assert np.array_equal(logits[:250], again)
    accuracy = float((logits.argmax(-1) == data.labels).mean())
    assert abs(accuracy - STATED_FIRST_1000[name]) <= 0.01, accuracy


def test_packaged_weights_are_checked_against_their_sha256(monkeypatch):
    name = min(models.registry.TRAINED)
    file, _ = models.registry.TRAINED[name]
    monkeypatch.setitem(models.registry.TRAINED, name, (file, "0" * 64))
    with pytest.raises(ValueError, match=f"SHA-256 of .*{file}.*expected 0000"):
        models.load(name)


# ------------------------------------------------------------ guided on both models
def _numpy_pool_backward(z, w, rule, window, stride, pad):
    """Reference for the two max-pool rules (guided.py's docstring) on ``[N, H, W,
    C]``: route the cotangent ``w`` (``max(w, 0)`` for "positive") to each window's
    argmax; "sign_mask" then multiplies by the nearest-neighbour upsampling of ``1[w >
    0]`` (``src = floor(dst * out / in)``)."""
    z, w = np.asarray(z, np.float64), np.asarray(w, np.float64)
    n_, h_in, w_in, c_ = z.shape
    out = np.zeros_like(z)
    cot = np.maximum(w, 0) if rule == "positive" else w
    for n in range(n_):
        for c in range(c_):
            for i in range(w.shape[1]):
                for j in range(w.shape[2]):
                    rows = range(
                        max(stride * i - pad, 0), min(stride * i - pad + window, h_in)
                    )
                    cols = range(
                        max(stride * j - pad, 0), min(stride * j - pad + window, w_in)
                    )
                    r, q = max(
                        ((r, q) for r in rows for q in cols),
                        key=lambda t: z[n, t[0], t[1], c],
                    )
                    out[n, r, q, c] += cot[n, i, j, c]
    if rule == "sign_mask":
        ri = (np.arange(h_in) * w.shape[1]) // h_in
        ci = (np.arange(w_in) * w.shape[2]) // w_in
        out = out * (w > 0)[:, ri][:, :, ci]
    return out


def _first_pool_split(model, x, target):
    """``(z, head, through)``: the input ``z`` of the model's first max-pool at ``x``,
    ``head(p)`` = the target logit with that pool's output replaced by ``p``, and
    ``through(z)`` = the target logit with that pool applied to ``z`` (the rest of the
    network unchanged). ``pool_fn`` is swapped on the first call of each trace."""
    captured = []

    def capture(y, *a, **k):
        if not captured:
            captured.append(y)
        return max_pool(y, *a, **k)

    model.module.clone(pool_fn=capture).apply(model.variables, model.normalise(x))

    def swapped(first):
        def logit(v):
            calls = []

            def pool_fn(y, *a, **k):
                calls.append(None)
                return first(v, a, k) if len(calls) == 1 else max_pool(y, *a, **k)

            module = model.module.clone(pool_fn=pool_fn)
            return module.apply(model.variables, model.normalise(x))[0, target]

        return logit

    head = swapped(lambda p, a, k: p)
    through = swapped(lambda z, a, k: max_pool(z, *a, **k))
    return captured[0], head, through


@pytest.mark.parametrize(
    "name, counts, window, stride, pad, overlapping",
    [
        ("cifar_vgg11_bn", {"relu": 10, "relu6": 0, "max_pool": 5}, 2, 2, 0, False),
        ("cifar_resnet18", {"relu": 17, "relu6": 0, "max_pool": 1}, 3, 2, 1, True),
    ],
)
def test_guided_on_the_max_pool_models(name, counts, window, stride, pad, overlapping):
    model = models.load(name)  # the weights that ship
    x = jnp.asarray(RNG.uniform(size=(1, 32, 32, 3)), jnp.float32)
    target = 3
    f = lambda v: model.fn(v)[0, target]
    assert jaxattr.count_guided(f, x) == counts
    for rule in ("positive", "sign_mask"):  # forward values unchanged, bit for bit
        assert np.array_equal(jaxattr.guided(f, max_pool=rule)(x), f(x))
    grads = {
        r: jax.grad(jaxattr.guided(f, max_pool=r))(x) for r in ("positive", "sign_mask")
    }
    assert all(
        np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0
        for g in grads.values()
    )

    # The first pool, built as its own case: z = the pool's input at x (post-ReLU, so
    # many ties at 0; a tiny distinct offset makes every argmax unique), w = the guided
    # gradient arriving at the pool's output from the rest of the network.
    z0, head, through = _first_pool_split(model, x, target)
    z = z0 + jnp.asarray(RNG.uniform(1e-4, 1e-3, z0.shape), z0.dtype)
    assert np.array_equal(jaxattr.guided(through)(z), through(z))
    got = {}
    for rule in ("positive", "sign_mask"):
        p = max_pool(z, (window, window), (stride, stride), ((pad, pad), (pad, pad)))
        w = jax.grad(jaxattr.guided(head, max_pool=rule))(p)
        assert float(w.max()) > 0 and float(w.min()) < 0  # both signs arrive
        got[rule] = np.asarray(jax.grad(jaxattr.guided(through, max_pool=rule))(z))
        expected = _numpy_pool_backward(z, w, rule, window, stride, pad)
        np.testing.assert_allclose(got[rule], expected, rtol=1e-5, atol=1e-7)
    assert got["positive"].min() >= 0
    if overlapping:  # ResNet's 3x3/s2 stem: the two rules differ
        assert not np.allclose(got["positive"], got["sign_mask"])
        assert got["sign_mask"].min() < 0  # the sign mask lets negatives through
    else:  # VGG's 2x2/s2 pools on even sizes: the two rules are equal
        assert np.array_equal(got["positive"], got["sign_mask"])
        assert np.array_equal(grads["positive"], grads["sign_mask"])
