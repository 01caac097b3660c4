"""report(): tables equal a NumPy mean and Student-t interval of the stored rows; plots exist."""

from __future__ import annotations

import csv
import math
import sqlite3

import numpy as np
import pytest

from jaxattr import viz
from jaxattr.runs import ResultStore, mean_ci, report, run
from jaxattr.runs.__main__ import main
from jaxattr.runs.report import (
    format_p,
    grid_figure,
    markdown_table,
    mean_curves,
    summarise,
)
from tests.runs.common import make_examples, tiny_experiment

T975 = {
    2: 4.302652729911275,
    3: 3.182446305284263,
    4: 2.7764451051977987,
}  # t(0.975, df)


def _expected(values):
    v = np.asarray(values, np.float64)
    n = v.size
    half = T975[n - 1] * v.std(ddof=1) / math.sqrt(n)
    return n, v.mean(), v.mean() - half, v.mean() + half


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Two configs of a real (tiny) run; the second has different images."""
    path = tmp_path_factory.mktemp("rep") / "r.db"
    a = ResultStore(path, "tiny", {"c": 1})
    run(tiny_experiment(keep_maps=3), make_examples(5, wrong=(3,)), a, progress=False)
    b = ResultStore(path, "tiny", {"c": 2})
    run(tiny_experiment(keep_maps=0), make_examples(3, seed=1), b, progress=False)
    return path, a, b


def test_mean_ci_matches_numpy():
    v = [0.1, 0.4, 0.35, 0.9]
    got = mean_ci(v)
    n, mean, lo, hi = _expected(v)
    assert got["n"] == n and got["mean"] == pytest.approx(mean, rel=1e-12)
    assert got["ci_low"] == pytest.approx(lo, rel=1e-12)
    assert got["ci_high"] == pytest.approx(hi, rel=1e-12)
    nan = mean_ci([1.0, float("nan"), 3.0])
    assert nan["n"] == 2 and nan["n_nan"] == 1 and nan["mean"] == 2.0
    one = mean_ci([2.0])
    assert one["n"] == 1 and one["mean"] == 2.0 and math.isnan(one["ci_half_width"])


def test_report_tables_equal_stored_rows(db, tmp_path):
    path, a, b = db
    files = report(path, tmp_path)
    folder_a = tmp_path / f"tiny-{a.config_hash}"
    assert folder_a / "table.md" in files and folder_a / "table.csv" in files
    with open(folder_a / "table.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    rows = a.rows()
    assert len(table) == 2 * 3  # methods x metrics
    for t in table:
        values = [
            r["value"]
            for r in rows
            if r["method"] == t["method"] and r["metric"] == t["metric"]
        ]
        n, mean, lo, hi = _expected(values)
        assert int(t["n"]) == n == 4 and t["config_hash"] == a.config_hash
        assert float(t["mean"]) == pytest.approx(mean, rel=1e-12, abs=1e-15)
        assert float(t["ci_low"]) == pytest.approx(lo, rel=1e-12, abs=1e-15)
        assert float(t["ci_high"]) == pytest.approx(hi, rel=1e-12, abs=1e-15)
    md = (folder_a / "table.md").read_text()
    assert "| grad_x_input |" in md and "Student t" in md and "(n=4)" in md
    assert "1 skipped" in md and "| grad_x_input | 4 |" in md  # timing table
    # The other config is reported apart, from its own rows only.
    with open(tmp_path / f"tiny-{b.config_hash}" / "table.csv", newline="") as fh:
        assert {int(t["n"]) for t in csv.DictReader(fh)} == {3}


def test_report_plots(db, tmp_path):
    path, a, b = db
    files = report(path, tmp_path, config_hash=a.config_hash[:6])
    names = sorted(p.name for p in files)
    assert names == ["curve_deletion.png", "curve_insertion.png", "grid.png", "paired.csv",
                     "paired.md", "table.csv", "table.md"]  # fmt: skip
    for p in files:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # b kept no maps: no grid.
    files_b = report(path, tmp_path, config_hash=b.config_hash)
    assert "grid.png" not in {p.name for p in files_b}


def test_mean_curves_are_pointwise_means(db):
    _, a, _ = db
    rows = a.rows()
    curves = mean_curves(rows, "deletion")
    assert set(curves) == {"grad_x_input", "noisy_saliency"}
    x, y = curves["grad_x_input"]
    stack = [
        r["curve"]
        for r in rows
        if r["metric"] == "deletion" and r["method"] == "grad_x_input"
    ]
    np.testing.assert_allclose(
        y, np.mean(np.asarray(stack, np.float64), axis=0), rtol=1e-12
    )
    assert x[0] == 0 and x[-1] == 1 and x.size == stack[0].size
    # Curves of different lengths are interpolated onto the longest grid.
    mixed = [{"method": "m", "metric": "k", "curve": np.array([0.0, 1.0])},
             {"method": "m", "metric": "k", "curve": np.array([1.0, 1.0, 1.0])}]  # fmt: skip
    np.testing.assert_allclose(mean_curves(mixed, "k")["m"][1], [0.5, 0.75, 1.0])
    # A curve that stopped early (NaN tail, AUPC) leaves only its missing points out.
    nan = np.nan
    short = [{"method": "m", "metric": "k", "curve": np.array([1.0, 2.0, nan, nan])},
             {"method": "m", "metric": "k", "curve": np.array([3.0, 4.0, 5.0, nan])}]  # fmt: skip
    np.testing.assert_allclose(
        mean_curves(short, "k")["m"][1], [2.0, 3.0, 5.0, nan], equal_nan=True
    )


def test_grid_shares_one_scale_per_row():
    rng = np.random.default_rng(0)
    maps = {
        "x": {"m1": rng.normal(size=(6, 6)), "m2": 10 * rng.normal(size=(6, 6))},
        "y": {"m1": 100 * rng.normal(size=(6, 6)), "m2": rng.normal(size=(6, 6))},
    }
    images = {"x": rng.uniform(size=(6, 6, 3)), "y": rng.uniform(size=(6, 6, 3))}
    _, axes = grid_figure(maps, images)
    assert axes.shape == (2, 3)
    for i, image_id in enumerate(["x", "y"]):
        row_vmax = viz.shared_vmax(
            [maps[image_id][m] for m in ("m1", "m2")], reduction=None
        )
        for j, m in enumerate(("m1", "m2")):
            drawn = np.asarray(axes[i, j + 1].images[-1].get_array())
            mags = np.abs(maps[image_id][m])
            # What was drawn is |map| / (the row's shared scale), clipped to [0, 1] ...
            np.testing.assert_allclose(drawn, np.clip(mags / row_vmax, 0, 1), rtol=1e-5)
        # The weak map of the row (10-100x smaller) is not drawn at its own scale.
        weak = "m1" if image_id == "x" else "m2"
        drawn = np.asarray(axes[i, 1 + ("m1", "m2").index(weak)].images[-1].get_array())
        own = viz.attr_threshold(maps[image_id][weak], reduction=None)
        assert drawn.max() < 0.3 and own < row_vmax / 5


def test_markdown_and_summary_shapes():
    rows = [{"method": m, "metric": k, "value": v}
            for m, k, v in [("a", "x", 1.0), ("a", "x", 3.0), ("b", "x", 2.0), ("a", "y", 5.0)]]  # fmt: skip
    s = summarise(rows)
    assert [(r["method"], r["metric"], r["n"]) for r in s] == [
        ("a", "x", 2),
        ("b", "x", 1),
        ("a", "y", 1),
    ]
    md = markdown_table(s)
    assert md.splitlines()[0] == "| method | x | y |"
    assert "| b | 2 ± nan (n=1) |  |" in md


def test_cli_report_and_errors(db, tmp_path, capsys):
    path, a, _ = db
    assert (
        main(
            [
                "report",
                "--db",
                str(path),
                "--out",
                str(tmp_path),
                "--experiment",
                "tiny",
            ]
        )
        == 0
    )
    assert "table.md" in capsys.readouterr().out
    assert (
        main(
            [
                "report",
                "--db",
                str(path),
                "--out",
                str(tmp_path),
                "--experiment",
                "nope",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "experiment='nope'" in err and a.config_hash in err
    assert (
        main(["report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path)]) == 2
    )


def test_report_does_not_write_to_the_db(db, tmp_path):
    path, _, _ = db
    before = path.read_bytes()
    report(path, tmp_path)
    assert path.read_bytes() == before
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a jaxattr.runs database"):
        report(other, tmp_path)


def test_p_values_that_underflowed_are_not_written_as_zero():
    from scipy import stats

    p = stats.ttest_1samp(np.full(2000, 0.01) + np.arange(2000) * 1e-9, 0.05).pvalue
    assert p == 0.0  # float64 underflow: the case the format exists for
    assert format_p(p) == "<1e-300"
    assert format_p(0.0123) == "0.012" and format_p(math.nan) == "nan"
    assert format_p(5e-324) == "4.9e-324"
