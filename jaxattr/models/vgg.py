"""torchvision VGG-11/13/16/19, with and without BatchNorm, in Flax Linen (NHWC).

Module names follow torchvision's state dict: ``features.<i>`` (the index counts every
layer of torchvision's ``nn.Sequential``, ReLU and max-pool included) and
``classifier.0/3/6``. torchvision flattens an NCHW map before ``classifier.0``; the NHWC
port flattens in HWC order and :func:`jaxattr.models.convert.torch_to_flax` re-orders
that kernel (``flatten_nchw``, see :data:`FLATTEN_NCHW`). Dropout is left out (eval
mode).

Inputs are normalised images ``[N, H, W, 3]`` (224x224 for the pretrained weights; any
size of at least 32 works, as torchvision's adaptive average pool to 7x7 is reproduced);
outputs are logits ``[N, num_classes]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxattr.models.layers import (
    ActFn,
    PoolFn,
    adaptive_avg_pool,
    batch_norm,
    conv,
    dense,
    max_pool,
)

__all__ = [
    "CONFIGS",
    "FLATTEN_NCHW",
    "VGG",
    "features",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

BN_EPS = 1e-5

#: Layer configurations of Simonyan & Zisserman (2015), table 1 (A, B, D, E); "M" = max-
#: pool.
# fmt: off
CONFIGS: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}
# fmt: on

#: ``flatten_nchw`` argument of :func:`~jaxattr.models.convert.torch_to_flax` for VGG.
FLATTEN_NCHW = {"classifier.0": (512, 7, 7)}


def features(
    parent: nn.Module,
    x: jax.Array,
    config: Sequence,
    *,
    bn: bool,
    act_fn: ActFn,
    pool_fn: PoolFn,
    width: int = 64,
    train: bool = False,
) -> jax.Array:
    """torchvision's ``features``: ``[N, H, W, 3] -> [N, H / 2**m, W / 2**m, C]`` for
    ``m`` max-pools (``"M"`` in ``config``, 2x2/s2) and ``C`` the last conv's channels.

    Each conv is 3x3 with bias, ``int(v) * width // 64`` channels (``config`` counts
    them for torchvision's ``width=64``), then BatchNorm when ``bn`` (running
    statistics unless ``train``), then ``act_fn``. ``config``, ``bn``, ``width`` and
    ``train`` are static. Must be called inside ``parent``'s compact method; the layers
    are ``features.<i>`` as in torchvision's state dict.
    """
    i = 0
    for v in config:
        if v == "M":
            x = pool_fn(x, (2, 2), strides=(2, 2), padding="VALID")
            i += 1
            continue
        x = conv(
            parent,
            x,
            f"features.{i}",
            int(v) * width // 64,
            3,
            padding=1,
            use_bias=True,
        )
        i += 1
        if bn:
            x = batch_norm(
                parent, x, f"features.{i}", BN_EPS, use_running_average=not train
            )
            i += 1
        x = act_fn(x)
        i += 1
    return x


class VGG(nn.Module):
    """VGG: ``[N, H, W, 3]`` normalised images -> ``[N, num_classes]`` logits."""

    config: Sequence
    batch_norm: bool = False
    num_classes: int = 1000
    act_fn: ActFn = nn.relu
    pool_fn: PoolFn = max_pool
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGG: x must be [N, H, W, 3] (NHWC), got shape {x.shape}")
        x = features(
            self,
            x,
            self.config,
            bn=self.batch_norm,
            act_fn=self.act_fn,
            pool_fn=self.pool_fn,
        )
        x = adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        x = self.act_fn(dense(self, x, "classifier.0", 4096))
        x = self.act_fn(dense(self, x, "classifier.3", 4096))
        return dense(self, x, "classifier.6", self.num_classes)


vgg11 = functools.partial(VGG, config=CONFIGS[11])
vgg13 = functools.partial(VGG, config=CONFIGS[13])
vgg16 = functools.partial(VGG, config=CONFIGS[16])
vgg19 = functools.partial(VGG, config=CONFIGS[19])
vgg11_bn = functools.partial(VGG, config=CONFIGS[11], batch_norm=True)
vgg13_bn = functools.partial(VGG, config=CONFIGS[13], batch_norm=True)
vgg16_bn = functools.partial(VGG, config=CONFIGS[16], batch_norm=True)
vgg19_bn = functools.partial(VGG, config=CONFIGS[19], batch_norm=True)
