"""Adversarial Gradient Integration: both path variants against a Python loop on the
tiny CNN, a hand-solved linear model (early stop, iteration counts, delta), class
selection and the exclusion of the target, jit/vmap, and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.methods import agi
from jaxattr.methods.agi import adversarial_gradient_integration
from tests import helpers

PARAMS = helpers.tiny_cnn_params(seed=1)
MODEL = helpers.tiny_cnn(PARAMS)
XS = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), jnp.float32)
_RNG = np.random.default_rng(1)
W1 = jnp.asarray(_RNG.normal(0, 0.3, (192, 16)), jnp.float32)
W2 = jnp.asarray(_RNG.normal(0, 0.5, (16, 10)), jnp.float32)


def logits_fn(z):
    """The tiny CNN (8x8x3 -> 10 logits), for the reference comparisons."""
    return MODEL(z[None])[0]


def mlp_logits(z):
    """A cheaper model (compiles faster) for selection, exclusion and jit tests."""
    return jax.nn.relu(z.reshape(-1) @ W1) @ W2


@jax.jit
def _probs_and_grads(z, t, c):
    logits = logits_fn(z)
    probs = jax.nn.softmax(logits)
    g_t = jax.grad(lambda u: jax.nn.softmax(logits_fn(u))[t])(z)
    g_c = jax.grad(lambda u: jax.nn.softmax(logits_fn(u))[c])(z)
    return probs, g_t, g_c, logits


def np_agi(x, target, classes, eps, max_iter, from_original, clip):
    """The authors' loop in NumPy; gradients from JAX.

    docs/comparison_methods.md#adversarial-gradient-integration-agi
    """
    x = np.asarray(x, np.float32)
    total = np.zeros_like(x)
    iterations, ends, change = [], [], 0.0
    p_x = float(_probs_and_grads(x, 0, target)[0][target])
    for t in classes:
        if t == target:  # skipped, as the authors' `continue`
            iterations.append(0)
            ends.append(int(np.argmax(_probs_and_grads(x, 0, 0)[3])))
            continue
        xk, k = x.copy(), 0
        for _ in range(max_iter):
            _, g_t, g_c, logits = map(np.asarray, _probs_and_grads(xk, t, target))
            if np.argmax(logits) == t:
                break
            start = x if from_original else xk
            nxt = start + eps * np.sign(g_t)
            if clip is not None:
                nxt = np.clip(nxt, *clip)
            total += -g_c * (nxt - start)
            xk, k = nxt.astype(np.float32), k + 1
        probs_end, _, _, logits_end = _probs_and_grads(xk, 0, 0)
        iterations.append(k)
        ends.append(int(np.argmax(logits_end)))
        change += p_x - float(probs_end[target])
    return total, np.array(iterations), np.array(ends), total.sum() - change


@pytest.mark.parametrize(
    "from_original, clip",
    [(False, (0.0, 1.0)), (True, (0.0, 1.0)), (False, None)],
)
def test_matches_python_loop_on_the_tiny_cnn(from_original, clip):
    target, n_classes, max_iter, eps = 3, 9, 12, 0.03
    r = adversarial_gradient_integration(
        logits_fn,
        XS[0],
        target,
        n_classes=n_classes,
        eps=eps,
        max_iter=max_iter,
        from_original=from_original,
        clip=clip,
    )
    classes = list(range(9))  # the authors' even ids for K = 10, n = 9
    np.testing.assert_array_equal(r.aux["classes"], classes)
    ref, iterations, ends, delta = np_agi(
        XS[0], target, classes, eps, max_iter, from_original, clip
    )
    np.testing.assert_array_equal(r.aux["iterations"], iterations)
    np.testing.assert_array_equal(r.aux["end_class"], ends)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(r.attributions, ref, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(r.delta, delta, rtol=1e-4, atol=1e-5)
    # The case is not degenerate: some classes stop early, some run out.
    assert iterations[target] == 0 and not r.aux["used"][target]
    if not from_original:
        assert 0 < iterations.min(where=iterations > 0, initial=99) < max_iter
        assert r.aux["reached"].any()
        assert iterations.max() == max_iter
    if clip is None:
        assert np.asarray(r.attributions).any()


def linear_logits(z, bias):
    """Two classes, logit difference `d(z) = sum(z) + bias`: every signed step on
    softmax_1 moves all 4 entries by +eps, so d grows by 4 eps per step."""
    return jnp.stack([jnp.zeros(()), z.sum() + bias])


def sigmoid_slope(d):
    s = 1.0 / (1.0 + np.exp(-d))
    return s * (1.0 - s)


@pytest.mark.parametrize("max_iter", [4, 10])
def test_linear_model_cumulative_stops_when_reached(max_iter):
    # x = 0.5: d_0 = 2 - 2.7 = -0.7; eps = 0.05: d_k = -0.7 + 0.2 k, > 0 first at
    # k = 4. Each step adds eps * s0 s1(x_k) to every entry (grad s0 = -s0 s1 * 1).
    x = jnp.full((4,), 0.5)
    lf = lambda z: linear_logits(z, -2.7)
    r = adversarial_gradient_integration(lf, x, 0, classes=jnp.array([1]), eps=0.05,
                                         max_iter=max_iter)  # fmt: skip
    d = -0.7 + 0.2 * np.arange(4)
    per_entry = 0.05 * sigmoid_slope(d).sum()
    np.testing.assert_allclose(r.attributions, np.full(4, per_entry), rtol=1e-5)
    assert int(r.aux["iterations"][0]) == 4  # no accumulation after reaching 1
    assert bool(r.aux["reached"][0]) and int(r.aux["end_class"][0]) == 1
    # delta: 4 * per_entry against s0(x) - s0(x_end) = sigma(0.1) - sigma(-0.7).
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    np.testing.assert_allclose(
        r.delta, 4 * per_entry - (sig(0.1) - sig(-0.7)), rtol=1e-4, atol=1e-6
    )
    # One step short: not reached, 3 iterations.
    short = adversarial_gradient_integration(
        lf, x, 0, classes=jnp.array([1]), eps=0.05, max_iter=3
    )
    assert int(short.aux["iterations"][0]) == 3 and not bool(short.aux["reached"][0])
    np.testing.assert_allclose(
        short.attributions, 0.05 * sigmoid_slope(d[:3]).sum(), rtol=1e-5
    )


def test_linear_model_from_original_stays_one_step_away():
    x = jnp.full((4,), 0.5)
    far = adversarial_gradient_integration(
        lambda z: linear_logits(z, -2.7), x, 0, classes=jnp.array([1]), eps=0.05,
        max_iter=5, from_original=True,
    )  # fmt: skip
    # Every iterate is x + eps: d = -0.5 forever; each step adds s0 s1 * (x_1 - x).
    expected = 0.05 * (sigmoid_slope(-0.7) + 4 * sigmoid_slope(-0.5))
    np.testing.assert_allclose(far.attributions, np.full(4, expected), rtol=1e-5)
    assert int(far.aux["iterations"][0]) == 5 and not bool(far.aux["reached"][0])
    near = adversarial_gradient_integration(
        lambda z: linear_logits(z, -2.1), x, 0, classes=jnp.array([1]), eps=0.05,
        max_iter=5, from_original=True,
    )  # fmt: skip
    assert int(near.aux["iterations"][0]) == 1 and bool(near.aux["reached"][0])
    np.testing.assert_allclose(near.attributions, 0.05 * sigmoid_slope(-0.1), rtol=1e-5)


def test_delta_shrinks_with_the_step_on_the_cumulative_path():
    # Cumulative path: sum(attributions) telescopes to softmax_c(x) - softmax_c(x_end)
    # up to a first-order error (about 1.7 % and 0.4 % of the change here).
    smooth = helpers.tiny_cnn(PARAMS, act=jax.nn.softplus)
    lf = lambda z: smooth(z[None])[0]
    ratios = []
    for eps, iters in ((0.02, 10), (0.005, 40)):
        r = adversarial_gradient_integration(
            lf, XS[1], 2, classes=jnp.array([5]), eps=eps, max_iter=iters
        )
        change = float(r.aux["prob_x"] - r.aux["prob_end"][0])
        assert abs(change) > 1e-2
        ratios.append(abs(float(r.delta)) / abs(change))
    assert ratios[1] < 0.5 * ratios[0] and ratios[1] < 0.01
    # From the original image the increments do not telescope: delta is of the
    # order of the attributions themselves, not a discretisation error.
    fo = adversarial_gradient_integration(
        lf, XS[1], 2, classes=jnp.array([5]), eps=0.02, max_iter=10,
        from_original=True,
    )  # fmt: skip
    assert abs(float(fo.delta)) > 0.3 * abs(float(fo.attributions.sum()))


def test_class_selection():
    np.testing.assert_array_equal(agi.even_classes(1000, 20), np.arange(0, 951, 50))
    assert len(agi.even_classes(1000, 15)) == 16  # the authors' range(0, 999, 66)
    np.testing.assert_array_equal(agi.even_classes(1000, 1), [0])  # IDG's eval
    np.testing.assert_array_equal(agi.even_classes(10, 3), [0, 3, 6])
    # Random: distinct, never the (traced) target, every other class drawn.
    keys = jax.random.split(jax.random.key(1), 200)
    targets = jnp.arange(200) % 10
    drawn = np.asarray(jax.vmap(agi.random_classes, (0, None, None, 0))(
        keys, 10, 3, targets))  # fmt: skip
    for row, t in zip(drawn, np.asarray(targets)):
        assert len(set(row)) == 3 and t not in row and row.min() >= 0
        assert row.max() < 10
    for t in range(10):
        assert set(drawn[np.asarray(targets) == t].ravel()) == set(range(10)) - {t}
    # Reproducible per key; the classes are those drawn for the key.
    a = adversarial_gradient_integration(
        mlp_logits, XS[0], 1, n_classes=3, selection="random", key=keys[1],
        max_iter=3,
    )  # fmt: skip
    np.testing.assert_array_equal(a.aux["classes"], drawn[1])
    assert a.aux["used"].all()
    b = adversarial_gradient_integration(
        mlp_logits, XS[0], 1, classes=a.aux["classes"], max_iter=3
    )
    np.testing.assert_array_equal(a.attributions, b.attributions)


def test_target_is_excluded_and_duplicates_count_twice():
    one = adversarial_gradient_integration(
        mlp_logits, XS[0], 4, classes=jnp.array([2]), max_iter=4
    )
    r = adversarial_gradient_integration(
        mlp_logits, XS[0], 4, classes=jnp.array([2, 4, 2]), max_iter=4
    )
    np.testing.assert_array_equal(r.aux["used"], [True, False, True])
    assert int(r.aux["iterations"][1]) == 0 and float(r.aux["per_class"][1]) == 0.0
    assert int(r.aux["iterations"][0]) > 0 and float(one.aux["per_class"][0]) != 0.0
    scale = float(jnp.abs(one.attributions).max())
    np.testing.assert_allclose(
        r.attributions, 2 * one.attributions, rtol=1e-5, atol=1e-6 * scale
    )
    # Even ids include the target here; it is skipped, the other 8 are used;
    # target=None explains the prediction.
    pred = int(jnp.argmax(mlp_logits(XS[0])))
    even = adversarial_gradient_integration(mlp_logits, XS[0], n_classes=9, max_iter=1)
    assert int(even.aux["target"]) == pred
    used = np.arange(9) != pred
    np.testing.assert_array_equal(even.aux["used"], used)
    np.testing.assert_array_equal(even.aux["iterations"], used.astype(int))


def test_jit_vmap_over_images_and_targets_equal_eager():
    traces = []

    @jax.jit
    def explain(x, t, eps):
        traces.append(1)
        return adversarial_gradient_integration(
            mlp_logits, x, t, n_classes=4, eps=eps, max_iter=6
        )

    targets = jnp.array([0, 7], jnp.int32)
    batched = jax.vmap(explain, in_axes=(0, 0, None))(XS, targets, 0.05)
    plain = explain(XS[0], targets[0], 0.05)
    eager = adversarial_gradient_integration(
        mlp_logits, XS[1], 7, n_classes=4, max_iter=6
    )
    for i, one in enumerate((plain, eager)):
        np.testing.assert_allclose(
            batched.attributions[i], one.attributions, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_array_equal(
            batched.aux["iterations"][i], one.aux["iterations"]
        )
    assert np.asarray(batched.aux["iterations"]).max() > 1
    # Target 0 is among the even ids [0, 2, 4, 6, 8]: skipped in row 0 only.
    np.testing.assert_array_equal(batched.aux["used"][:, 0], [False, True])
    chunked = adversarial_gradient_integration(
        mlp_logits, XS[1], 7, n_classes=4, max_iter=6, batch_size=2
    )
    np.testing.assert_allclose(
        chunked.attributions, eager.attributions, rtol=1e-5, atol=1e-7
    )
    # A traced target outside [0, K) gives NaN, not a wrong class; new eps and
    # target values do not retrace.
    bad = explain(XS[0], jnp.int32(12), 0.04)
    assert np.isnan(np.asarray(bad.attributions)).all()
    assert len(traces) == 1  # one trace serves vmap, plain call and new values


def test_errors_name_the_argument():
    x = XS[0]
    call = adversarial_gradient_integration
    with pytest.raises(ValueError, match=r"logits_fn must map one example to logits"):
        call(lambda z: z.sum(), x, 0)
    with pytest.raises(TypeError, match="logits_fn must be a function"):
        call("model", x, 0)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        call(logits_fn, jnp.ones((8, 8, 3), jnp.int32), 0)
    with pytest.raises(ValueError, match=r"x must lie in clip=\(0, 1\).*got values"):
        call(logits_fn, x * 2 - 1, 0)
    with pytest.raises(ValueError, match=r"target must be in \[0, 10\).*got 10"):
        call(logits_fn, x, 10)
    with pytest.raises(TypeError, match="classes must be integer"):
        call(logits_fn, x, 0, classes=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"classes must be in \[0, 10\).*\[1, 11\]"):
        call(logits_fn, x, 0, classes=[1, 11])
    with pytest.raises(ValueError, match="classes must be a 1-D array"):
        call(logits_fn, x, 0, classes=3)
    with pytest.raises(ValueError, match="n_classes must be <= 9.*got 20"):
        call(logits_fn, x, 0)
    with pytest.raises(TypeError, match="n_classes must be a Python int"):
        call(logits_fn, x, 0, n_classes=2.0)
    with pytest.raises(ValueError, match="selection must be one of"):
        call(logits_fn, x, 0, n_classes=3, selection="top")
    with pytest.raises(ValueError, match="key is required"):
        call(logits_fn, x, 0, n_classes=3, selection="random")
    with pytest.raises(ValueError, match="eps must be a positive scalar.*-0.1"):
        call(logits_fn, x, 0, n_classes=3, eps=-0.1)
    with pytest.raises(ValueError, match="max_iter must be >= 1; got 0"):
        call(logits_fn, x, 0, n_classes=3, max_iter=0)
    with pytest.raises(ValueError, match=r"clip must be None or a pair.*\(1, 0\)"):
        call(logits_fn, x, 0, n_classes=3, clip=(1, 0))
    with pytest.raises(TypeError, match="from_original must be a Python bool"):
        call(logits_fn, x, 0, n_classes=3, from_original="yes")
