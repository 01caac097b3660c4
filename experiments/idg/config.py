"""IDG (Walker et al., AAAI 2024): insertion/deletion of IG, LIG, GIG, AGI, IDG.

Protocol: docs/idg.md, "Compared methods" (method settings) and "Evaluation protocol"
(RISE insertion/deletion with softmax scores, 224 pixels per step, blur 11/5 start for
insertion, normalised-zero substrate for deletion, correctly classified images only).
The N/M sweep of the authors' repository (docs/idg.md#numbers-from-the-paper) is one
extra method `idg_N{n}_M{m}` per (N, M): N and M set array shapes, so each is its own
compiled program (vmapped over images by the runner). `idg` is the method as described
(samples inside the true high-slope intervals); `idg_reference` (with
`"idg_reference_compat": true`) is the authors' code (`reference_compat=True`: compacted
cells, finite-difference slopes), which produced their numbers. The README's "Paper
settings" table lists every setting; `tests/test_paper_settings.py` checks it against
what `build` passes to the methods.
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
        "n_steps": 50,
        "gig": {"n_steps": 50, "fraction": 0.5, "max_dist": 1.0},
        "agi": {"n_classes": 1, "max_iter": 20, "eps": 0.05, "from_original": True},
        "sweep_n": [],  # the N/M sweep is its own config, "sweep"
        "sweep_m": [],
        "idg_reference_compat": True,
        "step": 224,
        "batch_size": 32,
    },
}
# The authors' repository's N/M sweep as its own experiment, `idg_sweep`: IDG at
# N = M = 50 and one method per (N, M), without the comparison methods. Kept apart from
# `default` so that the paper's comparison is not slowed by it (the 8 extra IDG programs
# cost more than the 6 methods of the comparison together).
CONFIGS["sweep"] = {
    **CONFIGS["default"],
    "sweep_n": [5, 10, 20, 100],
    "sweep_m": [5, 10, 20, 100],
    "idg_reference_compat": False,
    "sweep_only": True,
}
# The CIFAR-10 ResNet-20 (real weights) on CIFAR-10 test images, the README's measured
# table: one image row (32 pixels) per step; AGI over all 9 false classes (with one class,
# IDG's setting, class 0 is the only adversary and airplanes would get no attribution).
CONFIGS["cifar"] = {
    **CONFIGS["default"],
    **CIFAR,
    "step": 32,
    "batch_size": 64,
    "agi": {"n_classes": 9, "max_iter": 20, "eps": 0.05, "from_original": True},
}
CONFIGS["cifar_resnet18"] = {**CONFIGS["cifar"], **RESNET18}  # other architectures
CONFIGS["cifar_vgg11_bn"] = {**CONFIGS["cifar"], **VGG11}
CONFIGS["debug"] = {
    **DEBUG,
    "n_steps": 8,
    "gig": {"n_steps": 8, "fraction": 0.5, "max_dist": 1.0},
    "agi": {"n_classes": 1, "max_iter": 3, "eps": 0.05, "from_original": True},
    "sweep_n": [4],
    "sweep_m": [],
    "step": 128,
    "batch_size": 16,
}


def build(config: Mapping[str, Any]) -> Experiment:
    """The IDG comparison for `config` (a value of `CONFIGS`)."""
    c.check_keys(
        config, ("model", "n_steps", "gig", "agi", "step", "batch_size"), "idg"
    )
    model = c.model_from(config)
    zero = c.zero_pixel(model)  # the authors' "0" baseline: normalised zero
    bs, n = config["batch_size"], config["n_steps"]
    sweep_only = config.get("sweep_only", False)
    methods = {
        "ig": c.ig(baseline=zero, n_steps=n, rule="gausslegendre", batch_size=bs),
        "left_ig": c.left_ig(baseline=zero, n_steps=n, batch_size=bs),
        "guided_ig": c.guided_ig(baseline=zero, **config["gig"]),
        "agi": c.agi(**config["agi"]),
        "idg": c.idg(baseline=zero, n_steps=n, n_coarse=n, batch_size=bs),
    }
    if config.get("idg_reference_compat", False):  # the authors' code (docs/idg.md)
        methods["idg_reference"] = c.idg(
            baseline=zero, n_steps=n, n_coarse=n, reference_compat=True, batch_size=bs
        )
    # The authors' sweep: N varies with M = n_steps fixed, then M varies with N fixed.
    pairs = [(k, n) for k in config.get("sweep_n", [])]
    pairs += [(n, m) for m in config.get("sweep_m", [])]
    for big_n, m in pairs:
        name = f"idg_N{big_n}_M{m}"
        if name not in methods:
            methods[name] = c.idg(
                baseline=zero, n_steps=m, n_coarse=big_n, batch_size=bs
            )
    if sweep_only:
        methods = {k: v for k, v in methods.items() if k.startswith("idg")}
    kw = {"mean": zero, "step": config["step"], "batch_size": bs}
    return Experiment(
        name="idg_sweep" if sweep_only else "idg",
        model=model,
        methods=methods,
        metrics={
            "insertion": c.perturbation("insertion", **kw),
            "deletion": c.perturbation("deletion", **kw),
        },
        only_correct=config.get("only_correct", True),
    )
