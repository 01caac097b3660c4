"""AUPC and AUTVC against NumPy/scikit-image loops written from algorithms.md §2.3."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import simpson
from skimage.transform import pyramid_gaussian

from jaxattr import metrics
from tests.metrics import common

S = 24  # image side for AUPC
# An odd number of perturbations: the median is then one of the scores, so the
# applied candidate is unique. With an even number the two middle scores are equally
# far from the median by construction, and float rounding (the NumPy loop against the
# batched, jitted model) picks between them.
K, REGIONS, PERTURBS = 5, 4, 5


def np_simpson_avg(y):
    """scipy's old `simps(y, dx=1, even="avg")`, from `simpson` on odd slices."""
    y = np.asarray(y, np.float64)
    if len(y) % 2:
        return simpson(y, dx=1)
    first = simpson(y[:-1], dx=1) + (y[-2] + y[-1]) / 2
    last = simpson(y[1:], dx=1) + (y[0] + y[1]) / 2
    return (first + last) / 2


def np_aupc(model, x, a, key, k, n_regions, n_perturbs):
    """SmoothTaylor's compute_perturbations + compute_aupc, as a plain loop."""
    h_map = a.sum(-1).astype(np.float64)
    hh, ww = h_map.shape
    cands = []
    for h0 in range(hh - k):
        for w0 in range(ww - k):
            cands.append((np.abs(h_map[h0 : h0 + k, w0 : w0 + k]).mean(), h0, w0))
    # descending relevance; row-major order on ties (as the masked argmax)
    cands.sort(key=lambda t: (-t[0], t[1], t[2]))
    z0 = common.np_scores(model, x, "logit")
    c = int(np.argmax(z0))
    s0 = z0[c]
    img = x.astype(np.float32).copy()
    taken, curve, corners = [], [s0], []
    keys = jax.random.split(key, n_regions)
    for i in range(n_regions):
        for _, h0, w0 in cands:
            if all(abs(h0 - p) > k - 1 or abs(w0 - q) > k - 1 for p, q in taken):
                break
        taken.append((h0, w0))
        corners.append((h0, w0))
        patches = np.asarray(jax.random.uniform(keys[i], (n_perturbs, k, k, 3)))
        logits = []
        for p in patches:
            im = img.copy()
            im[h0 : h0 + k, w0 : w0 + k] = p
            logits.append(common.np_scores(model, im, "logit")[c])
        logits = np.array(logits)
        curve.append(logits.mean())
        j = int(np.argmin(np.abs(logits - np.median(logits))))
        img[h0 : h0 + k, w0 : w0 + k] = patches[j]
    curve = np.array(curve) / abs(s0)
    return curve, np_simpson_avg(curve), np.array(corners)


def test_aupc_matches_numpy_loop():
    model = common.tiny_model(1)
    x, a = common.image(20, S, S), common.attribution(21, S, S)
    key = jax.random.key(3)
    ref_curve, ref_score, ref_corners = np_aupc(model, x, a, key, K, REGIONS, PERTURBS)
    res = jax.jit(
        lambda x, a, key: metrics.aupc(
            model, x, a, key=key, kernel_size=K, num_regions=REGIONS,
            num_perturbs=PERTURBS, batch_size=4,
        )
    )(x, a, key)  # fmt: skip
    np.testing.assert_array_equal(res.regions, ref_corners)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.score, ref_score, atol=1e-5)
    assert res.curve[0] == pytest.approx(np.sign(ref_curve[0]))


def test_aupc_is_deterministic_under_a_key_and_chunk_invariant():
    model = common.tiny_model(1)
    x, a = common.image(22, S, S), common.attribution(23, S, S)
    kw = {"kernel_size": K, "num_regions": REGIONS, "num_perturbs": PERTURBS}
    run = jax.jit(
        lambda key, b=None: metrics.aupc(model, x, a, key=key, batch_size=b, **kw),
        static_argnums=1,
    )
    k0, k1 = jax.random.key(0), jax.random.key(1)
    r1, r2, r3, r4 = run(k0), run(k0), run(k0, 4), run(k1)
    np.testing.assert_array_equal(r1.curve, r2.curve)
    np.testing.assert_allclose(r1.curve, r3.curve, atol=1e-6)
    assert not np.allclose(r1.curve, r4.curve)


