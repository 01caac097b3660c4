"""A tiny colour classifier, methods and metrics for the jaxattr.runs tests.

The model scores class k by 10 x the mean of channel k, so a red / green / blue image is
class 0 / 1 / 2 and labels are known without training. Methods and metrics count their
executions (``jax.debug.callback``), so tests can check what a resume recomputes.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxattr
from jaxattr import metrics as jm
from jaxattr.runs import Example, Experiment

SIZE = 8


def _apply(scale, x):
    return scale * x.mean(axis=(1, 2))  # [N, H, W, 3] -> [N, 3]


class TinyModel(NamedTuple):
    fn: object


def tiny_model() -> TinyModel:
    return TinyModel(jax.tree_util.Partial(_apply, jnp.float32(10.0)))


def make_examples(
    n: int = 4, seed: int = 0, wrong: tuple[int, ...] = ()
) -> list[Example]:
    """``n`` images whose dominant channel is ``i % 3``; indices in ``wrong`` get a wrong label."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.uniform(0, 0.4, (SIZE, SIZE, 3)).astype(np.float32)
        img[..., i % 3] += 0.5
        label = (i % 3 + 1) % 3 if i in wrong else i % 3
        out.append(Example(f"img/{i:02d}.png", img, label))
    return out


#: Executions of each method, over the whole test session (tests compare differences).
CALLS: collections.Counter = collections.Counter()


def _bump(name):
    def bump():
        CALLS[name] += 1

    return bump


def grad_x_input(model_fn, x, target, key):
    jax.debug.callback(_bump("grad_x_input"))
    f = jaxattr.scalar_output(model_fn, target)
    return jaxattr.input_x_gradient(f, x)


def noisy_saliency(model_fn, x, target, key):
    jax.debug.callback(_bump("noisy_saliency"))
    f = jaxattr.scalar_output(model_fn, target)
    a = jaxattr.saliency(f, x)
    return a._replace(
        attributions=a.attributions + 0.1 * jax.random.normal(key, x.shape)
    )


def deletion(model_fn, x, a, target, key):
    r = jm.deletion(model_fn, x, a, target=target, step=16, perturb_baseline="black",
                    batch_size=None)  # fmt: skip
    return r.score, r.curve


def insertion(model_fn, x, a, target, key):
    r = jm.insertion(model_fn, x, a, target=target, step=16, perturb_baseline="black",
                     batch_size=None)  # fmt: skip
    return r.score, r.curve


def noise(model_fn, x, a, target, key):
    return jnp.sum(a * jax.random.normal(key, a.shape)), None


METHODS = {"grad_x_input": grad_x_input, "noisy_saliency": noisy_saliency}
METRICS = {"deletion": deletion, "insertion": insertion, "noise": noise}
MODEL = tiny_model()


def tiny_experiment(**kw) -> Experiment:
    """Two methods (one random) and three metrics (two with curves, one random); the same
    function objects every time, so runs after the first reuse the compiled code."""
    return Experiment("tiny", MODEL, METHODS, METRICS, **kw)


class Calls:
    """``c = Calls()``; later ``c.now()``: method executions since ``c`` was made."""

    def __init__(self):
        self._start = collections.Counter(CALLS)

    def now(self) -> dict:
        return dict(CALLS - self._start)


def comparable(rows: list[dict]) -> list[tuple]:
    """Rows as sortable tuples of everything that must be bit-identical across runs."""
    return sorted(
        (r["image_id"], r["method"], r["metric"], r["value"],
         None if r["curve"] is None else (r["curve"].dtype.str, r["curve"].tobytes()),
         r["label"], r["predicted"])
        for r in rows
    )  # fmt: skip
