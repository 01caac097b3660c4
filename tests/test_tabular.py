"""Tabular models (issue 18): an MLP trained with optax on scikit-learn's breast-cancer
data, IG with the training-mean baseline, deletion against a random order, and the
feature-importance plot.

The model trains in a few seconds on a CPU (full-batch AdamW, 200 steps, seed 0); with the
defaults it classifies 138 of the 143 held-out tumours correctly (0.965, jax 0.10, CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import tabular, viz

pytest.importorskip("optax", reason="optax is not installed (pip install optax)")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

ACCURACY = 0.95  # measured: 0.965 (138 / 143) with the defaults


@pytest.fixture(scope="module")
def data():
    return tabular.load_dataset("breast_cancer")


@pytest.fixture(scope="module")
def model(data):
    return tabular.train_mlp(data)


@pytest.fixture(scope="module")
def explained(data, model):
    """IG of the predicted class's logit from the training mean, every test example."""
    x = jnp.asarray(data.x_test)
    target = jnp.argmax(model.fn(x), axis=-1)

    def ig(params, x, t):
        f = jaxattr.scalar_output(jax.tree_util.Partial(model.apply, params), t)
        return jaxattr.integrated_gradients(f, x, jnp.asarray(data.mean))

    result = jax.jit(jax.vmap(ig, in_axes=(None, 0, 0)))(model.params, x, target)
    return x, target, result


# ----------------------------------------------------------------------------- data


def test_split_is_stratified_and_fixed(data):
    from sklearn.datasets import load_breast_cancer

    full = load_breast_cancer()
    assert data.x_train.shape == (426, 30) and data.x_test.shape == (143, 30)
    assert data.feature_names == tuple(full.feature_names)
    assert data.class_names == ("malignant", "benign")
    # Every row of the data set lands in exactly one of the two sets.
    rows = np.concatenate([data.x_train, data.x_test])
    np.testing.assert_array_equal(
        np.sort(rows, axis=0), np.sort(full.data.astype(np.float32), axis=0)
    )
    # Stratified: each class's share in the test set is within one example of its share.
    for c in (0, 1):
        share = np.mean(full.target == c)
        assert abs(np.sum(data.y_test == c) - share * 143) <= 1
    again = tabular.load_dataset("breast_cancer")
    np.testing.assert_array_equal(again.x_test, data.x_test)
    other = tabular.load_dataset("breast_cancer", seed=1)
    assert not np.array_equal(other.x_test, data.x_test)
    # The statistics are the training set's, not the whole data set's.
    np.testing.assert_allclose(data.mean, data.x_train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(data.std, data.x_train.std(axis=0), rtol=1e-6)
    assert not np.allclose(data.mean, full.data.mean(axis=0), rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "n_rows", "n_features", "n_classes"),
    [("wine", 178, 13, 3), ("iris", 150, 4, 3)],
)
def test_other_data_sets(name, n_rows, n_features, n_classes):
    d = tabular.load_dataset(name)
    assert d.x_train.shape[1] == d.x_test.shape[1] == len(d.feature_names) == n_features
    assert len(d.x_train) + len(d.x_test) == n_rows
    assert len(d.class_names) == n_classes
    assert set(np.unique(d.y_test).tolist()) == set(range(n_classes))


def test_model_standardises_inside(data, model):
    x = jnp.asarray(data.x_test[:5])
    z = (x - data.mean) / data.std
    layers = model.params["layers"]
    h = jax.nn.relu(z @ layers[0]["w"] + layers[0]["b"])
    h = jax.nn.relu(h @ layers[1]["w"] + layers[1]["b"])
    np.testing.assert_allclose(
        model.fn(x), h @ layers[2]["w"] + layers[2]["b"], rtol=1e-5, atol=1e-5
    )


def test_trained_model_reaches_the_stated_accuracy(data, model):
    assert model.losses.shape == (200,)
    assert model.losses[-1] < 0.5 * model.losses[0]
    assert tabular.accuracy(model.fn, data.x_train, data.y_train) >= ACCURACY
    held_out = tabular.accuracy(model.fn, data.x_test, data.y_test)
    assert held_out >= ACCURACY, f"held-out accuracy {held_out:.3f} < {ACCURACY}"
    # Not a constant classifier: both classes are predicted.
    predicted = np.asarray(jnp.argmax(model.fn(jnp.asarray(data.x_test)), axis=-1))
    assert set(predicted.tolist()) == {0, 1}


