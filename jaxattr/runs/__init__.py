"""Resumable experiment runs: SQLite results, tables and plots (issue 7 infrastructure).

>>> exp = Experiment("idg", model, methods={"ig": explain_ig}, metrics={"ins": insertion})
>>> store = ResultStore("results.db", "idg", config)   # config: JSON-able, hashed
>>> run(exp, examples("default", size=224, resize=256), store, seed=0)
>>> report("results.db", "report/")                      # or: python -m jaxattr.runs report
>>> export_rows("results.db", "results/")   # committed rows: <experiment>-<hash>.csv.gz + .json
>>> import_rows(store, "results/idg-<hash>.csv.gz")      # resume elsewhere: done pairs skipped
>>> report_committed(["results/idg-<hash>.csv.gz"], "report/")   # tables from the rows alone
>>> verdict(rows, "idg", "ig", "deletion")["outcome"]    # reproduced / reversed / not reproduced

Contract notes (beyond the brief):
  * metrics receive the ``[H, W, 3]`` attribution ARRAY (``Attribution.attributions``), not
    the ``Attribution``; a method may also return a bare array. A method's scalar or
    per-sample ``delta`` (when not all NaN) is recorded in every row's ``extra["delta"]``.
  * ``ResultStore.add(image_id, method, rows, *, heat=None)``: optional ``heat`` map stored
    in the same transaction; adding a pair that is already done raises
    ``sqlite3.IntegrityError``. ``ResultStore.put_image`` / ``get_image`` store the image
    (uint8) for grids. ``list_runs(db)`` is the module-level listing.
  * ``run`` re-raises ``KeyboardInterrupt`` after printing how to resume; ``RunSummary``
    has ``images, computed, reused, skipped, done, seconds``.
  * ``examples(..., seed)``: ``0`` keeps the natural order, another seed a fixed permutation
    (not for ``tfds:``); ``resize`` may be ``None``.
"""

from jaxattr.runs.data import Example, examples
from jaxattr.runs.report import (
    HIGHER_IS_BETTER,
    Claim,
    mean_ci,
    paired,
    paired_difference,
    report,
    report_committed,
    verdict,
)
from jaxattr.runs.rows import export_rows, import_rows, read_committed
from jaxattr.runs.runner import RunSummary, pair_key, run
from jaxattr.runs.spec import Experiment
from jaxattr.runs.store import ResultStore, config_hash, list_runs

__all__ = [
    "HIGHER_IS_BETTER",
    "Claim",
    "Example",
    "Experiment",
    "ResultStore",
    "RunSummary",
    "config_hash",
    "examples",
    "export_rows",
    "import_rows",
    "list_runs",
    "mean_ci",
    "pair_key",
    "paired",
    "paired_difference",
    "read_committed",
    "report",
    "report_committed",
    "run",
    "verdict",
]
