"""Integrated Gradients on ResNet-50: jaxattr against Captum, same weights, same run.

    python benchmarks/ig_vs_captum.py [--steps 32 128] [--chunks 8 32] [--size 224]

Each configuration runs in its own process so that its peak memory (max RSS) is its own.
Reported per configuration: the first call (jaxattr: compile + run), the best of
`--repeats` further calls, and the peak RSS above the process's RSS after loading the
model. Needs torch and captum (`pip install torch==2.13.0 captum`). Random weights (the
speed does not depend on them); both frameworks get the same weights through our converter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(framework: str, steps: int, chunk: int, size: int, repeats: int) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from jaxattr import models

    model = models.load("resnet50", weights="random")
    x = np.random.default_rng(0).normal(size=(size, size, 3)).astype(np.float32)
    target = 7
    if framework == "jaxattr":
        import jax
        import jax.numpy as jnp

        import jaxattr

        def explain(variables, x):
            f = jaxattr.scalar_output(lambda z: model.module.apply(variables, z), target)
            return jaxattr.integrated_gradients(f, x, n_steps=steps, batch_size=chunk)

        explain = jax.jit(explain)
        variables, x = model.variables, jnp.asarray(x)
        call = lambda: explain(variables, x).attributions.block_until_ready()
    else:
        import torch
        from captum.attr import IntegratedGradients

        from tests.models.torch_reference import make

        net = make("resnet50").eval()
        state = models.flax_to_torch(model.variables)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=False)
        ig = IntegratedGradients(net)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        call = lambda: ig.attribute(xt, target=target, n_steps=steps, internal_batch_size=chunk)
    rss0 = _current_rss_mb()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return dict(
        framework=framework,
        steps=steps,
        chunk=chunk,
        first_s=first,
        best_s=min(times),
        peak_mb=_rss_mb() - rss0,
    )


def versions() -> str:
    out = []
    for name in ("jax", "jaxlib", "flax", "torch", "captum"):
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    return ", ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 32])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--one", nargs=3, metavar=("FRAMEWORK", "STEPS", "CHUNK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        fw, steps, chunk = args.one
        print(json.dumps(run_one(fw, int(steps), int(chunk), args.size, args.repeats)))
        return

    print(f"# IG on ResNet-50 ({args.size}x{args.size}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {versions()}")
    print("| steps | chunk | jaxattr best s | Captum best s | time ratio | jaxattr first s "
          "| jaxattr peak MB | Captum peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        for chunk in args.chunks:
            res = {}
            for fw in ("jaxattr", "captum"):
                cmd = [sys.executable, __file__, "--one", fw, str(steps), str(chunk),
                       "--size", str(args.size), "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    sys.exit(f"{fw} steps={steps} chunk={chunk} failed:\n{out.stderr[-2000:]}")
                res[fw] = json.loads(out.stdout.strip().splitlines()[-1])
            j, c = res["jaxattr"], res["captum"]
            print(f"| {steps} | {chunk} | {j['best_s']:.2f} | {c['best_s']:.2f} | "
                  f"{j['best_s'] / c['best_s']:.2f} | {j['first_s']:.2f} | {j['peak_mb']:.0f} | "
                  f"{c['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
