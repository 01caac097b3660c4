"""Paired differences and intervals against SciPy on fixed data; verdicts on constructed
data (one of each outcome); metric directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from jaxattr.runs.report import (
    beats,
    default_reference,
    higher_is_better,
    markdown_paired,
    paired,
    paired_difference,
    verdict,
)

# Fixed data: 12 images, method A and reference B (no ties in |A - B|), one NaN in A.
A = [0.61, 0.52, 0.70, 0.44, 0.58, 0.66, 0.49, 0.73, 0.55, float("nan"), 0.62, 0.47]
B = [0.55, 0.50, 0.61, 0.46, 0.50, 0.60, 0.41, 0.69, 0.56, 0.40, 0.51, 0.449]


def test_paired_difference_matches_scipy():
    got = paired_difference(A, B)
    a, b = np.asarray(A), np.asarray(B)
    keep = np.isfinite(a)
    a, b = a[keep], b[keep]
    d = a - b
    n = d.size
    lo, hi = stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
    assert got["n"] == n == 11
    assert got["mean_diff"] == pytest.approx(d.mean(), rel=1e-12)
    assert got["std_diff"] == pytest.approx(d.std(ddof=1), rel=1e-12)
    assert got["ci_low"] == pytest.approx(lo, rel=1e-12)
    assert got["ci_high"] == pytest.approx(hi, rel=1e-12)
    assert got["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert got["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    # 99 % interval: the level is honoured.
    wide = paired_difference(A, B, level=0.99)
    lo99, hi99 = stats.t.interval(0.99, n - 1, loc=d.mean(), scale=stats.sem(d))
    assert (wide["ci_low"], wide["ci_high"]) == pytest.approx((lo99, hi99), rel=1e-12)


def test_paired_difference_edge_cases():
    one = paired_difference([1.0], [0.5])
    assert one["n"] == 1 and one["mean_diff"] == 0.5 and math.isnan(one["ci_low"])
    assert math.isnan(one["p_t"])
    same = paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["mean_diff"] == 0 and math.isnan(same["p_wilcoxon"])
    none = paired_difference([math.inf, math.nan], [1.0, 2.0])
    assert none["n"] == 0 and math.isnan(none["mean_diff"])
    with pytest.raises(ValueError, match="a, b: expected two 1-D arrays"):
        paired_difference([1.0, 2.0], [1.0])


def test_directions():
    assert higher_is_better("insertion") is True
    assert higher_is_better("lerf") is True
    for lower in (
        "deletion",
        "morf",
        "aupc",
        "autvc",
        "relative_delta",
        "completeness",
    ):
        assert higher_is_better(lower) is False, lower
    assert higher_is_better("aupc_sigma0.5") is False  # the sigma sweep's metrics
    assert higher_is_better("autvc_sigma2") is False
    assert higher_is_better("mystery") is None


def _rows(method_values: dict[str, list[float]], metric: str) -> list[dict]:
    return [
        {"image_id": f"im{i:02d}", "method": m, "metric": metric, "value": v}
        for m, values in method_values.items()
        for i, v in enumerate(values)
    ]


BASE = np.linspace(0.2, 0.8, 10)
NOISE = np.array([0.01, -0.02, 0.015, -0.01, 0.005, -0.015, 0.02, -0.005, 0.01, -0.01])


@pytest.mark.parametrize(
    "metric, shift, expected",
    [
        ("insertion", +0.1, "reproduced"),  # A higher on a higher-is-better metric
        ("insertion", -0.1, "reversed"),
        ("insertion", 0.0, "not reproduced"),  # only noise around 0
        ("deletion", -0.1, "reproduced"),  # A lower on a lower-is-better metric
        ("deletion", +0.1, "reversed"),
    ],
)
def test_verdict_outcomes(metric, shift, expected):
    rows = _rows({"a": list(BASE + shift + NOISE), "b": list(BASE)}, metric)
    v = verdict(rows, "a", "b", metric)
    assert v["outcome"] == expected
    assert v["n"] == 10 and v["mean_diff"] == pytest.approx(shift + NOISE.mean())
    d = BASE + shift + NOISE - BASE
    assert v["p_t"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)


def test_verdict_pairs_only_shared_finite_images_and_thresholds():
    rows = _rows({"a": [0.9, 0.8, 0.85, math.nan], "b": [0.1, 0.2, 0.15, 0.1]}, "lerf")
    rows.append({"image_id": "only_a", "method": "a", "metric": "lerf", "value": 1.0})
    v = verdict(rows, "a", "b", "lerf")
    assert v["n"] == 3 and v["outcome"] == "reproduced"
    # Against a threshold: the mean error is below 0.05 (lower is better).
    err = _rows({"ig_300": [0.01, 0.02, 0.012, 0.018, 0.015]}, "relative_delta")
    assert verdict(err, "ig_300", 0.05, "relative_delta")["outcome"] == "reproduced"
    assert verdict(err, "ig_300", 0.001, "relative_delta")["outcome"] == "reversed"
    assert verdict(err, "nope", "ig_300", "relative_delta")["outcome"] == "no data yet"
    with pytest.raises(ValueError, match="metric: expected one with a known direction"):
        verdict(err, "ig_300", 0.05, "mystery")


def test_paired_table_favours_and_order():
    rows = _rows({"ig": list(BASE), "x": list(BASE + 0.1 + NOISE)}, "insertion")
    rows += _rows({"ig": list(BASE), "x": list(BASE + 0.1 + NOISE)}, "deletion")
    rows += _rows({"y": list(BASE)}, "insertion")
    pairs = paired(rows, "ig")
    assert [(p["method"], p["metric"], p["favours"]) for p in pairs] == [
        ("x", "insertion", "x"),
        ("x", "deletion", "ig"),
        ("y", "insertion", "neither"),  # identical values: no difference
    ]
    md = markdown_paired(pairs, "ig", "t")
    assert "paired difference to `ig`" in md and "| x | deletion | lower |" in md
    assert "No paired comparison: no reference method." in markdown_paired([], None)
    assert default_reference(["a", "ig"]) == "ig"
    assert default_reference(["ig_black"]) is None


def test_claims_expand():
    cs = beats("t", "idg", "idg", ["ig", "agi"], ["insertion", "deletion"])
    assert [(c.other, c.metric) for c in cs] == [
        ("ig", "insertion"),
        ("ig", "deletion"),
        ("agi", "insertion"),
        ("agi", "deletion"),
    ]
