"""A hyperparameter sweep as one `vmap`, against one call per value.

    python benchmarks/sweep.py [--values 8] [--steps 32] [--chunk 8] [--repeats 2]

EfficientNet-Lite0 (real weights), one 224 x 224 image, two sweeps of `--values`
continuous hyperparameter values, each run two ways in the same process:

* `vmap`: one jitted function of the whole vector of values (`jax.vmap` over it);
* `calls`: the same jitted function of one value (the value is a traced argument,
  so it compiles once), called once per value.

Sweeps:

* **Split-IG threshold** (`split_integrated_gradients`, left part, `n_steps`
  Gauss-Legendre nodes in chunks of `--chunk`): the path and its gradients do not
  depend on the threshold, only the weights do. Under `vmap` JAX batches only what
  depends on the mapped value, so the gradients are computed once for all values.
* **SmoothGrad noise level** (`noise_tunnel(saliency)`, `stdev_spread`, `n_steps`
  noisy samples in chunks of `--chunk`, the same key): every value moves every sample,
  so the `vmap` does all the work of the separate calls, in larger batches.

Reported: seconds (best of `--repeats` after a first call), compile seconds, the
ratio vmap / calls, and the largest difference between the two ways' results.
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


def best_of(call, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--values", type=int, default=8)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import models

    model = models.load("efficientnet_lite0")
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(224, 224, 3)), jnp.float32)
    f = jaxattr.scalar_output(model.fn, 7)
    key = jax.random.key(0)

    def split_ig(threshold):
        return jaxattr.split_integrated_gradients(
            f, x, threshold=threshold, n_steps=args.steps, batch_size=args.chunk
        ).attributions

    def smoothgrad(spread):
        return jaxattr.noise_tunnel(
            jaxattr.saliency, f, x, key=key, nt_samples=args.steps,
            stdev_spread=spread, nt_samples_batch_size=args.chunk,
        ).attributions  # fmt: skip

    sweeps = {
        "Split-IG threshold": (split_ig, np.linspace(0.1, 0.95, args.values)),
        "SmoothGrad stdev_spread": (smoothgrad, np.linspace(0.05, 0.4, args.values)),
    }
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(
        f"# {args.values}-value sweeps on EfficientNet-Lite0, {args.steps} evaluations "
        f"per value in chunks of {args.chunk}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load} at the start; jax {jax.__version__}\n"
    )
    print(
        "| sweep | vmap s | calls s | vmap / calls | vmap compile s | one-value compile s "
        "| max abs diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (fn, values) in sweeps.items():
        values = jnp.asarray(values, jnp.float32)
        t0 = time.perf_counter()
        swept = jax.jit(jax.vmap(fn)).lower(values).compile()
        compile_vmap = time.perf_counter() - t0
        t0 = time.perf_counter()
        one = jax.jit(fn).lower(values[0]).compile()
        compile_one = time.perf_counter() - t0
        t_vmap = best_of(
            lambda s=swept, v=values: s(v).block_until_ready(), args.repeats
        )
        t_calls = best_of(
            lambda o=one, vs=values: [o(v).block_until_ready() for v in vs],
            args.repeats,
        )
        diff = float(jnp.abs(swept(values) - jnp.stack([one(v) for v in values])).max())
        print(
            f"| {name} | {t_vmap:.2f} | {t_calls:.2f} | {t_vmap / t_calls:.2f} | "
            f"{compile_vmap:.1f} | {compile_one:.1f} | {diff:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
