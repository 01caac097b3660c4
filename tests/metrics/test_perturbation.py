"""Insertion, deletion, MoRF, LeRF against a RISE-style NumPy loop and known answers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxattr import metrics
from tests import helpers
from tests.metrics import common

STEP = 7  # 100 pixels -> 15 steps, the last one partial


def np_gkern(klen=11, nsig=5):
    """RISE's gkern: a Dirac smoothed by scipy's gaussian_filter."""
    d = np.zeros((klen, klen))
    d[klen // 2, klen // 2] = 1
    return ndimage.gaussian_filter(d, nsig)


def np_rise_blur(x, mean):
    """RISE: conv2d of the normalised tensor, zero padding; here in pixel space."""
    k = np_gkern()
    out = np.empty(x.shape, np.float64)
    for c in range(x.shape[-1]):
        out[..., c] = (
            ndimage.correlate(x[..., c] - mean[c], k, mode="constant") + mean[c]
        )
    return out


def np_causal(model, x, sal, mode, step, substrate, output="softmax", order="desc"):
    """RISE's CausalMetric.single_run, straightforwardly."""
    h, w = sal.shape
    n = math.ceil(h * w / step)
    ranked = np.argsort(sal.reshape(-1), kind="stable")
    ranked = ranked[::-1] if order == "desc" else ranked
    c = int(np.argmax(common.np_scores(model, x, output)))
    if mode == "del":
        start, finish = x.astype(np.float64).copy(), substrate
    else:
        start, finish = substrate.astype(np.float64).copy(), x
    curve = []
    for i in range(n + 1):
        curve.append(common.np_scores(model, start.astype(np.float32), output)[c])
        if i < n:
            r, col = np.unravel_index(ranked[step * i : step * (i + 1)], (h, w))
            start[r, col, :] = finish[r, col, :]
    curve = np.array(curve)
    return curve, (curve.sum() - curve[0] / 2 - curve[-1] / 2) / n


def test_rise_kernel_is_gkern():
    np.testing.assert_allclose(metrics.rise_kernel(), np_gkern(), atol=1e-12)


def test_rise_blur_matches_numpy():
    x = common.image(3, 16, 16)
    got = metrics.rise_blur(jnp.asarray(x), common.MEAN)
    np.testing.assert_allclose(got, np_rise_blur(x, common.MEAN), atol=1e-5)


@pytest.mark.parametrize(
    "name, mode, baseline",
    [
        ("deletion", "del", "normalized_zero"),
        ("deletion", "del", "black"),
        ("insertion", "ins", "rise_blur"),
        ("insertion", "ins", "normalized_zero"),
    ],
)
def test_insertion_deletion_match_numpy_loop(name, mode, baseline):
    model = common.tiny_model(0)
    x, a = common.image(0), common.attribution(1)
    sal = np.abs(a.sum(-1))
    sub = {
        "normalized_zero": np.broadcast_to(common.MEAN, x.shape),
        "black": np.zeros_like(x),
        "rise_blur": np_rise_blur(x, common.MEAN),
    }[baseline]
    ref_curve, ref_auc = np_causal(model, x, sal, mode, STEP, sub)
    fn = getattr(metrics, name)
    res = jax.jit(lambda x, a: fn(model, x, a, step=STEP, perturb_baseline=baseline))(
        x, a
    )
    assert res.curve.shape == (math.ceil(100 / STEP) + 1,)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.score, ref_auc, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(res.fractions)[[0, 1, -1]], [0, STEP / 100, 1]
    )


@pytest.mark.parametrize("name, order", [("morf", "desc"), ("lerf", "asc")])
def test_morf_lerf_match_numpy_loop(name, order):
    model = common.tiny_model(2)
    x, a = common.image(4), common.attribution(5)
    sal = np.abs(a.sum(-1))
    sub = np.broadcast_to(common.MEAN, x.shape)
    ref_curve, ref_auc = np_causal(
        model, x, sal, "del", STEP, sub, output="logit", order=order
    )
    res = getattr(metrics, name)(model, x, a, step=STEP, output="logit", batch_size=4)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.score, ref_auc, atol=1e-5)


