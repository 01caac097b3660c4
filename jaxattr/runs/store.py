"""Results in SQLite: one row per (config, image, method, metric), written atomically.

Tables: ``runs`` (one per config hash: experiment, config JSON, versions, created),
``sessions`` (one per opening of a store: versions and time, so a resumed run's rows say
which software produced them), ``results`` (``UNIQUE(config_hash, image_id, method,
metric)``), ``pairs`` (finished ``(image, method)`` pairs), ``skipped`` and ``maps``
(``[H, W]`` heat maps and ``[H, W, 3]`` uint8 images for grids). Arrays are stored as
``.npy`` bytes, so dtype and shape round-trip exactly. NaN values are stored as NULL and
read back as NaN.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import platform
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  config_hash TEXT PRIMARY KEY, experiment TEXT NOT NULL, config TEXT NOT NULL,
  versions TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, config_hash TEXT NOT NULL,
  versions TEXT NOT NULL, started TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
  config_hash TEXT NOT NULL, image_id TEXT NOT NULL, method TEXT NOT NULL,
  metric TEXT NOT NULL, value REAL, curve BLOB, label INTEGER, predicted INTEGER,
  seconds REAL, extra TEXT, session INTEGER, created TEXT NOT NULL,
  UNIQUE (config_hash, image_id, method, metric));
CREATE TABLE IF NOT EXISTS pairs (
  config_hash TEXT NOT NULL, image_id TEXT NOT NULL, method TEXT NOT NULL,
  PRIMARY KEY (config_hash, image_id, method));
CREATE TABLE IF NOT EXISTS skipped (
  config_hash TEXT NOT NULL, image_id TEXT NOT NULL, reason TEXT NOT NULL,
  label INTEGER, predicted INTEGER, PRIMARY KEY (config_hash, image_id));
CREATE TABLE IF NOT EXISTS maps (
  config_hash TEXT NOT NULL, image_id TEXT NOT NULL, method TEXT NOT NULL,
  heat BLOB NOT NULL, PRIMARY KEY (config_hash, image_id, method));
"""
_ROW_KEYS = ("metric", "value", "curve", "label", "predicted", "seconds", "extra")
IMAGE = "__image__"  # the ``method`` under which put_image stores the image itself


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _jsonable(obj, where: str):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"{where}: expected JSON-able values (str, number, bool, None, list, dict), "
        f"got {type(obj).__name__}"
    )


def canonical_json(obj, where: str = "config") -> str:
    """Sorted-key, compact JSON of ``obj`` (tuples become lists, NumPy scalars numbers)."""
    return json.dumps(_jsonable(obj, where), sort_keys=True, separators=(",", ":"))


