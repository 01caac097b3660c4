"""Integrated Gradients on ResNet-50: jaxattr against Captum, same weights, same run.

    python benchmarks/ig_vs_captum.py [--steps 32 128] [--chunks 8 32] [--size 224]

Each configuration runs in its own process. Reported per configuration: jaxattr's
compile time, the best of `--repeats` calls after the first, and memory: the peak RSS
during the calls above the RSS before them (the peak is reset after loading the model
and, for jaxattr, after compiling; the weights are in the baseline, and memory that an
allocator kept from compilation is not counted), and for jaxattr also XLA's own count
of the temporary buffers of the compiled program (`memory_analysis().temp_size_in_bytes`). Needs torch and captum (`pip install torch==2.13.0 captum`). Random weights (the
speed does not depend on them); both frameworks get the same weights through our converter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so compilation is not counted."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


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

        variables, x = model.variables, jnp.asarray(x)
        t0 = time.perf_counter()
        compiled = jax.jit(explain).lower(variables, x).compile()
        compile_s = time.perf_counter() - t0
        xla_temp_mb = compiled.memory_analysis().temp_size_in_bytes / 2**20
        call = lambda: compiled(variables, x).attributions.block_until_ready()
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
        compile_s, xla_temp_mb = 0.0, float("nan")
    rss0 = _status_mb("VmRSS")
    _reset_peak()
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
        compile_s=compile_s,
        first_s=first,
        xla_temp_mb=xla_temp_mb,
        best_s=min(times),
        peak_mb=_status_mb("VmHWM") - rss0,
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
    print("| steps | chunk | jaxattr s | Captum s | time ratio | jaxattr compile s "
          "| jaxattr peak RSS MB | Captum peak RSS MB | XLA temp buffers MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
                  f"{j['best_s'] / c['best_s']:.2f} | {j['compile_s']:.1f} | {j['peak_mb']:.0f} | "
                  f"{c['peak_mb']:.0f} | {j['xla_temp_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
