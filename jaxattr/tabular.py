"""Tabular models: a scikit-learn data set, an MLP trained with optax, deletion curves.

The tabular counterpart of the demo photos and model ports: small enough to train in
seconds on a CPU, real enough to explain (issue 18).

* :func:`load_dataset`: a labelled data set that ships inside scikit-learn (no download),
  split into train and test sets (stratified, fixed seed), with the training set's
  per-feature mean and standard deviation.
* :func:`train_mlp`: an MLP (plain JAX) trained full-batch with optax's AdamW from a fixed
  seed. Its ``fn`` takes **raw** features and standardises inside with the training
  statistics (as the image models normalise pixels inside), so attributions are in the
  data's own units and the training-mean baseline is ``data.mean``.
* :func:`accuracy`, :func:`deletion_curves`, :func:`area_under_curve`: held-out accuracy,
  and the deletion test for features (replace the most relevant ones by a fill value, such
  as the training mean, and record the target logit).

Needs optax (``pip install 'jaxattr[tabular]'``; flax installs it too), imported when
:func:`train_mlp` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DATASETS",
    "TabularData",
    "TabularModel",
    "accuracy",
    "area_under_curve",
    "deletion_curves",
    "load_dataset",
    "mlp_apply",
    "train_mlp",
]

#: The data sets :func:`load_dataset` knows: the name -> scikit-learn's loader.
DATASETS = {
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "iris": "load_iris",
}


class TabularData(NamedTuple):
    """A labelled tabular data set split into train and test sets (numpy arrays).

    ``x_*``: raw features ``[n, F]`` float32; ``y_*``: class indices ``[n]`` int32;
    ``mean``, ``std``: the training set's per-feature mean and standard deviation ``[F]``
    (the training-mean baseline and the standardisation).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    name: str


class TabularModel(NamedTuple):
    """A trained MLP.

    ``fn(x)``: raw features ``[N, F]`` -> logits ``[N, n_classes]`` (standardisation
    inside); a :class:`jax.tree_util.Partial` of ``apply`` and ``params``, so passed to a
    jitted function its weights are traced, not baked in. ``apply(params, x)``: the same
    with explicit ``params`` (:func:`mlp_apply`). ``losses``: the training loss at each
    step ``[n_steps]``.
    """

    fn: Callable[[jax.Array], jax.Array]
    apply: Callable[[Any, jax.Array], jax.Array]
    params: dict[str, Any]
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    losses: np.ndarray


