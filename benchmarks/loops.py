"""Methods and metrics that evaluate the model inside their own loops, with and
without `fast_convolutions`, on EfficientNet-Lite0 (one 224x224 photo, CPU).

    python benchmarks/loops.py [--methods guided_ig agi dga aupc adaptive_noising]
        [--modes off on] [--repeats 2] [--adaptive-iterations 1]

For each method and mode, one process, one after the other: the method is jitted
afresh (`JAXATTR_FAST_CONVOLUTIONS` is read when a function is traced), compiled, and
called `--repeats` times (`--slow-repeats` for AUPC and adaptive noising); the best call is reported, with the compile time and the
load average around the calls. `off` is `JAXATTR_FAST_CONVOLUTIONS=0` (no rewrite
anywhere); `on` is the library as it is.

Settings: Guided IG as in the IDG experiment (50 steps, fraction 0.5, max_dist 1,
softmax, zero baseline); AGI as in IDG's experiment (1 false class, eps 0.05,
max_iter 20, from the original); DGA the authors' (30 steps, q 0.9); AUPC
SmoothTaylor's (15x15 windows, 30 regions, 50 candidates) on a fixed random map;
adaptive noising SmoothTaylor's experiment (150 roots in chunks of 50, AUPC
objective with the same settings, normalised units) but `--adaptive-iterations`
steps instead of 20 (each step is one or two SmoothTaylor + AUPC evaluations; the
full search is up to 41).

Also reported for Guided IG: one gradient of its `f` alone (jitted), and the
per-inner-iteration quantile (`jnp.quantile(..., method="lower")` on 150528
scores) alone, with the number of inner iterations the run took, to say how much
of Guided IG is its selection rather than its gradients.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

METHODS = ("guided_ig", "agi", "dga", "aupc", "adaptive_noising")
ENV = "JAXATTR_FAST_CONVOLUTIONS"


def _timed(fn, args, repeats):
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s, out


def build(name, model, x, target, adaptive_iterations):
    """`(fn, args)`: `fn(*args)` runs the method or metric once."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import baselines, metrics

    key = jax.random.key(0)
    aupc_kw = {"kernel_size": 15, "n_regions": 30, "n_perturb_samples": 50}
    if name == "guided_ig":

        def fn(model_fn, x):
            f = jaxattr.scalar_output(model_fn, target, output="softmax")
            return jaxattr.guided_integrated_gradients(
                f, x, "black", n_steps=50, fraction=0.5, max_dist=1.0
            )

        return fn, (model.fn, x)
    if name == "agi":

        def fn(model_fn, x):
            return jaxattr.adversarial_gradient_integration(
                lambda z: model_fn(z[None])[0],
                x,
                target,
                n_classes=1,
                max_iter=20,
                eps=0.05,
                from_original=True,
            )

        return fn, (model.fn, x)
    if name == "dga":

        def fn(model_fn, x):
            f = jaxattr.scalar_output(model_fn, target)
            return jaxattr.distilled_gradient_aggregation(
                f, x, "black", n_steps=30, q=0.9, beta=0.0, ufg="shortcut"
            )

        return fn, (model.fn, x)
    if name == "aupc":
        heat = jnp.asarray(np.random.default_rng(0).normal(size=x.shape[:2]), x.dtype)

        def fn(model_fn, x, heat):
            return metrics.aupc(model_fn, x, heat, key=key, target=target, **aupc_kw)

        return fn, (model.fn, x, heat)
    if name == "adaptive_noising":
        norm = baselines.normalisation_stats(model.normalise)

        def fn(model_fn, x):
            f = jaxattr.scalar_output(model_fn, target)
            return jaxattr.adaptive_noising(
                f,
                x,
                key=key,
                score_fn="aupc",
                score_kwargs=aupc_kw,
                n_roots=150,
                batch_size=50,
                learning_rate=0.1,
                max_iterations=adaptive_iterations,
                max_stop=3,
                normalisation=norm,
            )

        return fn, (model.fn, x)
    raise ValueError(name)


