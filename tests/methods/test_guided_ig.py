"""Guided IG: parity with PAIR's NumPy reference (analytic functions and the tiny CNN,
PAIR's defaults and the IDG evaluation's settings), completeness, a linear model's
exact answer, jit/vmap against eager, and argument errors."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr.methods.guided_ig import guided_integrated_gradients
from tests import helpers

PAIR_DEFAULTS = {"n_steps": 200, "fraction": 0.25, "max_dist": 0.02}
# IDG's evaluation: docs/integrated_gradients.md#guided-ig
IDG_SETTINGS = {"n_steps": 50, "fraction": 0.5, "max_dist": 1.0}
SETTINGS = pytest.mark.parametrize(
    "settings", [PAIR_DEFAULTS, IDG_SETTINGS], ids=["pair", "idg"]
)

PARAMS = helpers.tiny_cnn_params(seed=1)
RELU = helpers.tiny_cnn(PARAMS)
XS = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))


class _NumPy2(types.ModuleType):
    """numpy with the `interpolation=` keyword of `np.quantile` that PAIR 0.2.1 uses
    (removed in NumPy 2); swapped into PAIR's module only while the reference runs."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation="linear", **kwargs):
        return np.quantile(a, q, method=interpolation, **kwargs)


def pair_guided_ig(f, x, baseline, settings, grad_dtype):
    """PAIR's `guided_ig_impl` (float64 NumPy) with gradients of `f` from JAX."""
    ref = pytest.importorskip("saliency.core.guided_ig")
    grad = jax.jit(jax.grad(f))

    def grad_func(z):
        return np.asarray(grad(jnp.asarray(z, grad_dtype)), np.float64)

    saved, ref.np = ref.np, _NumPy2("numpy")
    try:
        return ref.guided_ig_impl(
            np.asarray(x, np.float64),
            np.asarray(baseline, np.float64),
            grad_func,
            steps=settings["n_steps"],
            fraction=settings["fraction"],
            max_dist=settings["max_dist"],
        )
    finally:
        ref.np = saved


def smooth(z):
    """Sum of sines, a product and a quadratic on a few features."""
    c = jnp.arange(1.0, z.size + 1) / z.size
    return (
        jnp.sum(c * jnp.sin(3.0 * z))
        + z[0] * z[1] * z[2]
        + 0.5 * jnp.sum((z - 0.2) ** 2 * c[::-1])
    )


def product(z):
    return jnp.prod(z) + jnp.sin(z[0] * z[1])


@SETTINGS
@pytest.mark.parametrize("fn", [smooth, product], ids=["smooth", "product"])
def test_parity_with_pair_on_analytic_functions_float64(fn, settings):
    # Float64 on both sides, so the only differences are summation orders:
    # agreement to ~1e-15 relative; 1e-10 leaves room for a different BLAS.
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x = jnp.asarray(rng.uniform(-1.0, 1.5, 7))
        if fn is product:  # zero baseline: every gradient is 0 at the start (ties)
            b = jnp.zeros(7)
        else:  # a baseline with one feature equal to x (its alpha is NaN in PAIR)
            b = jnp.asarray(rng.uniform(-0.5, 0.5, 7)).at[3].set(x[3])
        expected = pair_guided_ig(fn, x, b, settings, jnp.float64)
        r = guided_integrated_gradients(fn, x, b, **settings)
        assert r.attributions.dtype == jnp.float64
        scale = np.abs(expected).max()
        np.testing.assert_allclose(r.attributions, expected, rtol=0, atol=1e-10 * scale)
        assert float(r.attributions[3]) == 0.0 or fn is product