def test_aupc_regions_do_not_overlap_and_run_out_cleanly():
    model = common.tiny_model(1)
    x, a = common.image(24, 12, 12), common.attribution(25, 12, 12)
    # 7 x 7 grid of top-lefts, exclusion radius 4: at most 4 regions fit
    res = metrics.aupc(
        model, x, a, key=jax.random.key(0), kernel_size=5, num_regions=6,
        num_perturbs=3,
    )  # fmt: skip
    corners = np.asarray(res.regions)
    used = corners[corners[:, 0] >= 0]
    assert 1 <= len(used) <= 4 and (corners[len(used) :] == -1).all()
    for i in range(len(used)):
        for j in range(i):
            assert np.abs(used[i] - used[j]).max() > 4
    # once no window is left the image stops changing: the curve is flat
    tail = np.asarray(res.curve)[len(used) + 1 :]
    assert np.all(np.isfinite(tail)) and np.allclose(tail, tail[0])


def test_aupc_needs_a_key():
    model = common.tiny_model(1)
    x, a = common.image(24, S, S), common.attribution(25, S, S)
    with pytest.raises(ValueError, match="aupc: key is required"):
        metrics.aupc(model, x, a, key=None)
    with pytest.raises(ValueError, match=r"aupc: kernel_size must be < .*got 30"):
        metrics.aupc(model, x, a, key=jax.random.key(0), kernel_size=30)


def np_autvc(h, downscale=1.5, min_size=30, lp=1):
    atvs = []
    for level in pyramid_gaussian(h.astype(np.float64), downscale=downscale):
        if min(level.shape) < min_size:
            break
        v = np.abs(level)
        v = np.clip((v - v.min()) / (np.percentile(v, 99) - v.min()), 0, 1)
        dx = np.abs(v[:, 1:] - v[:, :-1])
        dy = np.abs(v[1:, :] - v[:-1, :])
        if lp == 1:
            tv = dx.sum() + dy.sum()
        else:
            tv = (dx**lp).sum() ** (1 / lp) + (dy**lp).sum() ** (1 / lp)
        atvs.append(tv / v.size)
    return np.array(atvs), np_simpson_avg(atvs)


@pytest.mark.parametrize(
    "side, min_size, lp", [(64, 10, 1), (64, 14, 1), (48, 10, 2), (224, 30, 1)]
)
def test_autvc_matches_skimage_pyramid(side, min_size, lp):
    a = np.random.default_rng(side + min_size).normal(size=(side, side, 3))
    a = a.astype(np.float32)
    ref_curve, ref = np_autvc(a.sum(-1), min_size=min_size, lp=lp)
    res = jax.jit(lambda a: metrics.autvc(a, min_size=min_size, lp_norm=lp))(a)
    assert res.curve.shape == ref_curve.shape
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.score, ref, atol=1e-5)


def test_autvc_of_constant_map_is_zero_and_grows_with_noise():
    side = 64
    yy, xx = np.mgrid[:side, :side] / side
    smooth = np.exp(-((yy - 0.5) ** 2 + (xx - 0.4) ** 2) / 0.05).astype(np.float32)
    assert float(metrics.autvc(np.full((side, side), 0.3), min_size=10).score) == 0
    rng = np.random.default_rng(0)
    scores = [
        float(
            metrics.autvc(
                smooth + s * rng.normal(size=smooth.shape).astype(np.float32),
                min_size=10,
            ).score
        )
        for s in (0.0, 0.05, 0.2, 1.0)
    ]
    assert all(b > a for a, b in itertools.pairwise(scores)), scores


def test_autvc_vmaps_over_maps():
    maps = np.random.default_rng(1).normal(size=(3, 40, 40)).astype(np.float32)
    batched = jax.vmap(lambda m: metrics.autvc(m, min_size=10))(maps)
    for i in range(3):
        one = metrics.autvc(maps[i], min_size=10)
        np.testing.assert_allclose(batched.curve[i], one.curve, atol=1e-6)


def test_simpson_rule_matches_scipy():
    from jaxattr.metrics import _common

    for n in (2, 3, 4, 5, 6, 31):
        y = np.random.default_rng(n).normal(size=n)
        np.testing.assert_allclose(
            _common.simpson_dx1(jnp.asarray(y)), np_simpson_avg(y), atol=1e-6
        )
