"""Blur IG: parity with PAIR's `saliency.core.BlurIG` (float64 on an analytic
function, float32 on the tiny CNN), the exact derivative against a vanishing
forward difference, completeness as the number of steps grows, jit/vmap/chunks
against eager, and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saliency.core as pair

import jaxattr
from jaxattr.methods.blur_ig import blur_integrated_gradients
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=0)
MODEL = helpers.tiny_cnn(PARAMS)
# Smooth, so that the first-order error decreases steadily with the steps (ReLU
# kinks make the Riemann error of the ReLU network go up and down).
SMOOTH = helpers.tiny_cnn(PARAMS, act=jax.nn.softplus)
XS = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3))
TARGETS = jnp.array([3, 1, 7])


def cnn_f(target):
    return lambda z: MODEL(z[None])[0, target]


def analytic_f(z):
    """Smooth and spatially structured, so blurring changes it in every pixel."""
    h, w, c = z.shape
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(h, w, c)), z.dtype)
    b = jnp.asarray(rng.normal(size=(h, w)), z.dtype)
    return jnp.sum(a * jnp.tanh(2 * z)) + jnp.sum(b * z[..., 0] * z[..., -1])


def jitted(f, x, **kwargs):
    """The method under `jax.jit`: one compilation instead of op-by-op dispatch."""
    return jax.jit(lambda z: blur_integrated_gradients(f, z, **kwargs))(x)


def pair_blur_ig(f, x, **kwargs):
    """PAIR's GetMask, with the jax gradients of `f` as its model (batch_size 1)."""

    grad_fn = jax.jit(jax.vmap(jax.grad(f)))

    def call_model_function(batch, call_model_args=None, expected_keys=None):
        grads = grad_fn(jnp.asarray(batch))
        return {pair.INPUT_OUTPUT_GRADIENTS: np.asarray(grads)}

    return pair.BlurIG().GetMask(np.asarray(x), call_model_function, **kwargs)


@pytest.mark.parametrize(
    "max_sigma, steps, sqrt",
    [(6.0, 15, False), (6.0, 15, True), (50.0, 4, False)],  # 50: radius 200 > 19 px
)
def test_pair_parity_float64_analytic(max_sigma, steps, sqrt):
    with jax.enable_x64(True):
        x = np.random.default_rng(0).uniform(size=(11, 19, 2))
        ref = pair_blur_ig(
            analytic_f, x, max_sigma=max_sigma, steps=steps, grad_step=0.01, sqrt=sqrt
        )
        r = blur_integrated_gradients(
            analytic_f, jnp.asarray(x), max_sigma=max_sigma, n_steps=steps, sqrt=sqrt
        )
        assert r.attributions.dtype == jnp.float64
        scale = np.abs(ref).max()
        assert scale > 1e-2
        np.testing.assert_allclose(r.attributions, ref, rtol=0, atol=1e-9 * scale)
        last = max_sigma**0.5 if sqrt else max_sigma
        np.testing.assert_allclose(
            r.aux["sigmas"][-1], last * (1 - 1 / steps) ** (0.5 if sqrt else 1)
        )
        np.testing.assert_allclose(r.aux["values"][0], analytic_f(jnp.asarray(x)))


def test_pair_parity_float32_tiny_cnn_and_chunks():
    f = cnn_f(3)
    x = XS[0]
    for sqrt in (False, True):
        ref = pair_blur_ig(f, x, max_sigma=4, steps=20, grad_step=0.01, sqrt=sqrt)
        r = jitted(f, x, max_sigma=4.0, n_steps=20, sqrt=sqrt)
        # float32: scipy and the matrix blur round differently, and the forward
        # difference divides that by grad_step (measured ~3e-5 of the max).
        scale = np.abs(ref).max()
        np.testing.assert_allclose(r.attributions, ref, rtol=0, atol=3e-4 * scale)
    chunked = jitted(f, x, max_sigma=4.0, n_steps=20, sqrt=True, batch_size=7)
    np.testing.assert_allclose(
        chunked.attributions, r.attributions, rtol=0, atol=1e-6 * scale
    )
    np.testing.assert_allclose(chunked.aux["values"], r.aux["values"], rtol=1e-6)


def test_exact_derivative_is_the_limit_of_the_forward_difference():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(2).uniform(size=(9, 12, 2)))
        kw = {"max_sigma": 5.0, "n_steps": 10}
        exact = jitted(analytic_f, x, grad_step=None, **kw)
        scale = float(jnp.abs(exact.attributions).max())
        errors = []
        for step in (1e-2, 1e-4):
            fd = jitted(analytic_f, x, grad_step=step, **kw)
            errors.append(float(jnp.abs(fd.attributions - exact.attributions).max()))
        assert errors[0] > 1e-4 * scale  # grad_step matters at all ...
        # ... and its error is first order in grad_step.
        assert errors[1] < 2e-2 * errors[0]
        np.testing.assert_allclose(exact.aux["values"], fd.aux["values"], rtol=1e-12)


