"""AUPC and AUTVC against NumPy/scikit-image loops written from docs/evaluation.md."""

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
    """SmoothTaylor's compute_perturbations + compute_aupc, as a plain loop.

    Follows their code: windows indexed `h + w * H` and ranked by descending mean
    `|heat|` (a stable sort here; their `np.argsort` has no ties on these maps), the
    top-lefts of the last row and column of windows skipped, `bad_idxs` filled with
    the `(2k - 1)^2` indices around each chosen window, and the loop stopped when no
    window is left (`if not found: break`): the curve is then shorter than
    `n_regions + 1`. The patches are those `aupc` draws from `key`.
    """
    h_map = a.sum(-1).astype(np.float64)
    img_h, img_w = h_map.shape
    avg_values = -np.inf * np.ones(img_h * img_w)
    for h in range(img_h - k):
        for w in range(img_w - k):
            avg_values[h + w * img_h] = np.mean(np.abs(h_map[h : h + k, w : w + k]))
    most_relevant_idxs = np.argsort(-avg_values, kind="stable")
    z0 = common.np_scores(model, x, "logit")
    c = int(np.argmax(z0))
    s0 = z0[c]
    img = x.astype(np.float32).copy()
    curve, corners = [s0], []
    keys = jax.random.split(key, n_regions)
    bad_idxs = set()
    for region_idx in range(n_regions):
        found = False
        for kernel_idx in most_relevant_idxs:
            if kernel_idx not in bad_idxs:
                width = int(kernel_idx // img_h)
                height = int(kernel_idx - width * img_h)
                if (img_h - height) <= k or (img_w - width) <= k:
                    continue
                for dh in range(-k + 1, k):
                    for dw in range(-k + 1, k):
                        bad_idxs.add((height + dh) + (width + dw) * img_h)
                found = True
                break
        if not found:
            break
        corners.append((height, width))
        patches = np.asarray(
            jax.random.uniform(keys[region_idx], (n_perturbs, k, k, 3))
        )
        logits = []
        for p in patches:
            im = img.copy()
            im[height : height + k, width : width + k] = p
            logits.append(common.np_scores(model, im, "logit")[c])
        logits = np.array(logits)
        curve.append(logits.mean())
        j = int(np.argmin(np.abs(logits - np.median(logits))))
        img[height : height + k, width : width + k] = patches[j]
    curve = np.array(curve) / abs(s0)
    return curve, np_simpson_avg(curve), np.array(corners)


def test_aupc_matches_numpy_loop():
    model = common.tiny_model(1)
    x, a = common.image(20, S, S), common.attribution(21, S, S)
    key = jax.random.key(3)
    ref_curve, ref_score, ref_corners = np_aupc(model, x, a, key, K, REGIONS, PERTURBS)
    res = jax.jit(
        lambda x, a, key: metrics.aupc(
            model, x, a, key=key, kernel_size=K, n_regions=REGIONS,
            n_perturb_samples=PERTURBS, batch_size=4,
        )
    )(x, a, key)  # fmt: skip
    np.testing.assert_array_equal(res.regions, ref_corners)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.score, ref_score, atol=1e-5)
    assert res.curve[0] == pytest.approx(np.sign(ref_curve[0]))


def test_aupc_is_deterministic_under_a_key_and_chunk_invariant():
    model = common.tiny_model(1)
    x, a = common.image(22, S, S), common.attribution(23, S, S)
    kw = {"kernel_size": K, "n_regions": REGIONS, "n_perturb_samples": PERTURBS}
    run = jax.jit(
        lambda key, b=None: metrics.aupc(model, x, a, key=key, batch_size=b, **kw),
        static_argnums=1,
    )
    k0, k1 = jax.random.key(0), jax.random.key(1)
    r1, r2, r3, r4 = run(k0), run(k0), run(k0, 4), run(k1)
    np.testing.assert_array_equal(r1.curve, r2.curve)
    np.testing.assert_allclose(r1.curve, r3.curve, atol=1e-6)
    assert not np.allclose(r1.curve, r4.curve)


def test_aupc_when_the_windows_run_out_follows_the_authors_shorter_curve():
    # 12 x 12 image, 5 x 5 windows: a 7 x 7 grid of top-lefts, exclusion radius 4,
    # so at most 4 regions fit of the 30 asked for (SmoothTaylor's default). Their
    # loop stops there and integrates the shorter curve.
    model = common.tiny_model(1)
    x, a = common.image(24, 12, 12), common.attribution(25, 12, 12)
    key = jax.random.key(0)
    ref_curve, ref_score, ref_corners = np_aupc(model, x, a, key, 5, 30, 5)
    n = len(ref_corners)
    assert 1 <= n <= 4 and len(ref_curve) == n + 1
    res = jax.jit(
        lambda x, a, key: metrics.aupc(
            model, x, a, key=key, kernel_size=5, n_regions=30, n_perturb_samples=5
        )
    )(x, a, key)
    assert int(res.n_regions) == n
    np.testing.assert_array_equal(res.regions[:n], ref_corners)
    assert (np.asarray(res.regions[n:]) == -1).all()
    np.testing.assert_allclose(res.curve[: n + 1], ref_curve, atol=1e-5)
    assert np.isnan(np.asarray(res.curve[n + 1 :])).all()
    np.testing.assert_allclose(res.score, ref_score, atol=1e-5)
    # Regions do not overlap: top-lefts more than k - 1 apart in some direction.
    for i in range(n):
        for j in range(i):
            assert np.abs(ref_corners[i] - ref_corners[j]).max() > 4
    # Padding the curve to 31 points with its last score, as before, is far off.
    padded = np.r_[ref_curve, np.full(30 - n, ref_curve[-1])]
    assert abs(np_simpson_avg(padded) - ref_score) > 1.0


