"""Distilled Gradient Aggregation: a hand-solved linear case, masks and the whole
sequence against NumPy loops, UFG's shortcut against the explicit bias route, the
piecewise-linearity check, jit/vmap, and EfficientNet-Lite0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr.methods import dga
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=1)
RELU = helpers.tiny_cnn(PARAMS)
XS = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
TARGETS = jnp.array([0, 4, 7])


def explicit_bias_fn(params, target, act=jax.nn.relu):
    """FullGrad's sum_l <b_l, df/db_l>, by differentiating the tiny CNN's biases."""
    names = ("b1", "b2", "b3")

    def total(x):
        biases = {k: jnp.asarray(params[k]) for k in names}

        def logit(bs):
            return helpers.tiny_cnn(dict(params, **bs), act=act)(x[None])[0, target]

        grads = jax.grad(logit)(biases)
        return sum(jnp.vdot(biases[k], grads[k]) for k in names)

    return total


def np_masks(phi, n, n_total, q):
    """Eqs. 4-8 by counting, feature by feature."""
    d = phi.size
    wc, epc = np.ones(d), np.zeros(d)
    for j in range(d):
        if sum(abs(phi[k]) <= abs(phi[j]) for k in range(d)) / d <= n / n_total:
            wc[j] = 0.0
        if sum(phi[k] <= phi[j] for k in range(d)) / d <= q:
            epc[j] = 1.0
    return (n / n_total) * wc + (1 - n / n_total) * epc, wc, epc


def np_dga(f, x, b, n_total, q, beta, include_first=True, pixels=False):
    """Algorithm 1 as a Python loop (gradients from JAX, everything else NumPy)."""
    x, b = np.asarray(x, np.float32), np.asarray(b, np.float32)
    xt, acc = x.copy(), np.zeros_like(x)
    for n in range(n_total + 1):
        v, g = jax.value_and_grad(f)(jnp.asarray(xt))
        moved = xt - b
        phi = moved * np.asarray(g)
        phi = phi + (float(v) - phi.sum()) / x.size
        if n > 0 or include_first:
            acc += np.maximum(phi, 0) + beta * np.minimum(phi, 0)
        if pixels:
            m = np_masks(phi.sum(-1).ravel(), n, n_total, q)[0]
            m = m.reshape(phi.shape[:-1])[..., None]
        else:
            m = np_masks(phi.ravel(), n, n_total, q)[0].reshape(x.shape)
        xt = b + m * (x - b)
    return acc


def test_linear_model_known_answer():
    # f = w.x, x = 1: phi_0 = w. Worked by hand for N = 2, q = 0.9 (10 features):
    # n=0 masks the top 10% (w=10); n=1 removes the 5 weakest (w=10 now 0, 1..4),
    # keeps w<=8 by EPC, so M = 0.5 for w in {1..4, 9, 10}, 1 for w in {5..8};
    # DGA = w + w*[w != 10] + M*w.
    perm = np.array([3, 7, 0, 9, 5, 1, 8, 2, 6, 4])
    w = (perm + 1).astype(np.float32)
    mult = {k: 2.5 for k in (1, 2, 3, 4, 9)} | {k: 3.0 for k in (5, 6, 7, 8)}
    mult[10] = 1.5
    expected = np.array([mult[int(k)] * k for k in w])
    r = jaxattr.distilled_gradient_aggregation(
        lambda z: jnp.vdot(w, z), jnp.ones(10), n_steps=2, q=0.9
    )
    np.testing.assert_allclose(r.attributions, expected, rtol=1e-6)
    np.testing.assert_allclose(r.aux["values"], [55.0, 45.0, 0.5 * 29 + 26], rtol=1e-6)
    assert np.isnan(float(r.delta))


def test_linear_model_beta_and_first_step():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 4, 2)).astype(np.float32)
    x = jnp.asarray(rng.uniform(size=(4, 4, 2)), jnp.float32)
    f = lambda z: jnp.vdot(w, z) + 0.7
    betas = jnp.array([0.0, 0.5, 1.0])
    sweep = jax.jit(
        jax.vmap(
            lambda b: jaxattr.distilled_gradient_aggregation(f, x, n_steps=4, beta=b)
        )
    )(betas)
    a0, a1 = sweep.attributions[0], sweep.attributions[2]
    np.testing.assert_allclose(sweep.attributions[1], a0 + 0.5 * (a1 - a0), atol=1e-5)
    # beta = 1 sums the UFGs, and each UFG sums to f at its input.
    np.testing.assert_allclose(a1.sum(), sweep.aux["values"][2].sum(), rtol=1e-4)
    np.testing.assert_allclose(
        a0, np_dga(f, x, np.zeros_like(x), 4, 0.9, 0.0), rtol=1e-5, atol=1e-6
    )
    later = jaxattr.distilled_gradient_aggregation(f, x, n_steps=4, include_first=False)
    phi0 = w * x + (0.7 / x.size)  # UFG at x for an affine f
    np.testing.assert_allclose(
        later.attributions, a0 - jnp.maximum(phi0, 0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("n", [0, 1, 3, 5])
@pytest.mark.parametrize("q", [0.9, 0.5, 0.75])
def test_masks_against_numpy(n, q):
    rng = np.random.default_rng(n)
    phi = np.round(rng.normal(size=48), 1).astype(np.float32)  # with ties
    phi[:5] = -phi[5:10]  # equal magnitudes of opposite sign
    mask, wc, epc = dga.dga_masks(jnp.asarray(phi), n, 5, q)
    ref_mask, ref_wc, ref_epc = np_masks(phi, n, 5, q)
    np.testing.assert_array_equal(wc, ref_wc)
    np.testing.assert_array_equal(epc, ref_epc)
    np.testing.assert_allclose(mask, ref_mask, rtol=1e-6)
    if n == 0:
        assert (np.asarray(wc) == 1).all()
    if n == 5:
        assert not np.asarray(wc).any()


@pytest.mark.parametrize("pixels", [False, True])
def test_whole_sequence_against_numpy(pixels):
    f = jaxattr.scalar_output(RELU, 3)
    base = jnp.full_like(XS[0], 0.2)
    r = jaxattr.distilled_gradient_aggregation(
        f,
        XS[0],
        base,
        n_steps=6,
        q=0.8,
        beta=0.25,
        mask_features="pixels" if pixels else "elements",
    )
    ref = np_dga(f, XS[0], base, 6, 0.8, 0.25, pixels=pixels)
    np.testing.assert_allclose(r.attributions, ref, rtol=1e-4, atol=1e-6)


def test_ufg_shortcut_equals_explicit_bias_route_on_a_relu_network():
    f = jaxattr.scalar_output(RELU, 5)
    bias_fn = explicit_bias_fn(PARAMS, 5)
    for x in (XS[0], XS[1] * (XS[2] > 0.5)):
        short = dga.uniform_fullgrad(f, x, ufg="shortcut")
        full = dga.uniform_fullgrad(f, x, ufg="explicit", bias_fn=bias_fn)
        scale = float(jnp.abs(short.attributions).max())
        np.testing.assert_allclose(
            full.attributions, short.attributions, atol=1e-5 * scale
        )
        assert abs(float(full.delta)) < 1e-4 * max(1.0, abs(float(full.aux["f_x"])))
        # With a baseline, the explicit route adds <b, grad> to the biases.
        b = jnp.full_like(x, 0.3)
        np.testing.assert_allclose(
            dga.uniform_fullgrad(f, x, b, ufg="explicit", bias_fn=bias_fn).attributions,
            dga.uniform_fullgrad(f, x, b).attributions,
            atol=1e-5 * scale,
        )
    short = jaxattr.distilled_gradient_aggregation(f, XS[0], n_steps=5)
    full = jaxattr.distilled_gradient_aggregation(
        f, XS[0], n_steps=5, ufg="explicit", bias_fn=bias_fn
    )
    np.testing.assert_allclose(full.attributions, short.attributions, rtol=1e-4)


def test_non_piecewise_linear_networks_are_refused_or_use_bias_fn():
    soft = helpers.tiny_cnn(PARAMS, act=jax.nn.softplus)
    f = jaxattr.scalar_output(soft, 2)
    assert dga.non_piecewise_linear_ops(f, XS[0]) == ["exp", "log1p"]
    assert dga.non_piecewise_linear_ops(jaxattr.scalar_output(RELU, 2), XS[0]) == []
    relu6 = helpers.tiny_cnn(PARAMS, act=jax.nn.relu6)
    assert dga.non_piecewise_linear_ops(jaxattr.scalar_output(relu6, 2), XS[0]) == []
    assert "mul of two x-dependent operands" in dga.non_piecewise_linear_ops(
        lambda z: jnp.sum(z * jnp.maximum(z, 0)), XS[0]
    )
    probs = jaxattr.scalar_output(RELU, 2, output="softmax")
    with pytest.raises(ValueError, match="not piecewise linear.*exp"):
        jaxattr.distilled_gradient_aggregation(probs, XS[0], n_steps=2)
    # With bias_fn, "auto" falls back to the explicit route; the shortcut would
    # differ there, since FullGrad's completeness fails for softplus.
    bias_fn = explicit_bias_fn(PARAMS, 2, act=jax.nn.softplus)
    full = dga.uniform_fullgrad(f, XS[0], bias_fn=bias_fn)
    assert abs(float(full.delta)) > 1e-3
    auto = jaxattr.distilled_gradient_aggregation(f, XS[0], n_steps=2, bias_fn=bias_fn)
    explicit = jaxattr.distilled_gradient_aggregation(
        f, XS[0], n_steps=2, ufg="explicit", bias_fn=bias_fn
    )
    np.testing.assert_allclose(auto.attributions, explicit.attributions, rtol=1e-6)


def test_normalized_zero_baseline_equals_masking_normalised_tensors():
    mean = jnp.asarray(jaxattr.baselines.IMAGENET_MEAN)
    std = jnp.asarray([0.229, 0.224, 0.225])
    g = jaxattr.scalar_output(RELU, 6)  # the network on normalised tensors
    f = lambda x: g((x - mean) / std)  # the same network on pixels
    x = XS[1]
    pixel = jaxattr.distilled_gradient_aggregation(f, x, "normalized_zero", n_steps=4)
    normalised = jaxattr.distilled_gradient_aggregation(g, (x - mean) / std, n_steps=4)
    np.testing.assert_allclose(
        pixel.attributions, normalised.attributions, rtol=1e-4, atol=1e-5
    )


def test_jit_vmap_over_images_targets_q_beta_without_retracing():
    traces = []

    @jax.jit
    def explain(x, t, q, beta):
        traces.append(1)
        f = jaxattr.scalar_output(RELU, t)
        return jaxattr.distilled_gradient_aggregation(f, x, n_steps=3, q=q, beta=beta)

    batched = jax.vmap(explain, in_axes=(0, 0, None, None))(XS, TARGETS, 0.9, 0.0)
    for i in range(3):
        one = explain(XS[i], TARGETS[i], 0.9, 0.0)
        np.testing.assert_allclose(
            batched.attributions[i], one.attributions, rtol=1e-5, atol=1e-7
        )
    explain(XS[0], TARGETS[1], 0.8, 0.3)
    assert len(traces) == 1
    eager = jaxattr.distilled_gradient_aggregation(
        jaxattr.scalar_output(RELU, 4), XS[1], n_steps=3
    )
    np.testing.assert_allclose(
        batched.attributions[1], eager.attributions, rtol=1e-5, atol=1e-7
    )


def test_errors_name_the_argument():
    f = jaxattr.scalar_output(RELU, 0)
    with pytest.raises(ValueError, match="ufg must be one of"):
        jaxattr.distilled_gradient_aggregation(f, XS[0], ufg="fast")
    with pytest.raises(ValueError, match="ufg='explicit' needs bias_fn"):
        jaxattr.distilled_gradient_aggregation(f, XS[0], ufg="explicit")
    with pytest.raises(ValueError, match="single baseline"):
        jaxattr.distilled_gradient_aggregation(f, XS[0], ["black", "uniform"])
    with pytest.raises(ValueError, match="mask_features must be one of"):
        jaxattr.distilled_gradient_aggregation(f, XS[0], mask_features="channels")
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        jaxattr.distilled_gradient_aggregation(f, XS[0], n_steps=2.0)


def test_lite0_end_to_end_under_jit():
    from jaxattr import images, models

    model = models.load("efficientnet_lite0")
    photo = images.default_images(["coffee"])[0]
    x = jnp.asarray(photo.image)
    f = jaxattr.scalar_output(model.fn, photo.label)
    assert dga.non_piecewise_linear_ops(f, x) == []  # ReLU6, eval BN, pooling

    @jax.jit
    def explain(model_fn, x):
        f = jaxattr.scalar_output(model_fn, photo.label)
        return jaxattr.distilled_gradient_aggregation(f, x, n_steps=2), f(x)

    r, f_x = explain(model.fn, x)
    assert r.attributions.shape == x.shape
    assert np.isfinite(np.asarray(r.attributions)).all()
    assert float(r.attributions.min()) >= 0.0 and float(r.attributions.max()) > 0.0
    np.testing.assert_allclose(r.aux["values"][0], f_x, rtol=1e-4)
    assert float(r.aux["kept"][0]) == pytest.approx(0.9, abs=0.01)  # EPC at n=0
    assert float(r.aux["values"][1]) < float(f_x)  # extreme positives removed


def test_explicit_route_on_a_model_port_matches_the_shortcut():
    from jaxattr import models

    model = models.load("cifar_resnet20", weights="random")
    rng = np.random.default_rng(0)

    def perturb(path, leaf):  # non-trivial biases and BatchNorm statistics
        name = path[-1].key
        if name in ("bias", "mean"):
            return jnp.asarray(rng.normal(0, 0.1, leaf.shape), leaf.dtype)
        if name in ("scale", "var"):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return leaf

    variables = jax.tree_util.tree_map_with_path(perturb, model.variables)
    x = jax.random.uniform(jax.random.key(2), (32, 32, 3))

    @jax.jit
    def both(variables, x):
        f = jaxattr.scalar_output(lambda z: model.apply(variables, z), 3)
        bias_fn = models.model_bias_fn(model, 3, variables=variables)
        short = dga.uniform_fullgrad(f, x)
        full = dga.uniform_fullgrad(f, x, ufg="explicit", bias_fn=bias_fn)
        return short, full, bias_fn(x)

    short, full, bias = both(variables, x)
    scale = float(jnp.abs(short.attributions).max())
    np.testing.assert_allclose(full.attributions, short.attributions, atol=1e-4 * scale)
    f_x = float(short.aux["f_x"])
    assert abs(float(full.delta)) < 1e-4 * max(1.0, abs(f_x))
    assert abs(float(bias)) > 1e-2 * abs(f_x)  # the bias terms matter here


def test_model_bias_fn_moved_to_models_with_a_deprecated_alias():
    from jaxattr import models

    with pytest.warns(DeprecationWarning, match="jaxattr.models.model_bias_fn"):
        assert dga.model_bias_fn is models.model_bias_fn
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        dga.nonexistent  # noqa: B018


def test_masks_equal_the_sort_based_counts():
    """`dga_masks` (order statistics without sorting) equals the counting rule
    `count_j * N <= n * d` / `count_j <= q * d` with counts from a sort, on ties,
    signed zeros and infinities, for every step and several q."""
    from jaxattr.methods.dga import _counts_le, dga_masks

    def by_counts(phi, n, n_total, q):
        d = phi.shape[0]
        wc = jnp.where(_counts_le(jnp.abs(phi)) * n_total <= n * d, 0.0, 1.0)
        epc = jnp.where(_counts_le(phi) <= q * d, 1.0, 0.0)
        return wc.astype(phi.dtype), epc.astype(phi.dtype)

    rng = np.random.default_rng(0)
    qs = jnp.asarray([0.0, 1e-4, 0.5, 0.9, 1.0], jnp.float32)
    for n_total in (1, 3, 10):
        n = jnp.repeat(jnp.arange(n_total + 1), len(qs))
        q = jnp.tile(qs, n_total + 1)
        masks = jax.jit(
            jax.vmap(lambda p, n, q, k=n_total: dga_masks(p, n, k, q)[1:], (None, 0, 0))
        )
        reference = jax.jit(
            jax.vmap(lambda p, n, q, k=n_total: by_counts(p, n, k, q), (None, 0, 0))
        )
        for trial in range(8):
            phi = rng.normal(size=101).astype(np.float32)
            if trial % 2:
                phi = np.round(phi, 1)  # ties, and -0.0 next to 0.0
            if trial % 4 == 3:
                phi[rng.uniform(size=phi.size) < 0.2] = -0.0
                phi[rng.uniform(size=phi.size) < 0.1] = np.inf
                phi[rng.uniform(size=phi.size) < 0.1] = -np.inf
            phi = jnp.asarray(phi)
            for got, want in zip(masks(phi, n, q), reference(phi, n, q), strict=True):
                np.testing.assert_array_equal(got, want)


def _wrapped(kind, g):
    """`g` (an array to an array) run inside a body of the given kind."""
    if kind == "scan":
        return lambda z: jax.lax.scan(lambda c, _: (g(c), None), z, None, length=1)[0]
    if kind == "while":
        step = lambda c: (c[0] + 1, g(c[1]))
        return lambda z: jax.lax.while_loop(lambda c: c[0] < 1, step, (0, z))[1]
    if kind == "cond":
        return lambda z: jax.lax.cond(z.sum() > -1e3, g, lambda u: u, z)
    if kind == "jit":
        return jax.jit(g)
    if kind == "checkpoint":
        return jax.checkpoint(g)
    if kind == "custom_jvp":
        c = jax.custom_jvp(g)
        c.defjvp(lambda p, t: (c(p[0]), t[0]))
        return c
    assert kind == "custom_vjp"
    c = jax.custom_vjp(g)
    c.defvjp(lambda z: (c(z), None), lambda _, ct: (ct,))
    return c


BODY_KINDS = ("scan", "while", "cond", "jit", "checkpoint", "custom_jvp", "custom_vjp")


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_piecewise_linearity_check_sees_into_every_body(kind):
    """The check gives the same verdict with a network's layer inside a body of
    each kind as without the body."""
    w = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), jnp.float32)
    x = jnp.linspace(-1.0, 1.0, 4)
    layers = {
        "relu": lambda z: jax.nn.relu(w @ z),
        "exp": lambda z: jnp.exp(w @ z),
        "square": lambda z: (w @ z) * z,
    }
    for name, g in layers.items():
        plain = dga.non_piecewise_linear_ops(lambda z, g=g: jnp.sum(g(z)), x)
        inside = dga.non_piecewise_linear_ops(
            lambda z, g=g: jnp.sum(_wrapped(kind, g)(z)), x
        )
        assert inside == plain, (kind, name)
        assert (plain == []) == (name == "relu"), name


def test_piecewise_linearity_check_follows_loop_carries():
    """A carry that starts constant and becomes x-dependent in the loop taints its
    later uses (the second iteration squares an x-dependent value)."""
    x = jnp.linspace(-1.0, 1.0, 4)

    def f(z):
        step = lambda c, _: (c * c + z, None)
        return jnp.sum(jax.lax.scan(step, jnp.zeros_like(z), None, length=2)[0])

    assert dga.non_piecewise_linear_ops(f, x) == ["mul of two x-dependent operands"]
    # a carry that never meets x stays clean
    g = lambda z: jnp.sum(
        z + jax.lax.scan(lambda c, _: (c * c, None), jnp.ones(4), None, length=2)[0]
    )
    assert dga.non_piecewise_linear_ops(g, x) == []


def test_dga_with_the_model_inside_a_scan_equals_unrolled():
    """DGA (its UFG through fast_convolutions and the shortcut check) on a model
    whose layers run in a scan equals DGA on the same model unrolled."""
    rng = np.random.default_rng(1)
    ws = jnp.asarray(rng.normal(size=(2, 3, 3, 3, 3)) / 3, jnp.float32)

    def layer(h, w):
        y = jax.lax.conv_general_dilated(
            h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y)

    scanned = lambda x: jnp.sum(
        jax.lax.scan(lambda h, w: (layer(h, w), None), x[None], ws)[0] * x[None]
    )
    x = XS[0]
    assert dga.non_piecewise_linear_ops(scanned, x) == [
        "mul of two x-dependent operands"
    ]
    lin_unrolled = lambda x: jnp.sum(layer(layer(x[None], ws[0]), ws[1]))
    lin_scanned = lambda x: jnp.sum(
        jax.lax.scan(lambda h, w: (layer(h, w), None), x[None], ws)[0]
    )
    want = jaxattr.distilled_gradient_aggregation(lin_unrolled, x, n_steps=3)
    got = jaxattr.distilled_gradient_aggregation(lin_scanned, x, n_steps=3)
    np.testing.assert_allclose(
        got.attributions, want.attributions, rtol=1e-4, atol=1e-5
    )