def config_hash(experiment: str, config: Mapping) -> str:
    """First 16 hex digits of sha256 of the canonical JSON of ``[experiment, config]``."""
    text = "[" + json.dumps(str(experiment)) + "," + canonical_json(config) + "]"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    """The commit of the jaxattr checkout in use (``+dirty`` with uncommitted changes to
    tracked files), or None when jaxattr is not run from a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:

        def git(*args):
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True,
                timeout=10, check=True,
            ).stdout.strip()  # fmt: skip

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions() -> dict:
    """Versions of the software and the JAX device that produce results: package
    versions, the jaxattr git commit (when run from a checkout), the CPU count and
    whether the CPU convolution rewrite applies to what is traced now
    (``jaxattr.fast_convolutions.fast_convolutions_enabled()``: the
    ``use_fast_convolutions`` context, else ``JAXATTR_FAST_CONVOLUTIONS``, on by
    default; off on a backend other than CPU)."""
    import os

    import flax
    import jax
    import jaxlib

    import jaxattr
    from jaxattr.fast_convolutions import fast_convolutions_enabled

    try:
        device = jax.devices()[0].device_kind
    except RuntimeError as err:  # pragma: no cover - no backend at all
        device = f"unavailable: {err}"
    return {
        "jaxattr": getattr(jaxattr, "__version__", "unknown"),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "cpus": os.cpu_count(),
        "fast_convolutions": fast_convolutions_enabled(),
        "git_commit": _git_commit(),
    }


def _to_blob(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _from_blob(blob) -> np.ndarray | None:
    return None if blob is None else np.load(io.BytesIO(blob), allow_pickle=False)


def _connect(path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    conn.executescript(_SCHEMA)
    return conn


def _float(v) -> float | None:
    f = float(v)
    return None if math.isnan(f) else f


def _opt_int(v, where: str) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: expected an int or None, got {v!r}") from None


class ResultStore:
    """A SQLite results database seen through one ``(experiment, config)``.

    ``path``: database file (created with its folder if missing). ``config``: a JSON-able
    mapping of everything that changes results; its hash keeps runs apart.
    """

    def __init__(self, path, experiment: str, config: Mapping):
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(
                f"experiment: expected a non-empty string, got {experiment!r}"
            )
        if not isinstance(config, Mapping):
            raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.experiment = experiment
        self.config = json.loads(canonical_json(config))
        self.config_hash = config_hash(experiment, config)
        self.versions = versions()
        self._conn = _connect(self.path)
        vjson = canonical_json(self.versions, "versions")
        with self._transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?)",
                (self.config_hash, experiment, canonical_json(config), vjson, _now()),
            )
            cur = c.execute(
                "INSERT INTO sessions (config_hash, versions, started) VALUES (?, ?, ?)",
                (self.config_hash, vjson, _now()),
            )
            self.session = cur.lastrowid

    # ------------------------------------------------------------------ plumbing
    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, kind, value, tb):
            if kind is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
            return False

    def _transaction(self):
        return self._Tx(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ writing
    def _check_rows(self, image_id, method, rows) -> list[tuple]:
        if not isinstance(image_id, str) or not isinstance(method, str):
            raise TypeError(
                f"image_id, method: expected strings, got {image_id!r}, {method!r}"
            )
        out, seen = [], set()
        for i, row in enumerate(rows):
            where = f"rows[{i}] of ({image_id!r}, {method!r})"
            if (
                not isinstance(row, Mapping)
                or "metric" not in row
                or "value" not in row
            ):
                raise ValueError(
                    f"{where}: expected a dict with at least 'metric' and 'value', got {row!r}"
                )
            unknown = set(row) - set(_ROW_KEYS)
            if unknown:
                raise ValueError(
                    f"{where}: unknown keys {sorted(unknown)}; expected some of {list(_ROW_KEYS)}"
                )
            metric = row["metric"]
            if metric in seen:
                raise ValueError(f"{where}: metric {metric!r} appears twice")
            seen.add(metric)
            curve = row.get("curve")
            if curve is not None and np.ndim(curve) != 1:
                raise ValueError(
                    f"{where}: curve: expected a 1-D array or None, got shape {np.shape(curve)}"
                )
            out.append((
                self.config_hash, image_id, method, str(metric), _float(row["value"]),
                None if curve is None else _to_blob(curve),
                _opt_int(row.get("label"), f"{where} label"),
                _opt_int(row.get("predicted"), f"{where} predicted"),
                None if row.get("seconds") is None else float(row["seconds"]),
                canonical_json(row.get("extra") or {}, f"{where} extra"),
                self.session, _now(),
            ))  # fmt: skip
        return out

    def add(
        self, image_id: str, method: str, rows: Sequence[Mapping], *, heat=None
    ) -> None:
        """Write all metric rows of one ``(image, method)`` in ONE transaction, and mark
        the pair done. Either everything lands or nothing does; writing a pair that is
        already done raises ``sqlite3.IntegrityError`` (and writes nothing).

        ``rows``: dicts with ``metric``, ``value`` and optionally ``curve`` (1-D), ``label``,
        ``predicted``, ``seconds``, ``extra`` (JSON-able dict). ``heat``: optional ``[H, W]``
        map stored with the pair (same transaction).
        """
        values = self._check_rows(image_id, method, rows)
        heat_blob = None if heat is None else self._heat_blob(heat, "heat")
        with self._transaction() as c:
            c.execute(
                "INSERT INTO pairs VALUES (?, ?, ?)",
                (self.config_hash, image_id, method),
            )
            for v in values:
                c.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", v)
            if heat_blob is not None:
                c.execute(
                    "INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?)",
                    (self.config_hash, image_id, method, heat_blob),
                )

    def skip(self, image_id: str, reason: str, label, predicted) -> None:
        """Record that ``image_id`` is not evaluated (e.g. misclassified), so a resume skips it."""
        with self._transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)",
                (self.config_hash, image_id, str(reason), _opt_int(label, "label"),
                 _opt_int(predicted, "predicted")),
            )  # fmt: skip

    @staticmethod
    def _heat_blob(heat, name) -> bytes:
        heat = np.asarray(heat, np.float32)
        if heat.ndim != 2:
            raise ValueError(f"{name}: expected an [H, W] map, got shape {heat.shape}")
        return _to_blob(heat)

    def put_map(self, image_id: str, method: str, heat) -> None:
        """Store an ``[H, W]`` float32 heat map for ``(image_id, method)`` (replaces)."""
        blob = self._heat_blob(heat, "heat")
        with self._transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?)",
                (self.config_hash, image_id, method, blob),
            )

    def put_image(self, image_id: str, image) -> None:
        """Store the ``[H, W, 3]`` image in [0, 1] (as uint8) for grids."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image: expected [H, W, 3], got shape {image.shape}")
        u8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        with self._transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?)",
                (self.config_hash, image_id, IMAGE, _to_blob(u8)),
            )

    def merge(
        self,
        rows: Sequence[Mapping],
        *,
        sessions: Mapping[str, Mapping] | None = None,
        skipped: Sequence[Mapping] = (),
    ) -> int:
        """Add rows finished elsewhere (e.g. committed rows) for every ``(image, method)``
        pair not done here, in ONE transaction; returns the number of pairs added.

        ``rows``: dicts with ``image_id, method, metric, value`` and optionally ``label,
        predicted, seconds, extra, curve`` and ``session`` (a key of ``sessions``, whose
        value is the versions that computed the row: each becomes a session of this
        database). ``skipped``: dicts with ``image_id, reason, label, predicted``, added
        when missing. Pairs already done here keep their rows.
        """
        done = self.done()
        by_pair: dict[tuple[str, str], list[Mapping]] = {}
        for r in rows:
            pair = (r["image_id"], r["method"])
            if pair not in done:
                by_pair.setdefault(pair, []).append(r)
        sessions = dict(sessions or {})
        known = self.skipped()
        with self._transaction() as c:
            ids: dict[str, int] = {}
            for key in sorted(
                {r.get("session") for g in by_pair.values() for r in g} - {None}
            ):
                if key not in sessions:
                    raise ValueError(
                        f"rows: session {key!r} is not a key of sessions {sorted(sessions)}"
                    )
                cur = c.execute(
                    "INSERT INTO sessions (config_hash, versions, started) VALUES (?, ?, ?)",
                    (
                        self.config_hash,
                        canonical_json(sessions[key], "versions"),
                        _now(),
                    ),
                )
                ids[key] = cur.lastrowid
            for (image_id, method), group in by_pair.items():
                values = self._check_rows(
                    image_id, method, [{k: r.get(k) for k in _ROW_KEYS} for r in group]
                )
                c.execute(
                    "INSERT INTO pairs VALUES (?, ?, ?)",
                    (self.config_hash, image_id, method),
                )
                for v, r in zip(values, group, strict=True):
                    v = (*v[:10], ids.get(r.get("session")), v[11])
                    c.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", v)
            for s in skipped:
                if s["image_id"] not in known:
                    c.execute(
                        "INSERT INTO skipped VALUES (?, ?, ?, ?, ?)",
                        (self.config_hash, s["image_id"], str(s["reason"]),
                         _opt_int(s.get("label"), "label"),
                         _opt_int(s.get("predicted"), "predicted")),
                    )  # fmt: skip
        return len(by_pair)

    # ------------------------------------------------------------------ reading
    def done(self) -> set[tuple[str, str]]:
        """``(image_id, method)`` pairs finished for this config."""
        cur = self._conn.execute(
            "SELECT image_id, method FROM pairs WHERE config_hash = ?",
            (self.config_hash,),
        )
        return {(i, m) for i, m in cur}

    def skipped(self) -> set[str]:
        """Image ids recorded as skipped for this config."""
        cur = self._conn.execute(
            "SELECT image_id FROM skipped WHERE config_hash = ?", (self.config_hash,)
        )
        return {i for (i,) in cur}

    def skipped_rows(self) -> list[dict]:
        """Skipped images with their reason, label and prediction."""
        cur = self._conn.execute(
            "SELECT image_id, reason, label, predicted FROM skipped WHERE config_hash = ? "
            "ORDER BY image_id", (self.config_hash,),
        )  # fmt: skip
        return [dict(zip(("image_id", "reason", "label", "predicted"), r)) for r in cur]

    def get_map(self, image_id: str, method: str) -> np.ndarray | None:
        """The stored ``[H, W]`` map (or the uint8 image for ``method=IMAGE``), or ``None``."""
        return read_map(self._conn, self.config_hash, image_id, method)

    def get_image(self, image_id: str) -> np.ndarray | None:
        """The stored image as float32 ``[H, W, 3]`` in [0, 1], or ``None``."""
        return read_image(self._conn, self.config_hash, image_id)

    def maps(self) -> dict[str, dict[str, np.ndarray]]:
        """image_id -> method -> ``[H, W]`` map, images in the order they were stored."""
        return read_maps(self._conn, self.config_hash)

    def rows(self, *, config_hash: str | None = None) -> list[dict]:
        """Result rows (default: this config), ordered by insertion. ``curve`` is an array or
        ``None``, ``extra`` a dict, ``value`` a float (NaN for stored NULL)."""
        return read_rows(self._conn, config_hash or self.config_hash)


