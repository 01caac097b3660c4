"""Filters: the traced-sigma Gaussian blur against scipy's `gaussian_filter`
(mode "constant", truncate 4), kernels wider than the image included; jit with a
traced sigma, vmap over sigmas, sigma 0, the derivative in sigma, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxattr import filters

RNG = np.random.default_rng(0)
IMAGES = {
    "square_rgb": RNG.uniform(size=(16, 16, 3)),
    "wide_gray": RNG.uniform(size=(9, 23, 1)),
    "tall_rgb": RNG.uniform(-1, 1, size=(21, 6, 3)),
}
# 0.1 has radius 0 (identity); 2.4 -> radius 10; 7 and 50 have radii (28, 200)
# beyond every image side, where the kernel normaliser reaches outside the image.
SIGMAS = [0.1, 0.3, 1.0, 2.4, 7.0, 50.0]


def scipy_blur(image, sigma, truncate=4.0):
    return ndimage.gaussian_filter(
        np.asarray(image, np.float64),
        (sigma, sigma, 0),
        mode="constant",
        truncate=truncate,
    )


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("sigma", SIGMAS)
def test_matches_scipy_constant_mode(name, sigma):
    image = IMAGES[name]
    ref = scipy_blur(image, sigma)
    out = filters.gaussian_blur_traced(jnp.asarray(image, jnp.float32), sigma)
    assert out.shape == image.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)
    with jax.enable_x64(True):
        out64 = filters.gaussian_blur_traced(jnp.asarray(image), sigma)
        assert out64.dtype == jnp.float64
        np.testing.assert_allclose(out64, ref, rtol=0, atol=1e-13)


def test_other_truncate_and_existing_gaussian_blur_agree():
    image = IMAGES["square_rgb"]
    for sigma, truncate in ((1.3, 2.0), (3.0, 1.5), (5.0, 4.0)):
        ref = scipy_blur(image, sigma, truncate)
        x = jnp.asarray(image, jnp.float32)
        np.testing.assert_allclose(
            filters.gaussian_blur_traced(x, sigma, truncate), ref, atol=2e-6
        )
        np.testing.assert_allclose(
            filters.gaussian_blur(x, sigma, truncate), ref, atol=2e-6
        )


def test_jit_with_traced_sigma_and_vmap_over_sigmas():
    traces = []

    @jax.jit
    def blur(image, sigma):
        traces.append(1)
        return filters.gaussian_blur_traced(image, sigma, max_sigma=60.0)

    for name, image in IMAGES.items():
        x = jnp.asarray(image, jnp.float32)
        n_before = len(traces)
        for sigma in SIGMAS:
            np.testing.assert_allclose(
                blur(x, sigma), scipy_blur(image, sigma), atol=2e-6, err_msg=name
            )
        assert len(traces) == n_before + 1  # one trace per image shape
        many = jax.vmap(blur, in_axes=(None, 0))(x, jnp.asarray(SIGMAS, jnp.float32))
        for i, sigma in enumerate(SIGMAS):
            np.testing.assert_allclose(many[i], scipy_blur(image, sigma), atol=2e-6)


def test_sigma_zero_is_the_identity_exactly():
    x = jnp.asarray(IMAGES["tall_rgb"], jnp.float32)
    assert filters.gaussian_blur_traced(x, 0.0) is x
    traced = jax.jit(lambda s: filters.gaussian_blur_traced(x, s, max_sigma=5.0))
    np.testing.assert_array_equal(traced(0.0), x)
    # ... with a finite (zero) derivative in sigma, not a NaN from 0/0.
    value, tangent = jax.jvp(traced, (0.0,), (1.0,))
    np.testing.assert_array_equal(value, x)
    np.testing.assert_array_equal(tangent, np.zeros_like(x))
    grad = jax.grad(lambda s: traced(s).sum())(0.0)
    assert float(grad) == 0.0


@pytest.mark.parametrize("sigma", [0.8, 3.0, 30.0])
def test_derivative_in_sigma_matches_central_difference_of_scipy(sigma):
    # Away from radius jumps (int(4 sigma + 0.5) constant within +-h), scipy's blur
    # is smooth in sigma; the jvp must match its central difference.
    image = IMAGES["wide_gray"]
    h = 1e-5
    ref = (scipy_blur(image, sigma + h) - scipy_blur(image, sigma - h)) / (2 * h)
    with jax.enable_x64(True):
        x = jnp.asarray(image)
        _, tangent = jax.jvp(
            lambda s: filters.gaussian_blur_traced(x, s, max_sigma=31.0),
            (jnp.float64(sigma),),
            (jnp.float64(1.0),),
        )
    np.testing.assert_allclose(tangent, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    assert np.abs(ref).max() > 1e-3


def test_traced_sigma_above_max_sigma_is_nan_not_wrong():
    x = jnp.asarray(IMAGES["square_rgb"], jnp.float32)
    blur = jax.jit(lambda s: filters.gaussian_blur_traced(x, s, max_sigma=2.0))
    np.testing.assert_allclose(blur(2.0), scipy_blur(x, 2.0), atol=2e-6)
    assert np.isnan(np.asarray(blur(10.0))).all()  # radius 40 > the bound
    assert np.isnan(np.asarray(blur(-1.0))).all()


def test_errors_name_the_argument():
    x = jnp.asarray(IMAGES["square_rgb"], jnp.float32)
    with pytest.raises(
        ValueError, match=r"image must be \[H, W, C\]; got shape \(16, 16\)"
    ):
        filters.gaussian_blur_traced(x[..., 0], 1.0)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0; got -1.0"):
        filters.gaussian_blur_traced(x, -1.0)
    with pytest.raises(ValueError, match="max_sigma .* is required"):
        jax.jit(lambda s: filters.gaussian_blur_traced(x, s))(1.0)
    with pytest.raises(TypeError, match="image must be floating"):
        filters.gaussian_blur_traced(jnp.ones((4, 4, 1), jnp.int32), 1.0)
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        filters.gaussian_blur_traced(x, jnp.ones(2), max_sigma=2.0)
