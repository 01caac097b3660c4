"""What the attribution methods need from the ports: FullGrad bias terms, swappable
activation/pooling functions, and torch's adaptive average pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.models import bias_terms, efficientnet, layers, resnet, vgg
from tests.helpers import random_bn_variables


def _random_variables(module, size, seed=0):
    """Random weights with random (non-identity) BatchNorm statistics and biases."""
    return random_bn_variables(module, size, seed)


def _small_vgg_bn(**kwargs):
    # VGG's code path (conv bias + BN, max-pools, adaptive pool, classifier) at a small
    # size.
    return vgg.VGG(
        config=(16, "M", 32, 32, "M"), batch_norm=True, num_classes=10, **kwargs
    )


@pytest.mark.parametrize(
    "make,size",
    [(resnet.cifar_resnet20, 32), (resnet.resnet18, 32), (_small_vgg_bn, 16)],
    ids=["cifar_resnet20", "resnet18", "vgg_bn"],
)
def test_fullgrad_completeness(make, size):
    """For a ReLU/max-pool network, f(x) = <grad_x f, x> + sum_l <grad_{z_l} f, b_l>,
    where z_l is the output of the l-th bias-adding layer (FullGrad, Srinivas & Fleuret
    2019)."""
    module = make()
    variables = _random_variables(module, size)
    x = jnp.asarray(
        np.random.default_rng(1).standard_normal((1, size, size, 3)), jnp.float32
    )
    _, state = module.apply(variables, x, mutable=["perturbations"])
    perturbations = state["perturbations"]
    assert all(not np.any(p) for p in jax.tree.leaves(perturbations))

    def f(x, perturbations):
        return module.apply({**variables, "perturbations": perturbations}, x)[0, 3]

    value = f(x, perturbations)
    np.testing.assert_allclose(value, module.apply(variables, x)[0, 3], rtol=1e-6)
    grad_x, grad_z = jax.jit(jax.grad(f, argnums=(0, 1)))(x, perturbations)
    biases = bias_terms(variables, perturbations, bn_epsilon=module.bn_epsilon)
    assert jax.tree.structure(biases) == jax.tree.structure(grad_z)
    bias_part = sum(
        jnp.sum(g * b.reshape((1,) * (g.ndim - 1) + (-1,)))
        for g, b in zip(jax.tree.leaves(grad_z), jax.tree.leaves(biases), strict=True)
    )
    total = jnp.sum(grad_x * x) + bias_part
    assert abs(float(bias_part)) > 1e-3 * abs(
        float(value)
    )  # the bias terms matter here
    np.testing.assert_allclose(total, value, rtol=2e-4, atol=2e-4 * abs(float(value)))


def test_every_bias_layer_has_a_perturbation():
    module = resnet.resnet18()
    variables = _random_variables(module, 32)
    _, state = module.apply(
        variables, jnp.zeros((1, 32, 32, 3)), mutable=["perturbations"]
    )
    pert = state["perturbations"]
    # 20 BatchNorms (17 convs + 3 downsample BNs ... counted from torchvision) and fc
    flat = jax.tree_util.tree_flatten_with_path(pert)[0]
    names = ["/".join(p.key for p in path) for path, _ in flat]
    assert (
        "fc.out" in names
        and "bn1.out" in names
        and "layer2.0/downsample.1.out" in names
    )
    assert sum(n.endswith(("bn1.out", "bn2.out")) for n in names) == 17
    assert len(names) == 20 + 1


def test_act_fn_is_used_everywhere():
    calls = []

    def counting_relu(x):
        calls.append(x.shape)
        return jax.nn.relu(x)

    x = jnp.zeros((1, 32, 32, 3))
    for module, expected in [
        (resnet.resnet18(act_fn=counting_relu), 1 + 8 * 2),
        (resnet.resnet50(act_fn=counting_relu), 1 + 16 * 3),
        (resnet.cifar_resnet20(act_fn=counting_relu), 1 + 9 * 2),
        (vgg.vgg11(act_fn=counting_relu), 8 + 2),
        (efficientnet.efficientnet_lite0(act_fn=counting_relu), 1 + 1 + 15 * 2 + 1),
    ]:
        calls.clear()
        jax.eval_shape(module.init, jax.random.key(0), x)
        assert len(calls) == expected, (type(module).__name__, len(calls))


def test_pool_fn_is_used_and_changes_output():
    calls = []

    def counting_avg_pool(x, window_shape, strides, padding):
        calls.append((window_shape, strides))
        return layers.max_pool(x, window_shape, strides, padding) * 0.5

    x = jnp.asarray(np.random.default_rng(0).random((1, 32, 32, 3)), jnp.float32)

    def small_vgg(**kwargs):
        return vgg.VGG(config=(8, "M", 16, "M", 16, "M"), num_classes=10, **kwargs)

    for make, n in [(resnet.resnet18, 1), (small_vgg, 3)]:
        variables = _random_variables(make(), 32)
        calls.clear()
        y_swapped = make(pool_fn=counting_avg_pool).apply(variables, x)
        assert len(calls) == n
        assert not np.allclose(y_swapped, make().apply(variables, x))


def test_guided_style_backward_rule_can_be_swapped():
    @jax.custom_vjp
    def guided_relu(x):
        return jax.nn.relu(x)

    def fwd(x):
        return jax.nn.relu(x), x

    def bwd(x, g):
        return (jnp.where((x > 0) & (g > 0), g, 0.0),)

    guided_relu.defvjp(fwd, bwd)
    module = resnet.cifar_resnet20()
    variables = _random_variables(module, 32)
    x = jnp.asarray(np.random.default_rng(2).random((1, 32, 32, 3)), jnp.float32)
    plain = jax.grad(lambda x: module.apply(variables, x)[0, 1])(x)
    guided_module = resnet.cifar_resnet20(act_fn=guided_relu)
    np.testing.assert_array_equal(
        guided_module.apply(variables, x), module.apply(variables, x)
    )
    guided = jax.grad(lambda x: guided_module.apply(variables, x)[0, 1])(x)
    assert not np.allclose(guided, plain)


@pytest.mark.parametrize(
    "size_in,size_out", [(2, 7), (7, 7), (9, 7), (13, 7), (1, 3), (5, 2)]
)
def test_adaptive_avg_pool_bins(size_in, size_out):
    x = np.random.default_rng(0).random((1, size_in, size_in + 1, 2)).astype(np.float32)
    got = np.asarray(layers.adaptive_avg_pool(jnp.asarray(x), (size_out, size_out)))
    expected = np.zeros((1, size_out, size_out, 2), np.float32)
    w_in = size_in + 1
    for i in range(size_out):
        h0, h1 = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        for j in range(size_out):
            w0, w1 = (j * w_in) // size_out, -(-((j + 1) * w_in) // size_out)
            expected[0, i, j] = x[0, h0:h1, w0:w1].mean(axis=(0, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_adaptive_avg_pool_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3, 5, 11)).astype(np.float32)  # NCHW
    expected = torch.nn.functional.adaptive_avg_pool2d(
        torch.from_numpy(x), (7, 7)
    ).numpy()
    got = layers.adaptive_avg_pool(jnp.asarray(x.transpose(0, 2, 3, 1)), (7, 7))
    np.testing.assert_allclose(
        np.asarray(got).transpose(0, 3, 1, 2), expected, atol=1e-6
    )


def test_bad_input_shapes_name_the_model():
    for module in (
        resnet.resnet18(),
        resnet.cifar_resnet20(),
        vgg.vgg11(),
        efficientnet.efficientnet_lite0(),
    ):
        with pytest.raises(
            ValueError, match=r"x must be \[N, H, W, 3\].*\(1, 3, 32, 32\)"
        ):
            jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 3, 32, 32)))
