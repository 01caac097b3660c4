"""Small models and NumPy helpers shared by the metric tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests import helpers

H = W = 10
MEAN = np.array([0.485, 0.456, 0.406], np.float32)


def tiny_model(seed: int = 0):
    return helpers.tiny_cnn(helpers.tiny_cnn_params(seed))


def image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(h, w, 3)).astype(np.float32)


def attribution(seed: int = 1, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(h, w, 3)).astype(np.float32)


def linear_model(weights: np.ndarray):
    """Batched `[N, H, W, C] -> [N, 2]`: logits `(sum w x, 0)`."""
    wj = jnp.asarray(weights)

    def model(x):
        z = (x * wj).sum(axis=(1, 2, 3))
        return jnp.stack([z, jnp.zeros_like(z)], axis=1)

    return model


def np_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def np_scores(model, img: np.ndarray, output: str) -> np.ndarray:
    """One forward pass of one image, as float64 NumPy."""
    z = np.asarray(model(jnp.asarray(img[None], jnp.float32)), np.float64)[0]
    if output == "softmax":
        return np_softmax(z)
    if output == "log_softmax":
        return np.log(np_softmax(z))
    return z


def jax_keys(key, n: int) -> list:
    return list(jax.random.split(key, n))
