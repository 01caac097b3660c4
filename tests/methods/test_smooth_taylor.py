"""SmoothTaylor and adaptive noising: closed forms, the sigma -> 0 limit, chunking,
keys, sweeps, jit/vmap, the authors' search rule, and EfficientNet-Lite0."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr

st = importlib.import_module("jaxattr.methods.smooth_taylor")  # the module
from tests import helpers

SMOOTH = helpers.tiny_cnn(helpers.tiny_cnn_params(seed=2), act=jax.nn.softplus)
XS = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
TARGETS = jnp.array([1, 5, 8])
KEY = jax.random.key(7)
RNG = np.random.default_rng(0)


def test_linear_closed_form_and_zero_taylor_residual():
    w = RNG.normal(size=(4, 5)).astype(np.float32)
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    eps = RNG.normal(size=(6, 4, 5)).astype(np.float32)
    r = jaxattr.smooth_taylor(
        lambda z: jnp.vdot(w, z) + 2.0, jnp.asarray(x), noise=eps, n_roots=6, stdevs=0.3
    )
    # (x - z_i) * grad f(z_i) = -0.3 eps_i * w, averaged over the roots.
    np.testing.assert_allclose(
        r.attributions, -0.3 * w * eps.mean(0), rtol=1e-5, atol=1e-7
    )
    assert abs(float(r.delta)) < 1e-5  # first-order Taylor is exact for affine f
    assert float(r.aux["sigma"]) == pytest.approx(0.3)


def test_quadratic_closed_form_and_relative_sigma():
    a = RNG.uniform(0.5, 2.0, size=(3, 4)).astype(np.float64)
    c = RNG.normal(size=(3, 4))
    x = RNG.uniform(0, 1, size=(3, 4))
    eps = RNG.normal(size=(5, 3, 4))
    f = lambda z: 0.5 * jnp.sum(a * z * z) + jnp.vdot(c, z)
    spread = 0.2
    r = jaxattr.smooth_taylor(
        f, jnp.asarray(x, jnp.float32), noise=eps, n_roots=5, stdev_spread=spread
    )
    s = spread * (x.max() - x.min())
    # grad f(z) = a z + c with z = x + s eps:  -s eps (a x + c) - s^2 a eps^2.
    expected = (-s * eps * (a * x + c) - s * s * a * eps**2).mean(0)
    np.testing.assert_allclose(r.attributions, expected, rtol=1e-4, atol=1e-6)
    assert float(r.aux["sigma"]) == pytest.approx(s, rel=1e-6)
    # f(x) - f(z) = grad f(z).(x - z) + 1/2 (x - z)^T A (x - z) exactly.
    delta = -0.5 * s * s * (a * eps**2).sum(axis=(1, 2)).mean()
    assert float(r.delta) == pytest.approx(delta, rel=1e-4)
    f_roots = np.mean([float(f(jnp.asarray(x + s * e))) for e in eps])
    assert float(r.aux["f_baseline"]) == pytest.approx(f_roots, rel=1e-5)


def test_sigma_to_zero_limit():
    """ST = 0 at sigma = 0, and ST / sigma -> -(1/N) sum_i eps_i * grad f(x)."""
    f = jaxattr.scalar_output(SMOOTH, 3)
    x = XS[0]
    eps = jax.random.normal(KEY, (4, *x.shape))
    limit = -eps.mean(0) * jax.jit(jax.grad(f))(x)
    st_at = jax.jit(
        lambda s: jaxattr.smooth_taylor(f, x, noise=eps, n_roots=4, stdevs=s)
    )
    assert not np.asarray(st_at(0.0).attributions).any()
    errors = []
    for sigma in (1e-1, 1e-2, 1e-3):
        r = st_at(sigma)
        errors.append(float(jnp.abs(r.attributions / sigma - limit).max()))
    scale = float(jnp.abs(limit).max())
    assert errors[0] > 1e-4 * scale  # the limit is approached, not met at once
    assert errors[1] < 0.2 * errors[0] and errors[2] < 0.2 * errors[1]  # O(sigma)
    assert errors[2] < 1e-2 * scale


def test_expected_value_on_a_quadratic_with_drawn_noise():
    # f = 1/2 |z|^2 at x = 0: ST = -sigma^2 mean_i eps_i^2, mean -sigma^2 (chi^2).
    r = jax.jit(
        lambda x: jaxattr.smooth_taylor(
            lambda z: 0.5 * jnp.sum(z * z), x, key=KEY, n_roots=32, stdevs=0.5
        )
    )(jnp.zeros((16, 16)))
    mean = float(r.attributions.mean())
    assert mean == pytest.approx(-0.25, abs=4 * 0.25 * math.sqrt(2 / (256 * 32)))
    assert float(r.attributions.max()) <= 0.0


def test_chunk_size_invariance():
    f = jaxattr.scalar_output(SMOOTH, 2)
    ref = jaxattr.smooth_taylor(f, XS[1], key=KEY, n_roots=10, batch_size=None)
    for batch_size in (1, 3):
        r = jaxattr.smooth_taylor(f, XS[1], key=KEY, n_roots=10, batch_size=batch_size)
        np.testing.assert_allclose(
            r.attributions, ref.attributions, rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(r.aux["values"], ref.aux["values"], rtol=1e-6)


def test_determinism_under_a_key():
    f = jaxattr.scalar_output(SMOOTH, 2)
    run = jax.jit(lambda k: jaxattr.smooth_taylor(f, XS[0], key=k, n_roots=6))
    a, b, c = run(KEY), run(KEY), run(jax.random.key(8))
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.allclose(a.attributions, c.attributions)
    # Default noise level: 0.1 of the input's range.
    assert float(a.aux["sigma"]) == pytest.approx(
        0.1 * float(XS[0].max() - XS[0].min())
    )


def test_sigma_sweep_is_one_vmap():
    f = jaxattr.scalar_output(SMOOTH, 4)
    sigmas = jnp.array([0.0, 0.05, 0.3])

    def absolute(s):
        return jaxattr.smooth_taylor(f, XS[0], key=KEY, n_roots=5, stdevs=s)

    sweep = jax.jit(jax.vmap(absolute))(sigmas)
    one = jax.jit(absolute)  # separate calls (one compilation, traced sigma)
    for i, s in enumerate(np.asarray(sigmas).tolist()):
        np.testing.assert_allclose(
            sweep.attributions[i], one(s).attributions, rtol=1e-5, atol=1e-7
        )
    assert not np.asarray(sweep.attributions[0]).any()


def test_jit_vmap_over_images_targets_keys_without_retracing():
    traces = []

    @jax.jit
    def explain(x, t, key, sigma):
        traces.append(1)
        f = jaxattr.scalar_output(SMOOTH, t)
        return jaxattr.smooth_taylor(f, x, key=key, n_roots=4, stdevs=sigma)

    keys = jax.random.split(KEY, 3)
    batched = jax.vmap(explain, in_axes=(0, 0, 0, None))(XS, TARGETS, keys, 0.1)
    for i in range(3):
        one = explain(XS[i], TARGETS[i], keys[i], 0.1)
        np.testing.assert_allclose(
            batched.attributions[i], one.attributions, rtol=1e-5, atol=1e-7
        )
    explain(XS[0], TARGETS[2], keys[1], 0.25)
    assert len(traces) == 1


def test_errors_name_the_argument():
    f = jaxattr.scalar_output(SMOOTH, 0)
    with pytest.raises(ValueError, match="baseline"):
        jaxattr.smooth_taylor(f, XS[0], "black", key=KEY)
    with pytest.raises(ValueError, match="stdevs.*stdev_spread"):
        jaxattr.smooth_taylor(f, XS[0], key=KEY, stdevs=0.1, stdev_spread=0.1)
    with pytest.raises(ValueError, match="key is required"):
        jaxattr.smooth_taylor(f, XS[0])
    with pytest.raises(ValueError, match=r"noise must have shape \(n_roots"):
        jaxattr.smooth_taylor(f, XS[0], noise=jnp.zeros((2, 8, 8, 3)), n_roots=3)
    with pytest.raises(TypeError, match="n_roots must be a Python int"):
        jaxattr.smooth_taylor(f, XS[0], key=KEY, n_roots=jnp.asarray(3))
    with pytest.raises(ValueError, match="score_kwargs"):
        jaxattr.adaptive_noising(
            f, XS[0], key=KEY, score_fn=lambda *a: 0.0, score_kwargs={"a": 1}
        )


# ------------------------------------------------------------------ adaptive noising


def reference_search(objective, sigma, lr, decay=0.9, max_stop=3, max_iter=20):
    """docs/smooth_taylor.md#adaptive-noising, transcribed as a plain Python loop."""
    i = 0
    a_cur = objective(sigma, i)
    i += 1
    best = (sigma, a_cur)
    stop = 0
    trajectory = [sigma]
    for _ in range(max_iter):
        a_try = objective(abs(sigma + lr), i)
        i += 1
        if a_try > a_cur:
            sigma = abs(sigma - lr)
            a_new = objective(sigma, i)
            i += 1
        else:
            sigma = abs(sigma + lr)
            a_new = a_try
        trajectory.append(sigma)
        if a_new > a_cur:
            if stop < max_stop:
                lr *= decay
                stop += 1
            else:
                break
        else:
            stop = 0
            if a_new < best[1]:
                best = (sigma, a_new)
        a_cur = a_new
    return best, trajectory, i


