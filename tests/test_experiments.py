"""Each paper's `debug` config runs end to end through `python -m experiments` (in
process, tmp database) and writes a table with one row per method.

The debug configs use a random ResNet-8 on 2 images of 32 x 32 pixels (about 2 minutes
for the whole file on 2 idle CPU cores). Their size is checked, not their run time:
speed is measured in benchmarks/, never in timed tests.
"""

from __future__ import annotations

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
