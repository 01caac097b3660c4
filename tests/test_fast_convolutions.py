"""`fast_convolutions`: same values as the original function, and the slow
convolution forms are gone from the compiled program."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxattr import engine
from jaxattr import fast_convolutions as fc
from jaxattr.fast_convolutions import (
    fast_convolutions,
    fast_convolutions_enabled,
    use_fast_convolutions,
)

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the rewrite applies on the CPU backend"
)


#: The library's setting, read before the fixture below changes it.
PRODUCT_MIN_CHANNELS = fc.WINOGRAD_MIN_CHANNELS


@pytest.fixture(autouse=True)
def _winograd_on_narrow_layers(monkeypatch):
    """Winograd on the small test convolutions too (the product applies it from
    `WINOGRAD_MIN_CHANNELS` channels on): its values are checked on cheap shapes."""
    monkeypatch.setattr(fc, "WINOGRAD_MIN_CHANNELS", 1)


def _conv(x, w, **kw):
    n = x.ndim - 2
    specs = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[n]
    return lax.conv_general_dilated(x, w, dimension_numbers=specs, **kw)


CASES = {
    "dense 3x3 (Winograd)": {
        "shape": (3, 3, 4, 5),
        "window_strides": (1, 1),
        "padding": "SAME",
    },
    "dense 3x3 valid (Winograd)": {
        "shape": (3, 3, 4, 5),
        "window_strides": (1, 1),
        "padding": "VALID",
    },
    "dense 3x3 asymmetric pad (Winograd)": {
        "shape": (3, 3, 4, 3),
        "window_strides": (1, 1),
        "padding": ((2, 1), (0, 3)),
    },
    "dense 3x3 stride 2": {
        "shape": (3, 3, 4, 6),
        "window_strides": (2, 2),
        "padding": "SAME",
    },
    "dense 1x1 stride 2": {
        "shape": (1, 1, 4, 6),
        "window_strides": (2, 2),
        "padding": "VALID",
    },
    "pointwise, padded": {
        "shape": (1, 1, 4, 6),
        "window_strides": (1, 2),
        "padding": ((1, 0), (0, 2)),
    },
    "1-d pointwise stride 3": {
        "shape": (1, 4, 5),
        "window_strides": (3,),
        "padding": "SAME",
    },
    "dense 5x3 dilated, asymmetric pad": {
        "shape": (5, 3, 4, 3),
        "window_strides": (1, 2),
        "padding": ((2, 1), (0, 3)),
        "rhs_dilation": (2, 1),
    },
    "depthwise 3x3": {
        "shape": (3, 3, 1, 4),
        "window_strides": (1, 1),
        "padding": "SAME",
        "feature_group_count": 4,
    },
    "depthwise 5x5 stride 2": {
        "shape": (5, 5, 1, 4),
        "window_strides": (2, 2),
        "padding": "SAME",
        "feature_group_count": 4,
    },
    "depthwise 3x3 stride 2 valid, dilated": {
        "shape": (3, 3, 1, 4),
        "window_strides": (2, 1),
        "padding": "VALID",
        "rhs_dilation": (1, 2),
        "feature_group_count": 4,
    },
    "grouped (2 groups)": {
        "shape": (3, 3, 2, 6),
        "window_strides": (1, 1),
        "padding": "SAME",
        "feature_group_count": 2,
    },
    "depthwise x2 multiplier": {
        "shape": (3, 3, 1, 8),
        "window_strides": (1, 1),
        "padding": "SAME",
        "feature_group_count": 4,
    },
    "1-d depthwise": {
        "shape": (3, 1, 4),
        "window_strides": (2,),
        "padding": "SAME",
        "feature_group_count": 4,
    },
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


def test_winograd_min_channels_leaves_narrow_layers_as_convolutions(monkeypatch):
    """Product setting: Winograd from 64 channels in and out (VGG's 3 -> 64 stem and
    CIFAR ResNets' 16- and 32-channel stages stay convolutions)."""
    assert PRODUCT_MIN_CHANNELS == 64
    monkeypatch.setattr(fc, "WINOGRAD_MIN_CHANNELS", PRODUCT_MIN_CHANNELS)
    conv = lambda x, w: _conv(x, w, window_strides=(1, 1), padding="SAME")
    x3, x32, x64 = (jnp.zeros((8, 16, 16, c)) for c in (3, 32, 64))
    for x, w in ((x3, (3, 3, 3, 64)), (x32, (3, 3, 32, 64)), (x64, (3, 3, 64, 3))):
        assert "conv_general_dilated" in _primitives(conv, x, jnp.zeros(w)), w
    assert "conv_general_dilated" not in _primitives(
        conv, x64, jnp.zeros((3, 3, 64, 64))
    )


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


@pytest.mark.parametrize("budget", [1, 20000])
def test_winograd_in_strips_equals_the_convolution(monkeypatch, budget):
    """Above `WINOGRAD_STRIP_BYTES` the tiles are done in strips of tile rows (one
    per row at budget 1), in order: same values, forward and input gradient."""
    from jaxattr import fast_convolutions as fc

    monkeypatch.setattr(fc, "WINOGRAD_STRIP_BYTES", budget)
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 13, 11, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 8, 5)), jnp.float32)
    conv = lambda x, w: _conv(x, w, window_strides=(1, 1), padding=((1, 1), (1, 1)))
    assert fc._winograd_strips(2, 7, 6, 8, 5, 4) == (7 if budget == 1 else 4)
    names = _primitives(conv, x, w)
    assert "conv_general_dilated" not in names
    # each strip after the first reads its rows at an index computed from the
    # previous strip's output (the order; tests/test_memory.py checks the memory)
    assert names.count("dynamic_slice") >= (6 if budget == 1 else 3)
    np.testing.assert_allclose(
        jax.jit(fast_convolutions(conv))(x, w), conv(x, w), rtol=1e-5, atol=2e-5
    )
    grad = lambda x, w: jax.grad(lambda x: jnp.sum(conv(x, w) ** 2))(x)
    got, want = jax.jit(fast_convolutions(grad))(x, w), grad(x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    "window,strides,padding",
    [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), ((1, 1), (1, 1)))],
    ids=["vgg", "resnet_stem"],
)
def test_max_pool_derivative_without_select_and_scatter(window, strides, padding):
    """The max pool's derivative becomes masked taps from a first-max index kept in
    the forward pass: same gradients as XLA's select-and-scatter, ties included
    (the first maximum in row-major order gets the gradient)."""
    import flax.linen as nn

    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)

    def f(x):
        z = _conv(x[None], w, window_strides=(1, 1), padding="SAME")
        even, odd = z[:, :, 0::2], z[:, :, 1::2]
        tie = lax.stop_gradient(even[:, :, : odd.shape[2]]) + 0.0 * odd  # exact tie
        z = z.at[:, :, 1::2].set(tie)
        return jnp.sum(nn.max_pool(z, window, strides=strides, padding=padding) ** 2)

    xs = jnp.asarray(rng.normal(size=(5, 9, 8, 3)), jnp.float32)
    grads = jax.vmap(jax.grad(f))
    assert "select_and_scatter_add" not in _primitives(grads, xs)
    want = jax.jit(grads)(xs)
    np.testing.assert_allclose(jax.jit(fast_convolutions(grads))(xs), want, atol=1e-4)
    total = engine.chunked_sum(lambda x: (jax.grad(f)(x), None), xs, batch_size=2)[0]
    np.testing.assert_allclose(total, want.sum(0), atol=1e-4)