def bumpy(sigma, i, xp):
    """Deterministic score with local bumps and an evaluation-dependent offset."""
    return (sigma - 0.37) ** 2 + 0.004 * xp.sin(40 * sigma) + 0.003 * ((7 * i) % 5)


@pytest.mark.parametrize(
    "sigma0, lr, max_stop", [(0.05, 0.1, 3), (1.2, 0.25, 3), (0.6, 0.1, 1)]
)
def test_search_follows_the_authors_rule(sigma0, lr, max_stop):
    def objective(sigma, i):
        return bumpy(sigma, i, jnp).astype(jnp.float32), jnp.stack([sigma, -sigma])

    s = jax.jit(
        lambda s0: st._search(
            objective,
            s0,
            jnp.zeros(2),
            learning_rate=lr,
            learning_decay=0.9,
            max_stop=max_stop,
            max_iterations=20,
        )
    )(jnp.float32(sigma0))
    (best_sigma, best_score), trajectory, n_evals = reference_search(
        lambda s_, i: bumpy(s_, i, np), sigma0, lr, max_stop=max_stop
    )
    n = len(trajectory)
    np.testing.assert_allclose(s.sigmas[:n], trajectory, rtol=1e-5, atol=1e-6)
    assert np.isnan(np.asarray(s.sigmas[n:])).all()
    assert int(s.it) == n - 1 and int(s.n_evals) == n_evals
    assert float(s.best_sigma) == pytest.approx(best_sigma, abs=1e-5)
    assert float(s.best_score) == pytest.approx(best_score, abs=1e-6)
    np.testing.assert_allclose(s.best_heatmap, [best_sigma, -best_sigma], atol=1e-5)


