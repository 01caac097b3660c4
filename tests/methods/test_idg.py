"""Integrated Decision Gradients: allocation where the slope is, NumPy references of
the described method and of the authors' code (docs/idg.md), worked
examples of the reference-compat behaviour, degenerate cases, jit/vmap. (The
EfficientNet-Lite0 run is in test_guided.py, shared with the guided methods.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from tests import helpers

MODEL = helpers.tiny_cnn(helpers.tiny_cnn_params(seed=4))
XS = jax.random.uniform(jax.random.key(3), (3, 8, 8, 3))
TARGETS = jnp.array([2, 6, 9])
RNG = np.random.default_rng(1)
W1 = RNG.normal(size=(5, 6)).astype(np.float32)
W2 = RNG.normal(size=(5,)).astype(np.float32)


def smooth(v):
    return 3.0 * jnp.tanh(jnp.tanh(v @ W1.T) @ W2)


def neg_smooth(v):
    return -smooth(v)


def square(v):
    return jnp.sum(v * v)


@functools.cache
def _compiled(f, kw_items):
    kw = dict(kw_items)
    return jax.jit(lambda x, b: jaxattr.integrated_decision_gradients(f, x, b, **kw))


def run(f, x, baseline=0.0, **kw):
    """`integrated_decision_gradients` under `jit` (one compile per f and kwargs)."""
    b = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), baseline)
    return _compiled(f, tuple(sorted(kw.items())))(jnp.asarray(x, jnp.float32), b)


@functools.cache
def _oracle(f):
    return jax.jit(f), jax.jit(jax.grad(f))


def _path_oracle(f, x, ref):
    """Float64 NumPy views of F(a), grad f(g(a)) along the straight line."""
    x, ref = np.asarray(x), np.asarray(ref)
    f_value, f_grad = _oracle(f)

    def value(a):
        return float(f_value(jnp.asarray(ref + np.float32(a) * (x - ref), jnp.float32)))

    def grad(a):
        p = jnp.asarray(ref + np.float32(a) * (x - ref), jnp.float32)
        return np.asarray(f_grad(p), np.float64)

    return value, grad


def reference_described(f, x, ref, n, m, placement="midpoint"):
    """The described method, written out with loops (docs/idg.md#jaxattrs-idg)."""
    value, grad = _path_oracle(f, x, ref)
    diff = np.asarray(x, np.float64) - np.asarray(ref, np.float64)
    d = 1.0 / (n - 1)
    coarse = [value(k * d) for k in range(n)]
    s = [(coarse[k] - coarse[k - 1]) / d for k in range(1, n)]
    mass = [abs(v) for v in s]
    p = [v / sum(mass) for v in mass] if sum(mass) > 0 else [1 / (n - 1)] * (n - 1)
    q = [m * v for v in p]
    c = [int(np.floor(v)) for v in q]
    extra = m - sum(c)
    by_fraction = sorted(range(n - 1), key=lambda k: (-(q[k] - c[k]), k))
    for k in by_fraction[:extra]:
        c[k] += 1
    total = np.zeros_like(diff)
    offset = 0.5 if placement == "midpoint" else 0.0
    alphas = []
    for k in range(n - 1):
        for r in range(c[k]):
            a = k * d + (r + offset) * d / c[k]
            g = grad(a)
            total += d / c[k] * float(g.ravel() @ diff.ravel()) * g
            alphas.append(a)
    return diff * total, np.array(alphas), np.array(c)


def reference_authors(f, x, ref, n, m):
    """The authors' code as in docs/idg.md#the-authors-procedure (loops, N entries)."""
    value, grad = _path_oracle(f, x, ref)
    diff = np.asarray(x, np.float64) - np.asarray(ref, np.float64)
    d = 1.0 / (n - 1)
    coarse = [value(k * d) for k in range(n)]
    s = [0.0] + [(coarse[k] - coarse[k - 1]) / d for k in range(1, n)]
    lo, hi = min(s), max(s)
    sh = [(v - lo) / (hi - lo) for v in s]
    sh[0] = 0.0
    p = [v / sum(sh) for v in sh]
    q = [m * v for v in p]
    c = [int(v) for v in q]
    extra = m - sum(c)
    key = [-1.0 if c[k] != 0 else q[k] for k in range(n)]
    hi_lo = sorted(range(n), key=lambda k: (key[k], k))[::-1]
    for k in hi_lo[:extra]:
        c[k] = 1
    alphas, widths = np.zeros(m), np.zeros(m)
    start, j = 0.0, 0
    for k in range(n):
        if c[k] == 0:
            continue
        for r in range(c[k]):
            alphas[j + r] = start + r * d / c[k]
            widths[j + r] = d / c[k]
        start += d
        j += c[k]
    values = [value(a) for a in alphas]
    total = np.zeros_like(diff)
    for i in range(1, m):
        step = alphas[i] - alphas[i - 1]
        slope = (values[i] - values[i - 1]) / step if step != 0 else 0.0
        total += grad(alphas[i]) * slope * widths[i]
    return diff * total / m, alphas, np.array(c)


@pytest.mark.parametrize("placement", ["midpoint", "left"])
def test_described_method_matches_numpy_reference(placement):
    x = jnp.asarray(RNG.uniform(-1, 1, size=6), jnp.float32)
    ref = np.full(6, -0.2, np.float32)
    for n, m in ((7, 9), (12, 5)):
        ours = run(
            smooth, x, ref, n_coarse=n, n_steps=m, placement=placement, batch_size=4
        )
        want, alphas, counts = reference_described(smooth, x, ref, n, m, placement)
        np.testing.assert_array_equal(ours.aux["counts"][0], counts)
        np.testing.assert_allclose(ours.aux["alphas"][0], alphas, rtol=1e-6)
        np.testing.assert_allclose(ours.attributions, want, rtol=2e-4, atol=1e-6)
        assert ours.aux["counts"][0].sum() == m


def test_reference_compat_matches_numpy_reference_of_the_authors_code():
    x = jnp.asarray(RNG.uniform(-1, 1, size=6), jnp.float32)
    ref = np.zeros(6, np.float32)
    for n, m in ((8, 8), (6, 11)):
        ours = run(smooth, x, ref, n_coarse=n, n_steps=m, reference_compat=True)
        want, alphas, counts = reference_authors(smooth, x, ref, n, m)
        np.testing.assert_array_equal(ours.aux["counts"][0], counts)
        np.testing.assert_allclose(ours.aux["alphas"][0], alphas, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours.attributions, want, rtol=2e-4, atol=1e-6)


def sigmoid_path(v):
    # Along the line from 0 to ones(4): F(a) = 5 sigmoid(40 (a - 0.3)).
    return 5.0 * jax.nn.sigmoid(40.0 * (v.mean() - 0.3))


def test_allocation_on_a_sigmoid_path_puts_the_samples_where_the_slope_is():
    x = jnp.ones(4)
    r = run(sigmoid_path, x, n_coarse=50, n_steps=50)
    a = np.linspace(0, 1, 50)
    big_f = 5.0 / (1.0 + np.exp(-40.0 * (a - 0.3)))
    expected = 50 * np.diff(big_f) / (big_f[-1] - big_f[0])  # F is increasing
    counts = np.asarray(r.aux["counts"][0])
    assert counts.sum() == 50
    assert np.abs(counts - expected).max() < 1.0  # largest-remainder apportionment
    alphas = np.asarray(r.aux["alphas"][0])
    # 96.4 % of the rise of F lies in [0.2, 0.4]: so do at least 45 of 50 samples.
    assert ((alphas > 0.2) & (alphas < 0.4)).sum() >= 45
    # Each sample lies in its own interval: between the first and last non-empty.
    nonempty = np.nonzero(counts)[0]
    assert alphas.min() > a[nonempty[0]] and alphas.max() < a[nonempty[-1] + 1]
    # The authors' placement compacts the same cells towards 0 (docs/idg.md).
    c = run(sigmoid_path, x, n_coarse=50, n_steps=50, reference_compat=True)
    compat = np.asarray(c.aux["alphas"][0])
    n_cells = int((np.asarray(c.aux["counts"][0]) > 0).sum())
    assert compat.min() == 0.0 and compat.max() < n_cells / 49
    assert compat.max() < a[nonempty[-1]] - 0.1  # the slope's region is missed
    np.testing.assert_allclose(np.asarray(c.aux["widths"][0]).sum(), n_cells / 49)


def piecewise(v):
    # F(a) on the line 0 -> 1: values 0, 0, 3, 4, 4 at a = 0, .25, .5, .75, 1.
    t = v[0]
    return (
        12 * jax.nn.relu(t - 0.25)
        - 8 * jax.nn.relu(t - 0.5)
        - 4 * jax.nn.relu(t - 0.75)
    )


def test_worked_example_compaction_integrates_the_wrong_part_of_the_path():
    # Slopes 0, 12, 4, 0 -> p = (0, .75, .25, 0) -> counts (0, 3, 1, 0) for M = 4.
    x = jnp.ones(1)
    r = run(piecewise, x, n_coarse=5, n_steps=4)
    np.testing.assert_array_equal(r.aux["counts"][0], [0, 3, 1, 0])
    np.testing.assert_allclose(
        r.aux["alphas"][0], [0.25 + 1 / 24, 0.25 + 3 / 24, 0.25 + 5 / 24, 0.625]
    )
    # int (dF/da)^2 da = 0.25 * 144 + 0.25 * 16 = 40, exact for piecewise-linear F.
    np.testing.assert_allclose(r.attributions, [40.0], rtol=1e-6)
    np.testing.assert_allclose(r.aux["slopes"][0], [12, 12, 12, 4], rtol=1e-6)
    # Reference: the authors' 5 entries (dummy s_0) get counts (0, 0, 3, 1, 0), the
    # cells are moved to [0, .25) and [.25, .5), where F is flat: IDG = 0.
    c = run(piecewise, x, n_coarse=5, n_steps=4, reference_compat=True)
    np.testing.assert_array_equal(c.aux["counts"][0], [0, 0, 3, 1, 0])
    np.testing.assert_allclose(c.aux["alphas"][0], [0, 1 / 12, 2 / 12, 0.25])
    np.testing.assert_allclose(c.aux["widths"][0], [1 / 12] * 3 + [0.25])
    np.testing.assert_array_equal(c.attributions, [0.0])


def test_worked_example_first_gradient_dropped_mean_and_off_by_one():
    w = jnp.array([1.0, -2.0, 0.5])
    x = jnp.array([1.0, 0.5, 2.0])

    def lin(v):
        return jnp.vdot(w, v)

    slope = float(jnp.vdot(w, x))  # F(a) = slope * a from the zero baseline
    # N = 5, M = 4: counts (0, 1, 1, 1, 1), nodes 0, .25, .5, .75 of width .25;
    # s'_0 = 0 drops the first, 1/M scales: IDG = x w slope (3 * .25) / 4.
    c = run(lin, x, n_coarse=5, n_steps=4, reference_compat=True)
    np.testing.assert_allclose(c.aux["alphas"][0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(c.aux["slopes"][0], [0, slope, slope, slope], rtol=1e-6)
    np.testing.assert_allclose(c.attributions, x * w * slope * 3 / 16, rtol=1e-6)
    # The described method: exact slopes everywhere, weights summing to 1.
    r = run(lin, x, n_coarse=5, n_steps=4)
    np.testing.assert_allclose(r.attributions, x * w * slope, rtol=1e-6)
    # N = M = 5: the remainder goes to the dummy entry 0, giving 5 cells of width
    # 1/4 (sum of widths 1.25) and a node at a = 1: the off-by-one (docs/idg.md).
    c5 = run(lin, x, n_coarse=5, n_steps=5, reference_compat=True)
    np.testing.assert_array_equal(c5.aux["counts"][0], [1, 1, 1, 1, 1])
    np.testing.assert_allclose(c5.aux["alphas"][0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(c5.aux["widths"][0].sum(), 1.25)


def test_degenerate_allocations_are_guarded():
    x = jnp.array([1.0, 0.5, 2.0])

    def lin(v):
        return jnp.vdot(jnp.array([1.0, -2.0, 0.5]), v)

    # Authors' rule with fewer empty entries than the remainder: N = 5, M = 7 gives
    # counts (1, 1, 1, 1, 1): two nodes are missing, left at a = 0 with width 0;
    # their 0/0 finite difference would be NaN in the reference code.
    c = run(lin, x, n_coarse=5, n_steps=7, reference_compat=True)
    np.testing.assert_array_equal(c.aux["counts"][0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(c.aux["widths"][0][5:], [0, 0])
    np.testing.assert_array_equal(c.aux["alphas"][0][5:], [0, 0])
    assert np.isfinite(np.asarray(c.attributions)).all()

    # Constant f: zero slopes everywhere -> uniform allocation, zero attributions.
    def const(v):
        return 0.0 * v.sum() + 2.0

    for compat in (False, True):
        r = run(const, x, n_coarse=6, n_steps=7, reference_compat=compat)
        assert np.isfinite(np.asarray(r.aux["alphas"])).all()
        np.testing.assert_array_equal(r.attributions, np.zeros(3))
        # The authors' remainder rule resets counts to 1: 6 of 7 nodes here.
        assert int(r.aux["counts"][0].sum()) == (6 if compat else 7)
    # Decreasing f: all slopes negative; the mass |s| gives -f the allocation of f,
    # and IDG(-f) = IDG(f) (both factors change sign).
    r, r_pos = run(neg_smooth, jnp.ones(6)), run(smooth, jnp.ones(6))
    np.testing.assert_array_equal(r.aux["counts"], r_pos.aux["counts"])
    np.testing.assert_allclose(r.attributions, r_pos.attributions, rtol=1e-5)
    assert np.isfinite(np.asarray(r.attributions)).all()
    # M = 1, N = 2: one node at the middle of [0, 1] with width 1. For sum(v^2) from
    # 0: grad at x/2 is x, the slope |x|^2, so IDG = x * x * |x|^2.
    q = run(square, x, n_coarse=2, n_steps=1)
    np.testing.assert_allclose(q.attributions, x * x * jnp.sum(x * x), rtol=1e-6)


def quarters(v):
    # From 0 to (1, 1): F(a) = 12 clip(a - 1/4, 0, 1/4) - 20 clip(a - 1/2, 0, 1/4),
    # slopes (0, 12, -20, 0) on the quarters of the path. Feature 0 drives the rise,
    # feature 1 the fall: IDG = (0.25 * 12 * 12, 0.25 * 20 * 20) = (36, 100), and
    # sum(IDG) = int (dF/da)^2 da = 136.
    return 12 * jnp.clip(v[0] - 0.25, 0, 0.25) - 20 * jnp.clip(v[1] - 0.5, 0, 0.25)


QUARTERS_IDG = np.array([36.0, 100.0])


def test_a_falling_interval_gets_nodes_and_the_sum_converges():
    x = jnp.ones(2)
    # N = 5: the coarse intervals are the quarters, p = |s| / 32 = (0, 3/8, 5/8, 0).
    # M = 4: q = (0, 1.5, 2.5, 0), the remainder to the lower index on the tie. The
    # authors' normalisation s - min s would give the falling quarter no node and
    # sum(IDG) = 36 for every M.
    r = run(quarters, x, n_coarse=5, n_steps=4)
    np.testing.assert_array_equal(r.aux["counts"][0], [0, 2, 2, 0])
    # F is linear on each quarter: one node per quarter is exact.
    for m in (2, 4, 40, 400):
        r = run(quarters, x, n_coarse=5, n_steps=m)
        np.testing.assert_allclose(r.attributions, QUARTERS_IDG, rtol=1e-5)
        np.testing.assert_allclose(r.attributions.sum(), 136.0, rtol=1e-5)
    # N = 50 (the default): the kinks at 1/4, 1/2 (the middle of an interval), 3/4
    # fall inside coarse intervals, where the integrand jumps; the error is that of
    # the midpoint rule on those intervals and falls as they get more nodes.
    # Measured max errors: 4.3, 0.082, 0.013.
    errors = []
    for m in (40, 400, 4000):
        r = run(quarters, x, n_steps=m)
        errors.append(np.abs(np.asarray(r.attributions) - QUARTERS_IDG).max())
        assert int(r.aux["counts"][0].sum()) == m
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.05, errors


def wave(v):
    return jnp.sin(3 * v[0]) + v[1] ** 2


def test_smooth_path_that_falls_converges_to_the_integral():
    # From 0 to (1, 1): F(a) = sin 3a + a^2, dF/da = 3 cos 3a + 2a, negative for
    # a > 0.64. IDG = int_0^1 (3 cos 3a, 2a) dF/da da, in closed form.
    # int_0^1 a cos 3a da = sin 3 / 3 + (cos 3 - 1) / 9; int_0^1 cos^2 3a da =
    # 1/2 + sin 6 / 12.
    a_cos = np.sin(3) / 3 + (np.cos(3) - 1) / 9
    exact = np.array([4.5 + 0.75 * np.sin(6) + 6 * a_cos, 6 * a_cos + 4 / 3])
    from scipy.integrate import quad  # an independent check of the closed form

    df = lambda a: 3 * np.cos(3 * a) + 2 * a
    quads = [quad(lambda a: 3 * np.cos(3 * a) * df(a), 0, 1)[0]]
    quads.append(quad(lambda a: 2 * a * df(a), 0, 1)[0])
    np.testing.assert_allclose(exact, quads, rtol=1e-10)
    x = jnp.ones(2)
    for n in (5, 50):
        errors = []
        for m in (40, 400, 4000):
            r = run(wave, x, n_coarse=n, n_steps=m)
            errors.append(np.abs(np.asarray(r.attributions) - exact).max())
        # measured: N = 5: 5.8e-3, 9.8e-5, 9.4e-7; N = 50: 0.28, 6.8e-4, 3.0e-5
        assert errors[0] > errors[1] > errors[2], (n, errors)
        assert errors[2] < 1e-4, (n, errors)


def test_several_baselines_are_averaged_and_errors_name_the_argument():
    x = jnp.asarray(RNG.uniform(-1, 1, size=6), jnp.float32)
    kw = {"n_coarse": 6, "n_steps": 5}
    both = run(smooth, x, [0.0, -0.5], **kw)
    one = [run(smooth, x, b, **kw) for b in (0.0, -0.5)]
    np.testing.assert_allclose(
        both.attributions, (one[0].attributions + one[1].attributions) / 2, rtol=1e-5
    )
    assert both.aux["alphas"].shape == (2, 5)
    with pytest.raises(ValueError, match="n_coarse must be >= 2; got 1"):
        jaxattr.integrated_decision_gradients(smooth, x, n_coarse=1)
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        jaxattr.integrated_decision_gradients(smooth, x, n_steps=4.0)
    with pytest.raises(ValueError, match="placement must be one of.*'right'"):
        jaxattr.integrated_decision_gradients(smooth, x, placement="right")
    with pytest.raises(TypeError, match="reference_compat must be a Python bool"):
        jaxattr.integrated_decision_gradients(smooth, x, reference_compat="yes")


def test_jit_vmap_and_no_retrace():
    kw = {"n_coarse": 6, "n_steps": 5, "batch_size": 4}
    traces = []

    def explain(x, t):
        traces.append(1)
        return jaxattr.integrated_decision_gradients(
            jaxattr.scalar_output(MODEL, t), x, **kw
        )

    jitted = jax.jit(explain)
    a = jitted(XS[0], jnp.int32(1))
    b = jitted(XS[1], jnp.int32(6))
    assert len(traces) == 1  # a new image and target do not retrace
    assert not np.allclose(a.attributions, b.attributions)
    batched = jax.jit(jax.vmap(explain))(XS, TARGETS)
    for i in range(3):
        single = jitted(XS[i], TARGETS[i])
        np.testing.assert_allclose(
            batched.attributions[i], single.attributions, rtol=1e-4, atol=1e-7
        )
        np.testing.assert_array_equal(batched.aux["counts"][i], single.aux["counts"])
    assert len(traces) == 2
