"""FullGrad: the full-gradient decomposition on every port (random weights, 32x32),
the saliency against NumPy psi + torch's bilinear interpolation, jit/vmap, errors."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxattr.fast_convolutions import use_fast_convolutions
from jaxattr.methods.fullgrad import bilinear_matrix, full_gradients, psi
from jaxattr.models import efficientnet, load, resnet, vgg
from jaxattr.models.layers import fullgrad_model
from tests.models.test_layers import _random_variables

HIGH = jax.lax.Precision.HIGHEST


# --- a tiny conv net with explicit perturbations: conv(s2) - relu - conv(s2) - relu -
# --- mean - dense; maps 8x8 and 4x4 for a 16x16 input.
def _tiny_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32),
        "b1": rng.normal(0, 0.3, (4,)).astype(np.float32),
        "w2": rng.normal(0, 0.4, (3, 3, 4, 5)).astype(np.float32),
        "b2": rng.normal(0, 0.3, (5,)).astype(np.float32),
        "w3": rng.normal(0, 0.5, (5, 7)).astype(np.float32),
        "b3": rng.normal(0, 0.3, (7,)).astype(np.float32),
    }


P = _tiny_params()
BIASES = {"conv1": P["b1"], "conv2": P["b2"], "fc": P["b3"]}
Z = {
    "conv1": jnp.zeros((8, 8, 4)),
    "conv2": jnp.zeros((4, 4, 5)),
    "fc": jnp.zeros((7,)),
}


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x[None],
        w,
        (2, 2),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=HIGH,
    )[0]


def tiny_f(target, act=jax.nn.relu):
    def f(x, z):
        h = act(_conv(x, P["w1"]) + P["b1"] + z["conv1"])
        h = act(_conv(h, P["w2"]) + P["b2"] + z["conv2"])
        out = jnp.dot(h.mean(axis=(0, 1)), P["w3"], precision=HIGH) + P["b3"] + z["fc"]
        return out[target]

    return f


X16 = jax.random.uniform(jax.random.key(0), (16, 16, 3))


def np_psi(v):
    a = np.abs(np.asarray(v, np.float64))
    a = a - a.min()
    return a / (a.max() + 1e-6)


def torch_up(m, size, align_corners):
    """`[h, w, C]` -> `[H, W, C]` with torch's F.interpolate (NCHW)."""
    t = torch.from_numpy(np.asarray(m, np.float64).transpose(2, 0, 1)[None].copy())
    out = torch.nn.functional.interpolate(
        t, size=size, mode="bilinear", align_corners=align_corners
    )
    return out[0].numpy().transpose(1, 2, 0)


def reference_saliency(f, x, z, biases, align_corners, post="fullgrad"):
    """The authors' `saliency`, step by step, from JAX gradients."""
    gx, gz = jax.grad(f, argnums=(0, 1))(x, z)
    pp = np_psi if post == "fullgrad" else (lambda v: np.asarray(v, np.float64))
    cam = pp(np.asarray(gx) * np.asarray(x)).sum(-1)
    for k in z:
        m = np.asarray(gz[k]) * np.asarray(biases[k])
        if m.ndim == 3:
            cam = cam + torch_up(pp(m), x.shape[:2], align_corners).sum(-1)
    return cam


@pytest.mark.parametrize("linear", [False, True], ids=["relu", "linear"])
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("post", ["fullgrad", "raw"])
def test_saliency_matches_numpy_torch_reference(align_corners, post, linear):
    # The linear net has no zero gradients, so psi's min subtraction matters.
    f = tiny_f(2, act=(lambda v: v) if linear else jax.nn.relu)
    if linear:
        gz = jax.grad(f, argnums=1)(X16, Z)
        assert np.abs(np.asarray(gz["conv2"]) * P["b2"]).min() > 1e-6
    out = full_gradients(f, X16, Z, BIASES, post=post, align_corners=align_corners)
    ref = reference_saliency(f, X16, Z, BIASES, align_corners, post)
    assert out.attributions.shape == (16, 16)
    if align_corners and post == "fullgrad":  # the default is the authors' code
        default = full_gradients(f, X16, Z, BIASES)
        np.testing.assert_array_equal(default.attributions, out.attributions)
    np.testing.assert_allclose(out.attributions, ref, rtol=1e-5, atol=1e-6)
    # The maps differ between conventions and posts, so the comparison can fail.
    other = reference_saliency(f, X16, Z, BIASES, not align_corners, post)
    assert np.abs(other - ref).max() > 1e-3
    # Decomposition of the tiny net (no normalisation: baseline zero).
    assert abs(float(out.delta)) < 1e-5 * max(1.0, abs(float(out.aux["value"])))
    gz = jax.grad(f, argnums=1)(X16, Z)
    expected = {k: float(jnp.sum(gz[k] * BIASES[k])) for k in Z}
    for k in Z:
        np.testing.assert_allclose(out.aux["bias_terms"][k], expected[k], rtol=1e-5)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("post", ["fullgrad", "raw"])
