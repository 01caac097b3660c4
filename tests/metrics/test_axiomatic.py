"""Completeness, complexity and sparseness against NumPy and known answers."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.stats import entropy

import jaxattr
from jaxattr import metrics
from tests.metrics import common


def test_completeness_of_ig_on_a_linear_model_and_tolerance():
    w = np.random.default_rng(0).normal(size=(common.H, common.W, 3)).astype(np.float32)
    f = jaxattr.scalar_output(common.linear_model(w), 0)
    x = common.image(50)
    ig = jaxattr.integrated_gradients(f, x, "normalized_zero", n_steps=4)
    res = jax.jit(lambda a: metrics.completeness(f, x, a, "normalized_zero"))(
        ig.attributions
    )
    diff = float((w * (x - common.MEAN)).sum())
    np.testing.assert_allclose(
        res.delta, float(ig.attributions.sum()) - diff, atol=1e-4
    )
    assert bool(res.passed) and float(res.relative) < 1e-5
    off = metrics.completeness(f, x, 1.04 * ig.attributions, "normalized_zero")
    np.testing.assert_allclose(off.relative, 0.04, rtol=1e-3)
    assert bool(off.passed)  # within the paper's 5 %
    assert not bool(
        metrics.completeness(f, x, 1.06 * ig.attributions, "normalized_zero").passed
    )
    assert bool(
        metrics.completeness(
            f, x, 1.06 * ig.attributions, "normalized_zero", rtol=0.1
        ).passed
    )


def test_completeness_errors():
    f = jaxattr.scalar_output(common.tiny_model(0), 1)
    x = common.image(0)
    with pytest.raises(
        ValueError, match=r"completeness: attributions must have x's shape"
    ):
        metrics.completeness(f, x, x[..., 0])
    with pytest.raises(ValueError, match="completeness: baseline must be a single"):
        metrics.completeness(f, x, x, ["black", "black"])


def np_gini(a):
    v = np.sort(np.abs(a).reshape(-1).astype(np.float64) + 1e-7)
    n = len(v)
    i = np.arange(1, n + 1)
    return ((2 * i - n - 1) * v).sum() / (n * v.sum())


def test_complexity_and_sparseness_match_numpy():
    a = common.attribution(51)
    np.testing.assert_allclose(
        metrics.complexity(a), entropy(np.abs(a).reshape(-1)), rtol=1e-5
    )
    np.testing.assert_allclose(metrics.sparseness(a), np_gini(a), rtol=1e-5)
    h = np.abs(a.sum(-1))
    np.testing.assert_allclose(
        metrics.complexity(a, reduction="abs_sum"), entropy(h.reshape(-1)), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics.sparseness(a, reduction="abs_sum"), np_gini(h), rtol=1e-5
    )


def test_complexity_and_sparseness_known_answers():
    n = 64
    uniform = np.ones((8, 8), np.float32)
    one_hot = np.zeros((8, 8), np.float32)
    one_hot[3, 4] = 5.0
    np.testing.assert_allclose(metrics.complexity(uniform), np.log(n), rtol=1e-6)
    np.testing.assert_allclose(metrics.complexity(one_hot), 0.0, atol=1e-6)
    np.testing.assert_allclose(metrics.sparseness(uniform), 0.0, atol=1e-6)
    np.testing.assert_allclose(metrics.sparseness(one_hot), 1 - 1 / n, atol=1e-5)
    batch = jax.vmap(metrics.sparseness)(np.stack([uniform, one_hot]))
    np.testing.assert_allclose(batch, [0.0, 1 - 1 / n], atol=1e-5)
