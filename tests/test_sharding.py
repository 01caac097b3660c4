"""jaxattr.sharding: a batch split over 4 (virtual CPU) devices gives the one-device
results; bad batches raise clear errors."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import sharding

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process: the device count is fixed when JAX starts.
FOUR_DEVICES = textwrap.dedent(
    """
    import functools
    import jax, jax.numpy as jnp, numpy as np
    import jaxattr
    from jaxattr import metrics, sharding
    from tests import helpers

    assert len(jax.devices()) == 4, jax.devices()
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, 8, 8, 3)).astype(np.float32)  # N = 6: padded to 8
    t = np.array([0, 1, 2, 3, 4, 5])

    # XLA's CPU kernels may round differently for a batch of 6 (one device) and of
    # 2 (each of 4 devices), at the last ulp; wrong keys, rows or padding would
    # differ by O(1). So: tight tolerance against the N = 6 call, and bit equality
    # against the one-device call on each device's 2 rows.
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)

    ig = sharding.attribute(jaxattr.integrated_gradients, model, x, t, n_steps=8)
    assert ig.attributions.shape == x.shape
    assert np.isfinite(ig.attributions).all() and np.abs(ig.attributions).max() > 0
    ig_one = jax.jit(
        lambda x, t: jaxattr.attribute(jaxattr.integrated_gradients, model, x, t, n_steps=8)
    )
    jax.tree.map(close, ig, ig_one(x, t))
    for i in range(0, 6, 2):
        rows = ig_one(x[i:i+2], t[i:i+2])
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i:i+2], b), ig, rows)

    # Stochastic: SmoothGrad's noise comes from the per-example keys split(key, 6),
    # which padding to 8 must not change. (A smooth MLP: the noise changes its
    # gradients, and random draws compile faster on small examples.)
    w = jnp.asarray(rng.normal(0, 1, (5, 4)), jnp.float32)
    mlp = lambda v: jnp.tanh(v @ w)
    v = rng.uniform(0, 1, (6, 5)).astype(np.float32)
    key = jax.random.key(3)
    smooth = functools.partial(jaxattr.noise_tunnel, jaxattr.saliency)
    sg = sharding.attribute(smooth, mlp, v, t % 4, key=key, nt_samples=3)
    sg_one = jax.jit(
        lambda v, t, key: jaxattr.attribute(smooth, mlp, v, t, key=key, nt_samples=3)
    )
    assert np.isfinite(sg.attributions).all()
    jax.tree.map(close, sg, sg_one(v, t % 4, key))
    other = sg_one(v, t % 4, jax.random.key(4)).attributions
    assert np.abs(sg.attributions - other).max() > 1e-3

    # A metric over N = 8 (a multiple of 4): outputs stay sharded, one block of 2
    # rows per device.
    x8 = rng.uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
    a8 = rng.normal(0, 1, (8, 8, 8, 3)).astype(np.float32)
    t8 = np.arange(8) % 10

    def deletion(x, a, t, *, model_fn):
        one = lambda x, a, t: metrics.deletion(
            model_fn, x, a, target=t, step=16, batch_size=None
        ).score
        return jax.vmap(one)(x, a, t)

    scores = sharding.sharded(deletion)(x8, a8, t8, model_fn=model)
    close(scores, jax.jit(functools.partial(deletion, model_fn=model))(x8, a8, t8))
    assert scores.sharding.spec == jax.sharding.PartitionSpec("batch"), scores.sharding
    shards = scores.addressable_shards
    assert sorted(s.device.id for s in shards) == [0, 1, 2, 3]
    assert all(s.data.shape == (2,) for s in shards)
    # One process: its local rows are the whole batch.
    local = sharding.sharded(deletion, inputs_are_process_local=True)
    np.testing.assert_array_equal(local(x8, a8, t8, model_fn=model), scores)
    try:
        local(x8[:6], a8[:6], t8[:6], model_fn=model)
        raise AssertionError("N = 6 on 4 local devices should raise")
    except ValueError as e:
        assert "multiple of its 4 devices" in str(e), e
    print("OK")
    """
)


def test_four_devices_match_one_device():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (
        proc.stdout + proc.stderr
    )


# Two processes of 2 CPU devices each, joined by jax.distributed: one global mesh
# of 4 devices, as on a pod. argv: coordinator port, process id.
TWO_HOSTS = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import jax.numpy as jnp, numpy as np
    import jaxattr
    from jaxattr import sharding
    from tests import helpers

    assert jax.process_count() == 2 and len(jax.devices()) == 4
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 3])
    one = jax.jit(lambda x, t: jaxattr.attribute(jaxattr.saliency, model, x, t))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # Each process passes its own 2 rows; the global batch is their concatenation.
    mine = slice(2 * pid, 2 * pid + 2)
    out = sharding.attribute(
        jaxattr.saliency, model, x[mine], t[mine], inputs_are_process_local=True
    ).attributions
    assert out.shape == x.shape and len(out.addressable_shards) == 2
    for s in out.addressable_shards:
        rows = s.index[0]
        assert rows.start // 2 == pid, (pid, s.index)
        close(s.data, one(x[rows], t[rows]).attributions)

    # Every process passes the same global batch of 3: padded to 4, then gathered.
    out = sharding.attribute(jaxattr.saliency, model, x[:3], t[:3]).attributions
    close(out.addressable_shards[0].data, one(x[:3], t[:3]).attributions)
    print("OK")
    """
)


def test_two_processes_share_one_mesh():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_HOSTS, str(port), str(pid)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0 and "OK" in log.splitlines(), log


