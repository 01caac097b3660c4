"""`python -m experiments <paper> [--config NAME] [--data SPEC] [--limit N] [--db PATH]
[--seed S] [--report DIR]` runs one paper's comparison and writes its tables;
`python -m experiments list` lists the papers and their configs.

Runs resume: rows already in the database (same experiment and config hash) are kept
and skipped. `--limit` is not part of the config hash, so a longer run extends a shorter
one. Default outputs: `out/experiments/<paper>.sqlite` and `out/experiments/<paper>/` (`out/` is git-ignored).
Before running, the committed rows of the same config hash
(`experiments/<paper>/results/<experiment>-<hash>.csv.gz`) are imported into the database
(unless `--no-import`), so a run continues on any machine where the last one stopped.

Committed rows and their tables:
* `python -m experiments <paper> --export [--config NAME] [--data SPEC] [--seed S] [--db
  PATH] [--hash PREFIX]`: the database's rows of that config (or config hash) ->
  `experiments/<paper>/results/<experiment>-<hash>.csv.gz` and `.json`, and their tables
  -> `experiments/<paper>/results/<experiment>-<hash>/`. Never runs anything.
* `python -m experiments <paper> --report [DIR]` (no other option): the tables of every
  committed row file of `paper`, from the rows alone (no database, no model), into DIR
  (default `experiments/<paper>/results`).
* `python -m experiments summary [--write]`: every paper's claims against its committed
  rows (`experiments/<paper>/claims.py`); `--write` puts the table into
  `experiments/README.md`.
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
from experiments import _summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce one paper's comparison (see experiments/<paper>/README.md).",
    )
    p.add_argument("paper", choices=[*experiments.PAPERS, "list", "summary"])
    p.add_argument(
        "--config", default=None, help="a key of the paper's CONFIGS (default: default)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="default | folder:PATH | tfds:NAME[:SPLIT] | imagenet-sample | cifar10-test"
        " (default: the config's)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N images")
    p.add_argument("--db", type=Path, default=None, help="SQLite file of the results")
    p.add_argument("--seed", type=int, default=None, help="(default: 0)")
    p.add_argument(
        "--report",
        type=Path,
        nargs="?",
        const=_COMMITTED,
        default=None,
        help="folder of the tables; alone (no run option): the tables of the committed"
        " rows, in DIR or experiments/<paper>/results",
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="write the database's rows of the config to experiments/<paper>/results"
        " (no run)",
    )
    p.add_argument(
        "--hash", default=None, help="with --export: this config hash (prefix)"
    )
    p.add_argument(
        "--no-import",
        action="store_true",
        help="do not import the committed rows of the config before running",
    )
    p.add_argument("--write", action="store_true", help="summary: update the README")
    p.add_argument("--no-progress", action="store_true")
    return p


_COMMITTED = Path("<committed>")  # `--report` without a folder


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
    import_committed: bool = True,
) -> dict[str, list[Path]]:
    """Run every experiment that `paper`'s `build` returns; returns the report files
    per experiment name. With `import_committed`, the committed rows of each
    experiment's config hash are first added to the database (pairs not done there)."""
    from jaxattr.runs import Experiment, ResultStore, examples, report, run
    from jaxattr.runs.rows import SUFFIX, import_rows

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
        committed = (
            _summary.results_dir(paper) / f"{exp.name}-{store.config_hash}{SUFFIX}"
        )
        if import_committed and committed.is_file():
            added = import_rows(store, committed)
            print(
                f"{exp.name}: {added} pairs imported from {committed}", file=sys.stderr
            )
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
        ref = _summary.reference_for(_summary.claims(paper)[1], exp.name)
        out[exp.name] = report(db, report_dir, experiment=exp.name, reference=ref, **kw)
        print(
            f"{exp.name}: {time.perf_counter() - t0:.1f} s; tables in {report_dir}",
            file=sys.stderr,
        )
    return out


