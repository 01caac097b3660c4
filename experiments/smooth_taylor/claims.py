"""SmoothTaylor's claims, checked against the committed rows by `python -m experiments
summary`.

Goh, Lapuschkin, Weber, Samek, Binder, ICPR 2020, abstract: SmoothTaylor, with adaptive
noising, gives attributions with "lesser noise" (lower AUTVC) and "higher sensitivity"
(lower AUPC: the logit drops faster when the top regions are perturbed) than IG; SmoothGrad
is the other baseline of their comparison. No table of numbers could be read.
"""

from jaxattr.runs.report import beats

#: Experiment name -> the method of the paired table (`paired.md`).
REFERENCE = {"smooth_taylor": "ig_black", "smooth_taylor.sigma_sweep": None}

_OTHERS = ["ig_black", "ig_uniform", "smoothgrad"]
CLAIMS = [
    *beats(
        "SmoothTaylor with adaptive noising beats IG (black and noise baselines) and "
        "SmoothGrad on AUPC and AUTVC",
        "smooth_taylor",
        "smooth_taylor_adaptive",
        _OTHERS,
        ["aupc", "autvc"],
    ),
    *beats(
        "SmoothTaylor (sigma 0.5) beats IG (black and noise baselines) and SmoothGrad on "
        "AUPC and AUTVC",
        "smooth_taylor",
        "smooth_taylor",
        _OTHERS,
        ["aupc", "autvc"],
    ),
]