def sigma_estimate_score(target):
    """For f = 1/2 |z|^2 at x = 0, mean(-ST) estimates sigma^2; score its miss."""

    def score_fn(f, x, attributions, key):
        return (jnp.sqrt(jnp.maximum(-attributions.mean(), 0.0)) - target) ** 2

    return score_fn


def test_adaptive_noising_finds_the_minimiser_and_is_reproducible():
    f = lambda z: 0.5 * jnp.sum(z * z)
    x = jnp.zeros((8, 8))
    kwargs = {
        "score_fn": sigma_estimate_score(0.52),
        "n_roots": 16,
        "batch_size": 8,
        "sigma_init": 0.05,
    }
    run = jax.jit(lambda k: jaxattr.adaptive_noising(f, x, key=k, **kwargs))
    a, b = run(KEY), run(KEY)
    c = run(jax.random.key(3))
    assert abs(float(a.aux["sigma"]) - 0.52) < 0.05
    assert np.isnan(float(a.delta))
    scores = np.asarray(a.aux["scores"])
    assert float(a.aux["score"]) == pytest.approx(np.nanmin(scores))
    assert 1 < int(a.aux["n_evaluations"]) <= 41
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a.attributions, c.attributions)
    # The returned heat map is a SmoothTaylor map at the chosen sigma.
    assert float(-a.attributions.mean()) == pytest.approx(
        float(a.aux["sigma"]) ** 2, rel=0.15
    )


def total_variation(f, x, attributions, key):
    h = attributions.sum(-1)
    return jnp.abs(jnp.diff(h, axis=0)).sum() + jnp.abs(jnp.diff(h, axis=1)).sum()


