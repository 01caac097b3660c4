"""Insertion + deletion (RISE protocol) on EfficientNet-Lite0: jaxattr against PyTorch.

    python benchmarks/metrics.py [--step 224] [--batch 32] [--repeats 3] [--threads 2]

One 224 x 224 photo, its saliency map as the attribution, 224 pixels per step
(225 images per curve, 450 forward passes in all). Same weights in both frameworks:
the PyTorch EfficientNet-Lite0 of tests/models/torch_reference.py is loaded from `models.flax_to_torch` of the
Flax variables. Reported, in one run and one process:

* `jaxattr`: `jit(insertion + deletion)`, images in chunks of `--batch`; compile time
  and the best of `--repeats` calls after it;
* `torch_loop`: RISE's `CausalMetric.single_run` written plainly: one forward pass
  per step (batch of 1), the image mutated in place;
* `torch_batched`: the same protocol with the 225 images of a curve built up front
  and scored `--batch` at a time (what a careful PyTorch user would write);

and the largest difference between the frameworks' curves. Needs torch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def torch_lite0(state_dict):
    """EfficientNet-Lite0 in PyTorch (tests/models/torch_reference.py), on pixels."""
    sys.path.insert(0, str(ROOT))
    from tests.models.torch_reference import lite0_on_pixels

    return lite0_on_pixels(state_dict)


def torch_gkern(klen=11, nsig=5):
    """RISE's gkern: [3, 3, klen, klen] diagonal kernel of a smoothed Dirac."""
    import numpy as np
    import scipy.ndimage as nd
    import torch

    d = np.zeros((klen, klen))
    d[klen // 2, klen // 2] = 1
    k = nd.gaussian_filter(d, nsig)
    kern = np.zeros((3, 3, klen, klen), np.float32)
    for c in range(3):
        kern[c, c] = k
    return torch.from_numpy(kern)


def torch_protocol(model, img, sal, step, batch, mean):
    """RISE insertion and deletion, straightforward loop and batched, in PyTorch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    hw = sal.size
    n = math.ceil(hw / step)
    order = np.argsort(sal.reshape(-1), kind="stable")[::-1].copy()
    x = torch.from_numpy(img).permute(2, 0, 1)[None]  # [1, 3, H, W]
    m = torch.tensor(mean).reshape(1, 3, 1, 1)
    blur = F.conv2d(x - m, torch_gkern(), padding=5) + m  # RISE: zero pad, normalised
    gray = m.expand_as(x)
    with torch.no_grad():
        c = int(model(x).argmax())

    def loop(start, finish):
        start = start.clone()
        flat_s = start.view(1, 3, hw)
        flat_f = finish.reshape(1, 3, hw)
        curve = []
        with torch.no_grad():
            for i in range(n + 1):
                curve.append(float(torch.softmax(model(start), 1)[0, c]))
                if i < n:
                    idx = torch.from_numpy(order[i * step : (i + 1) * step])
                    flat_s[0, :, idx] = flat_f[0, :, idx]
        return np.array(curve)

    def batched(start, finish):
        rank = torch.empty(hw, dtype=torch.long)
        rank[torch.from_numpy(order)] = torch.arange(hw)
        rank = rank.reshape(1, 1, *sal.shape)
        curve = []
        with torch.no_grad():
            for k0 in range(0, n + 1, batch):
                ks = torch.arange(k0, min(k0 + batch, n + 1)).reshape(-1, 1, 1, 1)
                imgs = torch.where(rank < ks * step, finish, start)
                curve.append(torch.softmax(model(imgs), 1)[:, c])
        return torch.cat(curve).numpy()

    return {
        "loop": lambda: (loop(blur, x), loop(x, gray)),
        "batched": lambda: (batched(blur, x), batched(x, gray)),
    }


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def auc(curve):
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--step", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import jaxattr
    from jaxattr import images, metrics, models

    torch.set_num_threads(args.threads)
    m = models.load("efficientnet_lite0")
    x = jnp.asarray(images.default_images(["coffee"])[0].image, jnp.float32)
    f = jaxattr.scalar_output(m.fn, jnp.argmax, x=x)
    a = jax.jit(lambda x: jaxattr.saliency(f, x).attributions)(x)
    mean = (127 / 255,) * 3  # 0 in Lite0's normalised space: RISE's "zeros"

    def both(fn, x, a):
        kw = dict(step=args.step, batch_size=args.batch, mean=mean)  # noqa: C408
        return (
            metrics.insertion(fn, x, a, **kw),
            metrics.deletion(fn, x, a, **kw),
        )

    jitted = jax.jit(both)
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(m.fn, x, a))
    compile_s = time.perf_counter() - t0
    jax_s, (ins, dele) = best_of(
        lambda: jax.block_until_ready(jitted(m.fn, x, a)), args.repeats
    )

    net = torch_lite0(models.flax_to_torch(m.variables))
    sal = np.abs(np.asarray(a).sum(-1))
    runs = torch_protocol(net, np.asarray(x), sal, args.step, args.batch, mean)
    loop_s, (t_ins, t_del) = best_of(runs["loop"], max(1, args.repeats - 1))
    batched_s, (b_ins, b_del) = best_of(runs["batched"], max(1, args.repeats - 1))

    diff = max(
        float(np.abs(np.asarray(ins.curve) - t_ins).max()),
        float(np.abs(np.asarray(dele.curve) - t_del).max()),
        float(np.abs(b_ins - t_ins).max()),
        float(np.abs(b_del - t_del).max()),
    )
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus_visible": os.cpu_count(),
        "torch_threads": args.threads,
        "jax": jax.__version__,
        "torch": torch.__version__,
        "steps_per_curve": len(t_ins) - 1,
        "batch": args.batch,
        "jaxattr_compile_s": round(compile_s, 2),
        "jaxattr_s": round(jax_s, 3),
        "torch_loop_s": round(loop_s, 3),
        "torch_batched_s": round(batched_s, 3),
        "speedup_vs_torch_loop": round(loop_s / jax_s, 2),
        "speedup_vs_torch_batched": round(batched_s / jax_s, 2),
        "insertion_auc": [round(float(ins.score), 5), round(auc(t_ins), 5)],
        "deletion_auc": [round(float(dele.score), 5), round(auc(t_del), 5)],
        "max_curve_diff": diff,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
