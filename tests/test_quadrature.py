import numpy as np
import pytest

from jaxattr import quadrature


@pytest.mark.parametrize("n", [1, 2, 5, 50])
def test_gausslegendre_matches_numpy_leggauss(n):
    alphas, weights = quadrature.nodes_and_weights("gausslegendre", n)
    xi, w = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(alphas, (xi + 1) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(weights, w / 2, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [2, 3, 17])
def test_trapezoid_matches_numpy_trapezoid(n):
    alphas, weights = quadrature.nodes_and_weights("riemann_trapezoid", n)
    g = np.cos(3 * alphas) + alphas**2
    np.testing.assert_allclose(np.sum(weights * g), np.trapezoid(g, alphas), rtol=1e-14)


@pytest.mark.parametrize("n", [1, 4, 10])
def test_riemann_nodes(n):
    k = np.arange(n)
    left, wl = quadrature.nodes_and_weights("riemann_left", n)
    right, wr = quadrature.nodes_and_weights("riemann_right", n)
    mid, wm = quadrature.nodes_and_weights("riemann_middle", n)
    np.testing.assert_allclose(left, k / n)
    np.testing.assert_allclose(right, (k + 1) / n)
    np.testing.assert_allclose(mid, (k + 0.5) / n)
    for w in (wl, wr, wm):
        np.testing.assert_allclose(w, np.full(n, 1 / n))


@pytest.mark.parametrize(
    "rule", [r for r in quadrature.RULES if r != "captum_trapezoid"]
)
@pytest.mark.parametrize("n", [2, 7, 64])
def test_weights_sum_to_one_and_nodes_in_unit_interval(rule, n):
    alphas, weights = quadrature.nodes_and_weights(rule, n)
    assert alphas.shape == weights.shape == (n,)
    assert np.all((alphas >= 0) & (alphas <= 1))
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-13)


@pytest.mark.parametrize("n", [2, 10, 50])
def test_captum_trapezoid_reproduces_captums_weights(n):
    # Captum: linspace(0, 1, n) with step sizes [1/(2n)] + [1/n] * (n - 2) + [1/(2n)],
    # which sum to (n - 1) / n (docs/integrated_gradients.md#quadrature-rules).
    alphas, weights = quadrature.nodes_and_weights("captum_trapezoid", n)
    np.testing.assert_allclose(alphas, np.linspace(0, 1, n))
    expected = np.array([1 / (2 * n)] + [1 / n] * (n - 2) + [1 / (2 * n)])
    np.testing.assert_allclose(weights, expected)
    np.testing.assert_allclose(weights.sum(), (n - 1) / n)


def test_nodes_are_read_only():
    alphas, _weights = quadrature.nodes_and_weights("gausslegendre", 8)
    with pytest.raises(ValueError):
        alphas[0] = 1.0


def test_bad_rule_and_steps():
    with pytest.raises(ValueError, match="rule must be one of.*got 'simpson'"):
        quadrature.nodes_and_weights("simpson", 8)
    with pytest.raises(ValueError, match="n_steps must be >= 1.*got 0"):
        quadrature.nodes_and_weights("gausslegendre", 0)
    with pytest.raises(
        ValueError, match="n_steps must be >= 2 for rule='riemann_trapezoid'"
    ):
        quadrature.nodes_and_weights("riemann_trapezoid", 1)
    with pytest.raises(TypeError, match="n_steps must be a Python int.*got float 8.0"):
        quadrature.nodes_and_weights("gausslegendre", 8.0)


# ------------------------------------------------ method=, the deprecated name of rule=
def test_method_is_a_deprecated_alias_of_rule():
    want = quadrature.nodes_and_weights(rule="riemann_middle", n_steps=4)
    with pytest.warns(
        DeprecationWarning, match="method= is deprecated; use rule="
    ) as w:
        got = quadrature.nodes_and_weights(method="riemann_middle", n_steps=4)
    assert w[0].filename == __file__  # the warning points at the caller
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.warns(DeprecationWarning, match="method= is deprecated"):
        quadrature.check_rule(method="gausslegendre", n_steps=3)


def test_method_and_rule_together_is_an_error():
    with pytest.raises(TypeError, match="got both rule= and its deprecated name"):
        quadrature.nodes_and_weights(rule="riemann_left", method="riemann_left")
    with pytest.raises(TypeError, match="got both rule= and its deprecated name"):
        quadrature.check_rule("riemann_left", 4, method="riemann_left")


def test_rule_is_in_the_signatures():
    import inspect

    for fn in (quadrature.nodes_and_weights, quadrature.check_rule):
        params = inspect.signature(fn).parameters
        assert "rule" in params and params["method"].default is None