def test_maps_of_one_size_and_of_the_input_size_match_per_channel_upsampling(
    align_corners, post
):
    # The saliency sums channels and same-size maps before upsampling (linear); the
    # reference upsamples every channel of every map. Two 8x8 maps, one at the input's
    # size (not resized), a 4x4 one, a 5x3 one, and a dense leaf (not in the map).
    rng = np.random.default_rng(3)
    shapes = {"a": (8, 8, 4), "b": (8, 8, 3), "c": (16, 16, 2), "d": (4, 4, 5)}
    shapes |= {"e": (5, 3, 2), "fc": (6,)}
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    c = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    wx = rng.normal(size=(16, 16, 3)).astype(np.float32)
    biases = {k: rng.normal(size=s[-1:]).astype(np.float32) for k, s in shapes.items()}
    z = {k: jnp.zeros(s) for k, s in shapes.items()}

    def f(x, z):
        terms = [jnp.sum(jnp.tanh(z[k] + c[k]) * w[k]) for k in shapes]
        return jnp.sum(jnp.tanh(x) * wx) + sum(terms)

    out = full_gradients(f, X16, z, biases, post=post, align_corners=align_corners)
    ref = reference_saliency(f, X16, z, biases, align_corners, post)
    np.testing.assert_allclose(out.attributions, ref, rtol=1e-5, atol=1e-5)
    # Without the 5x3 map (a zero bias) the saliency differs: every map counts.
    no_e = {**biases, "e": np.zeros(2, np.float32)}
    ref_without = reference_saliency(f, X16, z, no_e, align_corners, post)
    assert np.abs(ref_without - ref).max() > 1e-3


@pytest.mark.parametrize("size_in,size_out", [(4, 16), (7, 32), (1, 5), (8, 8), (9, 4)])
@pytest.mark.parametrize("align_corners", [True, False])
def test_bilinear_matrix_is_torch_interpolate(size_in, size_out, align_corners):
    rng = np.random.default_rng(size_in * 100 + size_out)
    m = rng.standard_normal((size_in, size_in + 1, 2))
    ours = np.einsum(
        "ih,jw,hwc->ijc",
        bilinear_matrix(size_in, size_out, align_corners),
        bilinear_matrix(size_in + 1, size_out + 2, align_corners),
        m,
    )
    ref = torch_up(m, (size_out, size_out + 2), align_corners)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_psi_normalises_each_map():
    v = jnp.array([[-3.0, 1.0], [2.0, 0.5]])
    np.testing.assert_allclose(psi(v), np_psi(v), rtol=1e-6)
    assert float(psi(v).max()) == pytest.approx(1.0, abs=1e-6)
    assert float(psi(v).min()) == 0.0


def test_jit_and_vmap_equal_eager_tiny():
    xs = jax.random.uniform(jax.random.key(1), (3, 16, 16, 3))
    ts = jnp.array([0, 3, 6])

    def one(x, t):
        return full_gradients(tiny_f(t), x, Z, BIASES)

    eager = [one(x, int(t)) for x, t in zip(xs, ts, strict=True)]
    batched = jax.jit(jax.vmap(one))(xs, ts)
    for i, e in enumerate(eager):
        np.testing.assert_allclose(batched.attributions[i], e.attributions, rtol=1e-5)
        np.testing.assert_allclose(batched.delta[i], e.delta, atol=1e-5)
        np.testing.assert_allclose(
            batched.aux["input_term"][i], e.aux["input_term"], rtol=1e-5, atol=1e-7
        )
        single = jax.jit(one)(xs[i], ts[i])
        np.testing.assert_allclose(single.attributions, e.attributions, rtol=1e-5)


