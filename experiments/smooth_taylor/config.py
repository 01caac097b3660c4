"""SmoothTaylor (Goh et al., ICPR 2020): AUPC ("sensitivity") and AUTVC ("noise level")
of IG (black and uniform-noise baselines), SmoothGrad, SmoothTaylor at a fixed sigma and
with adaptive noising (docs/smooth_taylor.md), plus SmoothTaylor's sigma sweep.

Noise levels are in the authors' units (`"units": "normalised"`): the authors' input is
the normalised tensor `x_n = (x - mean) / std` (docs/smooth_taylor.md#noise-units), so
SmoothTaylor and adaptive noising get `normalisation=(mean, std)` of the model (noise
`sigma * std` pixels per channel, `sigma_0 = mean|x_n|`, step 0.1), and SmoothGrad runs
in normalised coordinates (15 % of the normalised range, gradients with respect to
`x_n`), exactly as the authors' code. The README's "Paper settings" table lists every
setting; `tests/test_paper_settings.py` checks it against what `build` passes to the
methods.

The sigma sweep is its own experiment, `smooth_taylor.sigma_sweep`: ONE method,
`smooth_taylor_sweep`, computes SmoothTaylor for every sigma in one compiled `vmap`
over the vector of sigmas (same roots `eps_i` for every sigma: common random numbers, so
differences between sigmas are not noise), returning attributions `[S, H, W, 3]`; its
metrics `aupc_s{i}` / `autvc_s{i}` score slice `i`. The runner compiles each method
once, so one method per sigma would compile and run S programs; one method with one
metric per sigma keeps the sweep a single program, at the price of the sweep's table
having one row and one column per sigma.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

import jaxattr
from experiments import _common as c
from experiments._configs import CIFAR, DEBUG, LITE0, RESNET18, VGG11
from jaxattr.runs import Experiment

_AUPC_PAPER = {"kernel_size": 15, "num_regions": 30, "num_perturbs": 50}

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {
        **LITE0,
        "ig_steps": 50,
        "sg": {"nt_samples": 50, "stdev_spread": 0.15},
        "n_roots": 150,
        "sigma": 0.5,  # normalised units (docs/smooth_taylor.md#noise-units)
        "adaptive": {"learning_rate": 0.1, "max_iterations": 20, "max_stop": 3},
        "adaptive_objective": "aupc",
        "aupc": _AUPC_PAPER,
        "autvc": {"downscale": 1.5, "min_size": 30, "lp_norm": 1},
        "sweep_sigmas": [0.1, 0.25, 0.5, 1.0, 2.0],
        "units": "normalised",
        "batch_size": 50,
    },
}
# The CIFAR-10 ResNet-20 (real weights) on CIFAR-10 test images, the README's measured
# table: the paper's settings, with AUPC's window and AUTVC's smallest level scaled from
# 224 to 32 pixels (15 -> 4, 30 -> 4).
CONFIGS["cifar"] = {
    **CONFIGS["default"],
    **CIFAR,
    "aupc": {**_AUPC_PAPER, "kernel_size": 4},
    "autvc": {**CONFIGS["default"]["autvc"], "min_size": 4},
}
CONFIGS["cifar_resnet18"] = {**CONFIGS["cifar"], **RESNET18}  # other architectures
CONFIGS["cifar_vgg11_bn"] = {**CONFIGS["cifar"], **VGG11}
CONFIGS["debug"] = {
    **DEBUG,
    "ig_steps": 4,
    "sg": {"nt_samples": 4, "stdev_spread": 0.15},
    "n_roots": 4,
    "sigma": 0.5,
    "adaptive": {"learning_rate": 0.1, "max_iterations": 2, "max_stop": 1},
    "adaptive_objective": "autvc",
    "aupc": {"kernel_size": 5, "num_regions": 3, "num_perturbs": 4},
    "autvc": {"downscale": 1.5, "min_size": 8, "lp_norm": 1},  # 32 px: 3 levels
    "sweep_sigmas": [0.25, 1.0],
    "units": "normalised",
    "batch_size": 4,
}


def smooth_taylor_sweep(
    sigmas, *, n_roots: int, batch_size: int | None, normalisation=None
):
    """Method: SmoothTaylor for every sigma (`[S]`, traced; normalised units with
    `normalisation`, else pixels) in one `vmap`.

    Returns an `Attribution` with `attributions [S, *x.shape]`, `delta [S]`.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)

    def explain(model_fn, x, target, key):
        def one(sigma):
            st = c.smooth_taylor(
                n_roots=n_roots,
                stdevs=sigma,
                batch_size=batch_size,
                normalisation=normalisation,
            )
            return st(model_fn, x, target, key)

        out = jax.vmap(one)(sigmas)
        return jaxattr.Attribution(out.attributions, out.delta, {"sigma": sigmas})

    return explain


