"""Every bad input raises a clear error naming the argument and the received value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import baselines
from tests import helpers

F = lambda x: jnp.sum(x**2)
X = jnp.ones((4, 4, 3))


def test_baseline_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"baseline must broadcast to x.shape \(4, 4, 3\); got shape \(1, 4, 4, 3\)",
    ):
        jaxattr.integrated_gradients(F, X, jnp.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(5, 3\)"):
        jaxattr.integrated_gradients(F, X, np.zeros((5, 3)))


def test_integer_images():
    with pytest.raises(TypeError, match="x must have a floating dtype.*got uint8"):
        jaxattr.integrated_gradients(F, jnp.ones((4, 4, 3), jnp.uint8))
    with pytest.raises(TypeError, match="x must have a floating dtype.*got int32"):
        jaxattr.saliency(F, jnp.ones((4, 4, 3), jnp.int32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input(bad):
    x = np.ones((4, 4, 3), np.float32)
    x[1, 2, 0] = bad
    for method in (
        jaxattr.integrated_gradients,
        jaxattr.saliency,
        jaxattr.input_x_gradient,
    ):
        with pytest.raises(ValueError, match="x must be finite; got 1 NaN or inf"):
            method(F, jnp.asarray(x))
    with pytest.raises(ValueError, match="baseline must be finite"):
        jaxattr.integrated_gradients(F, X, jnp.asarray(x))


def test_target_out_of_range():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3))
    f = jaxattr.scalar_output(model, 10)
    with pytest.raises(
        ValueError,
        match=r"target must be in \[0, 10\) for a model with 10 outputs; got 10",
    ):
        jaxattr.integrated_gradients(f, x)
    with pytest.raises(ValueError, match=r"got -1"):
        jaxattr.saliency(jaxattr.scalar_output(model, -1), x)
    with pytest.raises(
        ValueError, match=r"target must be in \[0, 10\).*got values in \[0, 12\]"
    ):
        jaxattr.attribute(
            jaxattr.saliency, model, jnp.ones((2, 8, 8, 3)), jnp.array([0, 12])
        )
    with pytest.raises(
        TypeError,
        match="target must be None, an integer class index or a callable; got float",
    ):
        jaxattr.scalar_output(model, 2.0)


def test_traced_target_out_of_range_gives_nan_not_a_wrong_class():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    x = jnp.ones((8, 8, 3))

    @jax.jit
    def explain(t):
        return jaxattr.integrated_gradients(
            jaxattr.scalar_output(model, t), x, n_steps=4
        )

    assert np.isnan(np.asarray(explain(10).attributions)).all()
    assert np.isfinite(np.asarray(explain(9).attributions)).all()


@pytest.mark.parametrize("n_steps", [0, -3])
def test_n_steps_below_one(n_steps):
    with pytest.raises(
        ValueError, match=f"integrated_gradients: n_steps must be >= 1.*got {n_steps}"
    ):
        jaxattr.integrated_gradients(F, X, n_steps=n_steps)


def test_n_steps_not_an_int():
    with pytest.raises(TypeError, match="n_steps must be a Python int.*got float 10.0"):
        jaxattr.integrated_gradients(F, X, n_steps=10.0)


def test_unknown_rule():
    with pytest.raises(
        ValueError, match="method must be one of riemann_left.*got 'trapz'"
    ):
        jaxattr.integrated_gradients(F, X, method="trapz")


def test_unknown_baseline_name_and_output():
    with pytest.raises(ValueError, match="baseline name must be one of.*got 'grey'"):
        jaxattr.integrated_gradients(F, X, "grey")
    with pytest.raises(ValueError, match="output must be one of.*got 'probs'"):
        jaxattr.scalar_output(lambda x: x, 0, output="probs")


def test_missing_key_for_stochastic_methods():
    with pytest.raises(
        ValueError, match=r"noise_tunnel: key is required \(the noise is random\)"
    ):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X)
    with pytest.raises(
        ValueError,
        match=r"integrated_gradients: key is required \(a baseline is random\)",
    ):
        jaxattr.integrated_gradients(F, X, baselines.uniform())
    with pytest.raises(ValueError, match="key is required"):
        jaxattr.integrated_gradients(F, X, "uniform")
    with pytest.raises(TypeError, match="key must be a single JAX PRNG key"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=0)


def test_non_scalar_f():
    with pytest.raises(
        ValueError, match=r"f must map one example to a scalar; got output \(4, 4, 3\)"
    ):
        jaxattr.integrated_gradients(lambda x: x * 2, X)
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    with pytest.raises(
        ValueError, match="target is None, so the model must have one output"
    ):
        jaxattr.saliency(jaxattr.scalar_output(model), jnp.ones((8, 8, 3)))


def test_callable_target_needs_x():
    with pytest.raises(ValueError, match="callable target .*needs x="):
        jaxattr.scalar_output(lambda x: x, jnp.argmax)


def test_attribute_callable_target_must_give_one_class_per_example():
    """`jnp.argmax` without an axis gives one flat index for the batch; under `jit`
    it used to be broadcast to every example and give NaN. Now: an error, traced or
    not, naming the shapes."""
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    xs = jnp.ones((3, 8, 8, 3))
    msg = r"attribute: a callable target must map the outputs \(3, 10\) .* \(3,\); got shape \(\)"
    for call in (
        lambda xs: jaxattr.attribute(jaxattr.saliency, model, xs, jnp.argmax),
        jax.jit(lambda xs: jaxattr.attribute(jaxattr.saliency, model, xs, jnp.argmax)),
    ):
        with pytest.raises(ValueError, match=msg):
            call(xs)
    r = jaxattr.attribute(jaxattr.saliency, model, xs, lambda z: jnp.argmax(z, -1))
    assert r.attributions.shape == xs.shape


def test_noise_tunnel_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="nt_type must be one of.*got 'smooth'"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=key, nt_type="smooth")
    with pytest.raises(ValueError, match="not both"):
        jaxattr.noise_tunnel(
            jaxattr.saliency, F, X, key=key, stdevs=0.1, stdev_spread=0.1
        )
    with pytest.raises(ValueError, match="nt_samples must be >= 1; got 0"):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, key=key, nt_samples=0)
    with pytest.raises(
        ValueError, match=r"noise must have shape .*\(5, 4, 4, 3\); got \(4, 4, 3\)"
    ):
        jaxattr.noise_tunnel(jaxattr.saliency, F, X, noise=jnp.zeros((4, 4, 3)))


def test_batch_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        jaxattr.integrated_gradients(F, X, batch_size=0)