@SETTINGS
def test_parity_with_pair_on_tiny_cnn_float32(settings):
    # PAIR walks the path in float64, jaxattr in float32 (the gradients are float32
    # on both sides): the path points differ by float32 rounding, which accumulates
    # over the steps to ~1e-6 of the largest attribution (measured: 1.4e-6 logit,
    # 1e-6 softmax); 1e-5 allows for a different CPU. A flipped feature selection
    # would show up at the 1e-2 level.
    output = "logit" if settings is PAIR_DEFAULTS else "softmax"
    f = jaxattr.scalar_output(RELU, 3, output=output)
    x = XS[0]
    expected = pair_guided_ig(f, x, jnp.zeros_like(x), settings, jnp.float32)
    r = guided_integrated_gradients(f, x, **settings)
    assert r.attributions.shape == x.shape and r.attributions.dtype == jnp.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(r.attributions, expected, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(r.aux["f_x"], f(x), rtol=1e-5, atol=1e-6)
    f_0 = f(jnp.zeros_like(x))
    np.testing.assert_allclose(r.aux["values"][0, 0], f_0, rtol=1e-5, atol=1e-6)
    assert float(r.aux["end_distance"][0]) < 1e-4  # a few ulps of float32


def test_parity_with_pair_on_tiny_cnn_float64():
    with jax.enable_x64(True):
        params = {k: v.astype(np.float64) for k, v in PARAMS.items()}
        f = jaxattr.scalar_output(helpers.tiny_cnn(params), 5)
        x = jnp.asarray(XS[1], jnp.float64)
        b = jnp.full_like(x, 0.25)
        expected = pair_guided_ig(f, x, b, PAIR_DEFAULTS, jnp.float64)
        r = guided_integrated_gradients(f, x, 0.25, **PAIR_DEFAULTS)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(r.attributions, expected, rtol=0, atol=1e-10 * scale)


@SETTINGS
def test_completeness_converges_with_steps(settings):
    # A left Riemann sum along a path that ends at x: |delta| = O(1 / n_steps).
    # Measured: 0.147 -> 0.020 (PAIR settings), 0.445 -> 0.049 (IDG) for 10 -> 80.
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x = jnp.asarray(rng.uniform(-1.0, 1.5, 6))
        b = jnp.asarray(rng.uniform(-0.5, 0.5, 6))
        kw = {k: settings[k] for k in ("fraction", "max_dist")}
        deltas = []
        for n in (10, 80):
            r = guided_integrated_gradients(smooth, x, b, n_steps=n, **kw)
            assert float(r.aux["end_distance"][0]) < 1e-12
            f_b = smooth(b)
            np.testing.assert_allclose(r.aux["values"][0, 0], f_b, rtol=1e-12)
            deltas.append(abs(float(r.delta)))
        assert deltas[0] > 1e-2  # the test can see a discretisation error
        assert deltas[1] < deltas[0] / 5, deltas


def test_linear_function_gets_exact_answer_and_baselines_average():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(4, 4, 3)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(4, 4, 3)), jnp.float32)
    b = jnp.asarray(rng.uniform(size=(4, 4, 3)), jnp.float32)
    b = b.at[0, 0].set(x[0, 0])  # features with x == x'

    def f(z):
        return jnp.vdot(w, z) + 0.3

    r = guided_integrated_gradients(f, x, b, **IDG_SETTINGS)
    np.testing.assert_allclose(r.attributions, (x - b) * w, rtol=1e-5, atol=1e-6)
    assert abs(float(r.delta)) < 1e-4
    assert (np.asarray(r.aux["inner_iterations"]) >= 1).all()
    # Unbounded, the smallest |w| move first: f along the path first changes by
    # the features with small weights, so it is not the straight line's values.
    straight = np.array([f(b + k / 50 * (x - b)) for k in (10, 25)])
    assert np.abs(np.asarray(r.aux["values"][0, [10, 25]]) - straight).min() > 1e-2
    # A list of baselines averages; x itself as a baseline contributes zero.
    r = guided_integrated_gradients(f, x, [b, x], n_steps=20)
    np.testing.assert_allclose(r.attributions, 0.5 * (x - b) * w, rtol=1e-5, atol=1e-6)
    assert r.aux["values"].shape == (2, 20)
    np.testing.assert_allclose(r.aux["f_baseline"], [f(b), f(x)], rtol=1e-6)
    assert abs(float(r.delta)) < 1e-4


