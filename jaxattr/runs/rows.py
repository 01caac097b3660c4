"""Committed result rows: one run's rows as a deterministic gzip CSV and a JSON beside it.

``<experiment>-<config_hash>.csv.gz``: one line per ``(image, method, metric)``, columns
:data:`COLUMNS`, sorted by method, metric (both in the order the run first wrote them) and
image id; floats as ``repr`` (they read back bit-identical), NaN as ``nan``, ``None`` as an
empty cell, ``extra`` as canonical JSON, ``session`` a key of the JSON's ``sessions``. No
curves and no heat maps (a curve of 225 points per row would make the file 50x larger).
The gzip header holds no time or name, so the same rows give the same bytes.

``<experiment>-<config_hash>.json``: ``experiment``, ``config_hash``, ``config``,
``methods`` and ``metrics`` (in order), ``sessions`` (key -> the versions that computed
rows: software and device) and ``skipped`` (images not evaluated, with the reason).

:func:`export_rows` writes them from a database, :func:`import_rows` adds them to a
:class:`ResultStore` (finished pairs are then skipped by ``run``), :func:`read_committed`
reads them (for ``report_committed``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from pathlib import Path

from jaxattr.runs.store import (
    ResultStore,
    _open_ro,
    canonical_json,
    list_runs,
    read_rows,
    read_sessions,
    session_key,
)

COLUMNS = ("image_id", "method", "metric", "value", "seconds", "label", "predicted",
           "session", "extra")  # fmt: skip
SUFFIX = ".csv.gz"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def _opt(text: str, kind):
    return None if text == "" else kind(text)


def _order(names) -> dict[str, int]:
    return {n: i for i, n in enumerate(dict.fromkeys(names))}


def _csv_bytes(rows: list[dict]) -> bytes:
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([
            r["image_id"], r["method"], r["metric"], _cell(r["value"]),
            _cell(r["seconds"]), _cell(r["label"]), _cell(r["predicted"]),
            _cell(r["session"]), canonical_json(r["extra"] or {}, "extra"),
        ])  # fmt: skip
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.getvalue().encode("utf-8"))
    return raw.getvalue()


def export_rows(
    db_path, folder, *, experiment: str | None = None, config_hash: str | None = None
) -> list[Path]:
    """Write ``<experiment>-<hash>.csv.gz`` and ``.json`` into ``folder`` for every run of
    ``db_path`` matching ``experiment`` (exact name) and ``config_hash`` (a prefix);
    returns the paths. Runs without rows are left out."""
    runs = [
        r for r in list_runs(db_path)
        if r["rows"] and (experiment is None or r["experiment"] == experiment)
        and (config_hash is None or r["config_hash"].startswith(config_hash))
    ]  # fmt: skip
    if not runs:
        raise ValueError(
            f"experiment={experiment!r}, config_hash={config_hash!r}: no run with rows "
            f"in {str(db_path)!r}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    conn = _open_ro(db_path)
    try:
        for run in runs:
            h = run["config_hash"]
            rows = read_rows(conn, h)
            by_id = read_sessions(conn, h)
            keys = {i: session_key(v) for i, v in by_id.items()}
            sessions = {keys[i]: v for i, v in by_id.items()}
            methods = _order(r["method"] for r in rows)
            metrics = _order(r["metric"] for r in rows)
            rows = [{**r, "session": keys.get(r["session"])} for r in rows]
            rows.sort(
                key=lambda r: (
                    methods[r["method"]],
                    metrics[r["metric"]],
                    r["image_id"],
                )
            )
            used = {r["session"] for r in rows} - {None}
            skipped = []
            for s in conn.execute(
                "SELECT image_id, reason, label, predicted FROM skipped "
                "WHERE config_hash = ? ORDER BY image_id", (h,),
            ):  # fmt: skip
                skipped.append(
                    dict(zip(("image_id", "reason", "label", "predicted"), s))
                )
            meta = {
                "experiment": run["experiment"], "config_hash": h, "config": run["config"],
                "methods": list(methods), "metrics": list(metrics),
                "sessions": {k: sessions[k] for k in sorted(used)}, "skipped": skipped,
            }  # fmt: skip
            stem = folder / f"{run['experiment']}-{h}"
            csv_path = stem.with_name(stem.name + SUFFIX)
            json_path = stem.with_name(stem.name + ".json")
            csv_path.write_bytes(_csv_bytes(rows))
            json_path.write_text(
                json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8"
            )
            written += [csv_path, json_path]
    finally:
        conn.close()
    return written


def _meta_path(path: Path) -> Path:
    if not path.name.endswith(SUFFIX):
        raise ValueError(
            f"path: expected a '<experiment>-<hash>{SUFFIX}' file, got {str(path)!r}"
        )
    return path.with_name(path.name[: -len(SUFFIX)] + ".json")


def read_committed(path) -> tuple[dict, list[dict]]:
    """``(meta, rows)`` of a committed ``.csv.gz`` (its ``.json`` beside it). Rows have
    the store's keys: ``value`` a float (NaN kept), ``seconds``/``label``/``predicted``
    ``None`` when empty, ``extra`` a dict, ``curve`` ``None``, ``session`` a key of
    ``meta["sessions"]``."""
    path = Path(path)
    meta_path = _meta_path(path)
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(
            f"path: expected {str(path)!r} and {str(meta_path)!r}; missing "
            f"{[str(p) for p in (path, meta_path) if not p.is_file()]}"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    missing = {"experiment", "config_hash", "config", "sessions", "skipped"} - set(meta)
    if missing:
        raise ValueError(f"{str(meta_path)!r}: missing keys {sorted(missing)}")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader))
        if header != COLUMNS:
            raise ValueError(f"{str(path)!r}: expected columns {COLUMNS}, got {header}")
        rows = [
            {"config_hash": meta["config_hash"], "image_id": i, "method": m, "metric": k,
             "value": float(v), "seconds": _opt(s, float), "label": _opt(lab, int),
             "predicted": _opt(p, int), "session": _opt(ses, str),
             "extra": json.loads(e) if e else {}, "curve": None}
            for i, m, k, v, s, lab, p, ses, e in reader
        ]  # fmt: skip
    return meta, rows


def committed_files(folder) -> list[Path]:
    """The ``*.csv.gz`` row files of ``folder`` (none if it does not exist), sorted."""
    folder = Path(folder)
    return sorted(folder.glob("*" + SUFFIX)) if folder.is_dir() else []


def import_rows(store: ResultStore, path) -> int:
    """Add the committed rows of ``path`` to ``store`` for the pairs it has not done, and
    its skipped images; returns the pairs added. The file's experiment and config hash
    must be the store's."""
    meta, rows = read_committed(path)
    mine = (store.experiment, store.config_hash)
    if (meta["experiment"], meta["config_hash"]) != mine:
        raise ValueError(
            f"path: expected rows of experiment {mine[0]!r}, config {mine[1]!r}; "
            f"{str(path)!r} holds {meta['experiment']!r}, {meta['config_hash']!r}"
        )
    return store.merge(rows, sessions=meta["sessions"], skipped=meta["skipped"])
