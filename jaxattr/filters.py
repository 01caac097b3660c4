"""Image filters used by baselines, paths and metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian of radius `int(truncate * sigma + 0.5)` (scipy's)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def gaussian_blur(image: jax.Array, sigma: float, truncate: float = 4.0) -> jax.Array:
    """Gaussian blur of an `[H, W, C]` image over H and W, zeros outside the image.

    Matches `scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="constant",
    truncate=truncate)`. `sigma` is static (it sets the kernel size); `sigma == 0`
    returns the image unchanged.
    """
    if image.ndim != 3:
        raise ValueError(
            f"gaussian_blur: image must be [H, W, C]; got shape {tuple(image.shape)}."
        )
    if float(sigma) < 0:
        raise ValueError(f"gaussian_blur: sigma must be >= 0; got {sigma}.")
    if float(sigma) == 0:
        return image
    k = jnp.asarray(gaussian_kernel1d(sigma, truncate), image.dtype)
    r = (k.shape[0] - 1) // 2
    c = image.shape[-1]
    x = image[None]  # [1, H, W, C]
    for kernel in (k.reshape(-1, 1, 1, 1), k.reshape(1, -1, 1, 1)):
        x = jax.lax.conv_general_dilated(
            x,
            jnp.tile(kernel, (1, 1, 1, c)),
            window_strides=(1, 1),
            padding=[(r, r), (0, 0)] if kernel.shape[0] > 1 else [(0, 0), (r, r)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
            precision=jax.lax.Precision.HIGHEST,
        )
    return x[0]