# --- the ports -------------------------------------------------------------------


def _small_vgg(batch_norm):
    return vgg.VGG(config=(16, "M", 32, 32, "M"), batch_norm=batch_norm, num_classes=10)


def _small_lite():
    # EfficientNet-Lite0's code path (MBConv with expansion, depthwise 3x3 and 5x5,
    # stride 2, residuals, ReLU6, SAME padding, BN eps 1e-3) with fewer stages.
    return efficientnet.EfficientNetLite(
        stages=((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 24)),
        head_channels=64,
        num_classes=10,
    )


def _imagenet_norm(x):
    mean = jnp.asarray([0.485, 0.456, 0.406])
    std = jnp.asarray([0.229, 0.224, 0.225])
    return (x - mean) / std


def _lite_norm(x):
    return (x * 255.0 - 127.0) / 128.0


def _port(make, normalise, seed=0):
    module = make()
    return SimpleNamespace(
        module=module,
        variables=_random_variables(module, 32, seed),
        normalise=normalise,
        input_size=(32, 32),
    )


def _run(model, x, target):
    """jit with the weights as arguments (not constants); also the plain logit."""

    @jax.jit
    def go(variables, x):
        fg = fullgrad_model(model, target, variables=variables)
        logit = model.module.apply(variables, model.normalise(x[None]))[0, target]
        return full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline), logit

    return go(model.variables, x)


PORTS = {
    "resnet18": lambda: _port(resnet.resnet18, _imagenet_norm),
    "vgg": lambda: _port(lambda: _small_vgg(False), _imagenet_norm),
    "vgg_bn": lambda: _port(lambda: _small_vgg(True), _imagenet_norm),
    "lite": lambda: _port(_small_lite, _lite_norm),
}


@pytest.mark.parametrize("name", list(PORTS))
def test_decomposition_on_ports(name):
    model = PORTS[name]()
    x = jax.random.uniform(jax.random.key(2), (32, 32, 3))
    out, logit = _run(model, x, 3)
    value = float(out.aux["value"])
    np.testing.assert_allclose(value, logit, rtol=1e-5)
    total = float(jnp.sum(out.aux["input_term"])) + float(out.aux["bias_term"])
    np.testing.assert_allclose(total, value, rtol=1e-4, atol=1e-4 * abs(value))
    assert abs(float(out.delta)) <= 1e-4 * abs(value)
    assert abs(float(out.aux["bias_term"])) > 1e-3 * abs(value)  # biases matter
    np.testing.assert_allclose(
        sum(float(v) for v in jax.tree.leaves(out.aux["bias_terms"])),
        out.aux["bias_term"],
        rtol=1e-5,
    )
    sal = np.asarray(out.attributions)
    assert sal.shape == (32, 32) and np.isfinite(sal).all() and sal.min() >= 0


