"""Adversarial Gradient Integration, AGI (Pan, Li and Zhu, IJCAI 2021;
docs/comparison_methods.md#adversarial-gradient-integration-agi).

For each false class `t`, AGI walks from `x` towards `t` by signed gradient steps on
`softmax_t` and integrates `-grad softmax_c . dx` of the explained class `c` along the
walk; the attribution is the sum over false classes. It needs the model's whole output
vector, so it takes `logits_fn` (one example to logits `[K]`), not a scalar `f`.

Decisions (settings of the paper, the authors' code and IDG's evaluation: see there):

* **Path**: cumulative by default (`from_original=False`), the path the paper
  describes: `x_{k+1} = clip(x_k + eps sign(grad softmax_t(x_k)))`, increment
  `x_{k+1} - x_k`. The authors' code takes every step from the original image,
  `x_{k+1} = clip(x + eps sign(grad softmax_t(x_k)))`, and accumulates
  `-grad softmax_c(x_k) * (x_{k+1} - x)`: `from_original=True` reproduces it. Its
  iterates never leave the `eps`-box around `x`, so it reaches `t` only when one
  signed step suffices.
* **Early stop** as the authors: at the start of each iteration, stop if
  `argmax logits(x_k) == t` (checked on the iterate, before its gradients).
* **Explained class excluded**: a false class equal to the target is skipped (zero
  iterations, zero contribution; the authors' `continue`). `selection="even"` uses the
  authors' ids `range(0, K - 1, K // n_classes)` (for K = 1000: 20 ids for 20, 16 for
  15, `[0]` for 1 as in IDG's evaluation), so the target may be among them and
  be skipped. `selection="random"` draws `n_classes` distinct classes among the
  `K - 1` false ones, so all of them count.
* **Outputs**: gradients of `softmax(logits_fn(x))`. The double softmax of
  `AGI_quantitive.py` is `logits_fn=lambda z: jax.nn.softmax(model(z))`.
* **Sum, not mean** over classes (the authors' `/ topk` is commented out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr import _checks, engine
from jaxattr.base import Attribution
from jaxattr.targets import check_target_value
from jaxattr.typing import ArrayLike, PRNGKey

SELECTIONS = ("even", "random")


def even_classes(n_outputs: int, n_classes: int) -> np.ndarray:
    """The authors' evenly spaced ids, `range(0, K - 1, K // n_classes)` (static)."""
    return np.arange(0, n_outputs - 1, max(n_outputs // n_classes, 1), dtype=np.int32)


@functools.partial(jax.jit, static_argnums=(1, 2))
def random_classes(key, n_outputs: int, n_classes: int, target) -> jax.Array:
    """`n_classes` distinct classes drawn uniformly among the `K - 1` others than
    `target` (which may be traced); reproducible for a given `key`."""
    j = jax.random.permutation(key, n_outputs - 1)[:n_classes]
    return (j + (j >= target)).astype(jnp.int32)


def _check_logits_fn(logits_fn, x, caller: str) -> int:
    if not callable(logits_fn):
        raise TypeError(
            f"{caller}: logits_fn must be a function of one example returning logits"
            f" [K]; got {type(logits_fn).__name__}."
        )
    out = jax.eval_shape(logits_fn, x)
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 1 or shape[0] < 2:
        raise ValueError(
            f"{caller}: logits_fn must map one example to logits of shape [K], K >= 2"
            f" (AGI needs the whole output vector); got output"
            f" {shape if shape is not None else type(out).__name__}. For a batched"
            " model use logits_fn=lambda z: model(z[None])[0]."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"{caller}: logits_fn must return floating logits; got {out.dtype}."
        )
    return int(shape[0])


def _check_clip(clip, x, caller: str):
    if clip is None:
        return None
    ok = isinstance(clip, (tuple, list)) and len(clip) == 2
    if ok:
        try:
            lo, hi = float(clip[0]), float(clip[1])
        except (TypeError, ValueError):
            ok = False
    if not ok or not lo < hi:
        raise ValueError(
            f"{caller}: clip must be None or a pair (low, high) of numbers with"
            f" low < high; got {clip!r}."
        )
    if not _checks.is_traced(x):
        xn = np.asarray(x)
        if xn.size and (xn.min() < lo or xn.max() > hi):
            raise ValueError(
                f"{caller}: x must lie in clip=({lo:g}, {hi:g}), as AGI clips every"
                f" step to that range; got values in [{xn.min():g}, {xn.max():g}]."
                " Pass pixels in [0, 1] and normalise inside logits_fn, or set"
                " clip=None (or your own range)."
            )
    return lo, hi


def _resolve_classes(classes, n_classes, selection, key, n_outputs, target, caller):
    """The false classes `[n]` (int32; static length) and whether they are user's."""
    if classes is not None:
        if _checks.is_traced(classes):
            c = classes
        else:
            c = np.asarray(classes)
            if not np.issubdtype(c.dtype, np.integer):
                raise TypeError(
                    f"{caller}: classes must be integer class indices; got"
                    f" {c.dtype} array."
                )
        if c.ndim != 1 or c.shape[0] < 1:
            raise ValueError(
                f"{caller}: classes must be a 1-D array of at least one class index;"
                f" got shape {tuple(c.shape)}."
            )
        if not _checks.is_traced(classes) and (c.min() < 0 or c.max() >= n_outputs):
            raise ValueError(
                f"{caller}: classes must be in [0, {n_outputs}) for a model with"
                f" {n_outputs} outputs; got {c.tolist()}."
            )
        return jnp.asarray(c, jnp.int32)
    n_classes = _checks.check_static_int(n_classes, caller, "n_classes")
    if n_classes > n_outputs - 1:
        raise ValueError(
            f"{caller}: n_classes must be <= {n_outputs - 1} (the false classes of a"
            f" model with {n_outputs} outputs); got {n_classes}."
        )
    _checks.check_choice(selection, SELECTIONS, caller, "selection")
    if selection == "even":
        return jnp.asarray(even_classes(n_outputs, n_classes))
    _checks.check_key(key, caller, "selection='random' draws the false classes")
    return random_classes(key, n_outputs, n_classes, target)


def adversarial_gradient_integration(
    logits_fn: Callable[[jax.Array], jax.Array],
    x: ArrayLike,
    target: ArrayLike | None = None,
    *,
    classes: ArrayLike | None = None,
    n_classes: int = 20,
    selection: str = "even",
    key: PRNGKey | None = None,
    eps: ArrayLike = 0.05,
    max_iter: int = 20,
    from_original: bool = False,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int | None = None,
) -> Attribution:
    """AGI: `sum_t sum_k -grad softmax_c(x_k) * dx_k` along adversarial walks.

    For each false class `t` (`n` of them, `vmap`ped in chunks of `batch_size`,
    `engine.chunked_sum`), a `lax.while_loop` of at most `max_iter` iterations: stop if
    `argmax logits_fn(x_k) == t`; else one forward and two backward passes give
    `g_t = grad softmax_t(x_k)` and `g_c = grad softmax_c(x_k)`, then
    `x_{k+1} = clip(s + eps * sign(g_t))` with `s = x_k` (cumulative path, default)
    or `s = x` (`from_original=True`, the authors' code), and the attribution gains
    `-g_c * (x_{k+1} - s)`. Cost per false class: at most `max_iter + 2` forwards
    and `2 (max_iter + 1)` backwards (the iteration that detects the hit computes
    its unused gradients, and the end point gets one forward for `aux`); the
    authors' code needs `max_iter + 1` and `2 max_iter`.

    Args:
      logits_fn: maps ONE unbatched example to logits `[K]` (`K >= 2`); softmax is
        applied here. For a batched model: `lambda z: model(z[None])[0]`.
      x: one example, e.g. `[H, W, C]` pixels in [0, 1] (inside `clip`); floating.
      target: the explained class `c`: an int, a traced int (no recompilation), or
        `None` for the predicted class `argmax logits_fn(x)` (the authors' choice).
      classes: the false classes, an int array `[n]` (may be traced; `n` static);
        entries equal to `target` are skipped. Overrides `n_classes`/`selection`.
      n_classes: number of false classes to pick (static, `<= K - 1`); paper's 20.
      selection: `"even"` (the authors' ids, see the module docstring; the target
        is skipped if among them) or `"random"` (distinct, never the target; needs
        `key`) (static).
      key: PRNG key for `selection="random"`.
      eps: signed step size (may be traced); authors' 0.05.
      max_iter: iterations per class (static); paper's 20.
      from_original: take every step from `x` as the authors' code (static).
      clip: `(low, high)` range of every iterate, or `None`; default `(0, 1)` for
        pixels. A concrete `x` outside it raises.
      batch_size: false classes per chunk (static); `None` runs all at once.

    Returns:
      `Attribution` with `attributions [*x.shape]` (summed over classes), and
      `delta = sum(attributions) - sum_t (softmax_c(x) - softmax_c(x_end_t))` over
      the used classes (Captum's sign). On the cumulative path each class's sum
      telescopes to that difference up to the first-order error of the signed
      steps, so `delta` measures the discretisation error. With
      `from_original=True` the increments do not telescope (each is a whole
      displacement from `x`), so `delta` is no completeness error: expect it of
      the order of the attributions themselves (it is kept for the common type). `aux` (per false class, `[n]`): `classes`, `used`
      (not the target), `iterations` (gradient steps taken), `reached` (the end
      point is classified as `t`), `end_class` (argmax at the end point),
      `prob_end` (`softmax_c` at the end point), `per_class` (sum of the class's
      contribution); and `target`, `f_x` (`softmax_c(x)`, the explained output;
      also as `prob_x`).
      A traced `target` or `classes` outside `[0, K)` gives NaN attributions.

    Raises:
      TypeError, ValueError: naming the argument, for a bad `logits_fn` (not `[K]`
        logits), `x` (integer, non-finite, outside `clip`), `target`, `classes`,
        `n_classes` (not an int in `[1, K - 1]`), `selection`, `key`, `eps <= 0`,
        `max_iter < 1`, `clip` or `batch_size`.
    """
    caller = "adversarial_gradient_integration"
    x = _checks.check_input(x, caller)
    n_outputs = _check_logits_fn(logits_fn, x, caller)
    max_iter = _checks.check_static_int(max_iter, caller, "max_iter")
    batch_size = _checks.check_batch_size(batch_size, caller)
    if not isinstance(from_original, (bool, np.bool_)):
        raise TypeError(
            f"{caller}: from_original must be a Python bool (static); got"
            f" {type(from_original).__name__} {from_original!r}."
        )
    bounds = _check_clip(clip, x, caller)
    if not _checks.is_traced(eps):
        e = np.asarray(eps)
        if e.ndim or not np.issubdtype(e.dtype, np.number) or not e > 0:
            raise ValueError(
                f"{caller}: eps must be a positive scalar step size; got {eps!r}."
            )
    eps = jnp.asarray(eps, x.dtype)

    def probs_fn(z):  # (softmax, logits): argmax on logits, as the authors
        logits = logits_fn(z)
        return jax.nn.softmax(logits), logits

    if target is None:
        target = jnp.argmax(logits_fn(x))
    else:
        check_target_value(target, n_outputs, caller)
    target = jnp.asarray(target, jnp.int32)
    false = _resolve_classes(
        classes, n_classes, selection, key, n_outputs, target, caller
    )
    valid = (target >= 0) & (target < n_outputs)
    valid &= jnp.all((false >= 0) & (false < n_outputs))

    def step_from(start, g):
        nxt = start + eps * jnp.sign(g)
        return nxt if bounds is None else jnp.clip(nxt, bounds[0], bounds[1])

    one_hot_c = jax.nn.one_hot(target, n_outputs, dtype=x.dtype)

    def one_class(t):
        used = t != target
        one_hot_t = jax.nn.one_hot(t, n_outputs, dtype=x.dtype)

        def cond(state):
            k, _, _, done = state
            return (k < max_iter) & ~done

        def body(state):
            k, xk, acc, _ = state
            probs, pull, logits = jax.vjp(probs_fn, xk, has_aux=True)
            hit = jnp.argmax(logits) == t
            (g_t,) = pull(one_hot_t.astype(probs.dtype))
            (g_c,) = pull(one_hot_c.astype(probs.dtype))
            start = x if from_original else xk
            nxt = step_from(start, g_t)
            gained = -g_c.astype(x.dtype) * (nxt - start)
            return (
                k + jnp.where(hit, 0, 1).astype(k.dtype),
                jnp.where(hit, xk, nxt),
                jnp.where(hit, acc, acc + gained),
                hit,
            )

        init = (jnp.zeros((), jnp.int32), x, jnp.zeros_like(x), ~used)
        k, x_end, acc, _ = jax.lax.while_loop(cond, body, init)
        probs_end, logits_end = probs_fn(x_end)
        end_class = jnp.argmax(logits_end).astype(jnp.int32)
        return acc, {
            "iterations": k,
            "end_class": end_class,
            "reached": used & (end_class == t),
            "prob_end": probs_end[target],
            "used": used,
            "per_class": acc.sum(),
        }

    # Classes summed in chunks of `batch_size` by the engine's chunking primitive.
    acc, per = engine.chunked_sum(one_class, false, batch_size=batch_size)
    nan_if_invalid = jnp.where(valid, 1.0, jnp.nan).astype(x.dtype)
    attributions = acc * nan_if_invalid
    prob_x = probs_fn(x)[0][target]
    change = jnp.where(per["used"], prob_x - per["prob_end"], 0.0).sum()
    delta = attributions.sum() - change.astype(x.dtype)
    aux = {
        "classes": false,
        **per,
        "target": target,
        "f_x": prob_x,
        "prob_x": prob_x,  # deprecated: the old name of f_x
    }
    return Attribution(attributions, delta, aux)