def export_paper(
    paper: str,
    config_name: str = "default",
    *,
    data: str | None = None,
    seed: int = 0,
    db: Path | str | None = None,
    config_hash: str | None = None,
) -> list[Path]:
    """Export the rows of `paper`'s runs in `db` whose stored config is `config_name`'s
    (with `data` and `seed`), or whose hash starts with `config_hash`, to
    `experiments/<paper>/results/`, and write their tables there; returns the paths."""
    from jaxattr.runs import list_runs
    from jaxattr.runs.rows import SUFFIX, export_rows
    from jaxattr.runs.store import canonical_json

    db = Path(db) if db is not None else Path("out") / "experiments" / f"{paper}.sqlite"
    config, _ = resolve_config(paper, config_name, data=data)
    wanted = canonical_json({**config, "seed": seed})
    runs = [
        r for r in list_runs(db)
        if (r["experiment"] == paper or r["experiment"].startswith(paper + "."))
        and r["rows"]
        and (r["config_hash"].startswith(config_hash) if config_hash
             else canonical_json(r["config"]) == wanted)
    ]  # fmt: skip
    if not runs:
        raise ValueError(
            f"--export: no run of {paper} with rows in {str(db)!r} for "
            + (
                f"--hash {config_hash!r}"
                if config_hash
                else f"--config {config_name!r}"
            )
            + "; `python -m jaxattr.runs list --db DB` lists the runs"
        )
    folder = _summary.results_dir(paper)
    written: list[Path] = []
    for r in runs:
        written += export_rows(
            db, folder, experiment=r["experiment"], config_hash=r["config_hash"]
        )
    rows = [p for p in written if p.name.endswith(SUFFIX)]
    return written + report_paper(paper, rows=rows)


def report_paper(
    paper: str, out_dir: Path | str | None = None, *, rows: Sequence[Path] | None = None
) -> list[Path]:
    """The tables of `paper`'s committed rows (every `results/*.csv.gz`, or `rows`) in
    `out_dir` (default `experiments/<paper>/results`), from the rows alone."""
    from jaxattr.runs.report import report_committed
    from jaxattr.runs.rows import committed_files

    folder = _summary.results_dir(paper)
    files = committed_files(folder) if rows is None else list(rows)
    if not files:
        raise ValueError(
            f"--report: no committed rows in {folder}; run the paper and "
            f"`python -m experiments {paper} --export` first"
        )
    refs = _summary.claims(paper)[1]
    out: list[Path] = []
    for f in files:
        exp = f.name.rsplit("-", 1)[0]
        out += report_committed(
            [f], out_dir or folder, reference=_summary.reference_for(refs, exp)
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
    config, seed = args.config or "default", args.seed or 0
    run_options = (args.config, args.data, args.limit, args.db, args.seed)
    report_only = args.report is not None and all(o is None for o in run_options)
    if args.paper == "summary" or args.export or report_only:
        try:
            for line in _without_run(args, config, seed):
                print(line)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    run_paper(
        args.paper,
        config,
        data=args.data,
        limit=args.limit,
        db=args.db,
        seed=seed,
        report_dir=None if args.report == _COMMITTED else args.report,
        progress=not args.no_progress,
        import_committed=not args.no_import,
    )
    return 0


def _without_run(args: argparse.Namespace, config: str, seed: int) -> list:
    """`summary`, `--export` or `--report` from committed rows: the lines to print."""
    if args.paper == "summary":
        text = _summary.summary_markdown()
        if not args.write:
            return [text.rstrip("\n")]
        changed = _summary.update_readme(text)
        return [f"experiments/README.md {'updated' if changed else 'unchanged'}"]
    if args.export:
        return export_paper(args.paper, config, data=args.data, seed=seed, db=args.db,
                            config_hash=args.hash)  # fmt: skip
    return report_paper(args.paper, None if args.report == _COMMITTED else args.report)


if __name__ == "__main__":
    sys.exit(main())
