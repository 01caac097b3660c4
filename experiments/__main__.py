"""`python -m experiments <paper> [--config NAME] [--data SPEC] [--limit N] [--db PATH]
[--seed S] [--report DIR]` runs one paper's comparison and writes its tables;
`python -m experiments list` lists the papers and their configs.

Runs resume: rows already in the database (same experiment and config hash) are kept
and skipped. `--limit` is not part of the config hash, so a longer run extends a shorter
one. Default outputs: `out/experiments/<paper>.sqlite` and `out/experiments/<paper>/` (`out/` is git-ignored).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import experiments


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce one paper's comparison (see experiments/<paper>/README.md).",
    )
    p.add_argument("paper", choices=[*experiments.PAPERS, "list"])
    p.add_argument("--config", default="default", help="a key of the paper's CONFIGS")
    p.add_argument(
        "--data",
        default=None,
        help="default | folder:PATH | tfds:NAME[:SPLIT] | imagenet-sample | cifar10-test"
        " (default: the config's)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N images")
    p.add_argument("--db", type=Path, default=None, help="SQLite file of the results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", type=Path, default=None, help="folder of the tables")
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve_config(
    paper: str, name: str, *, data: str | None = None
) -> tuple[dict[str, Any], int | None]:
    """The config `name` of `paper` (a deep copy, `data` overridden) and its image limit.

    The limit is popped from the config so that it does not enter the config hash.
    """
    configs = experiments.load(paper).CONFIGS
    if name not in configs:
        raise ValueError(
            f"--config must be one of {sorted(configs)} for {paper}; got {name!r}"
        )
    config = copy.deepcopy(dict(configs[name]))
    limit = config.pop("limit", None)
    if data is not None:
        config["data"] = data
    return config, limit


def run_paper(
    paper: str,
    config_name: str = "default",
    *,
    data: str | None = None,
    limit: int | None = None,
    db: Path | str | None = None,
    seed: int = 0,
    report_dir: Path | str | None = None,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Run every experiment that `paper`'s `build` returns; returns the report files
    per experiment name."""
    from jaxattr.runs import Experiment, ResultStore, examples, report, run

    config, config_limit = resolve_config(paper, config_name, data=data)
    limit = limit if limit is not None else config_limit
    db = Path(db) if db is not None else Path("out") / "experiments" / f"{paper}.sqlite"
    report_dir = (
        Path(report_dir)
        if report_dir is not None
        else Path("out") / "experiments" / paper
    )
    db.parent.mkdir(parents=True, exist_ok=True)
    built = experiments.load(paper).build(config)
    exps = [built] if isinstance(built, Experiment) else list(built)
    stored = {**config, "seed": seed}
    out: dict[str, list[Path]] = {}
    for exp in exps:
        t0 = time.perf_counter()
        store = ResultStore(db, exp.name, stored)
        data_iter = examples(
            config["data"],
            size=config["size"],
            resize=config["resize"],
            limit=limit,
            seed=seed,
        )
        run(exp, data_iter, store, seed=seed, progress=progress)
        kw = {}
        if getattr(store, "config_hash", None) is not None:
            kw["config_hash"] = store.config_hash
        out[exp.name] = report(db, report_dir, experiment=exp.name, **kw)
        print(
            f"{exp.name}: {time.perf_counter() - t0:.1f} s; tables in {report_dir}",
            file=sys.stderr,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.paper == "list":
        for name, text in experiments.PAPERS.items():
            configs = experiments.load(name).CONFIGS
            print(f"{name:14s} {text}\n{'':14s} configs: {', '.join(configs)}")
        return 0
    run_paper(
        args.paper,
        args.config,
        data=args.data,
        limit=args.limit,
        db=args.db,
        seed=args.seed,
        report_dir=args.report,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