def test_no_winograd_for_16_bit_floats():
    x = jnp.zeros((2, 8, 8, 4), jnp.bfloat16)
    w = jnp.zeros((3, 3, 4, 4), jnp.bfloat16)
    conv = lambda x, w: _conv(x, w, window_strides=(1, 1), padding="SAME")
    assert "conv_general_dilated" in _primitives(conv, x, w)


# ------------------------------------------------- loops, branches, remat, custom rules


def _all_convs(jaxpr, in_loop=False):
    """`(eqn, in_loop)` for the convolutions of `jaxpr` and of every jaxpr nested
    in it; `in_loop`: inside a `while` or `scan` body."""
    from jaxattr._interpret import jaxprs_in as _sub_jaxprs

    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive is lax.conv_general_dilated_p:
            found.append((eqn, in_loop))
        loop = in_loop or eqn.primitive.name in ("while", "scan")
        for sub in _sub_jaxprs(eqn):
            found += _all_convs(sub, loop)
    return found


def _slow_convs(fn, *args, loops_only=False):
    """Depthwise, 1x1 or non-HWIO convolutions left in `fn`'s jaxpr (anywhere, or
    inside loop bodies only)."""
    slow = []
    traced = jax.make_jaxpr(lambda *a: fn(*a))(*args)  # a new function: no cache
    for eqn, in_loop in _all_convs(traced.jaxpr):
        dn, rhs = eqn.params["dimension_numbers"], eqn.invars[1].aval
        window = [rhs.shape[d] for d in dn.rhs_spec[2:]]
        if (in_loop or not loops_only) and (
            eqn.params["feature_group_count"] > 1
            or all(k == 1 for k in window)
            or tuple(dn.rhs_spec) != (3, 2, 0, 1)
        ):
            slow.append(eqn)
    return slow


