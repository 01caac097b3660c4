"""Tables and plots from a results database: ``report(db, out_dir)``.

Per ``(experiment, config)``: ``table.md`` and ``table.csv`` (method x metric: mean, 95 %
confidence interval and n images), ``curve_<metric>.png`` (mean curve per method for every
metric that stores curves) and ``grid.png`` (stored heat maps, rows = images, columns =
methods). The interval is Student's t: ``mean ± t(0.975, n-1) · s / sqrt(n)`` with the
sample standard deviation ``s`` (ddof 1); NaN scores are left out of n. The grid shares one
colour scale per row (per image across methods: ``jaxattr.viz.figure_grid(shared_scale=
"row")``, absolute values, 2 % outlier mass clipped), so methods are compared on the same
image at the same scale. Files go to ``out_dir/<experiment>-<config_hash>/``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from jaxattr.runs.store import _open_ro, list_runs, read_image, read_maps, read_rows

CI_METHOD = "Student t, 95 %, ddof=1"
_CSV_COLS = ("experiment", "config_hash", "method", "metric", "n", "n_nan", "mean", "std",
             "ci_low", "ci_high", "ci_half_width")  # fmt: skip


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


def summarise(rows: list[dict]) -> list[dict]:
    """One dict per ``(method, metric)`` in first-seen order, with :func:`mean_ci` fields."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["metric"]), []).append(r["value"])
    return [{"method": m, "metric": k, **mean_ci(v)} for (m, k), v in groups.items()]


def timing(rows: list[dict]) -> list[dict]:
    """Per method: pairs, median and total ``seconds`` of the explanation (one per
    ``(image, method)``; the first call of a process includes compiling)."""
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("seconds") is not None:
            per.setdefault(r["method"], {}).setdefault(r["image_id"], r["seconds"])
    return [
        {"method": m, "pairs": len(v), "median_s": float(np.median(list(v.values()))),
         "total_s": float(np.sum(list(v.values())))}
        for m, v in per.items()
    ]  # fmt: skip


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
    lengths are linearly interpolated onto the longest grid over [0, 1]; float64 mean."""
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
        out[m] = (grid, np.mean(stack, axis=0))
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


def report(
    db_path, out_dir, *, experiment: str | None = None, config_hash: str | None = None
) -> list[Path]:
    """Write tables and plots for every matching config in ``db_path``; returns the paths.

    ``experiment`` / ``config_hash``: only that experiment / config (a hash prefix works).
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
            folder = out_dir / f"{run['experiment']}-{run['config_hash']}"
            folder.mkdir(parents=True, exist_ok=True)
            summary = summarise(rows)
            title = f"{run['experiment']} (config {run['config_hash']})"
            md = markdown_table(summary, title)
            times = timing(rows)
            if times:
                md += "\n| method | images | median s / image | total s |\n|---|---:|---:|---:|\n"
                md += "".join(
                    f"| {t['method']} | {t['pairs']} | {t['median_s']:.3g} | {t['total_s']:.3g} |\n"
                    for t in times
                )
                md += "\nSeconds of the explanation alone (first call per process includes compiling).\n"
            md += (
                f"\n{run['images']} images evaluated, {run['skipped']} skipped "
                f"(misclassified).\n\nConfig: `{json.dumps(run['config'], sort_keys=True)}`\n\n"
                f"Versions: `{json.dumps(run['versions'], sort_keys=True)}`\n"
            )
            (folder / "table.md").write_text(md, encoding="utf-8")
            written.append(folder / "table.md")
            with open(folder / "table.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=_CSV_COLS)
                w.writeheader()
                for s in summary:
                    w.writerow(
                        {
                            "experiment": run["experiment"],
                            "config_hash": run["config_hash"],
                            **s,
                        }
                    )
            written.append(folder / "table.csv")
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
