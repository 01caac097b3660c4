"""Images per hour of each paper's comparison, with where the time goes.

    python benchmarks/throughput.py idg [--config default] [--data imagenet-sample]
        [--limit 3] [--db PATH]      # run LIMIT images into a fresh database, then report
    python benchmarks/throughput.py idg --from-db out/experiments/idg.sqlite [--jsonl]
                                     # report every run stored in a database

A run writes, per (image, method), the explanation's seconds and each metric's seconds
(`jaxattr.runs.run`). The first call of each method and metric in a process includes
its compilation; its excess over the median of the later calls is counted as compile
time. Steady-state seconds per image = the sum over methods of (median explanation +
median metrics); images per hour = 3600 / that (correctly classified images; a skipped
image costs one forward pass). Data time is the time to decode and crop the images,
measured separately on the same spec. Prints one JSON object per experiment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def breakdown(rows: list[dict]) -> dict:
    """Seconds per image by part, from a run's result rows (see the module docstring)."""
    import numpy as np

    explain: dict[str, list[float]] = {}  # method -> seconds per image, in run order
    metric: dict[str, list[float]] = {}  # method -> summed metric seconds per image
    seen: dict[tuple[str, str], float] = {}
    for r in rows:
        pair = (r["image_id"], r["method"])
        if pair not in seen:
            seen[pair] = 0.0
            explain.setdefault(r["method"], []).append(float(r["seconds"]))
            metric.setdefault(r["method"], []).append(0.0)
        metric[r["method"]][-1] += float(r["extra"].get("metric_seconds", 0.0))

    def steady(v: list[float]) -> float:
        return float(np.median(v[1:])) if len(v) > 1 else float(v[0])

    def compile_(v: list[float]) -> float:
        return max(v[0] - steady(v), 0.0) if len(v) > 1 else float("nan")

    per_method = {
        m: {
            "explain_s": round(steady(explain[m]), 3),
            "metrics_s": round(steady(metric[m]), 3),
            "compile_s": round(compile_(explain[m]) + compile_(metric[m]), 2),
            "images": len(explain[m]),
        }
        for m in explain
    }
    explain_s = sum(v["explain_s"] for v in per_method.values())
    metrics_s = sum(v["metrics_s"] for v in per_method.values())
    return {
        "images": max((len(v) for v in explain.values()), default=0),
        "seconds_per_image": round(explain_s + metrics_s, 2),
        "images_per_hour": round(3600 / (explain_s + metrics_s), 2)
        if explain_s + metrics_s
        else None,
        "methods_s": round(explain_s, 2),
        "metrics_s": round(metrics_s, 2),
        "compile_s": round(sum(v["compile_s"] for v in per_method.values()), 1),
        "per_method": per_method,
    }


def data_seconds(spec: str, size: int, resize: int | None, limit: int) -> float:
    """Seconds per image to decode and crop `limit` images of `spec`."""
    from jaxattr.runs import examples

    t = time.perf_counter()
    n = sum(1 for _ in examples(spec, size=size, resize=resize, limit=limit))
    return (time.perf_counter() - t) / max(n, 1)


def report(
    db: Path, paper: str, wall: float | None = None, one_line: bool = False
) -> None:
    """Print one JSON object per run (config hash) stored in `db`, indented or (with
    `one_line`) one per line."""
    import jax

    from jaxattr.runs import store

    for run in store.list_runs(db):
        rows = store.read_rows(db, run["config_hash"])
        if not rows:
            continue
        config = run["config"]
        out = {
            "paper": paper,
            "experiment": run["experiment"],
            "config_hash": run["config_hash"],
            "methods": list(dict.fromkeys(r["method"] for r in rows)),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus_visible": os.cpu_count(),
            "load_average_now": [round(v, 2) for v in os.getloadavg()],
            "versions": run["versions"],
            "jax": jax.__version__,
            "skipped_images": run["skipped"],
            "data_s_per_image": round(
                data_seconds(config["data"], config["size"], config["resize"], 3), 3
            ),
            **breakdown(rows),
        }
        if wall is not None:
            out["run_wall_s"] = round(wall, 1)
        print(json.dumps(out, indent=None if one_line else 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paper")
    p.add_argument("--config", default="default")
    p.add_argument("--data", default="imagenet-sample")
    p.add_argument("--limit", type=int, default=3)
    p.add_argument("--db", type=Path, default=None, help="database of the run")
    p.add_argument(
        "--from-db", type=Path, default=None, help="report every run in this database"
    )
    p.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    args = p.parse_args()
    if args.from_db is not None:
        report(args.from_db, args.paper, one_line=args.jsonl)
        return

    from experiments.__main__ import run_paper

    db = args.db or Path(tempfile.mkdtemp()) / f"{args.paper}.sqlite"
    t = time.perf_counter()
    run_paper(args.paper, args.config, data=args.data, limit=args.limit, db=db,
              report_dir=db.parent / "report", progress=False)  # fmt: skip
    report(db, args.paper, wall=time.perf_counter() - t, one_line=args.jsonl)


if __name__ == "__main__":
    main()
