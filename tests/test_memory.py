"""Memory of a chunk of path nodes on a VGG (max-pools, 3x3 convolutions): XLA's
temporaries grow with the chunk, not with the steps, and the max-pool derivative
needs no select-and-scatter (XLA:CPU expands it into a scatter with 32-bit index
arrays the size of the pool's input)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr
from jaxattr.models import loading, vgg
from tests.conftest import PRODUCT_COMPILE

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="the rewrite applies on the CPU backend"
)


def _vgg():
    module = vgg.VGG(config=(8, 8, "M", 16, "M"), num_classes=10)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return module, loading._random_variables({"params": shapes["params"]}, 0)


def _compiled(n_steps, batch_size, size=32):
    module, variables = _vgg()

    def explain(variables, x):
        f = jaxattr.scalar_output(lambda z: module.apply(variables, z), 1)
        return jaxattr.integrated_gradients(
            f, x, n_steps=n_steps, batch_size=batch_size
        )

    x = jnp.asarray(np.random.default_rng(0).uniform(size=(size, size, 3)), jnp.float32)
    return jax.jit(explain).lower(variables, x).compile(PRODUCT_COMPILE)


def test_vgg_memory_grows_with_the_chunk_not_with_the_steps():
    small = _compiled(16, 4)
    temp = small.memory_analysis().temp_size_in_bytes
    assert _compiled(64, 4).memory_analysis().temp_size_in_bytes < 1.2 * temp
    assert _compiled(16, 16).memory_analysis().temp_size_in_bytes > 2.5 * temp
    # no select-and-scatter op (nor the scatter XLA:CPU expands it into) is left;
    # matched as ops, not as text: metadata may name other tests' functions
    ops = re.findall(r"(?<![\w-])(select-and-scatter|scatter)\(", small.as_text())
    assert ops == []


def test_relu_masks_kept_as_bits_lower_the_temporaries_and_keep_every_value(
    monkeypatch,
):
    """A ReLU's mask kept as bits (`PACKED_MASK_MIN_SIZE` lowered to cover this
    small VGG) instead of recomputed from the float pre-activation in the backward
    pass: fewer XLA temporaries, bit-identical attributions."""
    module, variables = _vgg()
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(32, 32, 3)), jnp.float32)

    def compiled():  # a new function each time: jit traces it again
        def explain(variables, x):
            f = jaxattr.scalar_output(lambda z: module.apply(variables, z), 1)
            return jaxattr.integrated_gradients(f, x, n_steps=16, batch_size=4)

        return jax.jit(explain).lower(variables, x).compile(PRODUCT_COMPILE)

    plain = compiled()
    monkeypatch.setattr(jaxattr.fast_convolutions, "PACKED_MASK_MIN_SIZE", 1)
    packed = compiled()
    temp = plain.memory_analysis().temp_size_in_bytes
    assert packed.memory_analysis().temp_size_in_bytes < 0.8 * temp
    np.testing.assert_array_equal(
        packed(variables, x).attributions, plain(variables, x).attributions
    )


@pytest.mark.parametrize(
    "shape", [(8, 5, 3), (3, 1, 17, 4), (12, 5), (17, 2), (40, 6), (1, 7)]
)
def test_packed_masks_unpack_to_the_same_booleans(shape):
    """Bits along the first axis of 2 to 32 elements (8, 16 or 32 per word), or the
    mask itself where there is none."""
    from jaxattr.fast_convolutions import _packed

    mask = np.random.default_rng(0).uniform(size=shape) > 0.5
    np.testing.assert_array_equal(jax.jit(_packed)(mask), mask)


def _temp_bytes(fn, *args) -> int:
    return (
        jax.jit(fn)
        .lower(*args)
        .compile(PRODUCT_COMPILE)
        .memory_analysis()
        .temp_size_in_bytes
    )


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def test_winograd_strips_run_one_after_the_other(monkeypatch):
    """Strips of Winograd tiles are computed one after the other, so one strip's
    transformed tiles are alive at a time: the temporaries are a fraction of the
    tiles' when done at once. (XLA:CPU drops `optimization_barrier` before it
    schedules; strips that were only ordered by barriers ran side by side.)"""
    from jaxattr import fast_convolutions as fc

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 32, 32, 64)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 64, 64)), jnp.float32)
    # the transformed input and 16 products of 16 x 16 tiles, 64 + 64 channels
    tiles = 16 * 4 * 16 * 16 * (64 + 64) * 4
    assert fc._winograd_strips(4, 16, 16, 64, 64, 4) == 1
    whole = _temp_bytes(fc.fast_convolutions(_conv), x, w)
    monkeypatch.setattr(fc, "WINOGRAD_STRIP_BYTES", tiles // 8)
    assert fc._winograd_strips(4, 16, 16, 64, 64, 4) == 8
    strips = _temp_bytes(fc.fast_convolutions(_conv), x, w)
    # jaxlib 0.10.2: 1.0 MB against 5.3 MB (strips side by side: 4.9 MB)
    assert strips < 0.4 * whole, (strips, whole)


def test_max_pool_index_is_stored_not_recomputed_in_the_backward_pass(monkeypatch):
    """The index of each pool window's maximum is stored in the forward pass (int8,
    the result of a reduction) rather than recomputed by XLA inside the backward
    pass, which would keep the pool's float input and output alive until then:
    fewer temporaries than with the index left elementwise (VGG-16, IG in chunks
    of 8: 0.11 GB fewer; here 3.77 against 3.96 MB on jaxlib 0.10.2)."""
    from jaxattr import fast_convolutions as fc

    stored = _compiled(16, 8, size=64).memory_analysis().temp_size_in_bytes
    monkeypatch.setattr(fc, "_materialised", lambda a: a)
    fused = _compiled(16, 8, size=64).memory_analysis().temp_size_in_bytes
    assert stored < fused, (stored, fused)
