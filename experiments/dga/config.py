"""DGA (Jeon et al., NeurIPS 2022): MoRF/LeRF and insertion/deletion of G*I, GBP, IG,
FullGrad, Guided IG and DGA (Table 1, docs/dga.md#numbers-from-the-paper).

Protocol: docs/dga.md#evaluation-protocol (softmax of the target class; MoRF lower and
LeRF higher is better; the removal value and step size are not stated, so removed pixels
take normalised zero and one image row of pixels goes per step, as RISE) plus RISE
insertion/deletion (docs/evaluation.md; the SPI paper's reading of the same numbers; the
README argues that Table 1's "LeRF" column is insertion). DGA: N = 30, q = 0.9, beta = 0
(docs/dga.md#paper-settings), UFG by the completeness shortcut, masking towards
normalised zero. Guided IG: PAIR's defaults (docs/integrated_gradients.md).
The authors' inputs were normalised tensors, so with `"space": "normalised"` gradient x
input and Guided Backprop are taken with respect to the normalised input (`x_n *
grad_{x_n} = (x - mean) * grad_x`, `grad_{x_n} = std * grad_x`); IG, Guided IG,
FullGrad and DGA use normalised zero as their reference. The README's "Paper settings"
table lists every setting; `tests/test_paper_settings.py` checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments import _common as c
from experiments._configs import CIFAR, DEBUG, LITE0, RESNET18, VGG11
from jaxattr.runs import Experiment

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {
        **LITE0,
        "ig_steps": 50,
        "gig": {"n_steps": 200, "fraction": 0.25, "max_dist": 0.02},
        "dga": {"n_steps": 30, "q": 0.9, "beta": 0.0},
        "space": "normalised",
        "step": 224,
        "batch_size": 32,
    },
}
# The CIFAR-10 ResNet-20 (real weights) on CIFAR-10 test images, the README's measured
# table: one image row (32 pixels) per step.
CONFIGS["cifar"] = {
    **CONFIGS["default"],
    **CIFAR,
    "step": 32,
    "batch_size": 64,
}
CONFIGS["cifar_resnet18"] = {**CONFIGS["cifar"], **RESNET18}  # other architectures
CONFIGS["cifar_vgg11_bn"] = {**CONFIGS["cifar"], **VGG11}
CONFIGS["debug"] = {
    **DEBUG,
    "ig_steps": 8,
    "gig": {"n_steps": 8, "fraction": 0.25, "max_dist": 0.02},
    "dga": {"n_steps": 4, "q": 0.9, "beta": 0.0},
    "space": "normalised",
    "step": 128,
    "batch_size": 16,
}


def build(config: Mapping[str, Any]) -> Experiment:
    """The DGA comparison (Table 1) for `config` (a value of `CONFIGS`)."""
    c.check_keys(
        config,
        ("model", "ig_steps", "gig", "dga", "space", "step", "batch_size"),
        "dga",
    )
    if config["space"] != "normalised":
        raise ValueError(
            "dga: config['space'] must be 'normalised' (the authors' inputs were"
            f" normalised tensors); got {config['space']!r}"
        )
    model = c.model_from(config)
    norm = c.normalisation(model)
    zero = norm[0]  # normalised zero: DGA masks towards it, UFG's input term is x_n * g
    bs = config["batch_size"]
    kw = {"mean": zero, "step": config["step"], "batch_size": bs}
    return Experiment(
        name="dga",
        model=model,
        methods={
            "grad_x_input": c.input_x_gradient(normalisation=norm),
            "guided_backprop": c.guided_backprop(normalisation=norm),
            "ig": c.ig(baseline=zero, n_steps=config["ig_steps"], batch_size=bs),
            "fullgrad": c.full_gradients(model),
            "guided_ig": c.guided_ig(baseline=zero, output="logit", **config["gig"]),
            "dga": c.dga(baseline=zero, **config["dga"]),
        },
        metrics={
            "morf": c.perturbation("morf", **kw),
            "lerf": c.perturbation("lerf", **kw),
            "insertion": c.perturbation("insertion", **kw),
            "deletion": c.perturbation("deletion", **kw),
        },
        only_correct=config.get("only_correct", True),
    )
