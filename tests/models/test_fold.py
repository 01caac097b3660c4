"""BatchNorm folding (jaxattr.models.fold): exact up to float rounding on every port
with BatchNorm, logits and Integrated Gradients; FullGrad keeps the unfolded layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr.methods.fullgrad import full_gradients
from jaxattr.models import (
    efficientnet,
    fold,
    fold_batchnorm,
    fullgrad_model,
    load,
    loading,
    registry,
    resnet,
    torchvision_cifar,
    vgg,
)
from tests.helpers import random_bn_variables


def _random_variables(module, size, seed=0):
    """Random kernels and biases, non-identity BatchNorm (scale, shift, statistics)."""
    return random_bn_variables(
        module, size, seed, var=(0.3, 2.0), scale=(0.3, 2.0), bias_std=0.3
    )


def _model(module, size, normalise=registry._normalise_imagenet):
    variables = _random_variables(module, size)

    def apply(variables, x):
        return module.apply(variables, normalise(x))

    return loading.Model(
        fn=jax.tree_util.Partial(apply, variables),
        apply=apply,
        module=module,
        variables=variables,
        input_size=(size, size),
        class_names=tuple(str(i) for i in range(10)),
        name="test",
        normalise=normalise,
    )


# Every port with BatchNorm, at a small width or depth and a small input: the
# torchvision ResNets (basic and bottleneck blocks, strided downsampling), the CIFAR
# ResNets (option-A shortcut), EfficientNet-Lite (depthwise convolutions, SAME
# padding, eps 1e-3), VGG-BN (convolutions with a bias of their own) and the CIFAR
# VGG-BN / ResNet-18 of torchvision_cifar.
PORTS = {
    "resnet18": lambda: (resnet.resnet18(num_classes=10), 32),
    "resnet50_block": lambda: (
        resnet.ResNet(block="bottleneck", layers=(1, 1, 1, 1), num_classes=10),
        32,
    ),
    "cifar_resnet20": lambda: (resnet.cifar_resnet20(), 32),
    "lite": lambda: (
        efficientnet.EfficientNetLite(
            stages=((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 24)),
            head_channels=64,
            num_classes=10,
        ),
        32,
    ),
    "vgg_bn": lambda: (
        vgg.VGG(config=(16, "M", 32, 32, "M"), batch_norm=True, num_classes=10),
        16,
    ),
    "cifar_vgg_bn": lambda: (torchvision_cifar.cifar_vgg11_bn(width=8), 32),
    "cifar_resnet18": lambda: (torchvision_cifar.cifar_resnet18(width=8), 32),
}


# IG (through the convolution rewrite) on a residual port and on convolutions
# with a bias of their own; the logits on every port.
IG_PORTS = ("cifar_resnet20", "vgg_bn")


@pytest.mark.parametrize("name", list(PORTS))
def test_folding_is_exact_on_every_port(name):
    module, size = PORTS[name]()
    model = _model(module, size)
    folded = fold_batchnorm(model)
    assert folded.unfolded is model
    assert "batch_stats" not in folded.variables
    assert fold.is_folded(folded.variables) and not fold.is_folded(model.variables)
    n_bn = sum(
        1
        for path, _ in jax.tree_util.tree_flatten_with_path(
            model.variables["batch_stats"]
        )[0]
        if path[-1].key == "mean"
    )
    assert len(fold.batchnorm_pairs(module, model.variables, (1, size, size, 3))) == (
        n_bn
    )

    x = jax.random.uniform(jax.random.key(1), (2, size, size, 3))
    logits = jax.jit(model.apply)(model.variables, x)
    logits_folded = jax.jit(folded.apply)(folded.variables, x)
    scale = float(jnp.abs(logits).max())
    assert scale > 1e-2
    np.testing.assert_allclose(logits_folded, logits, atol=2e-5 * scale, rtol=0)

    if name in IG_PORTS:

        @jax.jit
        def ig(variables, x):
            f = jaxattr.scalar_output(lambda z: module.apply(variables, z), 3)
            return jaxattr.integrated_gradients(f, x, n_steps=2)

        a = ig(model.variables, x[0]).attributions
        b = ig(folded.variables, x[0]).attributions
        np.testing.assert_allclose(b, a, atol=1e-4 * float(jnp.abs(a).max()), rtol=0)


def test_fold_batchnorm_folds_the_affine_map():
    # The closed form, on one convolution with a bias and its BatchNorm.
    module, size = PORTS["vgg_bn"]()
    model = _model(module, size)
    v = fold_batchnorm(model).variables
    conv, bn = (
        model.variables["params"]["features.0"],
        (model.variables["params"]["features.1"]),
    )
    stats = model.variables["batch_stats"]["features.1"]
    s = bn["scale"] / np.sqrt(stats["var"] + vgg.BN_EPS)
    np.testing.assert_allclose(
        v["params"]["features.0"]["kernel"], conv["kernel"] * s, rtol=1e-6
    )
    np.testing.assert_allclose(
        v["params"]["features.0"]["bias"],
        (conv["bias"] - stats["mean"]) * s + bn["bias"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert "features.1" not in v["params"]


def test_load_with_fold_batchnorm():
    model = load("cifar_resnet20", weights="random", seed=3)
    folded = load("cifar_resnet20", weights="random", seed=3, fold_batchnorm=True)
    assert folded.unfolded is not None
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    np.testing.assert_allclose(folded.fn(x), model.fn(x), rtol=1e-5, atol=1e-5)
    assert fold_batchnorm(folded) is folded  # folded already: unchanged
    plain = load("vgg11", weights="random")
    assert fold_batchnorm(plain) is plain  # nothing to fold
    with pytest.raises(TypeError, match="fold_batchnorm must be a bool"):
        load("cifar_resnet20", weights="random", fold_batchnorm="yes")
    with pytest.raises(ValueError, match="folded already"):
        fold.fold_variables(
            folded.module, folded.variables, (1, 32, 32, 3), resnet.BN_EPS
        )


def test_fullgrad_uses_the_unfolded_model():
    # VGG-BN: folded, a convolution's own bias and its BatchNorm's would merge into
    # one map; FullGrad must see both.
    module, size = PORTS["vgg_bn"]()
    model = _model(module, size)
    folded = fold_batchnorm(model)
    x = jax.random.uniform(jax.random.key(2), (size, size, 3))

    def explain(m, folded_variables):
        def go(variables):
            fg = fullgrad_model(m, 3, variables=variables)
            return full_gradients(fg.f, x, fg.zeros, fg.biases, fg.baseline)

        return jax.jit(go)(folded_variables)

    ref = explain(model, model.variables)
    out = explain(folded, folded.variables)
    # Two compiled programs: float rounding only (merged biases would move the bias
    # maps by O(1), since |b1 g| + |b2 g| != |(b1 + b2) g|).
    np.testing.assert_allclose(out.attributions, ref.attributions, rtol=1e-5)
    assert jax.tree.structure(out.aux["bias_terms"]) == jax.tree.structure(
        ref.aux["bias_terms"]
    )
    assert "features.1.out" in out.aux["bias_terms"]  # the BatchNorm's own term
    assert abs(float(ref.delta)) <= 1e-4 * abs(float(ref.aux["f_x"]))
    assert fullgrad_model(folded, 3).zeros.keys() == ref.aux["bias_terms"].keys()
    with pytest.raises(ValueError, match="unfolded"):
        fullgrad_model(model, 3, variables=folded.variables)


def test_errors():
    model = load("cifar_resnet20", weights="random", fold_batchnorm=True)
    with pytest.raises(ValueError, match="use_running_average=False"):
        torchvision_cifar.cifar_resnet18(width=4).apply(
            fold_batchnorm(
                _model(torchvision_cifar.cifar_resnet18(width=4), 32)
            ).variables,
            jnp.zeros((1, 32, 32, 3)),
            train=True,
            mutable=["batch_stats"],
        )
    assert fold.is_folded(model.variables)
