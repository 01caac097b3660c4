"""The path-integral engine: chunking, general paths, node re-weighting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr import engine, quadrature
from tests.conftest import PRODUCT_COMPILE


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
    return (
        jax.jit(explain).lower(x).compile(PRODUCT_COMPILE).memory_analysis()
    ).temp_size_in_bytes


def test_memory_grows_with_the_chunk_not_with_the_steps():
    # XLA's own count of the compiled program's temporary buffers.
    small = _temp_bytes(64, 4)
    assert _temp_bytes(256, 4) < 1.2 * small
    assert _temp_bytes(64, 16) > 2.5 * small
    assert _temp_bytes(64, None) > 8 * small


# ------------------------------------------------- the pieces every path method uses


@pytest.mark.parametrize("batch_size", [None, 1, 3, 7, 99])
def test_chunked_map_equals_a_plain_map(batch_size):
    xs = (jnp.arange(7.0), jnp.arange(14.0).reshape(7, 2))
    fn = lambda item: {"p": item[0] * item[1], "s": jnp.sin(item[0])}
    out = engine.chunked_map(fn, xs, batch_size=batch_size)
    np.testing.assert_allclose(out["p"], xs[0][:, None] * xs[1])
    np.testing.assert_allclose(out["s"], jnp.sin(xs[0]), rtol=1e-6)


def test_chunked_map_chunks_as_the_gradient_pass():
    # One lax.scan over ceil(n / batch_size) chunks, as chunked_sum: the forward
    # passes have the gradient passes' memory bound and compiled loop.
    xs = jnp.arange(10.0)
    text = str(
        jax.make_jaxpr(lambda a: engine.chunked_map(jnp.sin, a, batch_size=4))(xs)
    )
    assert "scan" in text and "length=3" in text
    run = jax.jit(jax.vmap(lambda a: engine.chunked_map(jnp.cos, a, batch_size=4)))
    np.testing.assert_allclose(run(xs.reshape(2, 5)), jnp.cos(xs).reshape(2, 5))


def test_straight_lines_go_from_each_reference_to_x():
    x = jnp.array([1.0, -2.0, 3.0])
    refs = jnp.array([[0.0, 0.0, 0.0], [2.0, 2.0, -1.0]])
    line = engine.straight_line(x, refs[1])
    np.testing.assert_array_equal(line(0.0), refs[1])
    np.testing.assert_array_equal(line(1.0), x)
    np.testing.assert_allclose(line(0.25), 0.75 * refs[1] + 0.25 * x)
    lines = engine.straight_lines(x, refs)
    for i in range(2):
        np.testing.assert_array_equal(
            lines(0.25, i), engine.straight_line(x, refs[i])(0.25)
        )


def test_baseline_nodes_repeat_the_rule_and_divide_its_weights():
    alphas, weights = quadrature.nodes_and_weights("riemann_trapezoid", 5)
    nodes = engine.baseline_nodes(alphas, weights, 3, jnp.float32)
    assert nodes.alphas.shape == nodes.weights.shape == nodes.paths.shape == (15,)
    np.testing.assert_allclose(nodes.alphas[5:10], alphas, rtol=1e-7)
    np.testing.assert_array_equal(nodes.paths, np.repeat([0, 1, 2], 5))
    # each path carries a third of the rule: the weights still sum to 1 in all
    np.testing.assert_allclose(
        nodes.weights.reshape(3, 5).sum(1), [1 / 3] * 3, rtol=1e-6
    )
    assert nodes.alphas.dtype == nodes.weights.dtype == jnp.float32


def _integrate(f, x, refs, n_steps=4, batch_size=3):
    alphas, weights = quadrature.nodes_and_weights("gausslegendre", n_steps)
    nodes = engine.baseline_nodes(alphas, weights, refs.shape[0], x.dtype)
    return engine.path_integral(
        f,
        engine.straight_lines(x, refs),
        nodes.alphas,
        nodes.weights,
        node_args=nodes.paths,
        batch_size=batch_size,
    )


def test_linear_f_integrates_exactly_from_several_baselines():
    # f(z) = <w, z> + c: IG from x' is w * (x - x'); from K baselines, the mean.
    w = jnp.array([0.5, -1.0, 2.0])
    f = lambda z: jnp.dot(w, z) + 3.0
    x = jnp.array([1.0, 2.0, -1.0])
    refs = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    out = _integrate(f, x, refs)
    np.testing.assert_allclose(out.integral, w * (x - refs.mean(0)), rtol=1e-6)
    f_x, f_refs = engine.endpoint_values(f, x, refs)
    np.testing.assert_allclose(f_refs, refs @ w + 3.0, rtol=1e-6)
    delta = engine.completeness_delta(out.integral, f_x, f_refs)
    assert abs(float(delta)) < 1e-5


def test_quadratic_f_path_values_and_delta_in_closed_form():
    # f(z) = sum(z^2) on x' + a (x - x'): the integrand 2 (x' + a d) d is linear in
    # a, so Gauss-Legendre is exact: IG_i = x_i^2 - x'_i^2, and completeness holds.
    f = lambda z: jnp.sum(z**2)
    x = jnp.array([1.0, -2.0, 0.5])
    refs = jnp.array([[0.5, 0.5, 0.5], [-1.0, 0.0, 2.0]])
    out = _integrate(f, x, refs, n_steps=2)
    np.testing.assert_allclose(out.integral, x**2 - (refs**2).mean(0), rtol=1e-6)
    f_x, f_refs = engine.endpoint_values(f, x, refs)
    assert abs(float(engine.completeness_delta(out.integral, f_x, f_refs))) < 1e-5
    # Forward passes along the lines: |x' + a (x - x')|^2, chunked like the gradients.
    alphas = jnp.linspace(0.0, 1.0, 7)
    for i in range(2):
        v = engine.path_values(
            f, engine.straight_line(x, refs[i]), alphas, batch_size=2
        )
        points = refs[i] + alphas[:, None] * (x - refs[i])
        np.testing.assert_allclose(v, (points**2).sum(1), rtol=1e-6)
    nodes = engine.baseline_nodes(alphas, jnp.ones(7), 2, x.dtype)
    lines = engine.straight_lines(x, refs)
    v = engine.path_values(f, lines, nodes.alphas, node_args=nodes.paths, batch_size=4)
    full = engine.path_integral(
        f, lines, nodes.alphas, nodes.weights, node_args=nodes.paths
    )
    np.testing.assert_allclose(v, full.values, rtol=1e-6)


def test_completeness_delta_has_captums_sign_and_averages_baselines():
    a = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # sum 10
    assert float(engine.completeness_delta(a, 7.0, 1.0)) == 10.0 - 6.0
    np.testing.assert_allclose(
        engine.completeness_delta(a, jnp.asarray(7.0), jnp.array([1.0, 3.0])), 5.0
    )


def test_resolve_one_takes_one_baseline():
    from jaxattr import baselines

    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(baselines.resolve_one(None, x, None, "m"), 0 * x)
    np.testing.assert_array_equal(baselines.resolve_one([0.5], x, None, "m"), x / 2)
    with pytest.raises(
        ValueError, match=r"m: baseline must be a single baseline.*got a list of 2"
    ):
        baselines.resolve_one([0.0, 1.0], x, None, "m")


def _path_methods():
    import jaxattr

    key = jax.random.key(0)
    refs = jnp.stack([jnp.zeros((4, 4, 3)), jnp.full((4, 4, 3), 0.25)])
    return {
        "integrated_gradients": lambda f, x: jaxattr.integrated_gradients(
            f, x, [0.0, 0.5], n_steps=4
        ),
        "expected_gradients": lambda f, x: jaxattr.expected_gradients(
            f, x, refs, n_samples=6, key=key
        ),
        "split_integrated_gradients": lambda f, x: jaxattr.split_integrated_gradients(
            f, x, [0.0, 0.5], n_steps=4
        ),
        "integrated_decision_gradients": lambda f, x: (
            jaxattr.integrated_decision_gradients(f, x, n_steps=4, n_coarse=3)
        ),
        "guided_integrated_gradients": lambda f, x: jaxattr.guided_integrated_gradients(
            f, x, [0.0, 0.5], n_steps=4
        ),
        "adaptive_integrated_gradients": lambda f, x: (
            jaxattr.adaptive_integrated_gradients(f, x, max_steps=9)
        ),
        "blur_integrated_gradients": lambda f, x: jaxattr.blur_integrated_gradients(
            f, x, max_sigma=2.0, n_steps=4
        ),
        "smooth_taylor": lambda f, x: jaxattr.smooth_taylor(f, x, n_roots=4, key=key),
    }


@pytest.mark.parametrize("name", sorted(_path_methods()))
def test_path_methods_report_f_x_f_baseline_and_their_delta(name):
    # One vocabulary: f(x) as aux["f_x"], the path starts' outputs as
    # aux["f_baseline"] and, for the methods whose delta is completeness against
    # them, delta = sum(A) - (f_x - mean f_baseline).
    f = lambda z: jnp.sum(z**2) + z[0, 0, 0]
    x = jnp.linspace(0.1, 0.9, 48).reshape(4, 4, 3)
    r = _path_methods()[name](f, x)
    np.testing.assert_allclose(r.aux["f_x"], f(x), rtol=1e-5)
    assert np.shape(r.aux["f_baseline"]) in {(), (1,), (2,), (6,)}
    if name != "split_integrated_gradients":  # its parts end at the split point
        expected = r.attributions.sum() - (r.aux["f_x"] - jnp.mean(r.aux["f_baseline"]))
        np.testing.assert_allclose(r.delta, expected, rtol=1e-5, atol=1e-6)


def test_gradient_methods_report_f_x():
    import jaxattr

    f = lambda z: jnp.sum(z**2)
    x = jnp.ones((2, 3))
    for method in (jaxattr.saliency, jaxattr.input_x_gradient):
        np.testing.assert_allclose(method(f, x).aux["f_x"], 6.0)