_COLS = ("config_hash", "image_id", "method", "metric", "value", "curve", "label",
         "predicted", "seconds", "extra", "session", "created")  # fmt: skip


def read_rows(conn_or_path, config_hash: str) -> list[dict]:
    """All result rows of ``config_hash`` from a connection or database path."""
    conn = (
        conn_or_path
        if isinstance(conn_or_path, sqlite3.Connection)
        else _open_ro(conn_or_path)
    )
    cur = conn.execute(
        f"SELECT {', '.join(_COLS)} FROM results WHERE config_hash = ? ORDER BY rowid",
        (config_hash,),
    )
    out = []
    for r in cur:
        d = dict(zip(_COLS, r))
        d["value"] = math.nan if d["value"] is None else d["value"]
        d["curve"] = _from_blob(d["curve"])
        d["extra"] = json.loads(d["extra"]) if d["extra"] else {}
        out.append(d)
    return out


def read_sessions(conn, config_hash: str) -> dict[int, dict]:
    """Session id -> versions (dict) of every session of ``config_hash``."""
    cur = conn.execute(
        "SELECT id, versions FROM sessions WHERE config_hash = ? ORDER BY id",
        (config_hash,),
    )
    return {i: json.loads(v) for i, v in cur}


def session_key(versions: Mapping) -> str:
    """First 8 hex digits of sha256 of the canonical JSON of ``versions``: names the
    software a row was computed with, the same on every machine."""
    return hashlib.sha256(canonical_json(versions, "versions").encode()).hexdigest()[:8]