def test_aupc_run_out_under_vmap_gives_each_image_its_own_length():
    model = common.tiny_model(1)
    xs = np.stack([common.image(30 + i, 12, 12) for i in range(3)])
    maps = [common.attribution(40 + i, 12, 12) for i in range(2)]
    # A single bright pixel at the centre: every window holding it ties, the first
    # in row-major order, (2, 2), blocks the whole 7 x 7 grid: one region.
    one = np.zeros((12, 12, 3), np.float32)
    one[6, 6] = 1.0
    aa = np.stack([*maps, one])
    key = jax.random.key(5)
    kw = {"kernel_size": 5, "n_regions": 6, "n_perturb_samples": 3}
    batched = jax.jit(jax.vmap(lambda x, a: metrics.aupc(model, x, a, key=key, **kw)))(
        xs, aa
    )
    assert int(batched.n_regions[2]) == 1
    np.testing.assert_array_equal(batched.regions[2, 0], [2, 2])
    for i in range(3):
        ref_curve, ref_score, _ = np_aupc(model, xs[i], aa[i], key, 5, 6, 3)
        n = int(batched.n_regions[i])
        assert n == len(ref_curve) - 1
        np.testing.assert_allclose(batched.curve[i, : n + 1], ref_curve, atol=1e-5)
        np.testing.assert_allclose(batched.score[i], ref_score, atol=1e-5)
    # With one region the curve has 2 points: the trapezoid.
    c = np.asarray(batched.curve[2])
    np.testing.assert_allclose(batched.score[2], (c[0] + c[1]) / 2, rtol=1e-6)


def test_aupc_old_count_names_are_deprecated_aliases():
    model = common.tiny_model(2)
    x = jnp.asarray(common.image(31, 12, 12))
    a = jnp.asarray(common.attribution(41, 12, 12))
    key = jax.random.key(2)
    want = metrics.aupc(model, x, a, key=key, kernel_size=3, n_regions=3,
                        n_perturb_samples=2)  # fmt: skip
    with pytest.warns(DeprecationWarning) as w:
        got = metrics.aupc(model, x, a, key=key, kernel_size=3, num_regions=3,
                           num_perturbs=2)  # fmt: skip
    messages = sorted(str(m.message) for m in w)
    assert messages[0].startswith("aupc: num_perturbs= is deprecated; use n_perturb")
    assert messages[1].startswith("aupc: num_regions= is deprecated; use n_regions=")
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert got.curve.shape == (4,)  # 3 regions, not the default 30
    with pytest.raises(TypeError, match="got both n_regions= and its deprecated"):
        metrics.aupc(model, x, a, key=key, n_regions=3, num_regions=3)


def test_adaptive_noising_default_objective_scores_the_shorter_curve():
    # adaptive_noising's default objective is AUPC with SmoothTaylor's 15 x 15
    # windows: on a 32 x 32 image at most 4 of its 30 regions fit.
    import jaxattr

    model = common.tiny_model(2)
    f = jaxattr.scalar_output(model, 3)
    x = jnp.asarray(common.image(50, 32, 32))
    key = jax.random.key(7)
    kw = {"n_perturb_samples": 3}
    r = jax.jit(
        lambda x: jaxattr.adaptive_noising(
            f, x, key=key, n_roots=2, max_iterations=0, score_kwargs=kw
        )
    )(x)
    # Evaluation 0 is the only one: its heat map wins and was scored with the
    # second half of fold_in(key, 0).
    score_key = jax.random.split(jax.random.fold_in(key, 0))[1]
    direct = metrics.aupc(
        lambda im: jax.vmap(f)(im)[:, None],
        x,
        r.attributions,
        key=score_key,
        target=0,
        **kw,
    )
    assert 1 <= int(direct.n_regions) <= 4
    assert np.isfinite(float(r.aux["score"]))
    np.testing.assert_allclose(r.aux["score"], direct.score, rtol=1e-5)
    valid = np.asarray(direct.curve[: int(direct.n_regions) + 1], np.float64)
    np.testing.assert_allclose(direct.score, np_simpson_avg(valid), rtol=1e-5)


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


def test_simpson_rule_on_a_traced_prefix_matches_scipy_and_ignores_the_rest():
    from jaxattr.metrics import _common

    y = np.random.default_rng(7).normal(size=31)
    counts = np.arange(2, 32)
    tails = np.where(np.arange(31)[None, :] < counts[:, None], y, np.nan)
    got = jax.jit(jax.vmap(_common.simpson_dx1_prefix))(jnp.asarray(tails), counts)
    want = [np_simpson_avg(y[:n]) for n in counts]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert float(_common.simpson_dx1_prefix(jnp.asarray(y), 1)) == 0.0
