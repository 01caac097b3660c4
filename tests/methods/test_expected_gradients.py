"""Expected Gradients: exact on a linear model, the closed-form expectation of a
quadratic by Monte Carlo, chunking, jit/vmap and errors. (Parity with Captum's
GradientShap is in tests/test_captum_parity.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr

W = jnp.array([0.5, -2.0, 1.0, 3.0])
REFS = jax.random.normal(jax.random.key(0), (5, 4))
X = jnp.array([1.0, 2.0, -1.0, 0.5])


def test_linear_model_is_exact_for_any_draws():
    r = jaxattr.expected_gradients(
        lambda x: W @ x, X, REFS, n_samples=7, key=jax.random.key(1)
    )
    expected = ((X - REFS[r.aux["indices"]]) * W).mean(0)
    np.testing.assert_allclose(r.attributions, expected, rtol=1e-6, atol=1e-6)
    # For a linear model every sample is complete, so the delta vanishes.
    assert abs(float(r.delta)) < 1e-5


def test_quadratic_expectation():
    """f = sum(x^2)/2: E_a[(x - r) * (r + a (x - r))] = (x^2 - r^2)/2, averaged over
    the background set."""
    r = jaxattr.expected_gradients(
        lambda x: 0.5 * jnp.sum(x**2),
        X,
        REFS,
        n_samples=20000,
        key=jax.random.key(2),
        batch_size=4096,
    )
    expected = (0.5 * (X**2 - REFS**2)).mean(0)
    # Monte Carlo error ~ std / sqrt(n); the sample std here is below 3.
    np.testing.assert_allclose(r.attributions, expected, atol=0.06)
    assert not np.allclose(r.attributions, 0.5 * (X**2 - REFS[0] ** 2), atol=0.06)


def test_draws_are_uniform_over_references_and_alphas():
    r = jaxattr.expected_gradients(
        lambda x: jnp.sum(x), X, REFS, n_samples=5000, key=jax.random.key(3)
    )
    counts = np.bincount(np.asarray(r.aux["indices"]), minlength=5)
    assert counts.min() > 850 and counts.max() < 1150
    a = np.asarray(r.aux["alphas"])
    assert 0 <= a.min() and a.max() <= 1 and abs(a.mean() - 0.5) < 0.02


def test_chunking_does_not_change_the_result():
    f = lambda x: jnp.sum(jnp.tanh(x) * W)
    kw = {"n_samples": 13, "key": jax.random.key(4), "stdevs": 0.1}
    a = jaxattr.expected_gradients(f, X, REFS, **kw)
    b = jaxattr.expected_gradients(f, X, REFS, batch_size=4, **kw)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-5, atol=1e-6)


def test_jit_and_vmap_over_images_and_keys():
    f = lambda x: jnp.sum(jnp.sin(x) * W)
    xs = jax.random.normal(jax.random.key(5), (3, 4))
    keys = jax.random.split(jax.random.key(6), 3)

    def run(x, k):
        return jaxattr.expected_gradients(f, x, REFS, n_samples=8, key=k).attributions

    batched = jax.jit(jax.vmap(run))(xs, keys)
    for i in range(3):
        np.testing.assert_allclose(
            batched[i], run(xs[i], keys[i]), rtol=1e-5, atol=1e-6
        )


def test_errors():
    f = lambda x: jnp.sum(x)
    with pytest.raises(ValueError, match=r"key"):
        jaxattr.expected_gradients(f, X, REFS)
    with pytest.raises(
        ValueError, match=r"references must have shape \[R, \*x.shape\]"
    ):
        jaxattr.expected_gradients(f, X, REFS[:, :3], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"alphas must have shape \(50,\)"):
        jaxattr.expected_gradients(
            f, X, REFS, indices=jnp.zeros(50, int), alphas=jnp.zeros(3)
        )
    with pytest.raises(TypeError, match=r"indices must be integers"):
        jaxattr.expected_gradients(
            f, X, REFS, n_samples=2, indices=jnp.zeros(2), alphas=jnp.zeros(2)
        )