def test_jit_vmap_over_images_targets_baselines_match_eager():
    traces = []
    targets = jnp.array([2, 7])
    refs = jnp.stack([jnp.zeros((8, 8, 3)), jnp.full((8, 8, 3), 0.5)])

    @jax.jit
    def explain(x, t, b, fraction, max_dist):
        traces.append(1)
        f = jaxattr.scalar_output(RELU, t)
        return guided_integrated_gradients(
            f, x, b, n_steps=12, fraction=fraction, max_dist=max_dist
        )

    batched = jax.vmap(explain, in_axes=(0, 0, 0, None, None))(
        XS[:2], targets, refs, 0.25, 0.1
    )
    f = jaxattr.scalar_output(RELU, 7)
    eager = guided_integrated_gradients(
        f, XS[1], refs[1], n_steps=12, fraction=0.25, max_dist=0.1
    )
    np.testing.assert_allclose(
        batched.attributions[1], eager.attributions, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(batched.delta[1], eager.delta, atol=1e-6)
    np.testing.assert_allclose(batched.aux["values"][1], eager.aux["values"], atol=1e-6)
    one = explain(XS[0], targets[0], refs[0], 0.25, 0.1)
    np.testing.assert_allclose(
        one.attributions, batched.attributions[0], rtol=1e-5, atol=1e-7
    )
    other = explain(XS[0], targets[0], refs[0], 0.5, 1.0)  # traced hyper-parameters
    assert not np.allclose(other.attributions, one.attributions)
    assert len(traces) == 1  # vmap reuses the unbatched trace; new values: none


def test_errors_name_the_argument():
    f = jaxattr.scalar_output(RELU, 0)
    x = XS[0]
    gig = guided_integrated_gradients
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        gig(f, x, n_steps=20.0)
    with pytest.raises(ValueError, match="n_steps must be >= 1; got 0"):
        gig(f, x, n_steps=0)
    for bad in (0.0, 1.5, -0.25, float("nan")):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]; got"):
            gig(f, x, fraction=bad)
        with pytest.raises(ValueError, match=r"max_dist must be in \(0, 1\]; got"):
            gig(f, x, max_dist=bad)
    with pytest.raises(TypeError, match=r"fraction must be a real number.*str 'a'"):
        gig(f, x, fraction="a")
    with pytest.raises(TypeError, match="max_dist must be a real number"):
        gig(f, x, max_dist=np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        gig(f, jnp.ones((8, 8, 3), jnp.int32))
    with pytest.raises(ValueError, match="baseline must broadcast to x.shape"):
        gig(f, x, jnp.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="f must map one example to a scalar"):
        gig(lambda z: RELU(z[None])[0], x)
    with pytest.raises(ValueError, match="key is required"):
        gig(f, x, "uniform")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lower_quantile_equals_jnp_quantile(dtype):
    """The sort-free selection threshold is `jnp.quantile(method="lower")` exactly,
    with ties, zeros, +inf (features at the band's edge) and NaN."""
    from jaxattr.methods.guided_ig import _lower_quantile

    rng = np.random.default_rng(0)
    with jax.enable_x64(dtype == "float64"):
        for trial in range(40):
            # a few sizes (each one compiles once), edge cases among them
            n = int(rng.choice([1, 2, 3, 64, 499]))
            s = np.abs(rng.normal(size=n))
            if trial % 2:
                s = np.round(s, 1)  # ties and zeros
            if trial % 3 == 0:
                s[rng.uniform(size=n) < 0.5] = np.inf
            if trial == 7:
                s[:] = np.inf
            if trial == 11:
                s[n // 2] = np.nan
            s = jnp.asarray(s, dtype)
            for q in (1e-3, 0.25, 0.5, 1.0, float(rng.uniform())):
                q = jnp.asarray(q, dtype)
                want = jnp.quantile(s, q, method="lower")
                got = _lower_quantile(s, q)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