def _slice(metric, i: int):
    def score(model_fn, x, attributions, target, key):
        return metric(model_fn, x, attributions[i], target, key)

    return score


def build(config: Mapping[str, Any]) -> list[Experiment]:
    """`smooth_taylor` (the comparison) and `smooth_taylor.sigma_sweep`."""
    c.check_keys(
        config,
        (
            "model",
            "ig_steps",
            "sg",
            "n_roots",
            "sigma",
            "adaptive",
            "aupc",
            "autvc",
            "units",
            "batch_size",
        ),
        "smooth_taylor",
    )
    if config["units"] != "normalised":
        raise ValueError(
            "smooth_taylor: config['units'] must be 'normalised' (the authors' noise"
            f" units, docs/smooth_taylor.md#noise-units); got {config['units']!r}"
        )
    model = c.model_from(config)
    norm = c.normalisation(model)  # (mean, std): the authors' units (module docstring)
    bs, n_roots = config["batch_size"], config["n_roots"]
    ad = dict(config["adaptive"])
    objective = config.get("adaptive_objective", "aupc")

    # normalised units: sigma 0.5 is 0.5 std pixels per channel; adaptive noising's
    # sigma_0 = mean |x_n| (the default with a normalisation), lr 0.1 normalised units
    # (docs/smooth_taylor.md#adaptive-noising).
    st_fixed = c.smooth_taylor(
        n_roots=n_roots, stdevs=config["sigma"], batch_size=bs, normalisation=norm
    )
    st_adaptive = c.adaptive_noising(
        score_fn=objective,
        score_kwargs=c.aupc_kwargs(config[objective]),
        n_roots=n_roots,
        batch_size=bs,
        learning_rate=ad["learning_rate"],
        max_iterations=ad["max_iterations"],
        max_stop=ad["max_stop"],
        normalisation=norm,
    )

    ig_steps = config["ig_steps"]
    only_correct = config.get("only_correct", True)
    main = Experiment(
        name="smooth_taylor",
        model=model,
        methods={
            "ig_black": c.ig(
                baseline="black", n_steps=ig_steps, rule="riemann_right", batch_size=bs
            ),
            "ig_uniform": c.ig(
                baseline="uniform",
                n_steps=ig_steps,
                rule="riemann_right",
                batch_size=bs,
            ),
            "smoothgrad": c.smoothgrad(
                batch_size=bs, normalisation=norm, **config["sg"]
            ),
            "smooth_taylor": st_fixed,
            "smooth_taylor_adaptive": st_adaptive,
        },
        metrics={"aupc": c.aupc(**config["aupc"]), "autvc": c.autvc(**config["autvc"])},
        only_correct=only_correct,
    )
    out = [main]
    sigmas = list(config.get("sweep_sigmas", []))
    if sigmas:
        aupc, autvc = c.aupc(**config["aupc"]), c.autvc(**config["autvc"])
        sweep_metrics = {}
        for i, s in enumerate(sigmas):
            sweep_metrics[f"aupc_sigma{s:g}"] = _slice(aupc, i)
            sweep_metrics[f"autvc_sigma{s:g}"] = _slice(autvc, i)
        out.append(
            Experiment(
                name="smooth_taylor.sigma_sweep",
                model=model,
                methods={
                    "smooth_taylor_sweep": smooth_taylor_sweep(
                        sigmas, n_roots=n_roots, batch_size=bs, normalisation=norm
                    )
                },
                metrics=sweep_metrics,
                only_correct=only_correct,
                keep_maps=0,
            )
        )
    return out
