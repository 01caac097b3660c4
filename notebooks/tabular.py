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
# # Explaining a tabular model: an MLP on breast-cancer data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/tabular.ipynb)
#
# Most models explained with Integrated Gradients are not image classifiers. This notebook
# trains a small MLP with optax on a real data set that ships inside scikit-learn (no
# download): the **Wisconsin diagnostic breast-cancer** data (569 tumours, 30 features
# computed from a digitised image of a fine-needle aspirate, malignant or benign; Street,
# Wolberg, Mangasarian 1993), and explains its predictions feature by feature.
#
# * **IG** (Sundararajan, Taly, Yan, *Axiomatic Attribution for Deep Networks*, ICML 2017):
#   `IG_i = (x_i - x'_i) * int_0^1 df/dx_i (x' + a (x - x')) da`, with
#   `sum_i IG_i = f(x) - f(x')` (completeness).
# * **The baseline** `x'` is the **training mean**: an "average tumour". A zero baseline
#   means nothing for raw features (a radius of 0 mm, an area of 0 mm^2); after the usual
#   standardisation the training mean *is* the zero vector. Here the model standardises
#   inside (as the image models normalise pixels inside), so the attributions are in the
#   data's own units and the baseline is visible: `data.mean`. Each `IG_i` then says how much
#   feature `i`'s departure from the average moves the logit.
# * **Feature importance**: the mean `|IG|` over the held-out examples, one bar per feature,
#   and the signed attributions of one example.
# * **Deletion** (as RISE's deletion metric, Petsiuk, Das, Saenko, BMVC 2018, with features
#   instead of pixels): replace the features by their training mean one at a time, in the
#   order of their attributions, and record the target logit; a faithful attribution makes
#   it fall faster (a smaller area under the curve) than a random order.

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
# On Colab, a CPU runtime is enough: the model trains in seconds and every computation below
# is small. JAX runs on its default backend, printed below; `ACCELERATOR` is true on a GPU
# or a TPU, and this notebook uses the same settings on every backend.

# %%
import jax

print(f"JAX {jax.__version__}, backend {jax.default_backend()!r}:", jax.devices())
ACCELERATOR = jax.default_backend() != "cpu"  # a GPU or a TPU
if not ACCELERATOR:
    print("No GPU or TPU: fine here, the real settings take seconds on a CPU.")

# %% [markdown]
# `TINY` (environment variable `JAXATTR_NOTEBOOK_TINY=1`) switches to settings that run even
# faster, used by the tests so that the notebook never rots: 30 training steps instead of
# 200, 16 IG steps instead of 50, 32 held-out examples instead of all 143. The numbers are
# then meaningless (the model is barely trained); leave it unset for the real ones.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxattr
from jaxattr import tabular, viz

TINY = os.environ.get("JAXATTR_NOTEBOOK_TINY") == "1"
TRAIN_STEPS = 30 if TINY else 200  # full-batch AdamW steps
IG_STEPS = 16 if TINY else 50  # Gauss-Legendre nodes (Captum's default 50)
N_EXPLAINED = 32 if TINY else None  # held-out examples explained (None: all)
N_RANDOM = 4 if TINY else 20  # random orders per example in the deletion test

# %% [markdown]
# ## The data
#
# `tabular.load_dataset` splits scikit-learn's data set into 75 % training and 25 % test
# rows, stratified by class with a fixed seed, and keeps the training set's per-feature mean
# and standard deviation. The features span five orders of magnitude (areas in the
# thousands, fractal dimensions near 0.06): the model standardises them with the training
# statistics.

# %%
data = tabular.load_dataset("breast_cancer", seed=0)
print(
    f"train {data.x_train.shape}, test {data.x_test.shape}; classes {data.class_names}"
)
print("test rows per class:", np.bincount(data.y_test))
for name, mean, std in list(zip(data.feature_names, data.mean, data.std))[:4]:
    print(f"  {name:24s} training mean {mean:9.3f}, std {std:8.3f}")

# %% [markdown]
# ## Training: an MLP with optax
#
# `tabular.train_mlp`: two hidden layers of 32 ReLU units, full-batch AdamW
# (learning rate `3e-3`, weight decay `1e-2`) on the cross-entropy, from a fixed seed; the
# whole loop is one compiled `lax.scan`. `model.fn` maps raw features `[N, 30]` to the two
# logits `[N, 2]`; `model.apply(params, x)` is the same with the weights as an argument.

# %%
model = tabular.train_mlp(data, n_steps=TRAIN_STEPS, seed=0)
train_acc = tabular.accuracy(model.fn, data.x_train, data.y_train)
test_acc = tabular.accuracy(model.fn, data.x_test, data.y_test)
n_test = len(data.y_test)
print(f"training loss {model.losses[0]:.3f} -> {model.losses[-1]:.4f}")
print(f"accuracy: training {train_acc:.3f}, held-out {test_acc:.3f}", end=" ")
print(f"({round(test_acc * n_test)} of {n_test} test tumours)")

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(model.losses)
ax.set(xlabel="AdamW step", ylabel="training cross-entropy", title="training")
plt.show()

