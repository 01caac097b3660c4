"""Sensitivity-n, max-sensitivity, infidelity against NumPy loops and known answers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr import metrics
from tests.metrics import common


def scalar_f(seed=0, target=3):
    return jaxattr.scalar_output(common.tiny_model(seed), target)


def np_f(f, img):
    """One forward pass, jitted once per `f` (the reference loops call it often)."""
    if f not in _JITTED:
        _JITTED[f] = jax.jit(f)
    return float(_JITTED[f](jnp.asarray(img, jnp.float32)))


_JITTED: dict = {}


def test_sensitivity_n_matches_numpy_loop():
    f = scalar_f(0)
    x, a = common.image(30), common.attribution(31)
    key, sizes, n_sub = jax.random.key(5), (1, 10, 40), 12
    res = jax.jit(
        lambda x, a, key: metrics.sensitivity_n(
            f, x, a, n=sizes, key=key, n_subsets=n_sub, batch_size=5
        )
    )(x, a, key)
    heat = a.sum(-1).reshape(-1).astype(np.float64)
    f_x = np_f(f, x)
    for j, (n, kj) in enumerate(zip(sizes, jax.random.split(key, len(sizes)))):
        sums, drops = [], []
        for ki in jax.random.split(kj, n_sub):
            subset = np.argsort(np.asarray(jax.random.uniform(ki, (100,))))[:n]
            img = x.copy().reshape(100, 3)
            img[subset] = 0.0
            sums.append(heat[subset].sum())
            drops.append(f_x - np_f(f, img.reshape(x.shape)))
        np.testing.assert_allclose(res.attribution_sums[j], sums, atol=1e-5)
        np.testing.assert_allclose(res.output_drops[j], drops, atol=1e-5)
        np.testing.assert_allclose(
            res.score[j], np.corrcoef(sums, drops)[0, 1], atol=1e-5
        )


def test_sensitivity_n_is_one_for_a_linear_model_with_exact_attributions():
    w = np.random.default_rng(2).normal(size=(common.H, common.W, 3))
    f = jaxattr.scalar_output(common.linear_model(w.astype(np.float32)), 0)
    x = common.image(32)
    res = metrics.sensitivity_n(f, x, w * x, n=7, key=jax.random.key(0))
    assert res.score.shape == ()
    np.testing.assert_allclose(res.score, 1.0, atol=1e-5)
    rand = metrics.sensitivity_n(
        f, x, common.attribution(33), n=7, key=jax.random.key(0)
    )
    assert float(rand.score) < 0.9


def test_sensitivity_n_determinism_and_chunks():
    f = scalar_f(1)
    x, a = common.image(34), common.attribution(35)
    kw = {"n": 5, "n_subsets": 9}
    r1 = metrics.sensitivity_n(f, x, a, key=jax.random.key(1), **kw)
    r2 = metrics.sensitivity_n(f, x, a, key=jax.random.key(1), batch_size=4, **kw)
    r3 = metrics.sensitivity_n(f, x, a, key=jax.random.key(2), **kw)
    np.testing.assert_allclose(r1.output_drops, r2.output_drops, atol=1e-6)
    np.testing.assert_array_equal(r1.attribution_sums, r2.attribution_sums)
    assert not np.allclose(r1.attribution_sums, r3.attribution_sums)


def test_subset_masks_have_n_pixels():
    m = metrics.subset_masks(jax.random.key(0), (6, 7), 11, 5)
    assert m.shape == (5, 6, 7) and (np.asarray(m).sum((1, 2)) == 11).all()


def test_sensitivity_max_matches_numpy_loop():
    f = scalar_f(2)
    x = common.image(36)
    key, r, n = jax.random.key(7), 0.05, 6
    res = jax.jit(
        lambda x, key: metrics.sensitivity_max(
            jaxattr.saliency, f, x, key=key, perturb_radius=r, n_perturb_samples=n,
            batch_size=4,
        )
    )(x, key)  # fmt: skip
    k_noise, _ = jax.random.split(key)
    noise = np.asarray(jax.random.uniform(k_noise, (n, *x.shape), jnp.float32, -r, r))
    grad = jax.jit(lambda z: jaxattr.saliency(f, z).attributions)
    a_x = np.asarray(grad(x), np.float64)
    sens = [
        np.linalg.norm(np.asarray(grad(x + e), np.float64) - a_x) / np.linalg.norm(a_x)
        for e in noise
    ]
    np.testing.assert_allclose(res.sensitivities, sens, atol=1e-5)
    np.testing.assert_allclose(res.score, max(sens), atol=1e-5)
    assert float(res.score) > 0


def test_max_sensitivity_of_a_linear_models_gradient_is_zero():
    w = np.random.default_rng(3).normal(size=(common.H, common.W, 3))
    f = jaxattr.scalar_output(common.linear_model(w.astype(np.float32)), 0)
    x = common.image(37)
    res = jax.jit(
        lambda x: metrics.sensitivity_max(
            jaxattr.saliency, f, x, key=jax.random.key(0), abs=False,
            perturb_radius=0.2, n_perturb_samples=20,
        )
    )(x)  # fmt: skip
    assert float(res.score) == 0.0
    # IG from black is x * w: it moves with x, so it is sensitive
    ig = jax.jit(
        lambda x: metrics.sensitivity_max(
            jaxattr.integrated_gradients, f, x, "black", key=jax.random.key(0),
            n_steps=4, perturb_radius=0.2,
        )
    )(x)  # fmt: skip
    assert float(ig.score) > 0.01


def test_sensitivity_max_with_a_stochastic_explainer_is_deterministic():
    f = scalar_f(2)
    x = common.image(38)

    def smoothgrad(f, x, key):
        return jaxattr.noise_tunnel(jaxattr.saliency, f, x, key=key, nt_samples=3)

    run = jax.jit(
        lambda r: metrics.sensitivity_max(
            smoothgrad, f, x, key=jax.random.key(0), perturb_radius=r,
            n_perturb_samples=2,
        )
    )  # fmt: skip
    # radius 0 and one explainer key for x and every sample: the explainer's own
    # noise does not count as sensitivity
    still = run(0.0)
    assert float(still.score) < 1e-5
    r1, r2 = run(0.1), run(0.1)
    np.testing.assert_array_equal(r1.sensitivities, r2.sensitivities)
    assert float(r1.score) > 1e-3


def np_infidelity(f, x, a, key, n, kind, scale=0.2, p=4, normalize=False):
    dots, drops = [], []
    f_x = np_f(f, x)
    h, w = x.shape[:2]
    for k in jax.random.split(key, n):
        if kind == "gaussian":
            i = scale * np.asarray(jax.random.normal(k, x.shape, jnp.float32))
            xp = x - i
        else:
            r0 = int(jax.random.randint(k, (), 0, h - p + 1))
            c0 = int(jax.random.randint(jax.random.fold_in(k, 1), (), 0, w - p + 1))
            xp = x.copy()
            xp[r0 : r0 + p, c0 : c0 + p, :] = 0.0
            i = x - xp
        dots.append((i.astype(np.float64) * a).sum())
        drops.append(f_x - np_f(f, xp))
    dots, drops = np.array(dots), np.array(drops)
    beta = (dots * drops).mean() / (dots**2).mean() if normalize else 1.0
    return ((beta * dots - drops) ** 2).mean(), dots, drops


@pytest.mark.parametrize(
    "kind, normalize", [("gaussian", False), ("gaussian", True), ("square", False)]
)
def test_infidelity_matches_numpy_loop(kind, normalize):
    f = scalar_f(4)
    x, a = common.image(40), common.attribution(41)
    key = jax.random.key(9)
    res = jax.jit(
        lambda x, a, key: metrics.infidelity(
            f, x, a, key=key, perturb_func=kind, n_perturb_samples=7,
            normalize=normalize, batch_size=3,
        )
    )(x, a, key)  # fmt: skip
    ref, dots, drops = np_infidelity(f, x, a, key, 7, kind, normalize=normalize)
    np.testing.assert_allclose(res.dot, dots, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.output_drops, drops, atol=1e-5)
    np.testing.assert_allclose(res.score, ref, rtol=1e-5, atol=1e-6)


def test_infidelity_zero_for_exact_linear_attribution_and_custom_perturbation():
    w = np.random.default_rng(4).normal(size=(common.H, common.W, 3))
    f = jaxattr.scalar_output(common.linear_model(w.astype(np.float32)), 0)
    x = common.image(42)
    good = metrics.infidelity(f, x, w.astype(np.float32), key=jax.random.key(0))
    bad = metrics.infidelity(f, x, common.attribution(43), key=jax.random.key(0))
    assert float(good.score) < 1e-8 < float(bad.score)

    def half(key, z):  # Captum's contract: (perturbation, perturbed input)
        return z / 2, z / 2

    r = metrics.infidelity(
        f, x, w * 0 + 2 * w, key=jax.random.key(0), perturb_func=half
    )
    np.testing.assert_allclose(r.dot, 2 * r.output_drops, rtol=1e-5)


def test_errors():
    f = scalar_f(0)
    x, a = common.image(0), common.attribution(1)
    with pytest.raises(
        ValueError, match="sensitivity_n: n must be <= H W = 100; got 101"
    ):
        metrics.sensitivity_n(f, x, a, n=101, key=jax.random.key(0))
    with pytest.raises(ValueError, match="infidelity: key is required"):
        metrics.infidelity(f, x, a, key=None)
    with pytest.raises(ValueError, match="infidelity: perturb_func must be one of"):
        metrics.infidelity(f, x, a, key=jax.random.key(0), perturb_func="poisson")
    with pytest.raises(ValueError, match="sensitivity_max: norm_ord must be"):
        metrics.sensitivity_max(
            jaxattr.saliency, f, x, key=jax.random.key(0), norm_ord=3
        )
