"""Tables and plots from a results database (``report(db, out_dir)``) or from committed
rows (``report_committed(files, out_dir)``), paired comparisons and claim verdicts.

Per ``(experiment, config)``: ``table.md`` and ``table.csv`` (method x metric: mean, 95 %
confidence interval and n images), ``paired.md`` and ``paired.csv`` (every method minus a
reference method on the images both have: mean difference, 95 % interval, n, paired t-test
and Wilcoxon signed-rank p-values, and which side the difference favours), and from a
database only ``curve_<metric>.png`` (mean curve per method for every metric that stores
curves) and ``grid.png`` (stored heat maps, rows = images, columns = methods). The
interval is Student's t: ``mean ± t(0.975, n-1) · s / sqrt(n)`` with the sample standard
deviation ``s`` (ddof 1); NaN scores are left out of n. The grid shares one colour scale
per row (per image across methods: ``jaxattr.viz.figure_grid(shared_scale="row")``,
absolute values, 2 % outlier mass clipped), so methods are compared on the same image at
the same scale. Files go to ``out_dir/<experiment>-<config_hash>/``.

Which way is better for each metric: :data:`HIGHER_IS_BETTER`. A claim "A beats B on m"
gets :func:`verdict`: ``reproduced`` (A better, the paired interval excludes 0 and the
paired t-test gives p < 0.05), ``reversed`` (B better in the same sense) or ``not
reproduced``.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxattr.runs.store import (
    _open_ro,
    list_runs,
    read_image,
    read_maps,
    read_rows,
    read_sessions,
    session_key,
)

CI_METHOD = "Student t, 95 %, ddof=1"
_CSV_COLS = ("experiment", "config_hash", "method", "metric", "n", "n_nan", "mean", "std",
             "ci_low", "ci_high", "ci_half_width")  # fmt: skip
_PAIRED_COLS = ("experiment", "config_hash", "method", "reference", "metric",
                "higher_is_better", "n", "mean_diff", "std_diff", "ci_low", "ci_high",
                "ci_half_width", "p_t", "p_wilcoxon", "favours")  # fmt: skip

#: Metric name -> whether a higher score is better. A name not listed takes the direction
#: of the longest listed name it starts with followed by ``_`` (``aupc_sigma0.5`` -> aupc).
HIGHER_IS_BETTER: dict[str, bool] = {
    "insertion": True,  # RISE: the class probability rises fast as pixels come in
    "deletion": False,  # RISE: ... and drops fast as they go
    "morf": False,  # DGA: most relevant pixels removed first
    "lerf": True,  # DGA: least relevant pixels removed first
    "aupc": False,  # SmoothTaylor: area under the region-perturbation curve
    "autvc": False,  # SmoothTaylor: total variation over scales (less noise)
    "relative_delta": False,  # IG: |sum A - (f(x) - f(x'))| / |f(x) - f(x')|
    "within_5pct": True,  # IG: 1 where relative_delta <= 0.05
    "completeness": False,  # |sum A - (f(x) - f(x'))|
    "completeness_error": False,
    "sensitivity_n": True,  # Ancona: correlation of attribution and output change
    "sensitivity_max": False,  # Yeh: largest change of the map under small noise
    "max_sensitivity": False,
    "infidelity": False,  # Yeh
    "complexity": False,  # entropy of the normalised map
    "sparseness": True,  # Gini index of the map
}


def mean_ci(values, level: float = 0.95) -> dict:
    """``n, n_nan, mean, std, ci_low, ci_high, ci_half_width`` of finite-or-inf values
    (NaN left out). Student t with ``n - 1`` degrees of freedom; n < 2 gives a NaN width."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    nan = np.isnan(v)
    v = v[~nan]
    n = v.size
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = (
        float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
        if n > 1
        else math.nan
    )
    return {"n": n, "n_nan": int(nan.sum()), "mean": mean, "std": std,
            "ci_low": mean - half, "ci_high": mean + half, "ci_half_width": half}  # fmt: skip


def _sorted_values(by_image: Mapping) -> list:
    return [by_image[i] for i in sorted(by_image, key=str)]


def summarise(rows: Sequence[Mapping]) -> list[dict]:
    """One dict per ``(method, metric)`` in first-seen order, with :func:`mean_ci` fields
    over the images sorted by id (so the row order never changes a bit)."""
    out = []
    for (m, k), by_image in _by_image(rows).items():
        out.append({"method": m, "metric": k, **mean_ci(_sorted_values(by_image))})
    return out


