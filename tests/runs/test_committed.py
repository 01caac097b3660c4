"""Committed rows: export -> import -> report gives the database's tables byte for byte;
every committed `experiments/*/results/*.csv.gz` rebuilds its committed tables; a run
resumed from imported rows computes nothing; the README's claims table is current."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest

import experiments
from experiments import _summary
from experiments.__main__ import main
from jaxattr.runs import ResultStore, report, run
from jaxattr.runs.report import report_committed
from jaxattr.runs.rows import committed_files, export_rows, import_rows, read_committed
from tests.runs.common import Calls, comparable, make_examples, tiny_experiment

ROOT = Path(__file__).resolve().parents[2] / "experiments"
TABLES = ("table.md", "table.csv", "paired.md", "paired.csv")
COMMITTED = sorted(ROOT.glob("*/results/*.csv.gz"))


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """A tiny run (one image skipped as misclassified) exported as committed rows, with
    the tables rebuilt from them where the committed tables live."""
    tmp = tmp_path_factory.mktemp("committed")
    db = tmp / "run.sqlite"
    store = ResultStore(db, "tiny", {"c": 1})
    run(
        tiny_experiment(keep_maps=1),
        make_examples(5, wrong=(3,)),
        store,
        progress=False,
    )
    results = tmp / "results"
    files = export_rows(db, results)
    rows_file = next(p for p in files if p.name.endswith(".csv.gz"))
    report_committed([rows_file], results, reference="grad_x_input")
    return db, store, rows_file


def _rebuilt_equals_committed(rows_file: Path, reference, tmp_path: Path) -> None:
    """The tables rebuilt from `rows_file` equal those committed beside it."""
    meta, _ = read_committed(rows_file)
    report_committed([rows_file], tmp_path, reference=reference)
    name = f"{meta['experiment']}-{meta['config_hash']}"
    for table in TABLES:
        committed = rows_file.parent / name / table
        assert committed.is_file(), f"{committed} missing: run `--report` and commit it"
        assert (tmp_path / name / table).read_text() == committed.read_text(), (
            f"{committed} differs from the table rebuilt from {rows_file.name}"
        )


@pytest.mark.parametrize(
    "rows_file", [*COMMITTED, "fixture"], ids=[*(p.name for p in COMMITTED), "fixture"]
)
def test_committed_tables_rebuild_from_rows(rows_file, fixture_run, tmp_path):
    if rows_file == "fixture":
        _rebuilt_equals_committed(fixture_run[2], "grad_x_input", tmp_path)
        return
    paper = rows_file.parents[1].name
    exp = rows_file.name.rsplit("-", 1)[0]
    ref = _summary.reference_for(_summary.claims(paper)[1], exp)
    _rebuilt_equals_committed(rows_file, ref, tmp_path)


def test_rows_round_trip_and_tables_equal_the_databases(fixture_run, tmp_path):
    db, store, rows_file = fixture_run
    meta, rows = read_committed(rows_file)
    assert meta["experiment"] == "tiny" and meta["config_hash"] == store.config_hash
    assert meta["methods"] == ["grad_x_input", "noisy_saliency"]
    assert [s["image_id"] for s in meta["skipped"]] == ["img/03.png"]
    assert len(meta["sessions"]) == 1
    # Values, labels, seconds and extras read back exactly (curves are not exported).
    want = sorted(
        (r["image_id"], r["method"], r["metric"], r["value"], r["label"],
         r["predicted"], r["seconds"], r["extra"])
        for r in store.rows()
    )  # fmt: skip
    got = sorted(
        (r["image_id"], r["method"], r["metric"], r["value"], r["label"],
         r["predicted"], r["seconds"], r["extra"])
        for r in rows
    )  # fmt: skip
    assert got == want and len(rows) == 4 * 2 * 3
    # The database's report and the rows' report give the same tables, byte for byte.
    report(db, tmp_path / "db", reference="grad_x_input")
    folder = f"tiny-{store.config_hash}"
    for table in TABLES:
        assert (tmp_path / "db" / folder / table).read_bytes() == (
            rows_file.parent / folder / table
        ).read_bytes(), table
    # Deterministic: exporting again gives the same bytes, and the gzip is plain CSV.
    again = export_rows(db, tmp_path / "again")
    assert again[0].read_bytes() == rows_file.read_bytes()
    text = gzip.decompress(rows_file.read_bytes()).decode()
    assert text.startswith("image_id,method,metric,value,seconds,")


def test_import_resumes_without_recomputing(fixture_run, tmp_path):
    _, store, rows_file = fixture_run
    other = ResultStore(tmp_path / "elsewhere.sqlite", "tiny", {"c": 1})
    assert import_rows(other, rows_file) == 4 * 2  # images x methods
    assert import_rows(other, rows_file) == 0  # idempotent
    assert other.done() == store.done() and other.skipped() == store.skipped()
    calls = Calls()
    summary = run(
        tiny_experiment(), make_examples(5, wrong=(3,)), other, progress=False
    )
    assert calls.now() == {} and summary.computed == 0 and summary.reused == 8
    # One more image: only it is computed; re-export holds the old rows unchanged.
    run(tiny_experiment(), make_examples(6, wrong=(3,)), other, progress=False)
    old = {(r[0], r[1], r[2]): r for r in comparable(store.rows())}
    new = {(r[0], r[1], r[2]): r for r in comparable(other.rows())}
    assert len(new) == len(old) + 2 * 3 and all(new[k][3] == old[k][3] for k in old)
    re_export = export_rows(tmp_path / "elsewhere.sqlite", tmp_path / "re")
    meta, _ = read_committed(re_export[0])
    assert meta["sessions"] == read_committed(rows_file)[0]["sessions"]
    # A file of another config is refused.
    wrong = ResultStore(tmp_path / "w.sqlite", "tiny", {"c": 2})
    with pytest.raises(ValueError, match="expected rows of experiment 'tiny'"):
        import_rows(wrong, rows_file)


def test_cli_export_and_report_from_rows(tmp_path, monkeypatch, capsys):
    """`--export --hash` writes rows and tables under experiments/<paper>/results;
    `--report` alone rebuilds them from the rows (no database)."""
    monkeypatch.setattr(_summary, "ROOT", tmp_path / "experiments")
    db = tmp_path / "gnl.sqlite"
    store = ResultStore(db, "gnl.tiny", {"c": 3})
    run(tiny_experiment(), make_examples(3), store, progress=False)
    assert main(["gnl", "--report"]) == 2
    assert "no committed rows" in capsys.readouterr().err
    assert (
        main(["gnl", "--export", "--db", str(db), "--hash", store.config_hash[:8]]) == 0
    )
    results = tmp_path / "experiments" / "gnl" / "results"
    name = f"gnl.tiny-{store.config_hash}"
    assert committed_files(results) == [results / f"{name}.csv.gz"]
    committed = {t: (results / name / t).read_text() for t in TABLES}
    db.unlink()  # the report needs only the rows
    out = tmp_path / "rebuilt"
    assert main(["gnl", "--report", str(out)]) == 0
    assert {t: (out / name / t).read_text() for t in TABLES} == committed
    assert main(["gnl", "--export", "--db", str(tmp_path / "none.sqlite")]) == 2


def test_readme_claims_table_is_current():
    """`python -m experiments summary --write` was run after the last committed rows."""
    assert _summary.readme_block() == _summary.summary_markdown(), (
        "experiments/README.md: run `python -m experiments summary --write`"
    )
    for paper in experiments.PAPERS:
        claims, _ = _summary.claims(paper)
        assert claims, paper


def test_summary_verdicts_from_committed_rows(tmp_path, monkeypatch):
    """A claim whose methods are in a committed run gets a verdict with its n."""
    monkeypatch.setattr(_summary, "ROOT", tmp_path / "experiments")
    db = tmp_path / "g.sqlite"
    store = ResultStore(db, "gnl.tiny", {"model": "tiny", "data": "colours"})
    run(tiny_experiment(), make_examples(4), store, progress=False)
    # Rename the methods as GNL's (the tiny experiment's two methods stand in for them).
    con = sqlite3.connect(db)
    con.execute("UPDATE results SET method = 'ig' WHERE method = 'grad_x_input'")
    con.execute("UPDATE results SET method = 'gnl_ig' WHERE method = 'noisy_saliency'")
    con.commit()
    con.close()
    export_rows(db, tmp_path / "experiments" / "gnl" / "results")
    vs = _summary.verdicts("gnl")
    assert {v["metric"] for v in vs} == {"deletion", "insertion"}
    assert all(v["n"] == 4 and v["setting"] == "tiny, colours" for v in vs)
    assert all(v["outcome"] in ("reproduced", "reversed", "not reproduced") for v in vs)
    md = _summary.summary_markdown(["gnl"])
    assert f"`gnl.tiny-{store.config_hash}` (tiny, colours)" in md
    assert "no data yet" not in md