def test_adaptive_noising_jit_vmap_over_images_targets_keys():
    traces = []

    @jax.jit
    def explain(x, t, key, lr):
        traces.append(1)
        f = jaxattr.scalar_output(SMOOTH, t)
        return jaxattr.adaptive_noising(
            f,
            x,
            key=key,
            score_fn=total_variation,
            n_roots=3,
            max_iterations=3,
            learning_rate=lr,
        )

    keys = jax.random.split(KEY, 3)
    batched = jax.vmap(explain, in_axes=(0, 0, 0, None))(XS, TARGETS, keys, 0.1)
    for i in range(3):
        one = explain(XS[i], TARGETS[i], keys[i], 0.1)
        np.testing.assert_allclose(
            batched.attributions[i], one.attributions, rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(batched.aux["sigma"][i], one.aux["sigma"], rtol=1e-5)
    explain(XS[0], TARGETS[0], keys[0], 0.05)
    assert len(traces) == 1


def test_adaptive_noising_default_score_is_aupc():
    metrics = pytest.importorskip("jaxattr.metrics")
    x = jax.random.uniform(jax.random.key(1), (12, 12, 3))
    f = jaxattr.scalar_output(SMOOTH, 2)
    score_kwargs = {"kernel_size": 3, "n_regions": 2, "n_perturb_samples": 3}

    @jax.jit
    def both(x):
        r = jaxattr.adaptive_noising(
            f, x, key=KEY, n_roots=2, max_iterations=0, score_kwargs=score_kwargs
        )
        # Evaluation 0: SmoothTaylor at sigma_init = mean|x|, scored by AUPC of f.
        root_key, score_key = jax.random.split(jax.random.fold_in(KEY, 0))
        eps = jax.random.normal(root_key, (2, *x.shape))
        heat = jaxattr.smooth_taylor(
            f, x, noise=eps, n_roots=2, stdevs=jnp.abs(x).mean()
        ).attributions
        expected = metrics.aupc(
            lambda im: jax.vmap(f)(im)[:, None],
            x,
            heat,
            key=score_key,
            target=0,
            **score_kwargs,
        ).score
        return r, heat, expected

    r, heat, expected = both(x)
    assert float(r.aux["score"]) == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(r.attributions, heat, rtol=1e-5, atol=1e-7)
    assert int(r.aux["n_evaluations"]) == 1


def test_adaptive_noising_can_minimise_autvc():
    x = jax.random.uniform(jax.random.key(1), (32, 32, 3))
    f = jaxattr.scalar_output(SMOOTH, 2)
    r = jax.jit(
        lambda x: jaxattr.adaptive_noising(
            f, x, key=KEY, n_roots=2, max_iterations=0, score_fn="autvc"
        )
    )(x)
    expected = jaxattr.metrics.autvc(r.attributions).score
    assert float(r.aux["score"]) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="score_fn must be one of 'aupc', 'autvc'"):
        jaxattr.adaptive_noising(f, x, key=KEY, score_fn="tv")


# ------------------------------------------------------------------ EfficientNet-Lite0


@pytest.fixture(scope="module")
def lite0():
    from jaxattr import images, models

    model = models.load("efficientnet_lite0")
    photo = images.default_images(["coffee"])[0]
    return model, jnp.asarray(photo.image), photo.label


def test_lite0_end_to_end_under_jit(lite0):
    model, x, label = lite0

    @jax.jit
    def explain(model_fn, x, key):
        f = jaxattr.scalar_output(model_fn, label)
        plain = jaxattr.smooth_taylor(f, x, key=key, n_roots=2, batch_size=1)
        adaptive = jaxattr.adaptive_noising(
            f,
            x,
            key=key,
            score_fn=total_variation,
            n_roots=1,
            max_iterations=1,
            sigma_init=0.05,
            learning_rate=0.02,
        )
        return plain, adaptive

    plain, adaptive = explain(model.fn, x, KEY)
    for r in (plain, adaptive):
        assert r.attributions.shape == x.shape
        assert np.isfinite(np.asarray(r.attributions)).all()
        assert float(jnp.abs(r.attributions).max()) > 0
    assert np.isfinite(float(plain.delta))
    sigma = float(adaptive.aux["sigma"])
    assert min(abs(sigma - s) for s in (0.05, 0.07, 0.03)) < 1e-6


# ------------------------------------------------------- the authors' units (issue 14)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _in_normalised_units(f):
    """`f` of pixels as a function of the normalised input `x_n = (x - MEAN) / STD`."""
    return lambda xn: f(xn * jnp.asarray(STD) + jnp.asarray(MEAN))


