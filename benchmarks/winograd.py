"""Winograd F(2x2, 3x3) against XLA's convolution on narrow and wide 3x3 layers, and
on CIFAR ResNet-20's IG, with `fast_convolutions` on (CPU).

    python benchmarks/winograd.py [--repeats 7] [--vgg16]

Layers: one 3x3 stride-1 convolution, ReLU and a weighted sum, its input gradient taken
in a `lax.scan` over 4 chunks (the shape of IG's chunk loop), compiled once; the best of
`--repeats` calls and the compile time. `winograd`: the rewrite with Winograd on every
eligible layer (`WINOGRAD_MIN_CHANNELS = 1`); `direct`: XLA's convolution (kernel in
`HWIO`, Winograd off). Model: IG of CIFAR ResNet-20 (random weights) on 8 images of
32x32, 32 steps in chunks of 8, vmapped over the images, under three settings:
Winograd off, from 64 channels in and out (the library's `WINOGRAD_MIN_CHANNELS`),
everywhere (the rule before it). `--vgg16`: IG of VGG-16 (random weights) on one
224x224 image, 32 steps in chunks of 8, from 64 channels against everywhere (which
differ on the 3 -> 64 stem only), with XLA's temporary bytes.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time

import jax
import jax.numpy as jnp
from jax import lax

from jaxattr import fast_convolutions as fc
from jaxattr.methods import integrated_gradients
from jaxattr.models import load

LAYERS = (  # (images, size, c_in, c_out)
    (64, 32, 16, 16),
    (64, 16, 32, 32),
    (64, 8, 64, 64),
    (8, 224, 3, 64),
    (8, 56, 64, 64),
    (8, 14, 256, 256),
)


def _timed(fn, args, repeats, *, temp=False):
    """Best of `repeats` calls and the compile time (and XLA's temporary MB if
    `temp`)."""
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t
    temp_mb = compiled.memory_analysis().temp_size_in_bytes / 1e6
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return (best, compile_s, temp_mb) if temp else (best, compile_s)


def layer(n, size, c_in, c_out, min_channels, repeats):
    fc.WINOGRAD_MIN_CHANNELS = min_channels
    kernel = 0.1 * jax.random.normal(jax.random.key(0), (3, 3, c_in, c_out))
    weights = jax.random.normal(jax.random.key(1), (n, size, size, c_out))

    def f(x):
        y = lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(jax.nn.relu(y) * weights)

    def run(xs):
        return lax.scan(lambda c, x: (c + jax.grad(f)(x).sum(), None), 0.0, xs)[0]

    xs = jax.random.normal(jax.random.key(2), (4, n, size, size, c_in))
    return _timed(fc.fast_convolutions(run), (xs,), repeats)


def resnet20_ig(min_channels, repeats):
    fc.WINOGRAD_MIN_CHANNELS = min_channels
    model = load("cifar_resnet20", weights="random")
    xs = jax.random.uniform(jax.random.key(0), (8, 32, 32, 3))

    def one(x):
        f = lambda z: model.fn(z[None])[0, 3]
        return integrated_gradients(f, x, jnp.zeros_like(x), n_steps=32, batch_size=8)

    return _timed(lambda xs: jax.vmap(one)(xs).attributions, (xs,), repeats)


def vgg16_ig(min_channels, repeats):
    fc.WINOGRAD_MIN_CHANNELS = min_channels
    model = load("vgg16", weights="random")
    x = jax.random.uniform(jax.random.key(0), (224, 224, 3))
    f = lambda z: model.fn(z[None])[0, 3]
    ig = lambda x: integrated_gradients(
        f, x, jnp.zeros_like(x), n_steps=32, batch_size=8
    )
    return _timed(lambda x: ig(x).attributions, (x,), repeats, temp=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--vgg16", action="store_true")
    args = parser.parse_args()
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()},"
        f" jax {jax.__version__}, {jax.devices()[0].device_kind}"
    )
    print("| layer (N, HxW, C_in -> C_out) | Winograd ms | direct ms | ratio |"
          " Winograd compile s | direct compile s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for n, size, c_in, c_out in LAYERS:
        (w, wc), (d, dc) = (
            layer(n, size, c_in, c_out, m, args.repeats) for m in (1, 10**9)
        )
        print(f"| {n}, {size}x{size}, {c_in} -> {c_out} | {w * 1e3:.1f} | {d * 1e3:.1f}"
              f" | {w / d:.2f} | {wc:.2f} | {dc:.2f} |", flush=True)  # fmt: skip
    print("\n| CIFAR ResNet-20 IG, 8 images x 32 steps | s | compile s |")
    print("|---|---:|---:|")
    for label, m in (
        ("Winograd off", 10**9),
        ("from 64 channels in and out", 64),
        ("everywhere", 1),
    ):
        run_s, compile_s = resnet20_ig(m, args.repeats)
        print(f"| {label} | {run_s:.3f} | {compile_s:.2f} |", flush=True)
    if args.vgg16:
        print("\n| VGG-16 IG, 1 image x 32 steps | s | compile s | XLA temp MB |")
        print("|---|---:|---:|---:|")
        for label, m in (("from 64 channels in and out", 64), ("everywhere", 1)) * 2:
            run_s, compile_s, temp_mb = vgg16_ig(m, max(1, args.repeats // 3))
            print(
                f"| {label} | {run_s:.2f} | {compile_s:.1f} | {temp_mb:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