@pytest.mark.parametrize("grad_step", [0.01, None])
def test_completeness_improves_with_steps(grad_step):
    f = lambda z: SMOOTH(z[None])[0, 1]
    x = XS[1]
    deltas = []
    for n in (4, 16, 64):
        r = jitted(f, x, max_sigma=3.0, n_steps=n, grad_step=grad_step)
        deltas.append(abs(float(r.delta)))
    gap = abs(float(r.aux["f_x"] - r.aux["f_baseline"]))
    assert gap > 1e-2
    assert deltas[0] > deltas[1] > deltas[2]
    assert deltas[0] > 0.3 * gap  # 4 steps are far off (measured 54%)
    assert deltas[2] < 0.01 * gap  # 64 are not (measured 0.3% and 0.5%)
    np.testing.assert_allclose(
        r.attributions.sum() - r.delta, r.aux["f_x"] - r.aux["f_baseline"], rtol=1e-5
    )
    np.testing.assert_allclose(r.aux["f_baseline"], f(r.aux["baseline"]), rtol=1e-6)


def test_jit_vmap_over_images_and_targets_equals_eager():
    traces = []

    @jax.jit
    def explain(x, t):
        traces.append(1)
        f = lambda z: MODEL(z[None])[0, t]
        return blur_integrated_gradients(f, x, max_sigma=5.0, n_steps=6, batch_size=4)

    batched = jax.vmap(explain)(XS, TARGETS)
    # jaxattr.attribute's calling convention (it passes key=None) gives the same.
    wrapped = jax.jit(
        lambda xs, ts: jaxattr.attribute(
            blur_integrated_gradients, MODEL, xs, ts, max_sigma=5.0, n_steps=6
        )
    )(XS, TARGETS)
    eager = blur_integrated_gradients(
        cnn_f(int(TARGETS[1])), XS[1], max_sigma=5.0, n_steps=6
    )
    # float32 rounding differs between fusions (chunks of 4 against all nodes at
    # once) and the forward difference divides it by grad_step = 0.01: ~1e-5.
    scale = float(jnp.abs(batched.attributions).max())
    for name, got, want in (
        ("vmap(jit) vs eager", batched.attributions[1], eager.attributions),
        ("attribute vs vmap(jit)", wrapped.attributions, batched.attributions),
    ):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale, err_msg=name)
    np.testing.assert_allclose(batched.delta[1], eager.delta, atol=1e-5)
    np.testing.assert_allclose(batched.aux["values"][1], eager.aux["values"], rtol=1e-5)
    np.testing.assert_allclose(wrapped.delta, batched.delta, atol=1e-5)
    assert float(jnp.abs(batched.attributions[0] - batched.attributions[2]).max()) > (
        1e-3 * scale
    )  # the examples (images and targets) differ
    explain(XS[0], TARGETS[2])
    assert len(traces) == 1  # vmap of jit batches the one trace; no retrace


def test_errors_name_the_argument():
    f = cnn_f(0)
    x = XS[0]
    big = blur_integrated_gradients
    with pytest.raises(ValueError, match=r"x must be one image \[H, W, C\]"):
        big(f, XS)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        big(f, jnp.ones((4, 4, 3), jnp.int32))
    with pytest.raises(ValueError, match="max_sigma must be finite and > 0; got 0.0"):
        big(f, x, max_sigma=0)
    with pytest.raises(TypeError, match="max_sigma must be a concrete Python number"):
        jax.jit(lambda s: big(f, x, max_sigma=s))(3.0)
    with pytest.raises(TypeError, match="max_sigma must be a positive number; got str"):
        big(f, x, max_sigma="50")
    with pytest.raises(ValueError, match="grad_step must be finite and > 0; got -0.01"):
        big(f, x, grad_step=-0.01)
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        big(f, x, n_steps=10.0)
    with pytest.raises(ValueError, match="n_steps must be >= 1; got 0"):
        big(f, x, n_steps=0)
    with pytest.raises(TypeError, match="sqrt must be a bool"):
        big(f, x, sqrt="yes")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        big(f, x, batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'baseline'"):
        big(f, x, baseline=jnp.zeros_like(x))  # the blurred image is the baseline
    with pytest.raises(ValueError, match="f must map one example to a scalar"):
        big(lambda z: MODEL(z[None])[0], x)
