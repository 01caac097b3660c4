"""How to run the chunks of path nodes: scan, unrolled, or a host loop; and what
`fast_convolutions` changes.

    python benchmarks/chunking.py [--model resnet50] [--steps 32] [--chunk 8]

IG's gradient sum over `--steps` Gauss-Legendre nodes in chunks of `--chunk`, one
224 x 224 image, four ways, each with the convolution rewrite on and off
(`JAXATTR_FAST_CONVOLUTIONS`, read when a function is traced):

* `scan`: `engine.chunked_sum` (what every method uses: a `lax.scan` over chunks,
  inside one `jit`);
* `unrolled`: a Python loop over the chunks inside one `jit`;
* `host loop`: a Python loop on the host calling one jitted chunk (cannot run
  inside a user's `jit`).

Reported: best of 2 calls after the first (s), compile time (s), and XLA's
temporary buffers of the compiled program (MB; for the host loop, of one chunk).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxattr
    from jaxattr import engine, fast_convolutions, models, quadrature

    weights = None if args.model == "efficientnet_lite0" else "random"
    model = models.load(args.model, weights=weights)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(224, 224, 3)), jnp.float32)
    alphas, weights_ = (
        jnp.asarray(a, jnp.float32)
        for a in quadrature.nodes_and_weights("gausslegendre", args.steps)
    )
    n_chunks = args.steps // args.chunk

    def node(variables, x, item):
        f = jaxattr.scalar_output(lambda z: model.module.apply(variables, z), 7)
        a, w = item
        return w * jax.grad(f)(a * x) * x, None

    def scan(variables, x):
        return engine.chunked_sum(
            lambda it: node(variables, x, it), (alphas, weights_), batch_size=args.chunk
        )[0]

    def chunk_sum(variables, x, a, w):
        fn = fast_convolutions.fast_convolutions(
            jax.vmap(lambda it: node(variables, x, it))
        )
        return fn((a, w))[0].sum(0)

    def unrolled(variables, x):
        return sum(
            chunk_sum(variables, x, alphas[i * args.chunk:(i + 1) * args.chunk],
                      weights_[i * args.chunk:(i + 1) * args.chunk])
            for i in range(n_chunks)
        )  # fmt: skip

    def timed(call):
        call()
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t0)
        return best

    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(
        f"# {args.model}, {args.steps} steps in chunks of {args.chunk}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load} at the start; jax {jax.__version__}\n"
    )
    print("| chunks run as | fast_convolutions | s | compile s | XLA temp MB |")
    print("|---|---|---:|---:|---:|")
    v = model.variables
    for rewrite in ("1", "0"):
        os.environ[fast_convolutions.ENV_SWITCH] = rewrite
        for name in ("scan", "unrolled", "host loop"):
            t0 = time.perf_counter()
            if name == "host loop":
                one = jax.jit(lambda v, x, a, w: chunk_sum(v, x, a, w))
                c = args.chunk
                compiled = one.lower(v, x, alphas[:c], weights_[:c]).compile()

                def call(compiled=compiled, c=c):
                    total = 0.0
                    for i in range(n_chunks):
                        total = total + compiled(
                            v,
                            x,
                            alphas[i * c : (i + 1) * c],
                            weights_[i * c : (i + 1) * c],
                        )
                    return jax.block_until_ready(total)
            else:
                fn = scan if name == "scan" else unrolled
                compiled = jax.jit(lambda v, x, fn=fn: fn(v, x)).lower(v, x).compile()

                def call(compiled=compiled):
                    return jax.block_until_ready(compiled(v, x))

            compile_s = time.perf_counter() - t0
            temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
            print(
                f"| {name} | {'on' if rewrite == '1' else 'off'} | {timed(call):.2f} | "
                f"{compile_s:.1f} | {temp:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