def _tiny_net(seed=0, channels=4):
    """A smooth convnet on one `[8, 8, 3]` image: stride-2 3x3, depthwise 3x3, 1x1
    (tanh, so that rounding never flips a kink)."""
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(size=(3, 3, 3, channels)) / 3, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(3, 3, 1, channels)) / 3, jnp.float32)
    w3 = jnp.asarray(rng.normal(size=(1, 1, channels, 5)) / 2, jnp.float32)

    def logits(x):
        y = jnp.tanh(_conv(x[None], w1, window_strides=(2, 2), padding="SAME"))
        y = jnp.tanh(
            _conv(
                y,
                w2,
                window_strides=(1, 1),
                padding="SAME",
                feature_group_count=channels,
            )
        )
        y = _conv(y, w3, window_strides=(1, 1), padding="SAME")
        return y.mean((0, 1, 2))  # [5]

    x = jnp.asarray(rng.uniform(size=(8, 8, 3)), jnp.float32)
    return logits, x


def _assert_close(got, want):
    """Leaf by leaf; floats to 1e-5 relative, or 1e-6 of the leaf's largest value; a
    scalar leaf (a completeness delta: a difference of values of the whole result's
    scale, rounded at that scale) to 1e-6 of the largest value in `want`."""
    leaves = [np.asarray(b) for b in jax.tree.leaves(want)]
    floats = [b for b in leaves if np.issubdtype(b.dtype, np.floating)]
    scale = max(np.abs(b).max() for b in floats)
    for a, b in zip(jax.tree.leaves(got), leaves, strict=True):
        a = np.asarray(a)
        if np.issubdtype(b.dtype, np.floating):
            atol = 1e-6 * (scale if b.size == 1 else np.abs(b).max())
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)
        else:
            np.testing.assert_array_equal(a, b)


def _loop_programs():
    logits, x = _tiny_net()
    f = lambda z: logits(z)[1]

    def in_while(x):
        def body(c):
            k, z, acc = c
            v, g = jax.value_and_grad(f)(z)
            return k + 1, z - 0.1 * g, acc + v

        return lax.while_loop(lambda c: c[0] < 3, body, (0, x, 0.0))

    def in_fori(x):
        return lax.fori_loop(0, 3, lambda i, z: z + 0.1 * jax.grad(f)(z), x)

    def in_scan(x):
        def body(z, s):
            v, g = jax.value_and_grad(f)(z * s)
            return z + 0.1 * g, v

        return lax.scan(body, x, jnp.linspace(0.5, 1.0, 3))

    def in_cond(x):
        return lax.cond(
            x.sum() > 0, lambda z: jax.grad(f)(z), lambda z: -jax.grad(f)(2 * z), x
        )

    def in_switch_in_scan(x):
        def body(z, i):
            return lax.switch(i, [lambda z: z, lambda z: z + jax.grad(f)(z)], z), f(z)

        return lax.scan(body, x, jnp.arange(4) % 2)

    def nested(x):  # a scan in a while in a vmap
        def inner(z):
            return lax.scan(lambda c, _: (c + 0.1 * jax.grad(f)(c), f(c)), z, None, 2)

        def outer(z):
            return lax.while_loop(
                lambda c: c[1] < 2, lambda c: (inner(c[0])[0], c[1] + 1), (z, 0)
            )

        return jax.vmap(outer)(jnp.stack([x, 1 - x]))

    def batched_predicate(x):  # each lane stops at its own step
        def one(z, n):
            body = lambda c: (c[0] + 1, c[1] + 0.1 * jax.grad(f)(c[1]))
            return lax.while_loop(lambda c: c[0] < n, body, (0, z))[1]

        return jax.vmap(one)(jnp.stack([x, 1 - x, x / 2]), jnp.array([1, 3, 2]))

    def jit_in_scan(x):  # nested jit calls (pjit) inside a loop body
        g = jax.jit(jax.grad(jax.jit(f)))
        return lax.scan(lambda c, s: (c + g(x * s), None), x, jnp.ones(2))[0]

    def checkpoint_in_scan(x):  # a rematerialised model, differentiated in a loop
        g = jax.grad(jax.checkpoint(f))
        return lax.scan(lambda c, s: (c + g(x * s), None), x, jnp.ones(2))[0]

    return x, {
        "jit in scan": jit_in_scan,
        "checkpoint in scan": checkpoint_in_scan,
        "vmap of while, batched predicate": batched_predicate,
        "while": in_while,
        "fori_loop": in_fori,
        "scan": in_scan,
        "cond": in_cond,
        "switch in scan": in_switch_in_scan,
        "vmap of while of scan": nested,
    }


