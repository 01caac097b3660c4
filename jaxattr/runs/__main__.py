"""``python -m jaxattr.runs list --db PATH`` and ``python -m jaxattr.runs report --db PATH --out DIR``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxattr.runs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser(
        "list", help="list the runs (experiment, config hash, counts) in a database"
    )
    p_list.add_argument("--db", required=True, help="SQLite results database")
    p_list.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    p_rep = sub.add_parser(
        "report", help="write tables (Markdown, CSV) and plots from a database"
    )
    p_rep.add_argument("--db", required=True, help="SQLite results database")
    p_rep.add_argument("--out", required=True, help="output folder")
    p_rep.add_argument("--experiment", default=None, help="only this experiment")
    p_rep.add_argument(
        "--config",
        dest="config_hash",
        default=None,
        help="only this config hash (prefix)",
    )
    args = parser.parse_args(argv)

    from jaxattr.runs.store import list_runs

    try:
        if args.command == "list":
            runs = list_runs(args.db)
            if args.json:
                print(json.dumps(runs, indent=2))
                return 0
            print(
                f"{'experiment':<16} {'config_hash':<17} {'images':>6} {'pairs':>6} {'rows':>7} {'skipped':>7}  created / config"
            )
            for r in runs:
                print(f"{r['experiment']:<16} {r['config_hash']:<17} {r['images']:>6} {r['pairs']:>6} "
                      f"{r['rows']:>7} {r['skipped']:>7}  {r['created']} {json.dumps(r['config'], sort_keys=True)}")  # fmt: skip
            return 0
        from jaxattr.runs.report import report

        for path in report(
            args.db, args.out, experiment=args.experiment, config_hash=args.config_hash
        ):
            print(path)
        return 0
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
