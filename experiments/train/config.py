"""Training configs: plain JSON-able dicts, one ``default`` per model and a ``debug``.

``get_config(model, name="default", **overrides)`` returns a fresh dict. The defaults
are the usual CIFAR-10 recipe (SGD with Nesterov momentum 0.9, batch 128, peak learning
rate 0.1 after a linear warm-up of one epoch, cosine decay to 0, weight decay 5e-4 on
kernels only, random crop with padding 4 and horizontal flip), with the width and the
epochs of each model sized for about 90 minutes on 2 CPU cores (see
``experiments/train/README.md`` for the measured step times behind them).
"""

from __future__ import annotations

import copy
from typing import Any

from jaxattr.models.torchvision_cifar import DEFAULT_WIDTH

__all__ = ["CONFIGS", "MODELS", "get_config"]

#: Models that ``python -m experiments.train`` can train.
MODELS = tuple(DEFAULT_WIDTH)

_BASE: dict[str, Any] = {
    "model": "cifar_vgg11_bn",
    "width": None,  # None: DEFAULT_WIDTH[model]
    "dropout": 0.0,  # VGG classifier only (torchvision: 0.5); too few epochs for it
    "data": "cifar10-train",
    "eval_data": "cifar10-test",  # or "tfds:cifar10:test", or "" for no evaluation
    "train_limit": None,  # first N training images (None: all 50,000)
    "eval_limit": None,
    "optimizer": "sgd",  # or "adamw"
    "learning_rate": 0.1,  # peak; adamw: use about 2e-3
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,  # sgd: L2 added to the gradient; adamw: decoupled
    "warmup_epochs": 1.0,
    "num_epochs": 12,
    "batch_size": 128,
    "eval_batch_size": 500,
    "seed": 0,
    "eval_every_epochs": 5,  # and always after the last epoch
    "log_every_steps": 50,
    "checkpoint_every_steps": 100,  # and at the end of every epoch
}

#: ``CONFIGS[model][name]``; ``debug``: a tiny width on 64 images, 2 epochs, for tests
#: and smoke runs.
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    # width 32 (2.4 M parameters): ~1.3 CPU-s per step of 128, 390 steps per epoch
    "cifar_vgg11_bn": {
        "default": {
            **_BASE,
            "model": "cifar_vgg11_bn",
            "num_epochs": 12,
            "eval_every_epochs": 4,
        },
    },
    # width 16 (0.7 M parameters): ~0.32 CPU-s per step of 128
    "cifar_resnet18": {
        "default": {
            **_BASE,
            "model": "cifar_resnet18",
            "num_epochs": 40,
            "eval_every_epochs": 10,
        },
    },
}
for _configs in CONFIGS.values():
    _configs["debug"] = {
        **_configs["default"],
        "width": 4,
        "train_limit": 64,
        "eval_limit": 64,
        "batch_size": 16,
        "eval_batch_size": 32,
        "num_epochs": 2,
        "warmup_epochs": 0.5,
        "eval_every_epochs": 1,
        "log_every_steps": 1,
        "checkpoint_every_steps": 2,
    }


def get_config(model: str, name: str = "default", **overrides: Any) -> dict[str, Any]:
    """A copy of ``CONFIGS[model][name]`` with ``overrides`` (keys must exist)."""
    if model not in CONFIGS:
        raise ValueError(
            f"get_config: model must be one of {list(CONFIGS)}, got {model!r}"
        )
    if name not in CONFIGS[model]:
        raise ValueError(
            f"get_config: name must be one of {list(CONFIGS[model])}, got {name!r}"
        )
    config = copy.deepcopy(CONFIGS[model][name])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"get_config: unknown keys {unknown}; known keys: {sorted(config)}"
        )
    config.update(overrides)
    return config