def test_deletion_of_perfect_linear_attribution_is_the_analytic_curve():
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 1.0, (common.H, common.W, 3)).astype(np.float32)
    x = common.image(6)
    base = np.broadcast_to(common.MEAN, x.shape)
    model = common.linear_model(w)
    a = w * (x - base)  # exact IG from the mean image
    # analytic: z(x) minus the largest pixel contributions, `step` at a time
    contrib = np.sort(a.sum(-1).reshape(-1).astype(np.float64))[::-1]
    z_x = float((w * x).sum())
    n = math.ceil(100 / STEP)
    analytic = np.array(
        [z_x - contrib[: min(k * STEP, 100)].sum() for k in range(n + 1)]
    )
    res = metrics.deletion(
        model, x, a, target=0, step=STEP, output="logit", reduction="sum"
    )
    np.testing.assert_allclose(res.curve, analytic, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(res.curve[-1], (w * base).sum(), rtol=1e-5)


def test_random_attribution_scores_worse_than_the_truth():
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 1.0, (common.H, common.W, 3)).astype(np.float32)
    x = common.image(7)
    model = common.linear_model(w)
    truth = w * x  # contributions towards the black image, all positive
    kw = {"target": 0, "output": "logit", "perturb_baseline": "black"}
    true_del = metrics.deletion(model, x, truth, step=5, **kw).score
    true_ins = metrics.insertion(model, x, truth, step=5, **kw).score
    true_lerf = metrics.lerf(model, x, truth, step=5, **kw).score
    for seed in range(3):
        r = common.attribution(10 + seed)
        assert metrics.deletion(model, x, r, step=5, **kw).score > true_del
        assert metrics.insertion(model, x, r, step=5, **kw).score < true_ins
        assert metrics.lerf(model, x, r, step=5, **kw).score < true_lerf


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_every_channel_is_perturbed(channel):
    """A model that sees one channel only must see every deleted pixel."""
    w = np.zeros((common.H, common.W, 3), np.float32)
    w[..., channel] = 1.0
    model = common.linear_model(w)
    x = common.image(8)
    a = common.attribution(9)[..., :1] * np.ones((1, 1, 3), np.float32)
    res = metrics.deletion(
        model, x, a, target=0, step=STEP, output="logit", perturb_baseline="black"
    )
    np.testing.assert_allclose(res.curve[-1], 0.0, atol=1e-5)
    ranked = np.argsort(np.abs(a.sum(-1)).reshape(-1))[::-1]
    first = ranked[:STEP]
    expected = x[..., channel].sum() - x[..., channel].reshape(-1)[first].sum()
    np.testing.assert_allclose(res.curve[1], expected, rtol=1e-5)


@pytest.mark.parametrize("batch_size", [None, 1, 4, 16])
def test_chunk_size_invariance(batch_size):
    model = common.tiny_model(3)
    x, a = common.image(11), common.attribution(12)
    ref = metrics.insertion(model, x, a, step=STEP, batch_size=None)
    res = metrics.insertion(model, x, a, step=STEP, batch_size=batch_size)
    np.testing.assert_allclose(res.curve, ref.curve, atol=1e-6)


def test_vmap_over_images_and_traced_model_weights():
    p = jax.tree.map(jnp.asarray, helpers.tiny_cnn_params(4))
    xs = np.stack([common.image(13), common.image(14)])
    as_ = np.stack([common.attribution(15), common.attribution(16)])

    @jax.jit
    def batch(p, xs, as_):
        model = helpers.tiny_cnn(p)
        return jax.vmap(lambda x, a: metrics.deletion(model, x, a, step=STEP))(xs, as_)

    res = batch(p, xs, as_)
    assert res.curve.shape == (2, math.ceil(100 / STEP) + 1)
    model = helpers.tiny_cnn(p)
    for i in range(2):
        one = metrics.deletion(model, xs[i], as_[i], step=STEP)
        np.testing.assert_allclose(res.curve[i], one.curve, atol=1e-6)
        assert int(res.target[i]) == int(one.target)


