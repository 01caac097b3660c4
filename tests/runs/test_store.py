"""ResultStore: config hashing, separation of configs, atomic pairs, skips, maps, listing."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from jaxattr.runs import ResultStore, config_hash, list_runs
from jaxattr.runs.__main__ import main


def _rows(value=0.5, curve=True):
    return [
        {"metric": "deletion", "value": value, "label": 3, "predicted": 3, "seconds": 0.1,
         "curve": np.linspace(1, 0, 5, dtype=np.float32) if curve else None},
        {"metric": "insertion", "value": np.float32(0.25), "curve": None, "extra": {"k": [1, 2]}},
    ]  # fmt: skip


def test_config_hash_is_canonical():
    a = config_hash("idg", {"steps": 16, "model": "r20", "sizes": (1, 2)})
    b = config_hash("idg", {"model": "r20", "sizes": [1, 2], "steps": np.int64(16)})
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    assert config_hash("idg", {"steps": 17, "model": "r20", "sizes": (1, 2)}) != a
    assert (
        config_hash("smooth_taylor", {"steps": 16, "model": "r20", "sizes": (1, 2)})
        != a
    )
    with pytest.raises(TypeError, match=r"config\[.fn.\]"):
        config_hash("idg", {"fn": print})


def test_run_row_records_config_and_versions(tmp_path):
    store = ResultStore(tmp_path / "sub" / "r.db", "idg", {"steps": 16})
    (run,) = list_runs(tmp_path / "sub" / "r.db")
    assert run["experiment"] == "idg" and run["config_hash"] == store.config_hash
    assert run["config"] == {"steps": 16}
    assert set(run["versions"]) >= {"jaxattr", "jax", "jaxlib", "flax", "numpy", "python",
                                    "platform", "device"}  # fmt: skip
    assert (
        run["versions"]["device"] in {"cpu", "TFRT_CPU_0"} or run["versions"]["device"]
    )


def test_versions_record_the_convolution_rewrite_in_use(tmp_path, monkeypatch):
    """The session's versions say whether the CPU convolution rewrite applied: the
    `use_fast_convolutions` context, else the environment variable."""
    import jax

    from jaxattr.fast_convolutions import use_fast_convolutions
    from jaxattr.runs.store import versions

    monkeypatch.delenv("JAXATTR_FAST_CONVOLUTIONS", raising=False)
    on_cpu = jax.default_backend() == "cpu"
    assert versions()["fast_convolutions"] is on_cpu
    with use_fast_convolutions(False):
        store = ResultStore(tmp_path / "r.db", "idg", {"steps": 16})
        assert store.versions["fast_convolutions"] is False
    (run,) = list_runs(tmp_path / "r.db")
    assert run["versions"]["fast_convolutions"] is False
    monkeypatch.setenv("JAXATTR_FAST_CONVOLUTIONS", "0")
    assert versions()["fast_convolutions"] is False
    with use_fast_convolutions(True):
        assert versions()["fast_convolutions"] is on_cpu


def test_add_roundtrip_exact(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {"steps": 16})
    store.add("a.png", "ig", _rows(value=1 / 3))
    rows = store.rows()
    assert [r["metric"] for r in rows] == ["deletion", "insertion"]
    assert rows[0]["value"] == 1 / 3 and rows[1]["value"] == float(np.float32(0.25))
    assert rows[0]["curve"].dtype == np.float32
    np.testing.assert_array_equal(
        rows[0]["curve"], np.linspace(1, 0, 5, dtype=np.float32)
    )
    assert rows[1]["curve"] is None and rows[1]["extra"] == {"k": [1, 2]}
    assert (
        rows[0]["label"] == 3 and rows[0]["predicted"] == 3 and rows[1]["label"] is None
    )
    assert rows[0]["session"] == store.session
    assert store.done() == {("a.png", "ig")}


def test_nan_value_roundtrips(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {})
    store.add("a", "ig", [{"metric": "m", "value": float("nan")}])
    assert math.isnan(store.rows()[0]["value"])


def test_changed_config_keeps_rows_apart(tmp_path, capsys):
    db = tmp_path / "r.db"
    old = ResultStore(db, "idg", {"steps": 16})
    new = ResultStore(db, "idg", {"steps": 32})
    assert old.config_hash != new.config_hash
    old.add("a", "ig", _rows(0.1))
    new.add("a", "ig", _rows(0.9))
    new.add("b", "ig", _rows(0.8))
    assert {r["value"] for r in old.rows() if r["metric"] == "deletion"} == {0.1}
    assert {r["value"] for r in new.rows() if r["metric"] == "deletion"} == {0.9, 0.8}
    assert old.done() == {("a", "ig")} and new.done() == {("a", "ig"), ("b", "ig")}
    assert [r["value"] for r in old.rows(config_hash=new.config_hash)][::2] == [
        0.9,
        0.8,
    ]
    # Reopening with the first config sees only its rows again.
    assert len(ResultStore(db, "idg", {"steps": 16}).rows()) == 2
    runs = {r["config_hash"]: r for r in list_runs(db)}
    assert runs[old.config_hash]["rows"] == 2 and runs[new.config_hash]["rows"] == 4
    assert runs[new.config_hash]["images"] == 2
    assert main(["list", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert old.config_hash in out and new.config_hash in out and '"steps": 32' in out
    assert main(["list", "--db", str(db), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


class _FailingConn:
    """Delegates to a connection; the n-th INSERT INTO results raises (a crash mid-pair)."""

    def __init__(self, conn, n):
        self.conn, self.n = conn, n

    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO results"):
            self.n -= 1
            if self.n == 0:
                raise sqlite3.OperationalError("disk I/O error (simulated)")
        return self.conn.execute(sql, *args)


def test_pair_is_one_transaction(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {})
    store.add("a", "ig", _rows())
    real = store._conn
    store._conn = _FailingConn(real, 2)  # the 2nd metric row of pair ("b", "ig") fails
    with pytest.raises(sqlite3.OperationalError, match="simulated"):
        store.add("b", "ig", _rows(), heat=np.ones((2, 2)))
    store._conn = real
    assert store.done() == {("a", "ig")}
    assert {r["image_id"] for r in store.rows()} == {"a"}
    assert store.get_map("b", "ig") is None
    # The file itself (a fresh connection) holds no partial rows either.
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute(
        "SELECT COUNT(*) FROM results WHERE image_id = 'b'"
    ).fetchone() == (0,)
    store.add("b", "ig", _rows())  # and the pair can be written afterwards
    assert len(store.rows()) == 4


def test_duplicate_pair_is_refused_and_changes_nothing(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {})
    store.add("a", "ig", _rows(0.1))
    with pytest.raises(sqlite3.IntegrityError):
        store.add("a", "ig", _rows(0.2))
    assert [r["value"] for r in store.rows()] == [0.1, 0.25]


def test_bad_rows_write_nothing(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {})
    with pytest.raises(ValueError, match="metric 'm' appears twice"):
        store.add("a", "ig", [{"metric": "m", "value": 1}, {"metric": "m", "value": 2}])
    with pytest.raises(ValueError, match="unknown keys"):
        store.add("a", "ig", [{"metric": "m", "value": 1, "score": 2}])
    with pytest.raises(ValueError, match="curve: expected a 1-D"):
        store.add("a", "ig", [{"metric": "m", "value": 1, "curve": np.zeros((2, 2))}])
    with pytest.raises(TypeError, match="label"):
        store.add("a", "ig", [{"metric": "m", "value": 1, "label": "cat"}])
    assert store.rows() == [] and store.done() == set()


def test_skip_is_recorded_per_config(tmp_path):
    db = tmp_path / "r.db"
    store = ResultStore(db, "idg", {})
    store.skip("a", "misclassified", 3, 5)
    assert store.skipped() == {"a"}
    assert ResultStore(db, "idg", {}).skipped() == {"a"}
    assert ResultStore(db, "idg", {"other": 1}).skipped() == set()
    assert store.skipped_rows() == [
        {"image_id": "a", "reason": "misclassified", "label": 3, "predicted": 5}
    ]
    assert list_runs(db)[0]["skipped"] == 1


def test_maps_and_images(tmp_path):
    store = ResultStore(tmp_path / "r.db", "idg", {})
    store.put_map("b", "ig", np.arange(6, dtype=np.float64).reshape(2, 3))
    store.put_map("a", "ig", np.ones((2, 3)))
    store.put_map("b", "sg", np.zeros((2, 3)))
    store.put_image("b", np.full((2, 3, 3), 0.5))
    got = store.get_map("b", "ig")
    assert got.dtype == np.float32 and got.shape == (2, 3) and got[1, 2] == 5
    assert list(store.maps()) == ["b", "a"] and set(store.maps()["b"]) == {"ig", "sg"}
    np.testing.assert_allclose(store.get_image("b"), 128 / 255)
    assert store.get_image("a") is None
    with pytest.raises(ValueError, match=r"heat: expected an \[H, W\] map"):
        store.put_map("a", "ig", np.ones((2, 3, 3)))


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="experiment"):
        ResultStore(tmp_path / "r.db", "", {})
    with pytest.raises(TypeError, match="config"):
        ResultStore(tmp_path / "r.db", "idg", [("a", 1)])
    with pytest.raises(FileNotFoundError, match="db"):
        list_runs(tmp_path / "missing.db")
