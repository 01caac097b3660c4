"""torchvision's VGG-BN and ResNet-18, adapted to 32x32 CIFAR-10 images, with a width.

Both keep what makes them interesting for guided backpropagation: **max-pools**.

* :class:`CifarVGG` (``cifar_vgg11_bn``, ...): torchvision's ``features`` unchanged
  (3x3 convs with bias, BatchNorm, ReLU, and its five 2x2/s2 max-pools, which take 32x32
  to 1x1), then the classifier ``classifier.0/3/6`` (Linear, ReLU, Dropout, Linear,
  ReLU, Dropout, Linear) on the flattened 1x1 map. The adaptation: torchvision's
  adaptive average pool to 7x7 would only copy the 1x1 map 49 times, so it is left out,
  and the hidden width is ``8 * width`` (512 at ``width=64``) instead of 4096.
* :class:`CifarMaxPoolResNet` (``cifar_resnet18``): torchvision's ResNet-18 (basic
  blocks ``layer1..4``, ``fc``) keeping its stem max-pool, **3x3 with stride 2 and
  padding 1 (overlapping windows)**. The adaptation: the stem conv is 3x3 with stride 1
  (torchvision: 7x7, stride 2), so 32x32 -> conv 32x32 -> max-pool 16x16 -> stages
  16, 8, 4, 2 -> global average -> ``fc``. Not He et al.'s CIFAR ResNet-20..56
  (:class:`jaxattr.models.resnet.CifarResNet`, which has no max-pool).

``width`` is the channel count of the first stage (torchvision: 64); later stages scale
with it (VGG ``64, 128, 256, 512, 512`` -> ``width * (1, 2, 4, 8, 8)``, ResNet ``width *
(1, 2, 4, 8)``), so a narrow net trains on a CPU. Module names follow torchvision's
state dict, so :func:`jaxattr.models.convert.flax_to_torch` exports a state dict that
``torchvision.models.vgg11_bn`` / ``resnet18`` with the same changes would load, and
``jaxattr.models.load(name, weights=PATH)`` reads it back.

Inputs are normalised images ``[N, 32, 32, 3]``; outputs are logits ``[N,
num_classes]``. ``__call__(x, train=False)``: eval mode (BatchNorm running statistics,
no dropout) by default, which is what ``load`` uses; ``train=True`` (static) normalises
with batch statistics (``mutable=['batch_stats']``) and applies dropout (needs a
``'dropout'`` rng when ``dropout > 0``). ``act_fn`` and ``pool_fn`` can be replaced as in
the other ports. Every bias-adding layer is marked for FullGrad (see
:mod:`jaxattr.models.layers`).

Training recipe (``python -m experiments.train``; options, resumption, data and the
measured step times in ``experiments/train/README.md``)::

    python -m experiments.train --model cifar_vgg11_bn --data cifar10-train \\
        --workdir out/train/cifar_vgg11_bn --export out/train/cifar_vgg11_bn.npz --float16
    python -m experiments.train --model cifar_resnet18 --data cifar10-train \\
        --workdir out/train/cifar_resnet18 --export out/train/cifar_resnet18.npz --float16

Seed 0; SGD (Nesterov momentum 0.9, batch 128, peak learning rate 0.1, one warm-up epoch,
cosine to 0, weight decay 5e-4 on kernels), random crop (padding 4) and flip; VGG at
width 32 for 12 epochs, ResNet-18 at width 16 for 40 epochs (:data:`DEFAULT_WIDTH`),
each estimated at 41-103 minutes on a 2-core CPU from measured step times.
``cifar_resnet18``'s weights were trained so (60.2 min, 84.1 % on the 10,000 CIFAR-10
test JPEGs) and ship in the package: ``load('cifar_resnet18')`` (docs/models.md#trained-here).
``cifar_vgg11_bn``'s were trained so too (about 66 minutes alone, 84.2 %) and ship:
``load('cifar_vgg11_bn')``. ``weights=PATH`` loads another export (add ``width=W`` for
a non-default width).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models import resnet
from jaxattr.models.layers import ActFn, PoolFn, batch_norm, conv, dense, max_pool
from jaxattr.models.vgg import CONFIGS, features

__all__ = [
    "DEFAULT_WIDTH",
    "CifarMaxPoolResNet",
    "CifarVGG",
    "cifar_resnet18",
    "cifar_vgg11_bn",
    "cifar_vgg13_bn",
    "cifar_vgg16_bn",
    "cifar_vgg19_bn",
]

BN_EPS = 1e-5

#: Width (first-stage channels) of the registered models, chosen so that one training
#: run fits about 90 minutes on 2 CPU cores (torchvision's width is 64).
DEFAULT_WIDTH = {"cifar_vgg11_bn": 32, "cifar_resnet18": 16}


def _check_input(name: str, x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise ValueError(
            f"{name}: x must be [N, 32, 32, 3] (NHWC CIFAR images), got shape "
            f"{tuple(x.shape)}"
        )


def _check_width(name: str, width: int) -> None:
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"{name}: width must be a positive int, got {width!r}")


class CifarVGG(nn.Module):
    """VGG-BN on 32x32: ``[N, 32, 32, 3]`` normalised images -> ``[N, num_classes]``.

    ``config``: a :data:`jaxattr.models.vgg.CONFIGS` entry (channels for ``width=64``,
    ``"M"`` = 2x2/s2 max-pool); ``width``: first-layer channels (static).
    """

    config: Sequence
    width: int = 64
    num_classes: int = 10
    dropout: float = 0.5
    act_fn: ActFn = nn.relu
    pool_fn: PoolFn = max_pool
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _check_input("CifarVGG", x)
        _check_width("CifarVGG", self.width)
        x = features(
            self,
            x,
            self.config,
            bn=True,
            act_fn=self.act_fn,
            pool_fn=self.pool_fn,
            width=self.width,
            train=train,
        )
        x = x.reshape(x.shape[0], -1)  # [N, 1, 1, C] -> [N, C]
        hidden = 8 * self.width
        drop = nn.Dropout(self.dropout, deterministic=not train)
        x = drop(self.act_fn(dense(self, x, "classifier.0", hidden)))
        x = drop(self.act_fn(dense(self, x, "classifier.3", hidden)))
        return dense(self, x, "classifier.6", self.num_classes)


class CifarMaxPoolResNet(nn.Module):
    """ResNet with a 3x3/s1 stem conv and the 3x3/s2 max-pool: ``[N, 32, 32, 3]``
    normalised images -> ``[N, num_classes]``.

    ``layers``: blocks per stage (ResNet-18: ``(2, 2, 2, 2)``); ``width``: channels of
    the stem and the first stage (static).
    """

    layers: Sequence[int]
    width: int = 64
    num_classes: int = 10
    act_fn: ActFn = nn.relu
    pool_fn: PoolFn = max_pool
    bn_epsilon = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        _check_input("CifarMaxPoolResNet", x)
        _check_width("CifarMaxPoolResNet", self.width)
        if len(self.layers) != 4:
            raise ValueError(
                "CifarMaxPoolResNet: layers must give 4 stage depths, got "
                f"{tuple(self.layers)}"
            )
        w = self.width
        x = conv(self, x, "conv1", w, 3, padding=1)
        x = batch_norm(self, x, "bn1", BN_EPS, use_running_average=not train)
        x = self.act_fn(x)
        x = self.pool_fn(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_planes = w
        for stage, blocks in enumerate(self.layers):
            planes = w * 2**stage
            for i in range(blocks):
                stride = 2 if (i == 0 and stage > 0) else 1
                x = resnet.BasicBlock(
                    planes,
                    stride=stride,
                    downsample=i == 0 and (stride != 1 or in_planes != planes),
                    act_fn=self.act_fn,
                    name=f"layer{stage + 1}.{i}",
                )(x, train)
                in_planes = planes
        x = jnp.mean(x, axis=(1, 2))
        return dense(self, x, "fc", self.num_classes)


cifar_vgg11_bn = functools.partial(
    CifarVGG, config=CONFIGS[11], width=DEFAULT_WIDTH["cifar_vgg11_bn"]
)
cifar_vgg13_bn = functools.partial(CifarVGG, config=CONFIGS[13])
cifar_vgg16_bn = functools.partial(CifarVGG, config=CONFIGS[16])
cifar_vgg19_bn = functools.partial(CifarVGG, config=CONFIGS[19])
cifar_resnet18 = functools.partial(
    CifarMaxPoolResNet, layers=(2, 2, 2, 2), width=DEFAULT_WIDTH["cifar_resnet18"]
)
