"""IG (Sundararajan et al., ICML 2017): completeness error against steps, every rule.

Protocol: the IG paper's advice ("somewhere between 20 and 300 steps are enough to
approximate the integral (within 5%)"; docs/integrated_gradients.md#integrated-gradients)
and the rules (docs/integrated_gradients.md#quadrature-rules; `captum_trapezoid` is
Captum's trapezoid whose weights sum to (n-1)/n). Black baseline
(docs/integrated_gradients.md#baselines) and, as the
authors, the softmax probability of the predicted class (their Definition 1 has `F:
R^n -> [0, 1]`, and their how-to says to attribute the softmax output, not the logits;
docs/integrated_gradients.md#targets-and-the-output-transform): the "Paper settings" table
of the README. Metrics: `relative_delta = |delta| / |f(x) - f(x')|`
(docs/integrated_gradients.md#completeness-and-the-delta) and `within_5pct` (1 where
relative_delta <= 0.05, so its mean
is the fraction of images within 5 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

import jaxattr
from experiments import _common as c
from experiments._configs import CIFAR, DEBUG, LITE0, RESNET18, VGG11
from jaxattr.runs import Experiment

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {
        **LITE0,
        "rules": list(jaxattr.quadrature.RULES),
        "steps": [10, 20, 50, 100, 300],
        "output": "softmax",
        "batch_size": 25,
    },
}
# The CIFAR-10 ResNet-20 (real weights) on CIFAR-10 test images, the README's measured
# table (EfficientNet-Lite0 did not fit the 2-core CPU time we had).
CONFIGS["cifar"] = {
    **CONFIGS["default"],
    **CIFAR,
    "batch_size": 50,
}
CONFIGS["cifar_resnet18"] = {**CONFIGS["cifar"], **RESNET18}  # other architectures
CONFIGS["cifar_vgg11_bn"] = {**CONFIGS["cifar"], **VGG11}
CONFIGS["debug"] = {
    **DEBUG,
    "rules": ["riemann_right", "gausslegendre"],
    "steps": [4, 16],
    "output": "logit",
    "batch_size": 16,
}


def relative_delta(output: str, tol: float | None = None):
    """`|sum A - (f(x) - f(0))| / |f(x) - f(0)|` for the black baseline
    (docs/integrated_gradients.md#completeness-and-the-delta);
    with `tol`, the indicator `relative_delta <= tol` (float) instead."""

    def score(model_fn, x, attributions, target, key):
        f = jaxattr.scalar_output(model_fn, target, output=output)
        diff = f(x) - f(jnp.zeros_like(x))
        rel = jnp.abs(jnp.sum(attributions) - diff) / jnp.abs(diff)
        return (rel if tol is None else (rel <= tol).astype(jnp.float32)), None

    return score


def build(config: Mapping[str, Any]) -> Experiment:
    """`ig_{rule}_{steps}` for every rule and step count of `config`."""
    c.check_keys(config, ("model", "rules", "steps", "output", "batch_size"), "ig")
    bad = [r for r in config["rules"] if r not in jaxattr.quadrature.RULES]
    if bad:
        raise ValueError(
            f"ig: config['rules'] must be among {jaxattr.quadrature.RULES}; got {bad}"
        )
    model = c.model_from(config)
    out, bs = config["output"], config["batch_size"]
    methods = {
        f"ig_{rule}_{n}": c.ig(
            baseline="black", n_steps=n, rule=rule, batch_size=min(bs, n), output=out
        )
        for rule in config["rules"]
        for n in config["steps"]
    }
    return Experiment(
        name="ig",
        model=model,
        methods=methods,
        metrics={
            "relative_delta": relative_delta(out),
            "within_5pct": relative_delta(out, tol=0.05),
        },
        only_correct=config.get("only_correct", False),
        keep_maps=config.get("keep_maps", 0),
    )
