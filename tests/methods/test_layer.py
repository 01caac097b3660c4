"""Layer attribution without hooks: `jaxattr.split_at` (Flax interception), layer IG,
layer conductance, neuron IG, Grad-CAM and Grad-CAM++.

Closed forms on linear layers, completeness at the layer, the identity layer, the
semantics of a layer that a shortcut bypasses, `jit`/`vmap`, clear errors, and parity
with Captum's `LayerGradCam`, `LayerIntegratedGradients`, `LayerConductance` and
`NeuronIntegratedGradients` on identical weights: the tiny CNN of `tests.helpers` (as a
Flax module and as the user-written functions) and the CIFAR ResNet-20 port (the
akamaster weights from the shared assets when present, random weights otherwise).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import layer_split, models
from jaxattr.runs.data import assets_dir
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=3)
X = jax.random.uniform(jax.random.key(0), (2, 12, 12, 3))
BASE = jax.random.uniform(jax.random.key(1), (12, 12, 3)) * 0.3
TARGETS = jnp.array([3, 7])


class FlaxTinyCNN(nn.Module):
    """`helpers.tiny_cnn` as a Flax module: `c1` (conv), relu, `c2` (conv, stride 2),
    relu, mean, `fc`; `[N, H, W, 3] -> [N, 10]`."""

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(
            nn.Conv, 8, (3, 3), padding=((1, 1), (1, 1)), precision="highest"
        )
        h = nn.relu(conv(name="c1")(x))
        h = nn.relu(conv(strides=(2, 2), name="c2")(h))
        return nn.Dense(10, name="fc", precision="highest")(h.mean(axis=(1, 2)))


def _flax_params(p):
    conv = lambda w, b: {"kernel": jnp.transpose(p[w], (2, 3, 1, 0)), "bias": p[b]}
    return {
        "params": {
            "c1": conv("w1", "b1"),
            "c2": conv("w2", "b2"),
            "fc": {"kernel": jnp.asarray(p["w3"]).T, "bias": p["b3"]},
        }
    }


VARIABLES = _flax_params(PARAMS)
MODEL = jax.tree_util.Partial(FlaxTinyCNN().apply, VARIABLES)


def user_written(params, target):
    """The tiny CNN cut by hand at `c2`'s (pre-ReLU) output: no Flax, no hooks."""
    full = helpers.tiny_cnn(params)
    w1, b1 = params["w1"], params["b1"]

    def conv(x, w, b, stride):
        y = jax.lax.conv_general_dilated(
            x[None],
            jnp.transpose(jnp.asarray(w), (2, 3, 1, 0)),
            (stride, stride),
            [(1, 1), (1, 1)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return (y + b)[0]

    def head(x):
        return conv(jax.nn.relu(conv(x, w1, b1, 1)), params["w2"], params["b2"], 2)

    def tail(h):
        z = jax.nn.relu(h).mean(axis=(0, 1))
        return (z @ jnp.asarray(params["w3"]).T + params["b3"])[target]

    return head, tail, jaxattr.scalar_output(full, target)


# ------------------------------------------------------------------- the split itself
def test_split_at_reproduces_the_model_and_the_user_written_cut():
    x, t = X[0], int(TARGETS[0])
    head, tail, f = user_written(PARAMS, t)
    cut = jaxattr.split_at(MODEL, "c2", x, target=t)
    np.testing.assert_allclose(cut.head(x), head(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cut.tail(cut.head(x)), f(x), rtol=1e-5)
    h = jax.random.normal(jax.random.key(5), head(x).shape)
    np.testing.assert_allclose(cut.tail(h), tail(h), rtol=1e-5, atol=1e-5)


class Residual(nn.Module):
    """`out(relu(inner(x)) + x)`: the shortcut bypasses `inner`."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, name="out")(nn.relu(nn.Dense(3, name="inner")(x)) + x)


def test_a_bypassed_layer_keeps_the_input_on_the_shortcut():
    """Captum's forward-hook semantics: only the layer's output is replaced."""
    module = Residual()
    variables = module.init(jax.random.key(0), jnp.ones((1, 3)))
    p = variables["params"]
    fn = lambda xb: module.apply(variables, xb)
    x = jnp.array([0.3, -1.2, 0.8])
    cut = jaxattr.split_at(fn, "inner", x, target=1)
    h = jnp.array([1.0, -2.0, 0.5])
    want = (jax.nn.relu(h) + x) @ p["out"]["kernel"][:, 1] + p["out"]["bias"][1]
    np.testing.assert_allclose(cut.tail(h), want, rtol=1e-6)
    np.testing.assert_allclose(
        cut.head(x), x @ p["inner"]["kernel"] + p["inner"]["bias"], rtol=1e-6
    )


def test_an_nnx_module_is_cut_by_name_and_left_unchanged():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.inner = nnx.Linear(3, 3, rngs=rngs)
            self.blocks = nnx.List([nnx.Linear(3, 3, rngs=rngs)])
            self.out = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.inner(x)) + x
            return self.out(self.blocks[0](h))

    net = Net(nnx.Rngs(0))
    x = jnp.array([0.3, -1.2, 0.8])
    cut = jaxattr.split_at(net, "inner", x, target=1)
    h = jnp.array([1.0, -2.0, 0.5])
    want = net.out(net.blocks[0](jax.nn.relu(h) + x))[1]
    np.testing.assert_allclose(cut.tail(h), want, rtol=1e-6)
    np.testing.assert_allclose(cut.head(x), net.inner(x), rtol=1e-6)
    cut = jaxattr.split_at(net, "blocks/0", x, target=1)
    lig = jax.jit(
        lambda z: jaxattr.layer_integrated_gradients(cut.head, cut.tail, z, n_steps=4)
    )(x)
    assert abs(float(lig.delta)) < 1e-5  # linear from blocks/0 on: exact
    np.testing.assert_allclose(net(x[None])[0, 1], cut.tail(cut.head(x)), rtol=1e-6)
    with pytest.raises(
        ValueError, match="got 'blocks/3'.*submodules: blocks, inner, out"
    ):
        jaxattr.split_at(net, "blocks/3", x).head(x)
    assert type(net.inner) is nnx.Linear and type(net.blocks[0]) is nnx.Linear


# ------------------------------------------------------------------------- layer IG
def test_layer_ig_completeness_at_a_hidden_layer():
    x, t = X[0], int(TARGETS[0])
    cut = jaxattr.split_at(MODEL, "c2", x, target=t)
    out = jaxattr.layer_integrated_gradients(cut.head, cut.tail, x, BASE, n_steps=64)
    assert out.attributions.shape == (6, 6, 8)
    f = jaxattr.scalar_output(MODEL, t)
    gap = float(f(x) - f(BASE))  # nothing bypasses c2
    total = float(out.attributions.sum())
    assert abs(total - gap) < 2e-3 * abs(gap), (total, gap)
    np.testing.assert_allclose(float(out.delta), total - gap, atol=1e-5)


def test_layer_ig_of_the_identity_layer_is_input_ig():
    x, t = X[1], int(TARGETS[1])
    f = jaxattr.scalar_output(helpers.tiny_cnn(PARAMS), t)
    layer = jaxattr.layer_integrated_gradients(lambda z: z, f, x, BASE, n_steps=16)
    ig = jaxattr.integrated_gradients(f, x, BASE, n_steps=16)
    np.testing.assert_allclose(layer.attributions, ig.attributions, rtol=1e-6)
    np.testing.assert_allclose(layer.delta, ig.delta, atol=1e-6)


def test_layer_ig_takes_any_path_method_and_several_baselines():
    x, t = X[0], int(TARGETS[0])
    head, tail, _ = user_written(PARAMS, t)
    refs = [BASE, jnp.zeros_like(BASE)]
    both = jaxattr.layer_integrated_gradients(head, tail, x, refs, n_steps=8)
    each = [
        jaxattr.integrated_gradients(tail, head(x), head(r), n_steps=8).attributions
        for r in refs
    ]
    np.testing.assert_allclose(both.attributions, np.mean(each, 0), rtol=1e-5)
    split = jaxattr.layer_integrated_gradients(
        head, tail, x, BASE, attribute=jaxattr.split_integrated_gradients, n_steps=8
    )
    assert split.attributions.shape == head(x).shape


# ---------------------------------------------------------- conductance and neuron IG
def test_layer_conductance_completeness_and_the_identity_layer():
    x, t = X[0], int(TARGETS[0])
    head, tail, f = user_written(PARAMS, t)
    out = jaxattr.layer_conductance(head, tail, x, BASE, n_steps=64)
    gap = float(f(x) - f(BASE))
    assert abs(float(out.attributions.sum()) - gap) < 5e-3 * abs(gap)
    ident = jaxattr.layer_conductance(lambda z: z, f, x, BASE, n_steps=16)
    ig = jaxattr.integrated_gradients(f, x, BASE, n_steps=16)
    np.testing.assert_allclose(ident.attributions, ig.attributions, rtol=1e-5)


def test_neuron_ig_is_ig_of_the_neuron_and_complete():
    x, t = X[0], int(TARGETS[0])
    head, _, _ = user_written(PARAMS, t)
    out = jaxattr.neuron_integrated_gradients(head, (2, 3, 5), x, BASE, n_steps=64)
    assert out.attributions.shape == x.shape
    gap = float(head(x)[2, 3, 5] - head(BASE)[2, 3, 5])
    total = float(out.attributions.sum())
    assert abs(total - gap) < 2e-2 * abs(gap), (total, gap)  # ReLU kinks on the path
    np.testing.assert_allclose(float(out.delta), total - gap, atol=1e-5)
    by_fn = jaxattr.neuron_integrated_gradients(
        head, lambda h: h[2, 3, 5], x, BASE, n_steps=64
    )
    np.testing.assert_allclose(by_fn.attributions, out.attributions, rtol=1e-6)


# ------------------------------------------------------------------------- Grad-CAM
def _linear_cut(key):
    """`h = x @ A` (a 1x1 conv, `[5, 4, 3] -> [5, 4, 6]`), `tail(h) = sum(V * h)`."""
    ka, kv, kx = jax.random.split(key, 3)
    a = jax.random.normal(ka, (3, 6))
    v = jax.random.normal(kv, (5, 4, 6))
    x = jax.random.uniform(kx, (5, 4, 3))
    return (lambda z: z @ a), (lambda h: jnp.sum(v * h)), x, np.asarray(v)


def test_grad_cam_closed_form_on_a_linear_model():
    head, tail, x, v = _linear_cut(jax.random.key(2))
    h = np.asarray(head(x))
    w = v.mean(axis=(0, 1))  # the gradient of tail is V
    out = jaxattr.grad_cam(head, tail, x)
    np.testing.assert_allclose(out.attributions, np.maximum(h @ w, 0), rtol=1e-5)
    np.testing.assert_allclose(out.aux["weights"], w, rtol=1e-5)
    raw = jaxattr.grad_cam(head, tail, x, relu=False, sum_channels=False)
    np.testing.assert_allclose(raw.attributions, h * w, rtol=1e-5, atol=1e-6)
    assert np.isnan(float(out.delta))
    big = jaxattr.grad_cam(head, tail, x, size=(10, 8))
    np.testing.assert_allclose(
        big.attributions, np.repeat(np.repeat(out.attributions, 2, 0), 2, 1)
    )


def test_grad_cam_plus_plus_closed_form_on_a_linear_model():
    head, tail, x, v = _linear_cut(jax.random.key(3))
    h = np.asarray(head(x), np.float64)
    s = h.sum(axis=(0, 1))
    alpha = v**2 / (2 * v**2 + s * v**3 + 1e-6)
    w = (alpha * np.maximum(v, 0)).sum(axis=(0, 1))
    out = jaxattr.grad_cam_plus_plus(head, tail, x)
    np.testing.assert_allclose(out.aux["weights"], w, rtol=1e-4)
    np.testing.assert_allclose(
        out.attributions, np.maximum(h @ w, 0), rtol=1e-4, atol=1e-6
    )


# -------------------------------------------------------------------- jit and vmap
def test_jit_and_vmap_over_images_equal_a_loop():
    def explain(x, t):
        cut = jaxattr.split_at(MODEL, "c2", x, target=t)
        cam = jaxattr.grad_cam(cut.head, cut.tail, x, size=(12, 12))
        lig = jaxattr.layer_integrated_gradients(cut.head, cut.tail, x, n_steps=4)
        return cam.attributions, lig.attributions

    cams, ligs = jax.jit(jax.vmap(explain))(X, TARGETS)
    assert cams.shape == (2, 12, 12) and ligs.shape == (2, 6, 6, 8)
    for i in range(len(X)):
        cam, lig = explain(X[i], int(TARGETS[i]))
        np.testing.assert_allclose(cams[i], cam, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ligs[i], lig, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------- bad inputs
def test_an_unknown_layer_names_the_argument_and_the_known_ones():
    cut = jaxattr.split_at(MODEL, "c3", X[0], target=1)
    with pytest.raises(
        ValueError, match=r"layer must name .*got 'c3'.*submodules: c1, c2, fc"
    ):
        cut.head(X[0])
    with pytest.raises(TypeError, match="layer must be a submodule's name.*got int 3"):
        jaxattr.split_at(MODEL, 3, X[0])
    assert layer_split.layer_names(MODEL, X[:1]) == ("c1", "c2", "fc")


def test_other_bad_inputs_are_clear_errors():
    x = X[0]
    cut = jaxattr.split_at(MODEL, "c2", x, target=1)
    with pytest.raises(ValueError, match=r"h must have the shape .*\(1, 6, 6, 8\)"):
        cut.tail(jnp.zeros((5, 5, 8)))
    multi = jaxattr.split_at(MODEL, "c2", x)  # no target: 10 outputs
    with pytest.raises(ValueError, match="target"):
        jaxattr.grad_cam(multi.head, multi.tail, x)
    with pytest.raises(ValueError, match=r"neuron must be an index .*\(6, 6, 8\).*got"):
        jaxattr.neuron_integrated_gradients(cut.head, (6, 0, 0), x)
    with pytest.raises(ValueError, match="mode must be one of 'nearest'.*got 'cubic'"):
        jaxattr.grad_cam(cut.head, cut.tail, x, size=(12, 12), mode="cubic")
    with pytest.raises(ValueError, match="size must be"):
        jaxattr.grad_cam(cut.head, cut.tail, x, size=12)
    with pytest.raises(ValueError, match="x must be finite"):
        jaxattr.layer_integrated_gradients(
            cut.head, cut.tail, x.at[0, 0, 0].set(jnp.nan)
        )
    twice = lambda xb: MODEL(xb) + MODEL(xb)
    with pytest.raises(ValueError, match="'c2' is called 2 times"):
        jaxattr.split_at(twice, "c2", x, target=1).head(x)


# -------------------------------------------------------------------- Captum parity
try:
    import captum.attr as captum_attr
    import torch
except ImportError:  # pragma: no cover - CI installs both
    torch = captum_attr = None

needs_captum = pytest.mark.skipif(
    torch is None, reason="torch or captum is not installed (pip install torch captum)"
)


def to_torch(a):
    return torch.from_numpy(
        np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2)))
    )


def from_torch(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


TORCH_TINY = helpers.torch_tiny_cnn(PARAMS) if torch is not None else None


def _ours(method, x, t, layer="c2", model=MODEL, **kw):
    cut = jaxattr.split_at(model, layer, x, target=t)
    return method(cut.head, cut.tail, x, **kw).attributions


@pytest.mark.parametrize("relu", [True, False])
@needs_captum
def test_grad_cam_matches_captum(relu):
    gc = captum_attr.LayerGradCam(TORCH_TINY, TORCH_TINY.c2)
    ref = gc.attribute(to_torch(X), target=TARGETS.tolist(), relu_attributions=relu)
    for mode in ("nearest", "bilinear"):
        up = captum_attr.LayerAttribution.interpolate(ref, (12, 12), mode)
        for i in range(len(X)):
            ours = _ours(jaxattr.grad_cam, X[i], int(TARGETS[i]), relu=relu)
            assert rel_err(ours, ref[i, 0].detach().numpy()) < 1e-5
            ours = _ours(
                jaxattr.grad_cam,
                X[i],
                int(TARGETS[i]),
                relu=relu,
                size=(12, 12),
                mode=mode,
            )
            assert rel_err(ours, up[i, 0].detach().numpy()) < 1e-5, mode


@needs_captum
def test_layer_ig_matches_captum():
    lig = captum_attr.LayerIntegratedGradients(TORCH_TINY, TORCH_TINY.c1)
    ref = lig.attribute(
        to_torch(X), baselines=to_torch(BASE[None]), target=TARGETS.tolist(), n_steps=16
    )
    for i in range(len(X)):
        ours = _ours(
            jaxattr.layer_integrated_gradients,
            X[i],
            int(TARGETS[i]),
            "c1",
            baseline=BASE,
            n_steps=16,
        )
        assert rel_err(ours, from_torch(ref)[i]) < 1e-4


@needs_captum
def test_at_a_layer_input_as_captum():
    """`layer_input=True`: the pooled features entering `fc` (no spatial axes)."""
    x, t = X[:1], int(TARGETS[0])
    lig = captum_attr.LayerIntegratedGradients(TORCH_TINY, TORCH_TINY.fc)
    ref = lig.attribute(
        to_torch(x), to_torch(BASE[None]), target=t, n_steps=16,
        attribute_to_layer_input=True,
    )  # fmt: skip
    cut = jaxattr.split_at(MODEL, "fc", x[0], target=t, layer_input=True)
    assert cut.head(x[0]).shape == (8,)
    ours = jaxattr.layer_integrated_gradients(
        cut.head, cut.tail, x[0], BASE, n_steps=16
    )
    assert rel_err(ours.attributions, ref[0].detach().numpy()) < 1e-4
    gc = captum_attr.LayerGradCam(TORCH_TINY, TORCH_TINY.fc)
    ref = gc.attribute(to_torch(x), target=t, attribute_to_layer_input=True)
    ours = jaxattr.grad_cam(cut.head, cut.tail, x[0], relu=False)
    np.testing.assert_allclose(ours.attributions, ref[0, 0].item(), rtol=1e-4)


@needs_captum
def test_layer_conductance_and_neuron_ig_match_captum():
    x, t = X[:1], int(TARGETS[0])
    cond = captum_attr.LayerConductance(TORCH_TINY, TORCH_TINY.c2)
    ref = cond.attribute(
        to_torch(x), baselines=to_torch(BASE[None]), target=t, n_steps=400
    )
    ours = _ours(jaxattr.layer_conductance, x[0], t, baseline=BASE, n_steps=64)
    # Captum's Riemann-Stieltjes sum converges to the integral more slowly
    assert rel_err(ours, from_torch(ref)[0]) < 2e-2
    nig = captum_attr.NeuronIntegratedGradients(TORCH_TINY, TORCH_TINY.c2)
    ref = nig.attribute(
        to_torch(x), (5, 2, 3), baselines=to_torch(BASE[None]), n_steps=16
    )
    cut = jaxattr.split_at(MODEL, "c2", x[0])
    ours = jaxattr.neuron_integrated_gradients(
        cut.head, (2, 3, 5), x[0], BASE, n_steps=16
    )
    assert rel_err(ours.attributions, from_torch(ref)[0]) < 1e-4


def _torch_resnet20(state):
    """akamaster's CIFAR ResNet-20 (option-A shortcut), NCHW."""
    tnn, F = torch.nn, torch.nn.functional

    class Block(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.pad = planes // 4 if stride != 1 or cin != planes else 0

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            short = x
            if self.pad:
                short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return F.relu(out + short)

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            cin, stages = 16, []
            for s, planes in enumerate((16, 32, 64)):
                blocks = [
                    Block(cin if i == 0 else planes, planes, 2 if i == 0 and s else 1)
                    for i in range(3)
                ]
                stages.append(tnn.Sequential(*blocks))
                cin = planes
            self.layer1, self.layer2, self.layer3 = stages
            self.linear = tnn.Linear(64, 10)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            return self.linear(out.mean(dim=(2, 3)))

    net = Net()
    missing, unexpected = net.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False
    )
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return net.eval()


@functools.cache
def _resnet20():
    path = assets_dir() / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
    model = models.load(
        "cifar_resnet20", weights=str(path) if path.exists() else "random"
    )
    state = models.flax_to_torch(model.variables)
    fn = jax.tree_util.Partial(lambda v, xb: model.module.apply(v, xb), model.variables)
    return fn, _torch_resnet20(state)


@needs_captum
def test_grad_cam_and_layer_ig_match_captum_on_resnet20():
    """Normalised inputs on both sides; layer IG at `layer3.0/conv1`, which the
    block's shortcut bypasses, and Grad-CAM at the last block (one compilation)."""
    fn, net = _resnet20()
    x = jax.random.normal(jax.random.key(4), (1, 32, 32, 3))
    base = jnp.zeros((32, 32, 3))
    with torch.no_grad():
        logits = net(to_torch(x)).numpy()
    t = int(np.argmax(logits[0]))

    @jax.jit
    def ours(x):
        cam = _ours(jaxattr.grad_cam, x[0], t, "layer3.2", fn, relu=False)
        lig = _ours(
            jaxattr.layer_integrated_gradients,
            x[0],
            t,
            "layer3.0/conv1",
            fn,
            baseline=base,
            n_steps=8,
        )
        return fn(x), cam, lig

    out, cam, lig = ours(x)
    np.testing.assert_allclose(out, logits, rtol=1e-4, atol=1e-4)
    ref = captum_attr.LayerGradCam(net, net.layer3[2]).attribute(to_torch(x), target=t)
    assert rel_err(cam, ref[0, 0].detach().numpy()) < 1e-4
    ref = captum_attr.LayerIntegratedGradients(net, net.layer3[0].conv1).attribute(
        to_torch(x), baselines=to_torch(base[None]), target=t, n_steps=8
    )
    assert rel_err(lig, from_torch(ref)[0]) < 1e-3
