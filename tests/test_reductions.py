"""One registry of channel reductions: each name has one meaning, the same in NumPy
(viz) and JAX (metrics), checked against the definitions written out here."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr import metrics, reductions, viz

# Mixed signs inside a pixel, so |sum| != sum |.| and max |.| != signed max.
A = np.array(
    [[[1.0, -3.0, 1.0], [2.0, 0.5, -0.5]], [[-1.0, -1.0, 4.0], [0.0, 0.0, 0.0]]]
)

DEFINITIONS = {
    "sum": lambda a: a.sum(-1),
    "mean": lambda a: a.mean(-1),
    "abs_sum": lambda a: np.abs(a.sum(-1)),
    "sum_abs": lambda a: np.abs(a).sum(-1),
    "max_abs": lambda a: np.abs(a).max(-1),
    "signed_max_abs": lambda a: np.array(
        [[px[np.argmax(np.abs(px))] for px in row] for row in a]
    ),
    "l2": lambda a: np.sqrt((a**2).sum(-1)),
}


def test_every_name_is_defined_and_documented():
    assert set(reductions.REDUCTIONS) == set(DEFINITIONS)
    for name in reductions.REDUCTIONS:
        assert f'`"{name}"`' in reductions.__doc__, name


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_numpy_and_jax_agree_with_the_definition(name):
    want = DEFINITIONS[name](A)
    got_np = reductions.reduce(A, name)
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float64
    np.testing.assert_allclose(got_np, want, rtol=1e-12)
    got_jax = jax.jit(lambda a: reductions.reduce(a, name))(jnp.asarray(A, jnp.float32))
    assert isinstance(got_jax, jax.Array)
    np.testing.assert_allclose(got_jax, want, rtol=1e-6)


def test_metrics_and_viz_share_the_registry():
    assert metrics.REDUCTIONS is reductions.REDUCTIONS
    assert set(viz.REDUCTIONS) == {*reductions.REDUCTIONS, None}
    for name in ("sum", "mean", "sum_abs", "signed_max_abs", "l2"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_allclose(
                viz.reduce_channels(A, name), DEFINITIONS[name](A), rtol=1e-12
            )


@pytest.mark.parametrize(
    ("name", "former"), [("abs_sum", "sum_abs"), ("max_abs", "signed_max_abs")]
)
def test_viz_keeps_the_former_meaning_with_a_deprecation_warning(name, former):
    with pytest.warns(DeprecationWarning, match=rf"reduction={former!r}"):
        got = viz.reduce_channels(A, name)
    np.testing.assert_array_equal(got, DEFINITIONS[former](A))
    assert not np.allclose(got, DEFINITIONS[name](A))  # the example tells them apart


def test_unknown_name_and_callable():
    with pytest.raises(ValueError, match=r"reduction: expected one of .*got 'median'"):
        reductions.reduce(A, "median")
    np.testing.assert_array_equal(reductions.reduce(A, lambda a: a[..., 0]), A[..., 0])
