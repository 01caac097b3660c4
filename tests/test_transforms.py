"""Every method under jit and vmap (images, targets, keys, continuous hyperparameters),
without retracing when only data changes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from tests import helpers

MODEL = helpers.tiny_cnn(helpers.tiny_cnn_params(seed=1))
XS = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
TARGETS = jnp.array([0, 4, 7])
KEY = jax.random.key(42)

ALL_METHODS = {
    "saliency": (jaxattr.saliency, {}),
    "input_x_gradient": (jaxattr.input_x_gradient, {}),
    "integrated_gradients": (
        jaxattr.integrated_gradients,
        {"n_steps": 8, "batch_size": 3},
    ),
    "smoothgrad": (
        functools.partial(jaxattr.noise_tunnel, jaxattr.saliency),
        {"nt_samples": 4, "stdevs": 0.1},
    ),
    "vargrad_ig": (
        functools.partial(jaxattr.noise_tunnel, jaxattr.integrated_gradients),
        {
            "nt_type": "vargrad",
            "nt_samples": 3,
            "n_steps": 4,
            "nt_samples_batch_size": 2,
        },
    ),
}
STOCHASTIC = {"smoothgrad", "vargrad_ig"}


def run(name, x, t, key=KEY):
    method, kwargs = ALL_METHODS[name]
    f = jaxattr.scalar_output(MODEL, t)
    if name in STOCHASTIC:
        kwargs = dict(kwargs, key=key)
    return method(f, x, **kwargs)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_jit_equals_eager_and_shapes(name):
    eager = run(name, XS[0], 4)
    jitted = jax.jit(lambda x, t: run(name, x, t))(XS[0], 4)
    assert eager.attributions.shape == XS[0].shape
    assert eager.attributions.dtype == XS.dtype
    assert np.isfinite(np.asarray(eager.attributions)).all()
    np.testing.assert_allclose(
        jitted.attributions, eager.attributions, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("name", ALL_METHODS)
def test_vmap_over_images_and_targets_equals_a_loop(name):
    batched = jax.vmap(lambda x, t: run(name, x, t))(XS, TARGETS)
    for i in range(3):
        single = run(name, XS[i], int(TARGETS[i]))
        np.testing.assert_allclose(
            batched.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_vmap_over_keys(name):
    keys = jax.random.split(KEY, 3)
    batched = jax.vmap(lambda k: run(name, XS[0], 2, k))(keys)
    for i in range(3):
        single = run(name, XS[0], 2, keys[i])
        np.testing.assert_allclose(
            batched.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
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


@pytest.mark.parametrize("name", ALL_METHODS)
def test_no_retrace_when_image_target_or_key_change(name):
    traces = []

    @jax.jit
    def explain(x, t, key):
        traces.append(1)
        return run(name, x, t, key)

    for i in range(3):
        explain(XS[i], TARGETS[i], jax.random.key(i)).attributions.block_until_ready()
    assert len(traces) == 1


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