def _by_image(rows: Sequence[Mapping]) -> dict[tuple[str, str], dict[str, float]]:
    """``(method, metric) -> {image_id: value}`` in first-seen order of the pairs (a row
    without ``image_id`` counts as its own image)."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for j, r in enumerate(rows):
        g = groups.setdefault((r["method"], r["metric"]), {})
        g[r.get("image_id", f"#{j:09d}")] = r["value"]
    return groups


def timing(rows: Sequence[Mapping]) -> list[dict]:
    """Per method: pairs, median and total ``seconds`` of the explanation (one per
    ``(image, method)``; the first call of a process includes compiling)."""
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("seconds") is not None:
            per.setdefault(r["method"], {}).setdefault(r["image_id"], r["seconds"])
    out = []
    for m, v in per.items():
        t = np.asarray(_sorted_values(v), np.float64)
        out.append({"method": m, "pairs": t.size, "median_s": float(np.median(t)),
                    "total_s": float(np.sum(t))})  # fmt: skip
    return out


# ----------------------------------------------------------------- paired comparisons
def higher_is_better(metric: str) -> bool | None:
    """The direction of ``metric`` from :data:`HIGHER_IS_BETTER`, or ``None`` if unknown."""
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    prefixes = [k for k in HIGHER_IS_BETTER if metric.startswith(k + "_")]
    return HIGHER_IS_BETTER[max(prefixes, key=len)] if prefixes else None


def paired_difference(a, b, level: float = 0.95) -> dict:
    """Statistics of ``a - b`` over the positions where both are finite.

    Returns ``n, mean_diff, std_diff`` (ddof 1), ``ci_low, ci_high, ci_half_width`` (Student
    t with ``n - 1`` degrees of freedom, as ``scipy.stats.t.interval``), ``p_t``
    (``scipy.stats.ttest_rel``, two-sided) and ``p_wilcoxon`` (``scipy.stats.wilcoxon``,
    two-sided, zero differences dropped). NaN where undefined (n < 2, no variance, all
    differences zero).
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"a, b: expected two 1-D arrays of one length, got shapes {a.shape}, {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    half = (
        float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
        if n > 1
        else math.nan
    )
    p_t = p_w = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if n > 1:
            p_t = float(stats.ttest_rel(a, b).pvalue)
        if np.any(d != 0):
            try:
                p_w = float(stats.wilcoxon(a, b).pvalue)
            except ValueError:  # pragma: no cover - scipy refuses the sample
                p_w = math.nan
    return {"n": n, "mean_diff": mean, "std_diff": std, "ci_low": mean - half,
            "ci_high": mean + half, "ci_half_width": half, "p_t": p_t,
            "p_wilcoxon": p_w}  # fmt: skip


def outcome(stats: Mapping, higher: bool, alpha: float = 0.05) -> str:
    """``"reproduced"`` when the difference ``A - B`` favours A (its interval lies on A's
    better side of 0 and ``p_t < alpha``), ``"reversed"`` when it favours B in that sense,
    else ``"not reproduced"``. ``higher``: whether a higher score is better."""
    sig = stats["p_t"] < alpha
    above, below = stats["ci_low"] > 0, stats["ci_high"] < 0
    if sig and (above if higher else below):
        return "reproduced"
    if sig and (below if higher else above):
        return "reversed"
    return "not reproduced"


def default_reference(methods: Sequence[str]) -> str | None:
    """``"ig"`` when it is among ``methods``, else ``None`` (no paired table)."""
    return "ig" if "ig" in methods else None


def paired(
    rows: Sequence[Mapping], reference: str, level: float = 0.95, alpha: float = 0.05
) -> list[dict]:
    """Every other method minus ``reference``, per metric, on the images both have with
    finite values: :func:`paired_difference` fields plus ``method, reference, metric,
    higher_is_better`` and ``favours`` (``method``, ``reference``, ``neither``, or ``?``
    for a metric of unknown direction). First-seen order of the methods and metrics."""
    groups = _by_image(rows)
    out = []
    for (m, k), values in groups.items():
        ref = groups.get((reference, k))
        if m == reference or ref is None:
            continue
        ids = sorted(set(values) & set(ref), key=str)
        st = paired_difference([values[i] for i in ids], [ref[i] for i in ids], level)
        higher = higher_is_better(k)
        favours = "?"
        if higher is not None:
            favours = {"reproduced": m, "reversed": reference}.get(
                outcome(st, higher, alpha), "neither"
            )
        out.append({"method": m, "reference": reference, "metric": k,
                    "higher_is_better": higher, **st, "favours": favours})  # fmt: skip
    return out