def _open_ro(path) -> sqlite3.Connection:
    """A read-only connection (reports never write, nor create tables)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"db: {str(path)!r} does not exist")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=60)
    have = {
        n
        for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    missing = {"runs", "results", "pairs", "skipped", "maps"} - have
    if missing:
        conn.close()
        raise ValueError(
            f"db: {str(path)!r} is not a jaxattr.runs database (no tables {sorted(missing)})"
        )
    return conn


def list_runs(path) -> list[dict]:
    """Every config in the database ``path``: experiment, config_hash, config (dict),
    versions (dict), created, and counts of rows, finished pairs, images and skipped."""
    conn = _open_ro(path)
    try:
        runs = conn.execute(
            "SELECT config_hash, experiment, config, versions, created FROM runs ORDER BY created, rowid"
        ).fetchall()
        out = []
        for h, exp, cfg, ver, created in runs:
            count = lambda sql, h=h: conn.execute(sql, (h,)).fetchone()[0]
            out.append({
                "experiment": exp, "config_hash": h, "config": json.loads(cfg),
                "versions": json.loads(ver), "created": created,
                "rows": count("SELECT COUNT(*) FROM results WHERE config_hash = ?"),
                "pairs": count("SELECT COUNT(*) FROM pairs WHERE config_hash = ?"),
                "images": count("SELECT COUNT(DISTINCT image_id) FROM pairs WHERE config_hash = ?"),
                "skipped": count("SELECT COUNT(*) FROM skipped WHERE config_hash = ?"),
            })  # fmt: skip
        return out
    finally:
        conn.close()


def read_map(conn, config_hash: str, image_id: str, method: str) -> np.ndarray | None:
    """One stored map (or the uint8 image for ``method=IMAGE``), or ``None``."""
    row = conn.execute(
        "SELECT heat FROM maps WHERE config_hash = ? AND image_id = ? AND method = ?",
        (config_hash, image_id, method),
    ).fetchone()
    return None if row is None else _from_blob(row[0])


def read_image(conn, config_hash: str, image_id: str) -> np.ndarray | None:
    """The stored image as float32 ``[H, W, 3]`` in [0, 1], or ``None``."""
    u8 = read_map(conn, config_hash, image_id, IMAGE)
    return None if u8 is None else u8.astype(np.float32) / 255.0


def read_maps(conn, config_hash: str) -> dict[str, dict[str, np.ndarray]]:
    """image_id -> method -> ``[H, W]`` map of ``config_hash``, in storage order."""
    cur = conn.execute(
        "SELECT image_id, method, heat FROM maps WHERE config_hash = ? AND method != ? "
        "ORDER BY rowid", (config_hash, IMAGE),
    )  # fmt: skip
    out: dict[str, dict[str, np.ndarray]] = {}
    for image_id, method, blob in cur:
        out.setdefault(image_id, {})[method] = _from_blob(blob)
    return out
