"""Every method of `jaxattr.registry` under `jit` (equal to eager, no retracing when
only the image, the target or the key changes) and under `vmap` over keys; a noise
tunnel around a path method; `vmap` over a continuous hyperparameter; `attribute`,
`scalar_output` and `from_flax`.

The methods run through the registry's test table (`tests/methods/test_registry.py`:
its tiny model, inputs, cheap settings and compiled functions, shared with it), which
also checks `vmap` over images and targets, one key twice, float64 and bad inputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import registry
from tests import helpers
from tests.methods import test_registry as table

MODEL = helpers.tiny_cnn(helpers.tiny_cnn_params(seed=1))
XS = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
TARGETS = jnp.array([0, 4, 7])
KEY = jax.random.key(42)
RANDOM = [n for n in table.NAMES if registry.METHODS[n].key]


def table_args(name, i=0, key=table.KEY):
    """`(model_fn, x, target, key, *extra)` of the table's image `i`."""
    return (table.MODEL.fn, table.XS[i], table.TARGETS[i], key, *table.extra(name))


@pytest.mark.parametrize("name", table.NAMES)
def test_jit_equals_eager_without_retracing(name, monkeypatch):
    """The table's compiled function, on a second image, target and key: a retrace
    would call the jaxattr function again, which then counts its calls."""
    entry = registry.METHODS[name]
    jitted = table.jitted(name)
    first = jitted(*table_args(name, 0, jax.random.key(0)))
    calls = []
    function = getattr(jaxattr, entry.function)

    def counting(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    monkeypatch.setattr(jaxattr, entry.function, counting)
    jax.block_until_ready(jitted(*table_args(name, 1, jax.random.key(1))))
    assert not calls, f"{name}: traced again for a new image, target or key"
    monkeypatch.undo()
    eager = table.explain(name)(*table_args(name, 0, jax.random.key(0)))
    np.testing.assert_allclose(
        first.attributions, eager.attributions, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", RANDOM)
def test_vmap_over_keys_equals_a_loop(name):
    keys = jax.random.split(table.KEY, 2)
    axes = (None, None, None, 0) + (None,) * len(table.extra(name))
    args = table_args(name)
    batched = jax.jit(jax.vmap(table.explain(name), in_axes=axes))(
        *args[:3], keys, *args[4:]
    )
    for i in range(len(keys)):
        single = table.jitted(name)(*table_args(name, key=keys[i]))
        np.testing.assert_allclose(
            batched.attributions[i], single.attributions, rtol=1e-4, atol=1e-6
        )
    assert not np.allclose(batched.attributions[0], batched.attributions[1])


def test_noise_tunnel_around_a_path_method_under_jit_and_vmap():
    """VarGrad of IG, chunked: `vmap` over images, targets and keys equals a loop."""

    def explain(x, t, key):
        f = jaxattr.scalar_output(MODEL, t)
        return jaxattr.noise_tunnel(
            jaxattr.integrated_gradients,
            f,
            x,
            key=key,
            nt_type="vargrad",
            nt_samples=3,
            n_steps=4,
            nt_samples_batch_size=2,
        )

    keys = jax.random.split(KEY, 3)
    batched = jax.jit(jax.vmap(explain))(XS, TARGETS, keys)
    single = jax.jit(explain)
    for i in range(3):
        np.testing.assert_allclose(
            batched.attributions[i],
            single(XS[i], TARGETS[i], keys[i]).attributions,
            rtol=1e-5,
            atol=1e-7,
        )
    assert not np.allclose(batched.attributions[0], batched.attributions[1])


def test_vmap_over_a_continuous_hyperparameter():
    f = jaxattr.scalar_output(MODEL, 3)
    sigmas = jnp.array([0.0, 0.05, 0.2])
    sweep = jax.jit(
        jax.vmap(
            lambda s: jaxattr.noise_tunnel(
                jaxattr.saliency, f, XS[0], key=KEY, stdevs=s, nt_samples=4
            )
        )
    )(sigmas)
    for i, s in enumerate(sigmas):
        single = jaxattr.noise_tunnel(
            jaxattr.saliency, f, XS[0], key=KEY, stdevs=float(s), nt_samples=4
        )
        np.testing.assert_allclose(
            sweep.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
        )
    plain = jaxattr.saliency(f, XS[0])
    np.testing.assert_allclose(sweep.attributions[0], plain.attributions, rtol=1e-5)


def test_no_retrace_for_a_new_baseline_or_noise_level():
    traces = []
    f_of = lambda t: jaxattr.scalar_output(MODEL, t)

    @jax.jit
    def explain(x, baseline, stdevs):
        traces.append(1)
        ig = jaxattr.integrated_gradients(f_of(1), x, baseline, n_steps=4)
        sg = jaxattr.noise_tunnel(
            jaxattr.saliency, f_of(1), x, key=KEY, stdevs=stdevs, nt_samples=2
        )
        return ig.attributions, sg.attributions

    explain(XS[0], jnp.zeros_like(XS[0]), 0.1)
    explain(XS[1], jnp.full_like(XS[0], 0.5), 0.3)
    assert len(traces) == 1


def test_attribute_with_callable_and_broadcast_targets():
    r = jaxattr.attribute(jaxattr.saliency, MODEL, XS, lambda z: jnp.argmax(z, -1))
    pred = jnp.argmax(MODEL(XS), -1)
    for i in range(3):
        single = jaxattr.saliency(jaxattr.scalar_output(MODEL, int(pred[i])), XS[i])
        np.testing.assert_allclose(r.attributions[i], single.attributions, rtol=1e-6)
    same = jaxattr.attribute(jaxattr.saliency, MODEL, XS, 5)
    np.testing.assert_allclose(
        same.attributions[1],
        jaxattr.saliency(jaxattr.scalar_output(MODEL, 5), XS[1]).attributions,
        rtol=1e-6,
    )


def test_scalar_output_with_callable_target_and_output_transforms():
    x = XS[0]
    logits = MODEL(x[None])[0]
    f = jaxattr.scalar_output(MODEL, jnp.argmax, x=x)
    np.testing.assert_allclose(f(x), logits.max(), rtol=1e-6)
    p = jaxattr.scalar_output(MODEL, 2, output="softmax")
    np.testing.assert_allclose(p(x), jax.nn.softmax(logits)[2], rtol=1e-6)
    lp = jaxattr.scalar_output(MODEL, 2, output="log_softmax")
    np.testing.assert_allclose(lp(x), jax.nn.log_softmax(logits)[2], rtol=1e-6)
    unbatched = jaxattr.scalar_output(lambda z: MODEL(z[None])[0], 2, batched=False)
    np.testing.assert_allclose(unbatched(x), logits[2], rtol=1e-6)


def test_per_example_baselines_in_attribute():
    bases = jnp.stack([jnp.full((8, 8, 3), v) for v in (0.0, 0.2, 0.4)])
    r = jaxattr.attribute(
        jaxattr.integrated_gradients, MODEL, XS, TARGETS, baseline=bases, n_steps=4
    )
    for i in range(3):
        f = jaxattr.scalar_output(MODEL, int(TARGETS[i]))
        single = jaxattr.integrated_gradients(f, XS[i], bases[i], n_steps=4)
        np.testing.assert_allclose(
            r.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
        )


def test_from_flax():
    flax = pytest.importorskip("flax.linen")

    class Net(flax.Module):
        @flax.compact
        def __call__(self, x, train: bool = True):
            x = flax.Conv(4, (3, 3))(x)
            x = flax.BatchNorm(use_running_average=not train)(x)
            return flax.Dense(3)(jax.nn.relu(x).mean((1, 2)))

    net = Net()
    variables = net.init(jax.random.key(0), XS, train=False)
    model_fn = jaxattr.from_flax(net.apply, variables, train=False)
    np.testing.assert_allclose(model_fn(XS), net.apply(variables, XS, train=False))
    r = jaxattr.integrated_gradients(
        jaxattr.scalar_output(model_fn, 1), XS[0], n_steps=16
    )
    assert abs(float(r.delta)) < 1e-2 * max(
        1.0, abs(float(r.aux["f_x"] - r.aux["f_baseline"][0]))
    )
