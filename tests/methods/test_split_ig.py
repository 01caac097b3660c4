"""Split-IG / left-IG: left + right = IG exactly, a closed-form left part, both
definitions against straightforward NumPy loops (IDG's LIG as the authors' code
computes it), edge cases, jit/vmap and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import quadrature
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=2)
MODEL = helpers.tiny_cnn(PARAMS)
X = jax.random.uniform(jax.random.key(0), (8, 8, 3))
F = jaxattr.scalar_output(MODEL, 4)
W = jnp.array([0.3, -0.2, 0.5, 0.4])
XV = jnp.array([1.0, 2.0, 1.5, 0.5])


def tanh_f(x):
    return jnp.tanh(W @ x)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_right"])
def test_left_plus_right_is_integrated_gradients(rule):
    baseline = 0.2 * jnp.ones_like(X)
    r = jaxattr.split_integrated_gradients(
        F, X, baseline, n_steps=16, rule=rule, batch_size=5
    )
    ig = jaxattr.integrated_gradients(F, X, baseline, n_steps=16, rule=rule)
    left, right = r.aux["left"], r.aux["right"]
    np.testing.assert_allclose(left + right, ig.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(r.attributions, left)
    k = int(r.aux["split_index"][0])
    assert 0 < k < 16  # a real split: both parts are non-trivial
    assert np.abs(left).max() > 0 and np.abs(right).max() > 0


def test_closed_form_left_part():
    """f = tanh(w.x) from 0: along the path F(a) = tanh(a s), s = w.x, and the
    integral of the gradients over [0, b] is x * w * tanh(b s) / s."""
    r = jaxattr.split_integrated_gradients(
        tanh_f, XV, n_steps=4000, rule="riemann_middle", threshold=0.5
    )
    s = float(W @ XV)
    b = float(r.aux["boundary"][0])
    # the split is where tanh(a s) first exceeds tanh(s)/2
    a_star = np.arctanh(0.5 * np.tanh(s)) / s
    assert abs(b - a_star) <= 1 / 4000 + 1e-6
    expected = np.asarray(XV * W) * np.tanh(b * s) / s
    np.testing.assert_allclose(r.attributions, expected, rtol=1e-5, atol=1e-6)
    right = jaxattr.split_integrated_gradients(
        tanh_f, XV, side="right", n_steps=4000, rule="riemann_middle"
    )
    np.testing.assert_allclose(
        right.attributions,
        np.asarray(XV * W) * (np.tanh(s) - np.tanh(b * s)) / s,
        rtol=1e-5,
        atol=1e-6,
    )
    # each part keeps its share of completeness
    assert abs(float(r.delta)) < 1e-6 and abs(float(right.delta)) < 1e-6


def np_split_ig(f, x, baseline, n_steps, rule, threshold, definition):
    """The straightforward loop: f and grad f at every node, split, sum."""
    alphas, weights = quadrature.nodes_and_weights(rule, n_steps)
    x, baseline = np.asarray(x, np.float64), np.asarray(baseline, np.float64)
    grads, values = [], []
    for a in alphas:
        point = jnp.asarray(baseline + a * (x - baseline), jnp.float32)
        v, g = jax.value_and_grad(f)(point)
        values.append(float(v))
        grads.append(np.asarray(g, np.float64))
    values = np.array(values)
    if definition == "relative":
        fb, fx = float(f(jnp.asarray(baseline, jnp.float32))), float(f(jnp.asarray(x)))
        tau = fb + threshold * (fx - fb)
        assert fx > fb  # Miglani's test `F > tau` assumes a rising output
    else:
        tau = threshold * values.max()
    crossing = np.nonzero(values > tau)[0]
    cutoff = (
        crossing[0] if len(crossing) else (n_steps if definition == "relative" else 1)
    )
    if definition == "idg":
        cutoff = max(cutoff, 1)
        return (x - baseline) * np.mean(grads[:cutoff], axis=0), cutoff
    left = sum(w * g for w, g in zip(weights[:cutoff], grads[:cutoff]))
    return (x - baseline) * left, cutoff


@pytest.mark.parametrize(
    "definition,threshold,rule",
    [
        ("relative", 0.5, "riemann_right"),
        ("relative", 0.95, "gausslegendre"),
        ("idg", 0.9, "riemann_trapezoid"),
    ],
)
def test_against_numpy_loop(definition, threshold, rule):
    baseline = jnp.full_like(X, 0.1)
    expected, cutoff = np_split_ig(F, X, baseline, 20, rule, threshold, definition)
    r = jaxattr.split_integrated_gradients(
        F,
        X,
        baseline,
        n_steps=20,
        rule=rule,
        definition=definition,
        threshold=threshold,
        batch_size=6,
    )
    assert int(r.aux["split_index"][0]) == cutoff
    np.testing.assert_allclose(
        r.attributions, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max()
    )


def test_falling_output_splits_downwards_and_flat_output_stays_left():
    f = lambda x: -jnp.sum(x**2)  # falls from 0 to -5 along the path
    x = jnp.array([1.0, -2.0])
    r = jaxattr.split_integrated_gradients(f, x, n_steps=8, rule="riemann_right")
    # tau = -2.5 is passed where -5 a^2 < -2.5, i.e. a > 0.707: nodes 1/8..5/8 left
    assert int(r.aux["split_index"][0]) == 5
    # f = x0 * x1 is 0 all along the path from 0 to (1, 0): it never crosses
    flat = jaxattr.split_integrated_gradients(
        lambda x: x[0] * x[1], jnp.array([1.0, 0.0]), n_steps=8
    )
    assert int(flat.aux["split_index"][0]) == 8
    np.testing.assert_array_equal(flat.aux["right"], 0)
    # IDG: the max along the path is f(x') = 0, 0.9 * 0 is never exceeded -> 1 node
    idg = jaxattr.split_integrated_gradients(
        f, x, definition="idg", n_steps=8, rule="riemann_trapezoid"
    )
    assert int(idg.aux["split_index"][0]) == 1
    np.testing.assert_allclose(idg.attributions, 0.0, atol=1e-7)  # grad at 0 is 0


def test_several_baselines_split_separately():
    bases = [jnp.zeros_like(X), jnp.full_like(X, 0.3)]
    r = jaxattr.split_integrated_gradients(F, X, bases, n_steps=12)
    singles = [jaxattr.split_integrated_gradients(F, X, b, n_steps=12) for b in bases]
    np.testing.assert_array_equal(
        r.aux["split_index"], [int(s.aux["split_index"][0]) for s in singles]
    )
    np.testing.assert_allclose(
        r.attributions,
        (singles[0].attributions + singles[1].attributions) / 2,
        rtol=1e-5,
        atol=1e-7,
    )


def test_threshold_sweep_is_one_vmap_and_jit_matches_eager():
    def run(t):
        return jaxattr.split_integrated_gradients(F, X, threshold=t, n_steps=12)

    ts = jnp.array([0.2, 0.5, 0.8])
    swept = jax.jit(jax.vmap(run))(ts)
    for i, t in enumerate(ts):
        eager = run(float(t))
        np.testing.assert_allclose(
            swept.attributions[i], eager.attributions, rtol=1e-5, atol=1e-7
        )
    splits = np.asarray(swept.aux["split_index"][:, 0])
    assert np.all(np.diff(splits) >= 0) and splits[0] < splits[-1]


def test_errors():
    with pytest.raises(ValueError, match=r"side must be one of 'left', 'right'"):
        jaxattr.split_integrated_gradients(F, X, side="middle")
    with pytest.raises(ValueError, match=r"definition must be one of"):
        jaxattr.split_integrated_gradients(F, X, definition="miglani")
    with pytest.raises(ValueError, match=r"defines only the left part"):
        jaxattr.split_integrated_gradients(F, X, definition="idg", side="right")
    with pytest.raises(ValueError, match=r"threshold must be a scalar"):
        jaxattr.split_integrated_gradients(F, X, threshold=jnp.ones(2))
    with pytest.raises(ValueError, match=r"rule must be one of"):
        jaxattr.split_integrated_gradients(F, X, rule="simpson")