# %% [markdown]
# ## IG with the training-mean baseline
#
# One compiled function explains every held-out example (`vmap`), each for the class the
# model predicts, from the baseline `data.mean`. The weights are an argument (`params`),
# not constants baked into the compiled code. Completeness is checked twice: IG's own
# `delta = sum(A) - (f(x) - f(x'))`, and the sum of the attributions against the two logits
# computed directly.

# %%
x = jnp.asarray(data.x_test[:N_EXPLAINED])
y = data.y_test[:N_EXPLAINED]
target = jnp.argmax(model.fn(x), axis=-1)
baseline = jnp.asarray(data.mean)  # the training mean: an "average tumour"


@jax.jit
def explain(params, x, target):
    def one(x, t):
        f = jaxattr.scalar_output(jax.tree_util.Partial(model.apply, params), t)
        return jaxattr.integrated_gradients(f, x, baseline, n_steps=IG_STEPS)

    return jax.vmap(one)(x, target)


result = explain(model.params, x, target)
A = result.attributions  # [N, 30], in logit units
logits_x = jnp.take_along_axis(model.fn(x), target[:, None], axis=-1)[:, 0]
logits_mean = model.fn(baseline[None])[0, target]
gap = logits_x - logits_mean
err = jnp.abs(A.sum(axis=-1) - gap)
print(f"{len(x)} examples; f(x) - f(mean): median |gap| {jnp.median(jnp.abs(gap)):.2f}")
print(
    f"completeness: median |sum(A) - gap| / |gap| = {jnp.median(err / jnp.abs(gap)):.2%},"
)
print(
    f"  max |delta| = {jnp.abs(result.delta).max():.3g} (IG's own check agrees:",
    end=" ",
)
print(f"{bool(jnp.allclose(result.delta, A.sum(-1) - gap, atol=1e-3))})")

# %% [markdown]
# ## Feature importance
#
# `viz.visualize_feature_attr` draws one bar per feature: for a set of examples `[N, F]` the
# mean `|IG|` (how much each feature moves the logit, either way), for one example `[F]` the
# signed attributions (green: pushes towards the predicted class; red: away from it). Below,
# the 15 largest of 30.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
viz.visualize_feature_attr(
    A, data.feature_names, top_k=15, ax=axes[0], title="mean |IG| over the test set"
)
i = int(jnp.argmax(jnp.abs(gap)))
viz.visualize_feature_attr(
    A[i],
    data.feature_names,
    top_k=15,
    ax=axes[1],
    title=f"test example {i}: predicted {data.class_names[int(target[i])]},"
    f" label {data.class_names[int(y[i])]}",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Deletion: IG's order against a random order
#
# For each example, delete the features one at a time (replace each by its training mean)
# in the order of IG -- the most positive attribution first -- and record the predicted
# class's logit: `tabular.deletion_curves` gives the `F + 1 = 31` values from `f(x)` to
# `f(mean)`. The same from random orders (`N_RANDOM` per example) is the reference. Every
# curve starts at `f(x)` and ends at `f(mean)`; a faithful attribution makes the logit fall
# first, i.e. a smaller area under the curve.

# %%
ig_order = jnp.argsort(-A, axis=-1)  # the most positive attribution first
curves_ig = tabular.deletion_curves(model.fn, x, ig_order, baseline, target)
keys = jax.random.split(jax.random.key(0), (N_RANDOM, len(x)))
random_orders = jax.vmap(jax.vmap(lambda k: jax.random.permutation(k, x.shape[1])))(
    keys
)
curves_random = jnp.stack(
    [tabular.deletion_curves(model.fn, x, o, baseline, target) for o in random_orders]
)  # [N_RANDOM, N, F + 1]
auc_ig = tabular.area_under_curve(curves_ig)  # [N]
auc_random = tabular.area_under_curve(curves_random).mean(axis=0)  # [N]
print(f"area under the deletion curve (mean over {len(x)} examples; lower is better):")
print(f"  IG order     {auc_ig.mean():.3f}")
print(f"  random order {auc_random.mean():.3f}")
print(f"  IG lower on {int((auc_ig < auc_random).sum())} of {len(x)} examples")

fraction = np.linspace(0, 1, x.shape[1] + 1)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(fraction, curves_ig.mean(axis=0), label="IG order")
ax.plot(fraction, curves_random.mean(axis=(0, 1)), label="random order")
ax.set(
    xlabel="fraction of features replaced by the training mean",
    ylabel="logit of the predicted class (mean)",
    title="deletion",
)
ax.legend()
plt.show()

# %% [markdown]
# ## Notes
#
# * **Other baselines.** `baseline=` takes any array of the input's shape, or a list of
#   them (their IGs are averaged): e.g. the class means, or a few training rows as in
#   Expected Gradients (`jaxattr.expected_gradients`).
# * **The same code for any tabular model**: `jaxattr.scalar_output(model_fn, target)` turns
#   any function of a batch `[N, F]` into the scalar that IG explains; nothing here depends
#   on the model being an MLP.
# * The test `tests/test_tabular.py` checks the held-out accuracy, completeness with the
#   training-mean baseline and the deletion comparison with this model and seed.