def test_normalisation_gives_the_authors_noise_exactly():
    x = XS[0]
    eps = jax.random.normal(jax.random.key(3), (6, *x.shape))
    f = jaxattr.scalar_output(SMOOTH, 4)
    r = jaxattr.smooth_taylor(f, x, noise=eps, n_roots=6, normalisation=(MEAN, STD))
    # Default with a normalisation: the authors' 0.5 normalised units = 0.5 std pixels.
    np.testing.assert_allclose(r.aux["sigma"], 0.5 * np.asarray(STD), rtol=1e-6)
    same = jaxattr.smooth_taylor(f, x, noise=eps, n_roots=6, stdevs=0.5 * np.array(STD))
    np.testing.assert_allclose(r.attributions, same.attributions, rtol=1e-6)
    # ... and the authors' code on x_n: the Taylor terms do not depend on the units.
    xn = (x - jnp.asarray(MEAN)) / jnp.asarray(STD)
    theirs = jaxattr.smooth_taylor(
        _in_normalised_units(f), xn, noise=eps, n_roots=6, stdevs=0.5
    )
    np.testing.assert_allclose(
        r.attributions, theirs.attributions, rtol=2e-4, atol=1e-7
    )
    # stdev_spread with a normalisation: a fraction of the normalised range.
    spread = jaxattr.smooth_taylor(
        f, x, noise=eps, n_roots=6, stdev_spread=0.15, normalisation=(MEAN, STD)
    )
    want = 0.15 * float(xn.max() - xn.min()) * np.asarray(STD)
    np.testing.assert_allclose(spread.aux["sigma"], want, rtol=1e-5)
    assert st.noise_level(x, normalisation=(MEAN, STD)).shape == (3,)
    # Without a normalisation the default is the documented general choice.
    full = jnp.linspace(0.0, 1.0, x.size).reshape(x.shape)
    assert float(st.noise_level(full)) == pytest.approx(0.1)
    np.testing.assert_allclose(
        0.1 / np.asarray(STD), [0.437, 0.446, 0.444], atol=1e-3
    )  # the docstring's normalised-unit values


def test_normalisation_errors_name_the_argument():
    x, f = XS[0], jaxattr.scalar_output(SMOOTH, 4)
    with pytest.raises(ValueError, match="normalisation must be a pair"):
        jaxattr.smooth_taylor(f, x, key=KEY, n_roots=2, normalisation=STD)
    with pytest.raises(ValueError, match="std must broadcast"):
        jaxattr.smooth_taylor(f, x, key=KEY, n_roots=2, normalisation=(MEAN, (1, 2)))
    with pytest.raises(ValueError, match="std must be non-zero"):
        jaxattr.smooth_taylor(f, x, key=KEY, n_roots=2, normalisation=(MEAN, (1, 0, 1)))
    with pytest.raises(ValueError, match="stdevs must be a scalar or broadcast"):
        jaxattr.smooth_taylor(f, x, key=KEY, n_roots=2, stdevs=(0.1, 0.2))


def test_adaptive_noising_with_normalisation_is_the_authors_search_on_x_n():
    x = XS[1]
    f = jaxattr.scalar_output(SMOOTH, 2)
    kw = {
        "key": KEY,
        "score_fn": "autvc",
        "score_kwargs": {"downscale": 1.5, "min_size": 4},
        "n_roots": 4,
        "batch_size": None,
        "max_iterations": 3,
    }
    ours = jaxattr.adaptive_noising(f, x, normalisation=(MEAN, STD), **kw)
    xn = (x - jnp.asarray(MEAN)) / jnp.asarray(STD)
    theirs = jaxattr.adaptive_noising(_in_normalised_units(f), xn, **kw)
    # Same start (mean |x_n|), same steps (0.1 normalised), same heat maps.
    assert float(ours.aux["sigmas"][0]) == pytest.approx(float(jnp.abs(xn).mean()))
    np.testing.assert_allclose(ours.aux["sigmas"], theirs.aux["sigmas"], rtol=1e-5)
    np.testing.assert_allclose(
        ours.attributions, theirs.attributions, rtol=2e-3, atol=1e-6
    )
    np.testing.assert_allclose(
        ours.aux["noise"], ours.aux["sigma"] * np.asarray(STD), rtol=1e-6
    )


def test_normalisation_stats_reads_mean_and_std_even_under_jit():
    def normalise(x):
        return (x - jnp.asarray(MEAN)) / jnp.asarray(STD)

    mean, std = jaxattr.baselines.normalisation_stats(normalise)
    np.testing.assert_allclose(mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(std, STD, rtol=1e-6)
    got = jax.jit(
        lambda x: x * jnp.asarray(jaxattr.baselines.normalisation_stats(normalise)[1])
    )(jnp.ones(3))
    np.testing.assert_allclose(got, STD, rtol=1e-6)
    with pytest.raises(ValueError, match="must be affine per channel"):
        jaxattr.baselines.normalisation_stats(lambda x: x**2)
