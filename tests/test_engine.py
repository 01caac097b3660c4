"""The path-integral engine: chunking, general paths, node re-weighting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr import engine, quadrature


@pytest.mark.parametrize("batch_size", [None, 1, 3, 4, 10, 99])
def test_chunked_sum_equals_a_plain_sum_and_stack(batch_size):
    xs = (jnp.arange(10.0), jnp.arange(20.0).reshape(10, 2))
    fn = lambda item: ({"a": item[0] * item[1], "b": item[0] ** 2}, item[1].sum())
    summed, stacked = engine.chunked_sum(fn, xs, batch_size=batch_size)
    np.testing.assert_allclose(summed["a"], (xs[0][:, None] * xs[1]).sum(0))
    np.testing.assert_allclose(summed["b"], (xs[0] ** 2).sum())
    np.testing.assert_allclose(stacked, xs[1].sum(1))


def test_chunked_sum_under_jit_and_vmap():
    fn = lambda item: (jnp.sin(item), item)
    run = jax.jit(jax.vmap(lambda x: engine.chunked_sum(fn, x, batch_size=4)[0]))
    xs = jnp.arange(30.0).reshape(3, 10)
    np.testing.assert_allclose(run(xs), jnp.sin(xs).sum(1), rtol=1e-6)


def test_curved_path_uses_its_velocity():
    # gamma(a) = a^2 x; for f = sum(z^2) the path integral of grad f . gamma' is x^2.
    x = jnp.array([1.0, -2.0, 0.5])
    alphas, weights = quadrature.nodes_and_weights("gausslegendre", 8)
    out = engine.path_integral(
        lambda z: jnp.sum(z**2), lambda a: a**2 * x, alphas, weights, batch_size=3
    )
    np.testing.assert_allclose(out.integral, x**2, rtol=1e-6)
    # dF/dalpha along the path: d/da sum(a^4 x^2) = 4 a^3 sum(x^2).
    np.testing.assert_allclose(out.slopes, 4 * alphas**3 * np.sum(x**2), rtol=1e-5)
    np.testing.assert_allclose(out.values, alphas**4 * np.sum(x**2), rtol=1e-5)


def test_weight_fn_reweights_nodes_from_values_and_slopes():
    x = jnp.array([1.0, 2.0])
    alphas, weights = quadrature.nodes_and_weights("riemann_middle", 4)
    f = lambda z: jnp.sum(z**2)
    out = engine.path_integral(
        f,
        lambda a: a * x,
        alphas,
        weights,
        weight_fn=lambda w, v, s: w * s,
        batch_size=3,
    )
    # grad f(a x) * x * w * slope, slope = 2 a |x|^2.
    expected = sum(w * (2 * a * 5.0) * 2 * a * x * x for a, w in zip(alphas, weights))
    np.testing.assert_allclose(out.integral, expected, rtol=1e-6)


def test_chunked_sum_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        engine.chunked_sum(lambda x: (x, x), jnp.ones(3), batch_size=0)


def test_many_chunks_with_padding():
    n = 67
    xs = jnp.linspace(0.0, 1.0, n)
    fn = lambda a: (jnp.cos(a), a * 2)
    summed, stacked = engine.chunked_sum(fn, xs, batch_size=2)
    np.testing.assert_allclose(summed, jnp.cos(xs).sum(), rtol=1e-6)
    np.testing.assert_allclose(stacked, xs * 2)


def _temp_bytes(n_steps, batch_size):
    from tests import helpers

    model = helpers.tiny_cnn(helpers.tiny_cnn_params())
    import jaxattr

    def explain(x):
        f = jaxattr.scalar_output(model, 1)
        return jaxattr.integrated_gradients(
            f, x, n_steps=n_steps, batch_size=batch_size
        )

    x = jnp.ones((32, 32, 3))
    return jax.jit(explain).lower(x).compile().memory_analysis().temp_size_in_bytes


def test_memory_grows_with_the_chunk_not_with_the_steps():
    # XLA's own count of the compiled program's temporary buffers.
    small = _temp_bytes(64, 4)
    assert _temp_bytes(256, 4) < 1.2 * small
    assert _temp_bytes(64, 16) > 2.5 * small
    assert _temp_bytes(64, None) > 8 * small