def guided_ig_parts(model, x, target, repeats):
    """Seconds of one gradient of Guided IG's `f` (through `fast_convolutions`, as
    in its loop), and of one selection threshold by a full sort (`jnp.quantile`,
    before) and by `guided_ig._lower_quantile` (now)."""
    import jax
    import jax.numpy as jnp

    import jaxattr
    from jaxattr.fast_convolutions import fast_convolutions
    from jaxattr.methods.guided_ig import _lower_quantile

    def grad(model_fn, x):
        f = jaxattr.scalar_output(model_fn, target, output="softmax")
        return fast_convolutions(jax.value_and_grad(f))(x)

    grad_s, _, _ = _timed(grad, (model.fn, x), repeats)
    score = jnp.abs(jax.random.normal(jax.random.key(1), (x.size,), x.dtype))
    sort_s, _, _ = _timed(
        lambda s: jnp.quantile(s, 0.5, method="lower"), (score,), max(repeats, 10)
    )
    select_s, _, _ = _timed(
        lambda s: _lower_quantile(s, 0.5), (score,), max(repeats, 10)
    )
    return grad_s, sort_s, select_s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--modes", nargs="+", choices=("off", "on"), default=["off", "on"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--slow-repeats", type=int, default=1, help="repeats of aupc, adaptive_noising"
    )
    p.add_argument("--adaptive-iterations", type=int, default=1)
    p.add_argument("--json", help="append one JSON line per measurement here")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import jaxattr
    from jaxattr import images, models

    model = models.load("efficientnet_lite0")
    x = jnp.asarray(images.default_images(["coffee"])[0].image)
    target = int(jnp.argmax(model.fn(x[None])[0]))
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,"
        f" {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__},"
        f" jaxattr {jaxattr.__version__ if hasattr(jaxattr, '__version__') else ''},"
        f" target {target}"
    )
    print("| method | fast_convolutions | s | compile s | load avg (1 min) |")
    print("|---|---|---:|---:|---|")
    saved = os.environ.get(ENV)
    rows = []
    for name in args.methods:
        for mode in args.modes:
            os.environ[ENV] = "0" if mode == "off" else "1"
            fn, fn_args = build(name, model, x, target, args.adaptive_iterations)
            load0 = os.getloadavg()[0]
            slow = name in ("aupc", "adaptive_noising")
            repeats = args.slow_repeats if slow else args.repeats
            s, compile_s, out = _timed(fn, fn_args, repeats)
            load1 = os.getloadavg()[0]
            row = {
                "method": name,
                "mode": mode,
                "s": round(s, 3),
                "compile_s": round(compile_s, 1),
                "load": [round(load0, 2), round(load1, 2)],
            }
            if name == "guided_ig":
                row["inner_iterations"] = int(out.aux["inner_iterations"].sum())
                row["delta"] = float(out.delta)
            if name == "adaptive_noising":
                row["evaluations"] = int(out.aux["n_evaluations"])
            rows.append(row)
            print(
                f"| {name} | {mode} | {s:.2f} | {compile_s:.1f} |"
                f" {load0:.1f} -> {load1:.1f} |",
                flush=True,
            )
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    if "guided_ig" in args.methods:
        os.environ[ENV] = "1"
        grad_s, sort_s, select_s = guided_ig_parts(model, x, target, args.repeats)
        inner = [r["inner_iterations"] for r in rows if r["method"] == "guided_ig"][-1]
        print(
            f"\nGuided IG parts: one gradient {grad_s:.3f} s (x50 = {50 * grad_s:.2f}"
            f" s); one selection threshold by a full sort {sort_s * 1e3:.1f} ms, sort-free"
            f" {select_s * 1e3:.1f} ms (x{inner} inner iterations: {inner * sort_s:.2f}"
            f" s and {inner * select_s:.2f} s)"
        )
    if saved is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = saved
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