@pytest.mark.parametrize("name", sorted(_loop_programs()[1]))
def test_loop_and_branch_bodies_are_rewritten(name):
    """Convolutions (and their gradients) inside while/scan/cond bodies are
    rewritten, with the same values."""
    x, programs = _loop_programs()
    fn = programs[name]
    assert _slow_convs(fn, x), "the test program should have slow convolutions"
    assert not _slow_convs(fast_convolutions(fn), x)
    _assert_close(jax.jit(fast_convolutions(fn))(x), jax.jit(fn)(x))


def test_gradients_through_rewritten_loops():
    """A wrapped function with a scan and a cond is differentiated like the original
    (the loops are rebuilt with lax.scan / lax.switch, which have derivatives)."""
    logits, x = _tiny_net(1)

    def fn(x):
        def body(z, s):
            y = lax.cond(s > 0.7, lambda z: logits(z), lambda z: 2 * logits(z), z * s)
            return z * 0.9, y.sum()

        return lax.scan(body, x, jnp.linspace(0.5, 1.0, 4))[1].sum()

    _assert_close(
        jax.jit(jax.value_and_grad(fast_convolutions(fn)))(x),
        jax.jit(jax.value_and_grad(fn))(x),
    )


def test_checkpoint_bodies_are_rewritten():
    logits, x = _tiny_net(2)
    f = jax.checkpoint(lambda z: logits(z)[2])
    fn = jax.value_and_grad(f)  # a differentiated checkpoint: the recomputation
    assert _slow_convs(fn, x) and not _slow_convs(fast_convolutions(fn), x)
    _assert_close(jax.jit(fast_convolutions(fn))(x), jax.jit(fn)(x))
    # a checkpoint not yet differentiated stays one, and differentiates the same
    wrapped = fast_convolutions(f)
    prims = [e.primitive.name for e in jax.make_jaxpr(wrapped)(x).jaxpr.eqns]
    assert "checkpoint" in prims or "remat2" in prims
    _assert_close(jax.jit(jax.grad(wrapped))(x), jax.jit(jax.grad(f))(x))


def test_custom_derivative_bodies_are_rewritten_keeping_their_rules():
    logits, x = _tiny_net(3)

    @jax.custom_jvp
    def f_jvp(z):
        return logits(z)[0]

    @f_jvp.defjvp
    def _(primals, tangents):  # a rule that differs from the true derivative
        return f_jvp(*primals), 2.0 * jnp.vdot(
            jax.grad(lambda z: logits(z)[0])(*primals), *tangents
        )

    @jax.custom_vjp
    def f_vjp(z):
        return logits(z)[0]

    f_vjp.defvjp(
        lambda z: (logits(z)[0], z),
        lambda z, ct: (3.0 * ct * jax.grad(lambda z: logits(z)[0])(z),),
    )
    for f in (f_jvp, f_vjp):
        assert _slow_convs(f, x) and not _slow_convs(fast_convolutions(f), x)
        _assert_close(jax.jit(fast_convolutions(f))(x), jax.jit(f)(x))
        _assert_close(
            jax.jit(jax.grad(fast_convolutions(f)))(x), jax.jit(jax.grad(f))(x)
        )


def test_idempotent():
    """Applying the rewrite twice (a chunked_sum inside a wrapped method) gives the
    same program as once: no extra convolutions, the same values."""
    logits, x = _tiny_net(4)
    f = lambda z: logits(z)[3]

    def fn(x):
        def node(a):
            return jax.grad(f)(a * x), f(a * x)

        return engine.chunked_sum(node, jnp.linspace(0.1, 1.0, 6), batch_size=2)

    once = jax.make_jaxpr(fn)(x)
    twice = jax.make_jaxpr(fast_convolutions(fast_convolutions(fn)))(x)
    assert not _slow_convs(fast_convolutions(fn), x)

    def census(jaxpr):
        counts = {}
        for eqn in jaxpr.eqns:
            counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1
            for sub in __import__("jaxattr")._interpret.jaxprs_in(eqn):
                for k, v in census(sub).items():
                    counts[k] = counts.get(k, 0) + v
        return counts

    a, b = census(once.jaxpr), census(twice.jaxpr)
    for prim in ("conv_general_dilated", "dot_general", "optimization_barrier"):
        assert a.get(prim, 0) == b.get(prim, 0), prim
    _assert_close(jax.jit(fast_convolutions(fast_convolutions(fn)))(x), jax.jit(fn)(x))