def format_p(x: float) -> str:
    """A p-value for a table: two significant digits; one that underflowed to 0 in
    float64 is written `<1e-300`, not as a p of exactly zero."""
    if math.isnan(x):
        return "nan"
    return "<1e-300" if x == 0 else f"{x:.2g}"


def markdown_paired(
    pairs: Sequence[Mapping], reference: str | None, title: str = ""
) -> str:
    """One line per ``(method, metric)``: the difference to ``reference`` with its
    interval, n, both p-values and the side it favours."""
    if not pairs:
        why = (
            f"no other method shares a metric with `{reference}`"
            if reference
            else "no reference method"
        )
        head = [f"## {title}: paired differences", ""] if title else []
        return "\n".join([*head, f"No paired comparison: {why}."]) + "\n"
    lines = [f"## {title}: paired difference to `{reference}`", ""] if title else []
    lines += [
        "| method | metric | better | mean difference [95 % CI] | n | p (paired t) | p (Wilcoxon) | favours |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    arrow = {True: "higher", False: "lower", None: "?"}
    for p in pairs:
        lines.append(
            f"| {p['method']} | {p['metric']} | {arrow[p['higher_is_better']]} | "
            f"{_fmt(p['mean_diff'])} [{_fmt(p['ci_low'])}, {_fmt(p['ci_high'])}] | "
            f"{p['n']} | {format_p(p['p_t'])} | {format_p(p['p_wilcoxon'])} | {p['favours']} |"
        )
    note = (
        f"Difference = method - {reference} per image, on the images both have (finite "
        f"values). Interval: {CI_METHOD}. Favours a side when the interval excludes 0 "
        "and the paired t-test gives p < 0.05."
    )
    lines += ["", note]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- verdicts
class Claim(NamedTuple):
    """ "``method`` beats ``other`` on ``metric``" in ``experiment`` (one comparison).

    ``other``: a method name (paired over images) or a number (``method``'s mean against a
    fixed threshold). ``text``: the paper's claim this comparison belongs to (claims with
    the same text form one line of the summary).
    """

    text: str
    experiment: str
    method: str
    other: str | float
    metric: str


def beats(
    text: str,
    experiment: str,
    method: str,
    others: Sequence[str | float],
    metrics: Sequence[str],
) -> list[Claim]:
    """One :class:`Claim` per ``(other, metric)``: "``method`` beats each of ``others`` on
    each of ``metrics``"."""
    return [Claim(text, experiment, method, o, k) for o in others for k in metrics]


def verdict(
    rows: Sequence[Mapping],
    method: str,
    other: str | float,
    metric: str,
    *,
    level: float = 0.95,
    alpha: float = 0.05,
) -> dict:
    """The verdict of "``method`` beats ``other`` on ``metric``" from result rows.

    ``other``: a method (paired over the images both have, finite values) or a threshold
    (``method``'s values minus it). Returns ``outcome`` (``"reproduced"``, ``"reversed"``,
    ``"not reproduced"``, or ``"no data yet"`` when no image pairs up) with
    :func:`paired_difference`'s numbers and ``higher_is_better``.
    """
    higher = higher_is_better(metric)
    if higher is None:
        raise ValueError(
            f"metric: expected one with a known direction (HIGHER_IS_BETTER: "
            f"{sorted(HIGHER_IS_BETTER)}, or one starting with such a name and '_'), "
            f"got {metric!r}"
        )
    groups = _by_image(rows)
    mine = groups.get((method, metric), {})
    if isinstance(other, str):
        theirs = groups.get((other, metric), {})
    else:
        theirs = dict.fromkeys(mine, float(other))
    ids = sorted(set(mine) & set(theirs), key=str)
    st = paired_difference([mine[i] for i in ids], [theirs[i] for i in ids], level)
    result = outcome(st, higher, alpha) if st["n"] else "no data yet"
    return {"method": method, "other": other, "metric": metric,
            "higher_is_better": higher, "outcome": result, **st}  # fmt: skip


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def markdown_table(summary: list[dict], title: str = "") -> str:
    """Methods as rows, metrics as columns: ``mean ± half-width (n)``."""
    methods = list(dict.fromkeys(s["method"] for s in summary))
    metrics = list(dict.fromkeys(s["metric"] for s in summary))
    cell = {(s["method"], s["metric"]): s for s in summary}
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for m in methods:
        cells = []
        for k in metrics:
            s = cell.get((m, k))
            cells.append(
                ""
                if s is None
                else f"{_fmt(s['mean'])} ± {_fmt(s['ci_half_width'])} (n={s['n']})"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Mean ± half-width of the 95 % confidence interval ({CI_METHOD}); n images.",
    ]
    return "\n".join(lines) + "\n"


def mean_curves(
    rows: list[dict], metric: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method -> ``(fractions [L], mean curve [L])`` for ``metric``. Curves of different
    lengths are linearly interpolated onto the longest grid over [0, 1]; float64 mean.
    NaN points (a curve that stopped early, e.g. AUPC when no free window is left) are
    left out of the mean at that point; a point where every curve is NaN stays NaN."""
    by_method: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if r["metric"] == metric and r["curve"] is not None:
            by_method.setdefault(r["method"], []).append(
                np.asarray(r["curve"], np.float64)
            )
    out = {}
    for m, curves in by_method.items():
        length = max(c.size for c in curves)
        grid = np.linspace(0.0, 1.0, length)
        stack = [
            c if c.size == length else np.interp(grid, np.linspace(0, 1, c.size), c)
            for c in curves
        ]
        stack = np.asarray(stack)
        finite = ~np.isnan(stack)
        count = finite.sum(0)
        total = np.where(finite, stack, 0.0).sum(0)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        out[m] = (grid, mean)
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure


def curve_figure(rows: list[dict], metric: str, title: str = ""):
    """A matplotlib Figure: the mean ``metric`` curve per method (one line each)."""
    fig = _plt()(figsize=(5, 3.6))
    ax = fig.add_subplot()
    for m, (x, y) in mean_curves(rows, metric).items():
        n = sum(
            1
            for r in rows
            if r["metric"] == metric and r["method"] == m and r["curve"] is not None
        )
        ax.plot(x, y, label=f"{m} (n={n})")
    ax.set_xlabel("fraction of the curve (pixels / steps)")
    ax.set_ylabel(f"mean {metric} curve")
    ax.set_title(title or metric)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def grid_figure(
    store_maps: dict[str, dict[str, np.ndarray]], images: dict[str, np.ndarray | None]
):
    """Heat-map grid: rows = images, columns = methods, one colour scale per row.
    ``store_maps``: image_id -> method -> ``[H, W]``; ``images``: image_id -> ``[H, W, 3]``
    or ``None`` (then a zero image and plain heat maps). Returns ``(fig, axes)``."""
    from jaxattr import viz

    ids = list(store_maps)
    methods = list(dict.fromkeys(m for i in ids for m in store_maps[i]))
    ids = [i for i in ids if all(m in store_maps[i] for m in methods)]
    if not ids:
        raise ValueError("maps: no image has a stored map for every method")
    have_images = all(images.get(i) is not None for i in ids)
    imgs = [
        images[i]
        if have_images
        else np.zeros((*store_maps[i][methods[0]].shape, 3), np.float32)
        for i in ids
    ]
    attrs = {m: [store_maps[i][m][..., None] for i in ids] for m in methods}
    return viz.figure_grid(
        imgs, attrs, method="blended_heat_map" if have_images else "heat_map",
        sign="absolute_value", shared_scale="row", row_titles=ids,
    )  # fmt: skip


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def write_tables(
    folder,
    run: Mapping,
    rows: Sequence[Mapping],
    *,
    sessions: Mapping[str, Mapping] | None = None,
    skipped: int = 0,
    reference: str | None = None,
) -> list[Path]:
    """Write ``table.md``, ``table.csv``, ``paired.md`` and ``paired.csv`` of one run.

    ``run``: ``experiment``, ``config_hash`` and ``config``. ``rows``: its result rows
    (``image_id, method, metric, value, seconds`` and ``session``, a key of ``sessions``:
    the versions that wrote the row). ``reference``: the method of the paired table
    (default :func:`default_reference`). The same rows give byte-identical files, in any
    order (every statistic is taken over images sorted by id).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    title = f"{run['experiment']} (config {run['config_hash']})"
    md = markdown_table(summary, title)
    times = timing(rows)
    if times:
        md += (
            "\n| method | images | median s / image | total s |\n|---|---:|---:|---:|\n"
        )
        md += "".join(
            f"| {t['method']} | {t['pairs']} | {t['median_s']:.3g} | {t['total_s']:.3g} |\n"
            for t in times
        )
        md += "\nSeconds of the explanation alone (first call per process includes compiling).\n"
    images = len({r["image_id"] for r in rows})
    md += (
        f"\n{images} images evaluated, {skipped} skipped "
        f"(misclassified).\n\nConfig: `{json.dumps(run['config'], sort_keys=True)}`\n"
    )
    used = {r.get("session") for r in rows} - {None}
    versions = sorted(
        {
            json.dumps(dict(sessions[k]), sort_keys=True)
            for k in used
            if k in (sessions or {})
        }
    )
    md += "".join(f"\nVersions: `{v}`\n" for v in versions)
    written = [folder / "table.md", folder / "table.csv"]
    written[0].write_text(md, encoding="utf-8")
    head = {"experiment": run["experiment"], "config_hash": run["config_hash"]}
    _write_csv(written[1], _CSV_COLS, [{**head, **s} for s in summary])
    reference = reference or default_reference([r["method"] for r in rows])
    pairs = paired(rows, reference) if reference else []
    (folder / "paired.md").write_text(
        markdown_paired(pairs, reference, title), encoding="utf-8"
    )
    _write_csv(folder / "paired.csv", _PAIRED_COLS, [{**head, **p} for p in pairs])
    return [*written, folder / "paired.md", folder / "paired.csv"]


def _write_csv(path: Path, columns: Sequence[str], records: Sequence[Mapping]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for rec in records:
            w.writerow({k: _csv_cell(rec.get(k)) for k in columns})


def _csv_cell(v):
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def report(
    db_path,
    out_dir,
    *,
    experiment: str | None = None,
    config_hash: str | None = None,
    reference: str | Mapping[str, str] | None = None,
) -> list[Path]:
    """Write tables and plots for every matching config in ``db_path``; returns the paths.

    ``experiment`` / ``config_hash``: only that experiment / config (a hash prefix works).
    ``reference``: the method the paired table compares every other method with, or
    experiment name -> method (default :func:`default_reference`: ``"ig"`` when the run
    has it, else no pairs).
    """
    runs = list_runs(db_path)
    chosen = [
        r for r in runs
        if (experiment is None or r["experiment"] == experiment)
        and (config_hash is None or r["config_hash"].startswith(config_hash))
    ]  # fmt: skip
    if not chosen:
        have = [(r["experiment"], r["config_hash"]) for r in runs]
        raise ValueError(
            f"experiment={experiment!r}, config_hash={config_hash!r}: no matching run in "
            f"{str(db_path)!r}; it holds {have}"
        )
    out_dir = Path(out_dir)
    written: list[Path] = []
    conn = _open_ro(db_path)
    try:
        for run in chosen:
            rows = read_rows(conn, run["config_hash"])
            sessions = read_sessions(conn, run["config_hash"])
            keyed = {i: session_key(v) for i, v in sessions.items()}
            rows = [{**r, "session": keyed.get(r["session"])} for r in rows]
            folder = out_dir / f"{run['experiment']}-{run['config_hash']}"
            written += write_tables(
                folder, run, rows, skipped=run["skipped"],
                reference=_reference(reference, run["experiment"]),
                sessions={keyed[i]: v for i, v in sessions.items()},
            )  # fmt: skip
            metrics = list(
                dict.fromkeys(r["metric"] for r in rows if r["curve"] is not None)
            )
            for metric in metrics:
                fig = curve_figure(rows, metric, f"{run['experiment']}: {metric}")
                written.append(_save(fig, folder / f"curve_{_safe(metric)}.png"))
            maps = read_maps(conn, run["config_hash"])
            if maps:
                images = {i: read_image(conn, run["config_hash"], i) for i in maps}
                fig, _ = grid_figure(maps, images)
                written.append(_save(fig, folder / "grid.png"))
    finally:
        conn.close()
    return written


def report_committed(
    files, out_dir, *, reference: str | Mapping[str, str] | None = None
) -> list[Path]:
    """Write the tables (``table.*``, ``paired.*``; no plots: committed rows hold no curves
    or maps) of committed row files (``jaxattr.runs.rows``) to
    ``out_dir/<experiment>-<config_hash>/``; returns the paths. No database, no model.

    ``reference``: the paired table's method, or experiment name -> method (experiments
    not in it get :func:`default_reference`).
    """
    from jaxattr.runs.rows import read_committed

    written: list[Path] = []
    for path in files:
        meta, rows = read_committed(path)
        folder = Path(out_dir) / f"{meta['experiment']}-{meta['config_hash']}"
        written += write_tables(
            folder, meta, rows, sessions=meta["sessions"], skipped=len(meta["skipped"]),
            reference=_reference(reference, meta["experiment"]),
        )  # fmt: skip
    return written


def _reference(reference, experiment: str) -> str | None:
    if reference is None or isinstance(reference, str):
        return reference
    return reference.get(experiment)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