def _check_positive_int(name: str, value, caller: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{caller}: {name}: expected an integer >= 1, got {value!r}")
    return int(value)


def load_dataset(
    name: str = "breast_cancer", *, test_size: float = 0.25, seed: int = 0
) -> TabularData:
    """A data set of :data:`DATASETS` (shipped inside scikit-learn), split and described.

    The split is stratified by class with ``seed`` (scikit-learn's ``train_test_split``);
    ``test_size`` is the held-out fraction in (0, 1). ``breast_cancer``: 569 tumours, 30
    features, malignant/benign (426 train, 143 test with the defaults).
    """
    caller = "load_dataset"
    if name not in DATASETS:
        raise ValueError(
            f"{caller}: name: expected one of {sorted(DATASETS)}, got {name!r}"
        )
    if not (isinstance(test_size, (int, float)) and 0.0 < test_size < 1.0):
        raise ValueError(
            f"{caller}: test_size: expected a fraction in (0, 1), got {test_size!r}"
        )
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = getattr(datasets, DATASETS[name])()
    x = np.asarray(bunch.data, np.float32)
    y = np.asarray(bunch.target, np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    std = x_train.std(axis=0)
    return TabularData(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        mean=x_train.mean(axis=0),
        std=np.where(std > 0, std, 1.0).astype(np.float32),
        feature_names=tuple(str(n) for n in bunch.feature_names),
        class_names=tuple(str(n) for n in bunch.target_names),
        name=name,
    )


def _layers_apply(layers, z: jax.Array) -> jax.Array:
    """The MLP on standardised features ``[N, F]`` -> logits; ReLU between layers."""
    for i, layer in enumerate(layers):
        z = z @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            z = jax.nn.relu(z)
    return z


def mlp_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    """Raw features ``[N, F]`` -> logits ``[N, n_classes]``: ``(x - mean) / std`` then
    the layers. ``params``: ``{"mean": [F], "std": [F], "layers": [{"w", "b"}, ...]}``."""
    return _layers_apply(params["layers"], (x - params["mean"]) / params["std"])


def _init_layers(key: jax.Array, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """He-normal weights, zero biases, for the layer widths ``sizes``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m),
            "b": jnp.zeros((n,)),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def train_mlp(
    data: TabularData,
    *,
    hidden: Sequence[int] = (32, 32),
    n_steps: int = 200,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> TabularModel:
    """Train an MLP on ``data``'s training set: full-batch AdamW (optax), cross-entropy.

    ``hidden``: the hidden widths (ReLU between layers); ``n_steps``: optimiser steps, all
    run by one compiled ``lax.scan``; ``seed``: the initialisation. Deterministic for
    fixed arguments on one backend. Seconds on a CPU for the data sets here.
    """
    caller = "train_mlp"
    if not isinstance(data, TabularData):
        raise TypeError(
            f"{caller}: data: expected a TabularData (load_dataset), got"
            f" {type(data).__name__}"
        )
    n_steps = _check_positive_int("n_steps", n_steps, caller)
    hidden = tuple(_check_positive_int("hidden", h, caller) for h in hidden)
    import optax

    n_classes = len(data.class_names)
    sizes = (data.x_train.shape[1], *hidden, n_classes)
    layers = _init_layers(jax.random.key(seed), sizes)
    z = jnp.asarray((data.x_train - data.mean) / data.std)
    y = jnp.asarray(data.y_train)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(layers):
        logits = _layers_apply(layers, z)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, _):
        layers, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(layers)
        updates, opt_state = tx.update(grads, opt_state, layers)
        return (optax.apply_updates(layers, updates), opt_state), loss

    @jax.jit
    def fit(layers):
        (layers, _), losses = jax.lax.scan(
            step, (layers, tx.init(layers)), None, length=n_steps
        )
        return layers, losses

    layers, losses = fit(layers)
    params = {
        "mean": jnp.asarray(data.mean),
        "std": jnp.asarray(data.std),
        "layers": layers,
    }
    return TabularModel(
        fn=jax.tree_util.Partial(mlp_apply, params),
        apply=mlp_apply,
        params=params,
        feature_names=data.feature_names,
        class_names=data.class_names,
        losses=np.asarray(losses),
    )


def accuracy(model_fn: Callable[[jax.Array], jax.Array], x, y) -> float:
    """The fraction of rows of ``x`` ``[N, F]`` whose argmax logit is the label ``y``."""
    predicted = np.asarray(jnp.argmax(model_fn(jnp.asarray(x)), axis=-1))
    return float(np.mean(predicted == np.asarray(y)))


def deletion_curves(
    model_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    order: jax.Array,
    fill: jax.Array,
    target: jax.Array,
) -> jax.Array:
    """The target logit as features are deleted one by one: ``[N, F + 1]``.

    ``x``: rows ``[N, F]``; ``order``: ``[N, F]``, each row a permutation of the feature
    indices, deleted first to last (e.g. ``jnp.argsort(-attributions, axis=-1)``: the most
    positive attribution first); ``fill``: ``[F]`` the value a deleted feature takes (the
    training mean); ``target``: ``[N]`` classes. Column ``k`` is the logit with the first
    ``k`` features of the order deleted (column 0: ``x`` itself; column ``F``: ``fill``).
    """
    caller = "deletion_curves"
    x = jnp.asarray(x)
    order = jnp.asarray(order)
    if x.ndim != 2 or order.shape != x.shape:
        raise ValueError(
            f"{caller}: x, order: expected two arrays of shape [N, F], got {x.shape}"
            f" and {order.shape}"
        )
    n, n_features = x.shape
    fill = jnp.broadcast_to(jnp.asarray(fill, x.dtype), (n_features,))
    target = jnp.broadcast_to(jnp.asarray(target), (n,))
    ranks = jnp.argsort(order, axis=-1)  # ranks[i, j]: when feature j goes
    ks = jnp.arange(n_features + 1)[:, None, None]
    deleted = jnp.where(ranks[None] < ks, fill, x[None])  # [F + 1, N, F]
    logits = model_fn(deleted.reshape(-1, n_features)).reshape(n_features + 1, n, -1)
    return jnp.take_along_axis(logits, target[None, :, None], axis=-1)[..., 0].T


def area_under_curve(curves: jax.Array) -> jax.Array:
    """Trapezoidal area under curves ``[..., K + 1]`` sampled at ``0, 1/K, ..., 1``
    (the fraction deleted): ``[...]``. Lower is better for deletion."""
    curves = jnp.asarray(curves)
    return jnp.trapezoid(curves, dx=1.0 / (curves.shape[-1] - 1), axis=-1)
