"""Guided non-linearity IG (Kwon et al., ICPR 2020): deletion/insertion of IG vs GNL-IG.

Protocol: docs/gnl.md#paper-settings (Captum IG defaults: 50 Gauss-Legendre steps, zero
baseline in normalised space, the logit of the predicted class; the authors' hook code's
max-pool rule, `max_pool="sign_mask"`, not the library default `"positive"`) and
docs/gnl.md#evaluation-protocol (RISE deletion and insertion, softmax, one image row of
pixels per step, heat map `|sum_c A|`). Run on every port we have real weights for:
EfficientNet-Lite0 (`default`) and the CIFAR-10 ResNets whose checkpoints are in
`../shared/assets` (`cifar`, one experiment per net), and the max-pool nets trained here
with both max-pool rules (`cifar_maxpool`; `also_max_pool` adds `gnl_ig_<rule>` per rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments import _common as c
from experiments._configs import CIFAR, DEBUG, LITE0
from jaxattr.runs import Experiment

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {
        **{k: v for k, v in LITE0.items() if k != "model"},
        "models": [LITE0["model"]],
        "n_steps": 50,
        "max_pool": "sign_mask",
        "step": 224,
        "batch_size": 32,
    },
    "cifar": {
        "models": "cifar_with_weights",  # every cifar_resnet{20,32,44,56} checkpoint found
        **{k: v for k, v in CIFAR.items() if k != "model"},
        "n_steps": 50,
        "max_pool": "sign_mask",
        "step": 32,
        "batch_size": 64,
    },
    # The max-pool nets trained here (models.registry.TRAINED), both pool rules side by
    # side: `gnl_ig` is the authors' sign mask, `gnl_ig_positive` the described rule
    # (they differ on ResNet-18's overlapping 3x3/s2 pool, docs/gnl.md#definition).
    "cifar_maxpool": {
        **{k: v for k, v in CIFAR.items() if k not in ("model", "weights")},
        "models": ["cifar_resnet18"],
        "weights": "default",
        "n_steps": 50,
        "max_pool": "sign_mask",
        "also_max_pool": ["positive"],
        "step": 32,
        "batch_size": 64,
    },
    "debug": {
        **{k: v for k, v in DEBUG.items() if k != "model"},
        "models": [DEBUG["model"]],
        "n_steps": 8,
        "max_pool": "sign_mask",
        "step": 128,
        "batch_size": 16,
    },
}

# The VGG-11 trained here, both rules again (its 2x2/s2 pools do not overlap: the two
# rules must agree); a config of its own, so that the ResNet-18 rows keep their hash.
CONFIGS["cifar_maxpool_vgg11"] = {
    **CONFIGS["cifar_maxpool"],
    "models": ["cifar_vgg11_bn"],
}


def _model_names(spec: Any) -> list[str]:
    if spec == "cifar_with_weights":
        names = c.cifar_ports_with_weights()
        if not names:
            raise FileNotFoundError(
                "gnl: models='cifar_with_weights' found no checkpoint in "
                f"{c.ASSETS / 'cifar10-resnet-akamaster'}"
            )
        return names
    if isinstance(spec, str):
        return [spec]
    return list(spec)


def build(config: Mapping[str, Any]) -> list[Experiment]:
    """One experiment `gnl.<model>` per model of `config["models"]`."""
    c.check_keys(config, ("models", "n_steps", "max_pool", "step", "batch_size"), "gnl")
    out = []
    for name in _model_names(config["models"]):
        model = c.model_from(config, name)
        zero = c.zero_pixel(model)
        n, bs = config["n_steps"], config["batch_size"]
        kw = {"mean": zero, "step": config["step"], "batch_size": bs}
        out.append(
            Experiment(
                name=f"gnl.{name}",
                model=model,
                methods={
                    "ig": c.ig(baseline=zero, n_steps=n, batch_size=bs),
                    "gnl_ig": c.gnl_ig(
                        baseline=zero,
                        n_steps=n,
                        max_pool=config["max_pool"],
                        batch_size=bs,
                    ),
                    **{
                        f"gnl_ig_{rule}": c.gnl_ig(
                            baseline=zero, n_steps=n, max_pool=rule, batch_size=bs
                        )
                        for rule in config.get("also_max_pool", [])
                    },
                },
                metrics={
                    "deletion": c.perturbation("deletion", **kw),
                    "insertion": c.perturbation("insertion", **kw),
                },
                only_correct=config.get("only_correct", True),
            )
        )
    return out