def test_cifar_resnet20_from_load_with_vmapped_targets():
    """`load(...)` -> fullgrad_model: the input term is the authors' `x_n * grad_{x_n}`
    (normalised space); vmap over images and targets equals single jitted calls.

    Both sides run without the CPU convolution rewrite: it sums in another order, and
    with these random weights a ReLU pre-activation of image 1 lies within rounding of
    its kink, which moves 5 % of the input term by up to 0.5 % of its scale."""
    model = load("cifar_resnet20", weights="random")
    model = model._replace(variables=_random_variables(model.module, 32, seed=3))
    xs = jax.random.uniform(jax.random.key(4), (2, 32, 32, 3))
    ts = jnp.array([1, 8])

    def go(variables, x, t):
        fg = fullgrad_model(model, t, variables=variables)
        out = full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline)
        xn = model.normalise(x)
        logit, gxn = jax.value_and_grad(
            lambda xn: model.module.apply(variables, xn[None])[0, t]
        )(xn)
        return out, xn * gxn, logit

    with use_fast_convolutions(False):
        batched, xn_gxn, logits = jax.jit(jax.vmap(go, in_axes=(None, 0, 0)))(
            model.variables, xs, ts
        )
        single, _, _ = jax.jit(go)(model.variables, xs[0], ts[0])
    np.testing.assert_allclose(
        batched.attributions[0], single.attributions, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(batched.delta[0], single.delta, atol=1e-5)
    plain = model.apply(model.variables, xs)  # not model.fn: it has the old weights
    for i in range(2):
        np.testing.assert_allclose(
            batched.aux["input_term"][i], xn_gxn[i], rtol=1e-4, atol=1e-6
        )
        v = float(batched.aux["value"][i])
        np.testing.assert_allclose(v, logits[i], rtol=1e-5)
        np.testing.assert_allclose(v, plain[i, ts[i]], rtol=1e-5)
        assert abs(float(batched.delta[i])) <= 1e-4 * abs(v)
    assert not np.allclose(batched.attributions[0], batched.attributions[1])


def test_delta_detects_a_missing_bias():
    f = tiny_f(4)
    out = full_gradients(f, X16, Z, BIASES)
    dropped = full_gradients(f, X16, Z, dict(BIASES, conv2=np.zeros(5, np.float32)))
    np.testing.assert_allclose(
        dropped.delta, -out.aux["bias_terms"]["conv2"], rtol=1e-4, atol=1e-6
    )
    assert abs(float(dropped.delta)) > 1e-2 * abs(float(out.aux["value"]))
    assert abs(float(out.delta)) < 1e-5


def test_relu6_saturation_is_a_bias():
    """With inputs scaled up, many ReLU6 units saturate: their constant 6 is an
    implicit bias. relu6_bias=False (the authors' explicit biases) misses it and
    delta shows it; the default adds it as a bias and the decomposition is complete."""
    model = PORTS["lite"]()
    loud = SimpleNamespace(**{**vars(model), "normalise": lambda x: _lite_norm(x) * 50})
    x = jax.random.uniform(jax.random.key(5), (32, 32, 3))

    def go(relu6_bias):
        fg = fullgrad_model(loud, 0, relu6_bias=relu6_bias)
        return jax.jit(
            lambda x: full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline)
        )(x), fg

    out, fg = go(None)
    explicit, _ = go(False)
    value = float(out.aux["value"])
    np.testing.assert_allclose(explicit.aux["value"], value, rtol=1e-6)
    assert abs(float(explicit.delta)) > 1e-3 * abs(value)
    assert abs(float(out.delta)) <= 1e-4 * abs(value)
    levels = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(fg.biases)[0]
        if "Relu6Bias_" in jax.tree_util.keystr(path)
    ]
    assert levels and all(np.all(np.asarray(v) == 6.0) for v in levels)
    # The saturation bias terms are what the explicit route missed.
    np.testing.assert_allclose(
        out.aux["bias_term"] - explicit.aux["bias_term"],
        -explicit.delta,
        rtol=1e-3,
        atol=1e-4 * abs(value),
    )


def test_errors():
    f = tiny_f(0)
    with pytest.raises(ValueError, match="tree structure.*missing in biases"):
        full_gradients(f, X16, Z, {"conv1": P["b1"], "conv2": P["b2"]})
    with pytest.raises(ValueError, match=r"biases\['conv2'\].*does not broadcast"):
        full_gradients(f, X16, Z, dict(BIASES, conv2=np.zeros(6, np.float32)))
    with pytest.raises(TypeError, match=r"z\['fc'\] must be an array"):
        full_gradients(f, X16, dict(Z, fc="zeros"), BIASES)
    with pytest.raises(ValueError, match=r"one image \[H, W, C\]"):
        full_gradients(f, X16[None], Z, BIASES)
    with pytest.raises(ValueError, match="must return a scalar"):
        full_gradients(lambda x, z: jnp.stack([f(x, z)] * 2), X16, Z, BIASES)
    with pytest.raises(ValueError, match="post must be one of"):
        full_gradients(f, X16, Z, BIASES, post="cam")
    with pytest.raises(ValueError, match="baseline of shape"):
        full_gradients(f, X16, Z, BIASES, jnp.zeros((4,)))
    with pytest.raises(ValueError, match="no leaves"):
        full_gradients(f, X16, {}, {})


def test_bridge_errors():
    model = PORTS["vgg"]()
    with pytest.raises(ValueError, match="not a per-channel affine"):
        fullgrad_model(SimpleNamespace(**{**vars(model), "normalise": jnp.square}), 0)
    with pytest.raises(ValueError, match="input_shape must be"):
        fullgrad_model(model, 0, input_shape=(32, 32))
    fg = fullgrad_model(model, 0)
    with pytest.raises(ValueError, match="one image"):
        fg.f(jnp.zeros((1, 32, 32, 3)), fg.zeros)