TRACES = []


def scale(x, *, w):
    TRACES.append(x.shape)
    return x * w


def test_one_device_runs_and_reuses_the_compiled_function():
    g = sharding.sharded(scale)
    x = np.arange(6.0, dtype=np.float32).reshape(3, 2)
    TRACES.clear()
    for w in (2.0, 3.0):  # an array keyword: traced, so no retrace
        np.testing.assert_array_equal(g(x, w=jnp.float32(w)), x * w)
    assert len(TRACES) == 1
    g(x, w=np.float32(5.0))  # the same shape and dtype as a NumPy array
    assert len(TRACES) == 1


def linear(w, x):
    TRACES.append(x.shape)
    return x @ w


def test_new_weights_do_not_retrace():
    # A model as a pytree (jaxattr.models.load gives a Partial): weights are traced.
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    for i, w in enumerate(
        [np.ones((3, 1), np.float32), np.full((3, 1), 2.0, np.float32)]
    ):
        model = jax.tree_util.Partial(linear, jnp.asarray(w))
        got = sharding.attribute(jaxattr.saliency, model, x, abs=False)
        np.testing.assert_array_equal(
            got.attributions, np.broadcast_to(w[:, 0], x.shape)
        )
        if i == 0:
            TRACES.clear()
    assert TRACES == []


def test_attribute_on_one_device_matches_jaxattr_attribute():
    f = lambda x: jnp.stack([jnp.sum(x**2, axis=-1), jnp.sum(x, axis=-1)], -1)
    x = jnp.linspace(0.1, 1.0, 12).reshape(4, 3)
    got = sharding.attribute(jaxattr.saliency, f, x, np.array([0, 1, 0, 1]))
    want = jax.jit(lambda x, t: jaxattr.attribute(jaxattr.saliency, f, x, t))
    jax.tree.map(np.testing.assert_array_equal, got, want(x, np.array([0, 1, 0, 1])))
    np.testing.assert_allclose(got.attributions[0], 2 * x[0], rtol=1e-6)


@pytest.mark.parametrize("attribute", [jaxattr.attribute, sharding.attribute])
def test_baselines_is_a_deprecated_alias_of_baseline(attribute):
    f = lambda x: jnp.stack([jnp.sum(x**2, axis=-1), jnp.sum(x, axis=-1)], -1)
    x = jnp.linspace(0.1, 1.0, 12).reshape(4, 3)
    t, b = np.array([0, 1, 0, 1]), jnp.full((4, 3), 0.05)
    ig, kw = jaxattr.integrated_gradients, {"n_steps": 3}
    want = attribute(ig, f, x, t, baseline=b, **kw)
    with pytest.warns(DeprecationWarning, match="baselines= is deprecated; use base"):
        got = attribute(ig, f, x, t, baselines=b, **kw)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    zero = attribute(ig, f, x, t, **kw)  # another baseline: the alias is not ignored
    assert not np.allclose(zero.attributions, want.attributions)
    with pytest.raises(TypeError, match="got both baseline= and its deprecated name"):
        attribute(ig, f, x, t, baseline=b, baselines=b, **kw)


def test_batch_errors():
    g = sharding.sharded(scale)
    with pytest.raises(
        ValueError,
        match=r"same leading batch size N; got args\[0\] with 3, args\[1\]"
        r" with 2",
    ):
        sharding.sharded(lambda a, b: a + b[:1])(np.ones((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"batch is empty \(N = 0\)"):
        g(np.ones((0, 2)), w=1.0)
    with pytest.raises(
        ValueError, match=r"leading batch axis \[N, \.\.\.\]; got args\[0\]"
    ):
        g(np.float32(1.0), w=1.0)
    with pytest.raises(ValueError, match="at least one positional"):
        g(w=1.0)
    with pytest.raises(
        TypeError, match=r"kwargs\['w'\] must be an array .* unhashable"
    ):
        g(np.ones((2, 2)), w=_Unhashable())
    with pytest.raises(ValueError, match=r"output\[1\] of shape \(\)"):
        sharding.sharded(lambda x: (x, x.sum()))(np.ones((2, 2)))
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(g)(jnp.ones((2, 2)), w=1.0)


class _Unhashable:
    __hash__ = None


def test_argument_errors():
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        sharding.sharded(scale, mesh="batch")(np.ones((2, 2)), w=1.0)
    with pytest.raises(TypeError, match="fn must be callable; got int"):
        sharding.sharded(3)
    with pytest.raises(ValueError, match="non-empty sequence of jax.Device"):
        sharding.batch_mesh([])
    f = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], -1)
    x = jnp.ones((3, 2))
    with pytest.raises(
        ValueError, match=r"target must be in \[0, 2\) .* got values in \[0, 2\]"
    ):
        sharding.attribute(jaxattr.saliency, f, x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \[N\] = \(3,\); got shape \(2,\)"):
        sharding.attribute(jaxattr.saliency, f, x, np.array([0, 1]))
    with pytest.raises(TypeError, match="inputs must have a floating dtype"):
        sharding.attribute(jaxattr.saliency, f, jnp.ones((3, 2), jnp.int32), 0)


def test_padding_that_would_change_the_keys_raises():
    key = jax.random.key(0)
    sharding._check_split_is_prefix(key, 6, 8, "test")  # the default PRNG: fine
    with (
        jax.threefry_partitionable(False),
        pytest.raises(ValueError, match="padding N = 6 to 8 .* per-example keys"),
    ):
        sharding._check_split_is_prefix(key, 6, 8, "test")
