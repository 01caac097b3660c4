"""ResNets in Flax Linen (NHWC, eval-mode BatchNorm).

* :class:`ResNet`: torchvision's ImageNet ResNet-18/34/50/101/152 (v1.5: the stride of a
  bottleneck sits on its 3x3 conv). Module names follow torchvision's state dict
  (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``), so
  :func:`jaxattr.models.convert.torch_to_flax` maps a torchvision checkpoint 1:1.
* :class:`CifarResNet`: the CIFAR-10 ResNet-20/32/44/56 of He et al. (2016) with the
  parameter-free "option A" shortcut, named like ``akamaster/pytorch_resnet_cifar10``
  (``conv1``, ``bn1``, ``layer1.0.conv1``, ``linear``).

Inputs are normalised images ``[N, H, W, 3]``; outputs are logits ``[N, num_classes]``.
``act_fn`` (ReLU by default) and, for :class:`ResNet`, ``pool_fn`` (the stem's max
pooling, signature of :func:`flax.linen.max_pool`) can be replaced, e.g. for guided
backpropagation. :class:`CifarResNet` has no max pooling, hence no ``pool_fn``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models.layers import ActFn, PoolFn, batch_norm, conv, dense, max_pool

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "CifarResNet",
    "ResNet",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]

BN_EPS = 1e-5


class BasicBlock(nn.Module):
    """Two 3x3 convs, ``[N, H, W, Cin] -> [N, H/stride, W/stride, planes]``."""

    planes: int
    stride: int = 1
    downsample: bool = False
    act_fn: ActFn = nn.relu
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``train``: BatchNorm on the batch's statistics (static; default the
        running ones)."""
        norm = functools.partial(batch_norm, use_running_average=not train)
        out = conv(self, x, "conv1", self.planes, 3, stride=self.stride, padding=1)
        out = self.act_fn(norm(self, out, "bn1", BN_EPS))
        out = conv(self, out, "conv2", self.planes, 3, padding=1)
        out = norm(self, out, "bn2", BN_EPS)
        identity = x
        if self.downsample:
            identity = conv(self, x, "downsample.0", self.planes, 1, stride=self.stride)
            identity = norm(self, identity, "downsample.1", BN_EPS)
        return self.act_fn(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convs, ``[N, H, W, Cin] -> [N, H/stride, W/stride,
    4*planes]``."""

    planes: int
    stride: int = 1
    downsample: bool = False
    act_fn: ActFn = nn.relu
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = conv(self, x, "conv1", self.planes, 1)
        out = self.act_fn(batch_norm(self, out, "bn1", BN_EPS))
        out = conv(self, out, "conv2", self.planes, 3, stride=self.stride, padding=1)
        out = self.act_fn(batch_norm(self, out, "bn2", BN_EPS))
        out = conv(self, out, "conv3", self.planes * 4, 1)
        out = batch_norm(self, out, "bn3", BN_EPS)
        identity = x
        if self.downsample:
            identity = conv(
                self, x, "downsample.0", self.planes * 4, 1, stride=self.stride
            )
            identity = batch_norm(self, identity, "downsample.1", BN_EPS)
        return self.act_fn(out + identity)


class ResNet(nn.Module):
    """torchvision ResNet: ``[N, H, W, 3]`` normalised images -> ``[N, num_classes]``
    logits."""

    block: str  # "basic" or "bottleneck"
    layers: Sequence[int]
    num_classes: int = 1000
    act_fn: ActFn = nn.relu
    pool_fn: PoolFn = max_pool
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"ResNet: x must be [N, H, W, 3] (NHWC), got shape {x.shape}"
            )
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(
                f"ResNet: block must be 'basic' or 'bottleneck', got {self.block!r}"
            )
        if len(self.layers) != 4:
            raise ValueError(
                f"ResNet: layers must give 4 stage depths, got {tuple(self.layers)}"
            )
        block_cls = BasicBlock if self.block == "basic" else Bottleneck
        x = conv(self, x, "conv1", 64, 7, stride=2, padding=3)
        x = self.act_fn(batch_norm(self, x, "bn1", BN_EPS))
        x = self.pool_fn(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_planes = 64
        for stage, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), self.layers, strict=True)
        ):
            for i in range(blocks):
                stride = 2 if (i == 0 and stage > 0) else 1
                downsample = i == 0 and (
                    stride != 1 or in_planes != planes * block_cls.expansion
                )
                x = block_cls(
                    planes,
                    stride=stride,
                    downsample=downsample,
                    act_fn=self.act_fn,
                    name=f"layer{stage + 1}.{i}",
                )(x)
                in_planes = planes * block_cls.expansion
        x = jnp.mean(x, axis=(1, 2))
        return dense(self, x, "fc", self.num_classes)


resnet18 = functools.partial(ResNet, block="basic", layers=(2, 2, 2, 2))
resnet34 = functools.partial(ResNet, block="basic", layers=(3, 4, 6, 3))
resnet50 = functools.partial(ResNet, block="bottleneck", layers=(3, 4, 6, 3))
resnet101 = functools.partial(ResNet, block="bottleneck", layers=(3, 4, 23, 3))
resnet152 = functools.partial(ResNet, block="bottleneck", layers=(3, 8, 36, 3))


class CifarBasicBlock(nn.Module):
    """CIFAR block with the option-A shortcut: subsample by 2 and zero-pad ``planes //
    4`` channels on each side when the shape changes. ``[N, H, W, Cin] -> [N, H/s, W/s,
    planes]``."""

    planes: int
    stride: int = 1
    act_fn: ActFn = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = conv(self, x, "conv1", self.planes, 3, stride=self.stride, padding=1)
        out = self.act_fn(batch_norm(self, out, "bn1", BN_EPS))
        out = conv(self, out, "conv2", self.planes, 3, padding=1)
        out = batch_norm(self, out, "bn2", BN_EPS)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.planes:
            pad = self.planes // 4
            shortcut = x[:, :: self.stride, :: self.stride, :]
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (pad, pad)))
            if shortcut.shape[-1] != self.planes:
                raise ValueError(
                    "CifarBasicBlock: option-A shortcut needs planes == in_planes + 2 "
                    f"* (planes // 4), got in_planes={x.shape[-1]}, "
                    f"planes={self.planes}"
                )
        return self.act_fn(out + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): ``[N, H, W, 3]`` normalised images -> ``[N, num_classes]``
    logits."""

    blocks_per_stage: int
    num_classes: int = 10
    act_fn: ActFn = nn.relu
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"CifarResNet: x must be [N, H, W, 3] (NHWC), got shape {x.shape}"
            )
        x = conv(self, x, "conv1", 16, 3, padding=1)
        x = self.act_fn(batch_norm(self, x, "bn1", BN_EPS))
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(self.blocks_per_stage):
                stride = 2 if (i == 0 and stage > 0) else 1
                x = CifarBasicBlock(
                    planes,
                    stride=stride,
                    act_fn=self.act_fn,
                    name=f"layer{stage + 1}.{i}",
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        return dense(self, x, "linear", self.num_classes)


cifar_resnet20 = functools.partial(CifarResNet, blocks_per_stage=3)
cifar_resnet32 = functools.partial(CifarResNet, blocks_per_stage=5)
cifar_resnet44 = functools.partial(CifarResNet, blocks_per_stage=7)
cifar_resnet56 = functools.partial(CifarResNet, blocks_per_stage=9)
