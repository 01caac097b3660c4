"""Integrated Gradients against closed forms, completeness and invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import baselines, quadrature
from tests import helpers

EXACT_FOR_LINEAR = [r for r in quadrature.RULES if r != "captum_trapezoid"]


@pytest.mark.parametrize("rule", EXACT_FOR_LINEAR)
@pytest.mark.parametrize("n_steps", [2, 5])
def test_linear_function_is_exact_for_every_rule(rule, n_steps):
    w = jnp.array([0.5, -2.0, 3.0, 1.5])
    f = lambda x: jnp.dot(w, x) + 0.7
    x = jnp.array([1.0, 2.0, -1.0, 0.25])
    b = jnp.array([0.2, -0.5, 0.0, 1.0])
    r = jaxattr.integrated_gradients(f, x, b, n_steps=n_steps, rule=rule)
    np.testing.assert_allclose(r.attributions, w * (x - b), rtol=1e-6)
    assert abs(float(r.delta)) < 1e-5


def test_captum_trapezoid_scales_by_its_weight_sum():
    w = jnp.array([1.0, -2.0])
    f = lambda x: jnp.dot(w, x)
    x = jnp.array([1.0, 1.0])
    r = jaxattr.integrated_gradients(f, x, n_steps=10, rule="captum_trapezoid")
    np.testing.assert_allclose(r.attributions, 0.9 * w * x, rtol=1e-6)


@pytest.mark.parametrize(
    "rule", ["riemann_middle", "riemann_trapezoid", "gausslegendre"]
)
def test_sum_of_squares_is_exact_for_second_order_rules(rule):
    # IG_i of sum(x^2) from b is x_i^2 - b_i^2; its integrand is linear in alpha.
    f = lambda x: jnp.sum(x**2)
    x = jnp.array([1.0, -2.0, 3.0])
    b = jnp.array([0.5, 0.5, -1.0])
    r = jaxattr.integrated_gradients(f, x, b, n_steps=3, rule=rule)
    np.testing.assert_allclose(r.attributions, x**2 - b**2, rtol=1e-6)


@pytest.mark.parametrize(
    "rule, n_steps",
    [
        ("riemann_left", 2**19),
        ("riemann_right", 2**19),
        ("riemann_middle", 512),
        ("riemann_trapezoid", 512),
        ("gausslegendre", 16),
    ],
)
def test_sin_matches_closed_form_to_1e_5(rule, n_steps):
    # IG_i of sum(sin(x)) from b is sin(x_i) - sin(b_i).
    with jax.enable_x64(True):
        x = jnp.array([0.3, 1.7, -2.2, 3.0], jnp.float64)
        b = jnp.array([0.0, -0.4, 0.5, 1.0], jnp.float64)
        r = jaxattr.integrated_gradients(
            lambda z: jnp.sum(jnp.sin(z)), x, b, n_steps=n_steps, rule=rule
        )
        np.testing.assert_allclose(r.attributions, np.sin(x) - np.sin(b), atol=1e-5)


@pytest.mark.parametrize(
    "rule, order",
    [
        ("riemann_left", 1),
        ("riemann_right", 1),
        ("riemann_middle", 2),
        ("riemann_trapezoid", 2),
    ],
)
def test_error_shrinks_at_the_rules_order(rule, order):
    with jax.enable_x64(True):
        x = jnp.array([0.3, 1.7, -2.2, 3.0], jnp.float64)
        exact = np.sin(x)
        f = lambda z: jnp.sum(jnp.sin(z))
        errors = [
            np.abs(
                np.asarray(
                    jaxattr.integrated_gradients(
                        f, x, n_steps=n, rule=rule
                    ).attributions
                )
                - exact
            ).max()
            for n in (32, 64, 128)
        ]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    np.testing.assert_allclose(ratios, [2.0**order] * 2, rtol=0.1)


def test_gausslegendre_converges_exponentially():
    with jax.enable_x64(True):
        x = jnp.array([0.3, 1.7, -2.2, 3.0], jnp.float64)
        f = lambda z: jnp.sum(jnp.sin(z))
        err = lambda n: np.abs(
            np.asarray(jaxattr.integrated_gradients(f, x, n_steps=n).attributions)
            - np.sin(x)
        ).max()
        assert err(4) < 1e-3
        assert err(8) < 1e-9
        assert err(12) < 1e-14


@pytest.mark.parametrize(
    "rule", ["riemann_middle", "gausslegendre", "riemann_trapezoid"]
)
def test_ig_paper_toy_relu_model(rule):
    # relu(relu(x1) - 1 - relu(x2)) at (3, 1) from 0: the gradient is (1, -1) for alpha > 1/2
    # and 0 before, so IG = (1.5, -0.5). Even node counts are symmetric about 1/2: exact.
    x = jnp.array([3.0, 1.0])
    r = jaxattr.integrated_gradients(helpers.ig_paper_toy, x, n_steps=64, rule=rule)
    np.testing.assert_allclose(r.attributions, [1.5, -0.5], rtol=1e-6)
    np.testing.assert_allclose(r.delta, 0.0, atol=1e-6)


@pytest.mark.parametrize("rule", ["riemann_left", "riemann_right"])
def test_ig_paper_toy_relu_model_first_order_rules(rule):
    x = jnp.array([3.0, 1.0])
    r = jaxattr.integrated_gradients(helpers.ig_paper_toy, x, n_steps=64, rule=rule)
    np.testing.assert_allclose(r.attributions, [1.5, -0.5], atol=x.max() / 64 + 1e-6)


@pytest.fixture(scope="module")
def cnn():
    return helpers.tiny_cnn(helpers.tiny_cnn_params(seed=0))


@pytest.fixture(scope="module")
def image():
    return jax.random.uniform(jax.random.key(1), (16, 16, 3))


def _completeness(model, images, n_steps):
    """sum |delta| / sum |f(x) - f(x')| over all images and all 10 classes."""
    r = jax.vmap(
        lambda t: jaxattr.attribute(
            jaxattr.integrated_gradients,
            model,
            images,
            t,
            n_steps=n_steps,
            batch_size=64,
        )
    )(jnp.arange(10))
    gap = r.aux["f_x"] - r.aux["f_baseline"][..., 0]
    np.testing.assert_allclose(r.attributions.sum((2, 3, 4)) - gap, r.delta, atol=1e-5)
    return float(np.abs(r.delta).sum() / np.abs(gap).sum())


def test_completeness_on_a_small_relu_cnn(cnn):
    # A ReLU network's gradient is piecewise constant along the path, so every kink
    # costs O(1/n): measured here 2.1e-3 at 64 steps and 4.3e-4 at 256.
    images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    at_64 = _completeness(cnn, images, 64)
    at_256 = _completeness(cnn, images, 256)
    assert at_64 < 5e-3, at_64
    assert at_256 < 1e-3, at_256
    assert at_256 < at_64 / 2


def test_completeness_on_a_smooth_cnn_is_at_float32_precision():
    # With softplus the integrand is analytic and Gauss-Legendre converges exponentially.
    model = helpers.tiny_cnn(helpers.tiny_cnn_params(seed=0), act=jax.nn.softplus)
    images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    total = _completeness(model, images, 64)
    assert total < 1e-5, total


@pytest.mark.parametrize(
    "rule", ["gausslegendre", "riemann_right", "riemann_trapezoid"]
)
def test_chunk_size_invariance(cnn, image, rule):
    f = jaxattr.scalar_output(cnn, 2)
    results = [
        jaxattr.integrated_gradients(f, image, n_steps=20, rule=rule, batch_size=b)
        for b in (1, 7, 20, None)
    ]
    for r in results[1:]:
        np.testing.assert_allclose(
            r.attributions, results[0].attributions, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            r.aux["values"], results[0].aux["values"], rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(r.delta, results[0].delta, atol=1e-6)


def test_batch_composition_invariance(cnn):
    xs = jax.random.uniform(jax.random.key(2), (4, 16, 16, 3))
    targets = jnp.array([1, 5, 5, 9])
    full = jaxattr.attribute(jaxattr.integrated_gradients, cnn, xs, targets, n_steps=16)
    perm = np.array([2, 0, 3, 1])
    permuted = jaxattr.attribute(
        jaxattr.integrated_gradients, cnn, xs[perm], targets[perm], n_steps=16
    )
    np.testing.assert_allclose(
        permuted.attributions, full.attributions[perm], rtol=1e-5, atol=1e-7
    )
    for i in range(4):
        f = jaxattr.scalar_output(cnn, int(targets[i]))
        single = jaxattr.integrated_gradients(f, xs[i], n_steps=16)
        np.testing.assert_allclose(
            full.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(full.delta[i], single.delta, atol=1e-6)


def test_several_baselines_are_averaged(cnn, image):
    f = jaxattr.scalar_output(cnn, 0)
    b1 = jnp.zeros_like(image)
    b2 = jnp.full_like(image, 0.5)
    both = jaxattr.integrated_gradients(f, image, [b1, b2], n_steps=16, batch_size=5)
    r1 = jaxattr.integrated_gradients(f, image, b1, n_steps=16)
    r2 = jaxattr.integrated_gradients(f, image, b2, n_steps=16)
    np.testing.assert_allclose(
        both.attributions, (r1.attributions + r2.attributions) / 2, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(both.delta, (r1.delta + r2.delta) / 2, atol=1e-6)
    assert both.aux["values"].shape == (2, 16)


def test_named_and_recipe_baselines(cnn, image):
    f = jaxattr.scalar_output(cnn, 0)
    mean = jnp.array(baselines.IMAGENET_MEAN)
    by_name = jaxattr.integrated_gradients(f, image, "normalized_zero", n_steps=8)
    by_array = jaxattr.integrated_gradients(
        f, image, jnp.broadcast_to(mean, image.shape), n_steps=8
    )
    np.testing.assert_allclose(by_name.attributions, by_array.attributions, rtol=1e-6)
    black = jaxattr.integrated_gradients(f, image, "black", n_steps=8)
    default = jaxattr.integrated_gradients(f, image, n_steps=8)
    scalar = jaxattr.integrated_gradients(f, image, 0.0, n_steps=8)
    np.testing.assert_array_equal(black.attributions, default.attributions)
    np.testing.assert_array_equal(scalar.attributions, default.attributions)
    via_callable = jaxattr.integrated_gradients(f, image, lambda x: 0.5 * x, n_steps=8)
    via_array = jaxattr.integrated_gradients(f, image, 0.5 * image, n_steps=8)
    np.testing.assert_allclose(
        via_callable.attributions, via_array.attributions, rtol=1e-6
    )


def test_zeros_is_an_alias_of_black():
    x = jnp.linspace(0.1, 0.9, 12).reshape(2, 2, 3)
    assert "zeros" not in baselines.NAMED and baselines.ALIASES == {"zeros": "black"}
    for name in ("zeros", "black"):
        b = baselines.resolve_one(name, x, None, "test")
        np.testing.assert_array_equal(b, jnp.zeros_like(x))


def test_random_baselines_are_deterministic_under_a_key(cnn, image):
    f = jaxattr.scalar_output(cnn, 0)
    spec = [baselines.uniform(), baselines.uniform()]
    a = jaxattr.integrated_gradients(f, image, spec, n_steps=8, key=jax.random.key(0))
    b = jaxattr.integrated_gradients(f, image, spec, n_steps=8, key=jax.random.key(0))
    c = jaxattr.integrated_gradients(f, image, spec, n_steps=8, key=jax.random.key(1))
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.allclose(a.attributions, c.attributions)
    # The two uniform baselines get independent draws.
    assert not np.allclose(a.aux["f_baseline"][0], a.aux["f_baseline"][1])


def test_blurred_baseline_matches_scipy():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    img = np.asarray(jax.random.uniform(jax.random.key(3), (20, 17, 3)))
    for sigma in (1.0, 3.0, 12.0):
        ours = jaxattr.filters.gaussian_blur(jnp.asarray(img), sigma)
        ref = scipy_ndimage.gaussian_filter(img, (sigma, sigma, 0), mode="constant")
        np.testing.assert_allclose(ours, ref, atol=1e-6)
        b = baselines.resolve(baselines.blurred(sigma), jnp.asarray(img), None, "t")
        np.testing.assert_allclose(b[0], ref, atol=1e-6)


def test_path_values_are_the_outputs_along_the_path(cnn, image):
    f = jaxattr.scalar_output(cnn, 4)
    r = jaxattr.integrated_gradients(
        f, image, n_steps=6, rule="riemann_trapezoid", batch_size=4
    )
    expected = jnp.stack([f(a * image) for a in np.linspace(0, 1, 6)])
    np.testing.assert_allclose(r.aux["values"][0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.aux["f_x"], expected[-1], rtol=1e-5)


# ------------------------------------------------ method=, the deprecated name of rule=
RULE_TAKERS = [
    jaxattr.integrated_gradients,
    jaxattr.split_integrated_gradients,
    jaxattr.gnl_integrated_gradients,
]


@pytest.mark.parametrize("fn", RULE_TAKERS, ids=lambda fn: fn.__name__)
def test_method_is_a_deprecated_alias_of_rule(fn):
    f = lambda z: jnp.sum(jax.nn.relu(z) ** 3)
    x = jnp.array([0.5, -1.0, 2.0])
    want = fn(f, x, n_steps=5, rule="riemann_left")
    with pytest.warns(DeprecationWarning, match="method= is deprecated; use rule="):
        got = fn(f, x, n_steps=5, method="riemann_left")
    np.testing.assert_array_equal(got.attributions, want.attributions)
    np.testing.assert_array_equal(got.delta, want.delta)
    other = fn(f, x, n_steps=5)  # the default rule differs: the alias is not ignored
    assert not np.allclose(other.attributions, want.attributions)
    with pytest.raises(TypeError, match="got both rule= and its deprecated name"):
        fn(f, x, n_steps=5, rule="riemann_left", method="riemann_left")


def test_rule_and_method_as_static_argnames_under_jit():
    f = lambda z: jnp.sum(jnp.sin(z))
    x = jnp.array([0.3, 1.2])
    want = jaxattr.integrated_gradients(f, x, n_steps=4, rule="riemann_right")
    ig = jaxattr.integrated_gradients
    new = jax.jit(ig, static_argnums=0, static_argnames=("n_steps", "rule"))
    got = new(f, x, n_steps=4, rule="riemann_right")
    np.testing.assert_allclose(got.attributions, want.attributions, rtol=1e-6)
    old = jax.jit(ig, static_argnums=0, static_argnames=("n_steps", "method"))
    with pytest.warns(DeprecationWarning, match="method= is deprecated"):
        got = old(f, x, n_steps=4, method="riemann_right")
    np.testing.assert_allclose(got.attributions, want.attributions, rtol=1e-6)