def test_training_is_deterministic(data, model):
    again = tabular.train_mlp(data, n_steps=200)
    x = jnp.asarray(data.x_test[:8])
    np.testing.assert_allclose(again.fn(x), model.fn(x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- IG


def test_ig_completeness_with_the_training_mean_baseline(data, model, explained):
    x, target, result = explained
    picked = lambda logits: jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]
    gap = picked(model.fn(x)) - picked(model.fn(jnp.broadcast_to(data.mean, x.shape)))
    total = result.attributions.sum(axis=-1)
    # sum_i IG_i = f(x) - f(training mean), to the quadrature error (ReLU kinks).
    err = np.abs(np.asarray(total - gap))
    assert np.median(err / np.abs(gap)) < 0.01
    assert np.all(err <= 0.05 * np.abs(gap) + 0.05), err.max()
    np.testing.assert_allclose(result.delta, total - gap, atol=1e-3)


def test_deleting_by_ig_beats_a_random_order(data, model, explained):
    x, target, result = explained
    ig_order = jnp.argsort(-result.attributions, axis=-1)  # most positive first
    keys = jax.random.split(jax.random.key(0), x.shape[0])
    random_order = jax.vmap(lambda k: jax.random.permutation(k, x.shape[1]))(keys)
    curves_ig = tabular.deletion_curves(model.fn, x, ig_order, data.mean, target)
    curves_random = tabular.deletion_curves(
        model.fn, x, random_order, data.mean, target
    )
    # Both start at f(x) and end at f(training mean).
    np.testing.assert_allclose(curves_ig[:, 0], curves_random[:, 0], rtol=1e-5)
    np.testing.assert_allclose(curves_ig[:, -1], curves_random[:, -1], rtol=1e-5)
    auc_ig = float(tabular.area_under_curve(curves_ig).mean())
    auc_random = float(tabular.area_under_curve(curves_random).mean())
    drop = float((curves_ig[:, 0] - curves_ig[:, -1]).mean())
    # Measured: 0.71 against 4.88, out of a drop of 8.96 (seed 0).
    assert auc_ig < auc_random - 0.25 * drop, (auc_ig, auc_random, drop)


def test_deletion_curves_of_a_linear_model():
    """`f(x) = x @ W`: deleting feature j moves the target logit by `(fill_j - x_j) W_jt`."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    x = rng.normal(size=(2, 4))
    fill = rng.normal(size=4)
    order = np.array([[2, 0, 3, 1], [1, 3, 0, 2]])
    target = np.array([1, 2])
    curves = tabular.deletion_curves(lambda v: v @ w, x, order, fill, target)
    for i in range(2):
        row, expected = x[i].copy(), [x[i] @ w[:, target[i]]]
        for j in order[i]:
            row[j] = fill[j]
            expected.append(row @ w[:, target[i]])
        np.testing.assert_allclose(curves[i], expected, rtol=1e-5, atol=1e-6)
    # The trapezoid of a straight line from 1 to 0 is 1/2.
    np.testing.assert_allclose(tabular.area_under_curve(jnp.linspace(1, 0, 5)), 0.5)


def test_bad_arguments_are_named(data):
    with pytest.raises(ValueError, match=r"name: expected one of .* got 'titanic'"):
        tabular.load_dataset("titanic")
    with pytest.raises(ValueError, match=r"test_size: expected .* got 1.5"):
        tabular.load_dataset(test_size=1.5)
    with pytest.raises(ValueError, match=r"n_steps: expected an integer >= 1, got 0"):
        tabular.train_mlp(data, n_steps=0)
    with pytest.raises(TypeError, match=r"data: expected a TabularData .* got dict"):
        tabular.train_mlp({})
    with pytest.raises(
        ValueError, match=r"x, order: expected .* \(2, 3\) and \(2, 2\)"
    ):
        tabular.deletion_curves(lambda v: v, np.ones((2, 3)), np.ones((2, 2)), 0, 0)


# ----------------------------------------------------------------------------- the plot


NAMES = ("a", "b", "c", "d")


def test_feature_plot_one_bar_per_feature():
    attr = np.array([0.5, -2.0, 1.0, 0.0])
    fig, ax = viz.visualize_feature_attr(attr, NAMES)
    bars = ax.patches
    assert len(bars) == 4
    # Sorted by magnitude, the largest on top (the y axis is inverted).
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["b", "c", "a", "d"]
    np.testing.assert_allclose([b.get_width() for b in bars], [-2.0, 1.0, 0.5, 0.0])
    assert ax.yaxis_inverted()
    # Signed: negative red, positive green.
    red, green = bars[0].get_facecolor(), bars[1].get_facecolor()
    assert red[0] > red[1] and green[1] > green[0]
    assert fig is ax.figure


def test_feature_plot_mean_magnitude_over_examples():
    attr = np.array([[1.0, -3.0, 0.0, 2.0], [-1.0, 1.0, 0.5, -4.0]])
    _fig, ax = viz.visualize_feature_attr(attr, list(NAMES), top_k=3, title="t")
    widths = {
        t.get_text(): b.get_width() for t, b in zip(ax.get_yticklabels(), ax.patches)
    }
    assert widths == {"d": 3.0, "b": 2.0, "a": 1.0}  # mean |A|, the top 3
    assert "mean |attribution| over 2 examples" in ax.get_xlabel()
    assert ax.get_title() == "t"
    _, ax = viz.visualize_feature_attr(attr, NAMES, sign="all")
    widths = {
        t.get_text(): b.get_width() for t, b in zip(ax.get_yticklabels(), ax.patches)
    }
    assert widths == {"a": 0.0, "b": -1.0, "c": 0.25, "d": -1.0}
    # Drawn on a given axes.
    fig2, ax2 = viz.visualize_feature_attr(attr[0], NAMES, ax=ax)
    assert ax2 is ax and fig2 is ax.figure


def test_feature_plot_bad_input():
    attr = np.ones(4)
    with pytest.raises(
        ValueError, match=r"attr: expected .* \[F\] .* got shape \(1, 2, 4\)"
    ):
        viz.visualize_feature_attr(np.ones((1, 2, 4)), NAMES)
    with pytest.raises(ValueError, match=r"feature_names: expected 4 names .* got 3"):
        viz.visualize_feature_attr(attr, NAMES[:3])
    with pytest.raises(ValueError, match=r"sign: expected one of .* got 'both'"):
        viz.visualize_feature_attr(attr, NAMES, sign="both")
    with pytest.raises(
        ValueError, match=r"top_k: expected None or an integer >= 1, got 0"
    ):
        viz.visualize_feature_attr(attr, NAMES, top_k=0)
    with pytest.raises(ValueError, match=r"attr: expected finite values, got 1 NaN"):
        viz.visualize_feature_attr(np.array([1.0, np.nan, 0, 0]), NAMES)
