"""Config fragments shared by the papers' `CONFIGS`.

`DEBUG`: the part of every `"debug"` config that makes it tiny: a random ResNet-8
(`cifar_resnet20` with one block per stage, which compiles fast) on the first 2 demo
photos at 32 x 32 pixels. Each paper adds its own small step and sample counts.
"""

from __future__ import annotations

from typing import Any

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
