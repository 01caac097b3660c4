"""NoiseTunnel (SmoothGrad, SmoothGrad^2, VarGrad) against known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from tests import helpers

KEY = jax.random.key(0)


def test_linear_model_gradient_is_noise_free():
    w = jnp.array([[0.5, -2.0], [3.0, 1.0]])
    f = lambda x: jnp.sum(w * x)
    x = jnp.array([[0.1, 0.2], [0.3, 0.4]])
    kw = {"key": KEY, "nt_samples": 7, "stdevs": 0.5, "abs": False}
    sg = jaxattr.noise_tunnel(jaxattr.saliency, f, x, nt_type="smoothgrad", **kw)
    sq = jaxattr.noise_tunnel(jaxattr.saliency, f, x, nt_type="smoothgrad_sq", **kw)
    vg = jaxattr.noise_tunnel(jaxattr.saliency, f, x, nt_type="vargrad", **kw)
    np.testing.assert_allclose(sg.attributions, w, rtol=1e-6)
    np.testing.assert_allclose(sq.attributions, w**2, rtol=1e-6)
    np.testing.assert_allclose(vg.attributions, 0.0, atol=1e-5)


def test_quadratic_model_moments_within_statistical_bounds():
    # grad sum(x^2) at x + e is 2(x + e): mean 2x, variance 4 sigma^2.
    f = lambda x: jnp.sum(x**2)
    x = jnp.linspace(-1.0, 1.0, 6)
    sigma, n = 0.3, 4000
    kw = {
        "key": KEY,
        "nt_samples": n,
        "stdevs": sigma,
        "abs": False,
        "nt_samples_batch_size": 1000,
    }
    sg = jaxattr.noise_tunnel(jaxattr.saliency, f, x, **kw)
    vg = jaxattr.noise_tunnel(jaxattr.saliency, f, x, nt_type="vargrad", **kw)
    se_mean = 2 * sigma / np.sqrt(n)
    np.testing.assert_allclose(sg.attributions, 2 * x, atol=5 * se_mean)
    se_var = 4 * sigma**2 * np.sqrt(2 / n)
    np.testing.assert_allclose(vg.attributions, 4 * sigma**2, atol=5 * se_var)


def test_determinism_and_chunk_invariance():
    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    f = jaxattr.scalar_output(model, 1)
    x = jax.random.uniform(jax.random.key(5), (8, 8, 3))
    run = lambda key, b: jaxattr.noise_tunnel(
        jaxattr.integrated_gradients,
        f,
        x,
        key=key,
        nt_samples=6,
        nt_samples_batch_size=b,
        n_steps=8,
    )
    a, b, c = run(KEY, None), run(KEY, 4), run(jax.random.key(1), None)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.delta, b.delta, atol=1e-6)
    np.testing.assert_array_equal(run(KEY, None).attributions, a.attributions)
    assert not np.allclose(a.attributions, c.attributions)
    assert a.delta.shape == (6,)


def test_explicit_noise_equals_the_manual_average():
    f = lambda x: jnp.sum(jnp.sin(x) * x)
    x = jnp.linspace(0.0, 2.0, 5)
    noise = jax.random.normal(jax.random.key(3), (4, 5))
    r = jaxattr.noise_tunnel(
        jaxattr.input_x_gradient,
        f,
        x,
        noise=noise,
        nt_samples=4,
        stdevs=0.2,
        nt_type="smoothgrad_sq",
    )
    manual = np.mean(
        [
            np.asarray(jaxattr.input_x_gradient(f, x + 0.2 * e).attributions) ** 2
            for e in noise
        ],
        axis=0,
    )
    np.testing.assert_allclose(r.attributions, manual, rtol=1e-5)


def test_stdev_spread_is_relative_to_the_input_range():
    f = lambda x: jnp.sum(x**3)
    x = jnp.array([0.0, 0.5, 2.0])
    noise = jax.random.normal(KEY, (3, 3))
    rel = jaxattr.noise_tunnel(
        jaxattr.saliency, f, x, noise=noise, nt_samples=3, stdev_spread=0.1
    )
    ab = jaxattr.noise_tunnel(
        jaxattr.saliency, f, x, noise=noise, nt_samples=3, stdevs=0.2
    )
    np.testing.assert_allclose(rel.aux["sigma"], 0.2, rtol=1e-6)
    np.testing.assert_allclose(rel.attributions, ab.attributions, rtol=1e-6)
    default = jaxattr.noise_tunnel(jaxattr.saliency, f, x, noise=noise, nt_samples=3)
    np.testing.assert_allclose(default.aux["sigma"], 0.15 * 2.0, rtol=1e-6)


def test_inner_random_baseline_gets_a_key_per_sample():
    f = lambda x: jnp.sum(x**2)
    x = jnp.ones(4)
    r = jaxattr.noise_tunnel(
        jaxattr.integrated_gradients,
        f,
        x,
        jaxattr.baselines.uniform(),
        key=KEY,
        nt_samples=3,
        n_steps=4,
    )
    assert np.isfinite(np.asarray(r.attributions)).all()
    with pytest.raises(ValueError, match="key is required"):
        jaxattr.noise_tunnel(
            jaxattr.integrated_gradients,
            f,
            x,
            "uniform",
            noise=jnp.zeros((2, 4)),
            nt_samples=2,
        )


def test_inner_quadrature_method_keyword_reaches_integrated_gradients():
    f = lambda x: jnp.sum(x**2)
    x = jnp.array([1.0, 2.0])
    noise = jnp.zeros((2, 2))
    left = jaxattr.noise_tunnel(
        jaxattr.integrated_gradients,
        f,
        x,
        noise=noise,
        nt_samples=2,
        n_steps=4,
        rule="riemann_left",
    )
    # Left Riemann on sum(x^2) from 0 gives x^2 * (1 - 1/n) with zero noise.
    np.testing.assert_allclose(left.attributions, x**2 * 0.75, rtol=1e-6)