def _with_switch(value, fn, *args):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXATTR_FAST_CONVOLUTIONS", value)
        return jax.jit(lambda *a: fn(*a))(*args)  # a new function: traced anew


def test_methods_with_loops_unchanged_by_the_rewrite():
    """Guided IG, AGI and DGA (the model inside their own loops) give the same
    results with and without the rewrite, and run without slow convolutions."""
    import jaxattr

    logits, x = _tiny_net(5)
    f = lambda z: logits(z)[1]
    methods = {
        "guided_ig": lambda x: jaxattr.guided_integrated_gradients(
            f, x, "black", n_steps=6, fraction=0.5, max_dist=1.0
        ),
        # class 1 is the target: its lane stops at once (a batched predicate)
        "agi": lambda x: jaxattr.adversarial_gradient_integration(
            logits, x, 1, classes=jnp.array([0, 1, 3]), eps=0.05, max_iter=4
        ),
        "dga": lambda x: jaxattr.distilled_gradient_aggregation(
            f, x, "black", n_steps=4, ufg="shortcut"
        ),
    }
    for name, method in methods.items():
        fast = _with_switch("1", method, x)
        slow = _with_switch("0", method, x)
        _assert_close(fast, slow)
        for value, slow_in_loops in (("0", True), ("1", False)):
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("JAXATTR_FAST_CONVOLUTIONS", value)
                found = _slow_convs(method, x, loops_only=True)
                assert bool(found) == slow_in_loops, (name, value)


def test_explicit_option_argument_context_and_environment():
    """`enabled=` wins over `use_fast_convolutions`, which wins over the
    environment variable; an explicit off leaves the plain convolutions."""
    logits, x = _tiny_net(6)
    f = lambda z: jax.grad(lambda u: logits(u)[0])(z)
    assert _slow_convs(f, x)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("JAXATTR_FAST_CONVOLUTIONS", raising=False)
        assert fast_convolutions_enabled()
        assert not _slow_convs(fast_convolutions(f), x)
        off = fast_convolutions(f, enabled=False)
        assert off is f
        with use_fast_convolutions(False):
            assert not fast_convolutions_enabled()
            assert fast_convolutions_enabled(True)
            plain = jax.make_jaxpr(f)(x)
            assert str(jax.make_jaxpr(fast_convolutions(f))(x)) == str(plain)
            assert not _slow_convs(fast_convolutions(f, enabled=True), x)
        mp.setenv("JAXATTR_FAST_CONVOLUTIONS", "0")
        assert not fast_convolutions_enabled()
        assert _slow_convs(fast_convolutions(f), x)
        with use_fast_convolutions(True):  # the context overrides the variable
            assert fast_convolutions_enabled()
            assert not _slow_convs(fast_convolutions(f), x)
        assert not _slow_convs(fast_convolutions(f, enabled=True), x)
    with pytest.raises(TypeError, match="enabled must be a bool or None, got 'no'"):
        fast_convolutions(f, enabled="no")
    with pytest.raises(TypeError, match="enabled must be a bool, got 1"):
        use_fast_convolutions(1)


def test_the_context_is_part_of_the_jit_cache_key():
    """A jitted method traced with the rewrite on is traced again inside
    `use_fast_convolutions(False)` (no stale program)."""
    logits, x = _tiny_net(7)
    f = lambda z: logits(z)[1]
    run = jax.jit(
        lambda x: (
            engine.path_integral(
                f,
                lambda a: a * x,
                jnp.linspace(0.1, 1, 4),
                jnp.full(4, 0.25),
                batch_size=2,
            ).integral
        )
    )
    on = run.lower(x).compile().as_text()
    with use_fast_convolutions(False):
        off = run.lower(x).compile().as_text()
        np.testing.assert_allclose(run(x), jax.jit(lambda x: run(x))(x), rtol=1e-6)
    assert "feature_group_count" not in on and "feature_group_count" in off
