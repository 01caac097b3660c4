"""Each paper's `debug` config runs end to end through `python -m experiments` (in
process, tmp database) and writes a table with one row per method.

The debug configs use a random ResNet-8 on 2 images of 32 x 32 pixels (about 2 minutes
for the whole file on 2 idle CPU cores). Their size is checked, not their run time:
speed is measured in benchmarks/, never in timed tests.
"""

from __future__ import annotations

import json
import math
import re

import pytest

pytest.importorskip("jaxattr.runs")

import experiments
from experiments.__main__ import main, resolve_config
from jaxattr.runs import Experiment

CELL = re.compile(r"^(\S+) ± (\S+) \(n=(\d+)\)$")


def _tables(report_dir):
    """experiment name -> (metric columns, {method: [cells]}) of every table.md."""
    out = {}
    for md in sorted(report_dir.rglob("table.md")):
        lines = []  # the first table only (the scores; a timing table may follow)
        for ln in md.read_text().splitlines():
            if ln.startswith("|"):
                lines.append(ln)
            elif lines:
                break
        header = [h.strip() for h in lines[0].strip("|").split("|")]
        rows = {}
        for ln in lines[2:]:
            cells = [c.strip() for c in ln.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        out[md.parent.name.rsplit("-", 1)[0]] = (header[1:], rows)
    return out


@pytest.mark.parametrize("paper", sorted(experiments.PAPERS))
def test_debug_config_runs_and_tabulates(paper, tmp_path, capsys):
    db, report_dir = tmp_path / "r.sqlite", tmp_path / "report"
    config, limit = resolve_config(paper, "debug")
    # The debug configs stay tiny by construction (speed lives in benchmarks/, not in
    # timed tests): at most 2 examples.
    assert limit is not None and limit <= 2, (paper, limit)
    rc = main([paper, "--config", "debug", "--db", str(db), "--report", str(report_dir),
               "--no-progress"])  # fmt: skip
    assert rc == 0

    built = experiments.load(paper).build(config)
    exps = [built] if isinstance(built, Experiment) else list(built)
    tables = _tables(report_dir)
    assert sorted(tables) == sorted(e.name for e in exps)
    for exp in exps:
        columns, rows = tables[exp.name]
        assert list(rows) == list(exp.methods), exp.name  # one row per method, in order
        assert columns == list(exp.metrics), exp.name
        for method, cells in rows.items():
            for column, cell in zip(columns, cells, strict=True):
                m = CELL.match(cell)
                assert m, f"{exp.name}/{method}/{column}: {cell!r}"
                assert math.isfinite(float(m.group(1))), (
                    exp.name,
                    method,
                    column,
                    cell,
                )
                assert int(m.group(3)) == limit, (exp.name, method, column, cell)


def test_list_and_bad_config(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for paper in experiments.PAPERS:
        assert paper in out
    with pytest.raises(ValueError, match="--config must be one of"):
        main(["ig", "--config", "nope"])


@pytest.mark.parametrize("paper", sorted(experiments.PAPERS))
def test_configs_are_plain_json(paper):
    import json

    configs = experiments.load(paper).CONFIGS
    assert {"default", "debug"} <= set(configs)
    for name, config in configs.items():
        assert json.loads(json.dumps(config)) == config, (paper, name)


def test_accelerator_script_runs_exports_and_packs_the_rows(tmp_path):
    """`experiments/accelerator.sh` on CPU with GNL's debug config, in a copy of the
    repository's `experiments/` and `benchmarks/` (its export writes there): the run
    finishes inside its time, and the tarball holds the run's rows, which read back."""
    import gzip
    import os
    import shutil
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    root = Path(experiments.__file__).resolve().parents[1]
    results = root / "experiments" / "gnl" / "results"
    repo = tmp_path / "repo"
    for folder in ("experiments", "benchmarks"):
        shutil.copytree(root / folder, repo / folder)
    out = tmp_path / "out"
    env = {**os.environ, "PAPERS": "gnl", "CONFIG": "debug", "DATA": "default"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", str(repo / "experiments" / "accelerator.sh"), str(out), "600"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "devices:" in (out / "devices.txt").read_text()
    with tarfile.open(out / "rows.tar.gz") as tar:
        names = tar.getnames()
        assert all(n.startswith("experiments/gnl/results") for n in names)
        committed = {f"experiments/gnl/results/{p.name}" for p in results.iterdir()}
        (new,) = [n for n in names if n.endswith(".csv.gz") and n not in committed]
        rows = gzip.decompress(tar.extractfile(new).read()).decode().splitlines()
    config, limit = resolve_config("gnl", "debug")
    built = experiments.load("gnl").build(config)
    exps = [built] if isinstance(built, Experiment) else list(built)
    pairs = sum(len(e.methods) * len(e.metrics) for e in exps)
    assert len(rows) == 1 + pairs * limit  # header + image x method x metric
    report = [
        json.loads(ln) for ln in (out / "throughput.jsonl").read_text().splitlines()
    ]
    assert [r["paper"] for r in report] == ["gnl"]
    assert report[0]["images"] == limit and report[0]["images_per_hour"] > 0
