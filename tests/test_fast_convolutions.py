"""`fast_convolutions`: same values as the original function, and the slow
convolution forms are gone from the compiled program."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxattr import engine
from jaxattr.fast_convolutions import fast_convolutions

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the rewrite applies on the CPU backend"
)


def _conv(x, w, **kw):
    n = x.ndim - 2
    specs = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[n]
    return lax.conv_general_dilated(x, w, dimension_numbers=specs, **kw)


CASES = {
    "dense 3x3 (Winograd)": dict(
        shape=(3, 3, 4, 5), window_strides=(1, 1), padding="SAME"
    ),
    "dense 3x3 valid (Winograd)": dict(
        shape=(3, 3, 4, 5), window_strides=(1, 1), padding="VALID"
    ),
    "dense 3x3 asymmetric pad (Winograd)": dict(
        shape=(3, 3, 4, 3), window_strides=(1, 1), padding=((2, 1), (0, 3))
    ),
    "dense 3x3 stride 2": dict(
        shape=(3, 3, 4, 6), window_strides=(2, 2), padding="SAME"
    ),
    "dense 1x1 stride 2": dict(
        shape=(1, 1, 4, 6), window_strides=(2, 2), padding="VALID"
    ),
    "pointwise, padded": dict(
        shape=(1, 1, 4, 6), window_strides=(1, 2), padding=((1, 0), (0, 2))
    ),
    "1-d pointwise stride 3": dict(
        shape=(1, 4, 5), window_strides=(3,), padding="SAME"
    ),
    "dense 5x3 dilated, asymmetric pad": dict(
        shape=(5, 3, 4, 3),
        window_strides=(1, 2),
        padding=((2, 1), (0, 3)),
        rhs_dilation=(2, 1),
    ),
    "depthwise 3x3": dict(
        shape=(3, 3, 1, 4), window_strides=(1, 1), padding="SAME", feature_group_count=4
    ),
    "depthwise 5x5 stride 2": dict(
        shape=(5, 5, 1, 4), window_strides=(2, 2), padding="SAME", feature_group_count=4
    ),
    "depthwise 3x3 stride 2 valid, dilated": dict(
        shape=(3, 3, 1, 4),
        window_strides=(2, 1),
        padding="VALID",
        rhs_dilation=(1, 2),
        feature_group_count=4,
    ),
    "grouped (2 groups)": dict(
        shape=(3, 3, 2, 6), window_strides=(1, 1), padding="SAME", feature_group_count=2
    ),
    "depthwise x2 multiplier": dict(
        shape=(3, 3, 1, 8), window_strides=(1, 1), padding="SAME", feature_group_count=4
    ),
    "1-d depthwise": dict(
        shape=(3, 1, 4), window_strides=(2,), padding="SAME", feature_group_count=4
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_unchanged(name):
    case = dict(CASES[name])
    shape = case.pop("shape")
    rng = np.random.default_rng(0)
    n_spatial = len(shape) - 2
    x = jnp.asarray(rng.normal(size=(2, *([11] * n_spatial), 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=shape), jnp.float32)

    out_shape = jax.eval_shape(lambda x, w: _conv(x, w, **case), x, w).shape
    cotangent = jnp.asarray(rng.normal(size=out_shape), jnp.float32)

    def f(x, w):
        return (jnp.tanh(_conv(x, w, **case)) * cotangent).sum()

    def grads(x, w):
        return f(x, w), jax.grad(f, argnums=(0, 1))(x, w)

    want = jax.jit(grads)(x, w)
    got = jax.jit(fast_convolutions(grads))(x, w)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        # float32 sums in another order: errors of a few ulps of the largest term
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_inside_scan_no_swapped_or_depthwise_convolutions_remain():
    """The chunk body of `engine.chunked_sum` compiles with only HWIO-layout,
    non-depthwise convolutions: the forms XLA:CPU runs fast (module docstring)."""
    rng = np.random.default_rng(1)
    w1 = jnp.asarray(rng.normal(size=(3, 3, 3, 8)), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(3, 3, 1, 8)), jnp.float32)

    def f(x):
        y = jax.nn.relu(_conv(x[None], w1, window_strides=(2, 2), padding="SAME"))
        y = _conv(y, w2, window_strides=(1, 1), padding="SAME", feature_group_count=8)
        return y.sum()

    x = jnp.asarray(rng.normal(size=(16, 16, 3)), jnp.float32)
    path = lambda a: a * x

    def run(x):
        return engine.path_integral(
            f, path, jnp.linspace(0.1, 1, 8), jnp.full(8, 1 / 8), batch_size=2
        )

    hlo = jax.jit(run).lower(x).compile().as_text()
    labels = re.findall(r"dim_labels=(\w+)", hlo)
    assert labels, "expected convolutions in the compiled program"
    assert all(lab.split("_")[1].startswith("01io") for lab in labels), labels
    assert "feature_group_count" not in hlo

    # the switch turns the rewrite off, and the integral is the same without it
    fast = jax.jit(run)(x)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXATTR_FAST_CONVOLUTIONS", "0")
        run_off = jax.jit(lambda x: run(x))  # a new function: no cached trace
        hlo_off = run_off.lower(x).compile().as_text()
        reference = run_off(x)
    assert "feature_group_count" in hlo_off
    np.testing.assert_allclose(fast.integral, reference.integral, rtol=1e-5, atol=1e-5)


def _primitives(fn, *args):
    jaxpr = jax.make_jaxpr(fast_convolutions(fn))(*args).jaxpr
    return [e.primitive.name for e in jaxpr.eqns]


def test_winograd_replaces_wide_3x3_convolutions_only():
    """A 3x3 stride-1 convolution with at least as many 2x2 output tiles as input
    channels becomes matrix products; a narrower one, or a strided one, stays."""
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)), jnp.float32)
    conv = lambda x: _conv(x, w, window_strides=(1, 1), padding="SAME")
    wide = jnp.zeros((2, 8, 8, 16), jnp.float32)  # 32 tiles >= 16 channels
    narrow = jnp.zeros((1, 6, 6, 16), jnp.float32)  # 9 tiles < 16 channels
    assert "conv_general_dilated" not in _primitives(conv, wide)
    assert _primitives(conv, wide).count("dot_general") >= 16  # + the kernel transform
    assert "conv_general_dilated" in _primitives(conv, narrow)
    strided = lambda x: _conv(x, w, window_strides=(2, 2), padding="SAME")
    assert "conv_general_dilated" in _primitives(strided, wide)


def test_winograd_in_float64_is_exact_to_float64_rounding():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 9, 10, 6)), jnp.float64)
        w = jnp.asarray(rng.normal(size=(3, 3, 6, 4)), jnp.float64)
        conv = lambda x, w: _conv(x, w, window_strides=(1, 1), padding="SAME")
        assert "conv_general_dilated" not in _primitives(conv, x, w)
        got = jax.jit(fast_convolutions(conv))(x, w)
        want = conv(x, w)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_no_winograd_for_16_bit_floats():
    x = jnp.zeros((2, 8, 8, 4), jnp.bfloat16)
    w = jnp.zeros((3, 3, 4, 4), jnp.bfloat16)
    conv = lambda x, w: _conv(x, w, window_strides=(1, 1), padding="SAME")
    assert "conv_general_dilated" in _primitives(conv, x, w)
