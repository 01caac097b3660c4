"""IG's claim, checked against the committed rows by `python -m experiments summary`.

Sundararajan, Taly, Yan, ICML 2017, §5: "somewhere between 20 and 300 steps are enough to
approximate the integral (within 5%)", with the right Riemann sum of the paper's eq. 3.
Checked at the upper end: the mean relative completeness error `|sum A - (f(x) - f(x'))| /
|f(x) - f(x')|` of `riemann_right` at 300 steps is below 0.05 (one-sample t interval).
"""

from jaxattr.runs.report import Claim

#: Experiment name -> the method of the paired table (none: the rules are not compared
#: with one reference).
REFERENCE = {"ig": None}

CLAIMS = [
    Claim(
        "300 steps (the upper end of 20-300) bring IG's completeness error within 5 % "
        "(right Riemann sum)",
        "ig",
        "ig_riemann_right_300",
        0.05,
        "relative_delta",
    )
]