def test_heatmap_input_and_reductions():
    model = common.tiny_model(0)
    x, a = common.image(0), common.attribution(1)
    full = metrics.deletion(model, x, a, step=STEP, reduction="sum_abs")
    heat = metrics.deletion(model, x, np.abs(a).sum(-1), step=STEP)
    np.testing.assert_allclose(full.curve, heat.curve, atol=1e-6)
    custom = metrics.deletion(model, x, a, step=STEP, reduction=lambda a: a[..., 0])
    by_hand = metrics.deletion(model, x, a[..., 0], step=STEP)
    np.testing.assert_allclose(custom.curve, by_hand.curve, atol=1e-6)


def test_quantus_auc_is_unnormalised_trapezoid():
    model = common.tiny_model(0)
    x, a = common.image(0), common.attribution(1)
    res = metrics.deletion(model, x, a, step=STEP, auc="trapezoid")
    np.testing.assert_allclose(res.score, np.trapezoid(res.curve), rtol=1e-6)


def test_uniform_substrate_needs_a_key_and_is_deterministic():
    model = common.tiny_model(0)
    x, a = common.image(0), common.attribution(1)
    with pytest.raises(ValueError, match="deletion: key is required"):
        metrics.deletion(model, x, a, perturb_baseline="uniform")
    k = jax.random.key(0)
    r1 = metrics.deletion(model, x, a, step=STEP, perturb_baseline="uniform", key=k)
    r2 = metrics.deletion(model, x, a, step=STEP, perturb_baseline="uniform", key=k)
    np.testing.assert_array_equal(r1.curve, r2.curve)


def test_errors_name_argument_expected_and_received():
    model = common.tiny_model(0)
    x, a = common.image(0), common.attribution(1)
    with pytest.raises(
        ValueError, match=r"deletion: attributions must have.*\(10, 10, 3\).*\(5, 5\)"
    ):
        metrics.deletion(model, x, a[:5, :5, 0])
    with pytest.raises(ValueError, match="insertion: step must be >= 1; got 0"):
        metrics.insertion(model, x, a, step=0)
    with pytest.raises(
        ValueError, match="deletion: reduction must be one of .*got 'max'"
    ):
        metrics.deletion(model, x, a, reduction="max")
    with pytest.raises(ValueError, match="morf: perturb_baseline must be one of"):
        metrics.morf(model, x, a, perturb_baseline="grey")
    with pytest.raises(ValueError, match=r"lerf: x must be one image \[H, W, C\]"):
        metrics.lerf(model, x[None], a)
    with pytest.raises(
        ValueError, match=r"deletion: target must be in \[0, 10\); got 12"
    ):
        metrics.deletion(model, x, a, target=12)


def test_old_substrate_and_step_names_are_deprecated_aliases():
    model = common.tiny_model(0)
    x, a = jnp.asarray(common.image(0)), jnp.asarray(common.attribution(1))
    kw = {"step": STEP, "output": "logit"}
    for fn, old, new in [
        (metrics.deletion, "mean", "normalized_zero"),
        (metrics.insertion, "blur", "rise_blur"),
    ]:
        want = fn(model, x, a, perturb_baseline=new, **kw)
        with pytest.warns(DeprecationWarning, match=f"perturb_baseline={old!r} is dep"):
            got = fn(model, x, a, perturb_baseline=old, **kw)
        jax.tree.map(np.testing.assert_array_equal, got, want)
        assert fn(model, x, a, **kw).score == want.score  # the new name is the default
    for fn in (metrics.morf, metrics.lerf):
        want = fn(model, x, a, step=STEP)
        with pytest.warns(DeprecationWarning, match="features_in_step= is deprecated"):
            got = fn(model, x, a, features_in_step=STEP)
        jax.tree.map(np.testing.assert_array_equal, got, want)
        with pytest.raises(TypeError, match="got both step= and its deprecated name"):
            fn(model, x, a, step=STEP, features_in_step=STEP)
