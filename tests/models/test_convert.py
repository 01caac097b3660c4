"""State dict -> Flax variables: layouts, round trips, and errors that name the key."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.models import efficientnet, layers, resnet, vgg
from jaxattr.models.convert import flax_to_torch, torch_to_flax


def _template(module, size=32):
    shapes = jax.eval_shape(
        module.init, jax.random.key(0), jnp.zeros((1, size, size, 3))
    )
    return {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}


def _random_like(template, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(np.float32), template
    )


def test_conv_dense_bn_layouts_by_hand():
    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = layers.conv(self, x, "c", 4, 3, padding=1, use_bias=True)
            x = layers.conv(self, x, "dw", 4, 3, padding=1, groups=4)
            x = layers.batch_norm(self, x, "bn", 1e-5)
            return layers.dense(self, x.reshape(x.shape[0], -1), "fc", 5)

    template = _template(Tiny(), size=2)
    rng = np.random.default_rng(0)
    sd = {
        "c.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),  # OIHW
        "c.bias": rng.standard_normal(4).astype(np.float32),
        "dw.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),  # depthwise
        "bn.weight": rng.standard_normal(4).astype(np.float32),
        "bn.bias": rng.standard_normal(4).astype(np.float32),
        "bn.running_mean": rng.standard_normal(4).astype(np.float32),
        "bn.running_var": rng.random(4).astype(np.float32),
        "bn.num_batches_tracked": np.array(7),
        "fc.weight": rng.standard_normal((5, 16)).astype(np.float32),
        "fc.bias": rng.standard_normal(5).astype(np.float32),
    }
    v = torch_to_flax(sd, template)
    p, s = v["params"], v["batch_stats"]
    # kernel[h, w, i, o] == weight[o, i, h, w]
    for o, i, h, w in [(0, 0, 0, 0), (3, 2, 1, 0), (1, 2, 2, 1)]:
        assert p["c"]["kernel"][h, w, i, o] == sd["c.weight"][o, i, h, w]
    assert p["dw"]["kernel"].shape == (3, 3, 1, 4)
    assert p["dw"]["kernel"][2, 0, 0, 3] == sd["dw.weight"][3, 0, 2, 0]
    np.testing.assert_array_equal(p["fc"]["kernel"], sd["fc.weight"].T)
    np.testing.assert_array_equal(p["bn"]["scale"], sd["bn.weight"])
    np.testing.assert_array_equal(s["bn"]["mean"], sd["bn.running_mean"])
    np.testing.assert_array_equal(s["bn"]["var"], sd["bn.running_var"])
    back = flax_to_torch(v)
    assert set(back) == set(sd) - {"bn.num_batches_tracked"}
    for k, val in back.items():
        np.testing.assert_array_equal(val, sd[k], err_msg=k)


def test_nchw_flatten_matches_torch_linear():
    # torch: y = W @ x_nchw.flatten(); Flax: y = x_nhwc.flatten() @ K.
    rng = np.random.default_rng(1)
    c, h, w, out = 3, 2, 4, 5
    weight = rng.standard_normal((out, c * h * w)).astype(np.float32)
    x_nchw = rng.standard_normal((c, h, w)).astype(np.float32)
    template = {
        "params": {"fc": {"kernel": np.zeros((c * h * w, out)), "bias": np.zeros(out)}}
    }
    v = torch_to_flax(
        {"fc.weight": weight, "fc.bias": np.zeros(out, np.float32)},
        template,
        flatten_nchw={"fc": (c, h, w)},
    )
    y_flax = x_nchw.transpose(1, 2, 0).reshape(-1) @ v["params"]["fc"]["kernel"]
    np.testing.assert_allclose(
        y_flax, weight @ x_nchw.reshape(-1), rtol=1e-5, atol=1e-5
    )
    back = flax_to_torch(v, flatten_nchw={"fc": (c, h, w)})
    np.testing.assert_array_equal(back["fc.weight"], weight)
    with pytest.raises(ValueError, match=r"flatten_nchw\['fc'\]"):
        torch_to_flax({}, template, flatten_nchw={"fc": (4, 2, 4)})


def _small_vgg_bn():
    return vgg.VGG(config=(16, "M", 32, "M"), batch_norm=True, num_classes=10)


@pytest.mark.parametrize(
    "make",
    [
        resnet.resnet18,
        resnet.cifar_resnet20,
        efficientnet.efficientnet_lite0,
        _small_vgg_bn,
    ],
    ids=["resnet18", "cifar_resnet20", "efficientnet_lite0", "vgg_bn"],
)
def test_round_trip_from_flax_shapes(make):
    template = _template(make())
    variables = _random_like(template)
    nchw = {"classifier.0": (32, 7, 7)} if make is _small_vgg_bn else None
    sd = flax_to_torch(variables, flatten_nchw=nchw)
    again = torch_to_flax(sd, template, flatten_nchw=nchw)
    assert jax.tree.structure(again) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)


def _resnet18_state_dict():
    template = _template(resnet.resnet18())
    return template, flax_to_torch(_random_like(template))


def test_missing_key_is_named():
    template, sd = _resnet18_state_dict()
    del sd["layer3.1.bn2.running_var"]
    with pytest.raises(
        ValueError, match=r"missing keys \['layer3\.1\.bn2\.running_var'\]"
    ):
        torch_to_flax(sd, template)


def test_extra_key_is_named():
    template, sd = _resnet18_state_dict()
    sd["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    sd["layer1.0.bn1.num_batches_tracked"] = np.array(3)  # ignored
    with pytest.raises(
        ValueError, match=r"unexpected keys \['layer5\.0\.conv1\.weight'\]"
    ):
        torch_to_flax(sd, template)


def test_misshaped_key_names_key_and_both_shapes():
    template, sd = _resnet18_state_dict()
    sd["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    with pytest.raises(
        ValueError,
        match=r"state_dict\['layer2\.0\.downsample\.0\.weight'\] has shape "
        r"\(128, 64, 3, 3\), expected \(128, 64, 1, 1\)",
    ):
        torch_to_flax(sd, template)
    _, sd = _resnet18_state_dict()
    sd["fc.weight"] = sd["fc.weight"].T  # forgot that torch is (out, in)
    with pytest.raises(ValueError, match=r"'fc\.weight'.*\(512, 1000\).*\(1000, 512\)"):
        torch_to_flax(sd, template)


def test_unknown_flax_leaf_is_an_error():
    with pytest.raises(
        ValueError, match="no torch name for Flax leaf params/m/embedding"
    ):
        torch_to_flax({}, {"params": {"m": {"embedding": np.zeros((3, 2))}}})
