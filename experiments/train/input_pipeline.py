"""CIFAR-10 as uint8 arrays in memory, and the standard augmentation as a pure function.

Data specs (``load(spec)``):

* ``cifar10-train`` / ``cifar10-test``: the JPEG zips in ``<shared>/assets/``
  (``cifar10-train-jpeg``, 50,000 images; ``cifar10-test-jpeg``, 10,000), read in
  place. ``<shared>`` is ``$JAXATTR_SHARED`` or the ``shared`` folder beside the
  repository (:func:`jaxattr.runs.data.shared_dir`). Lossy (JPEG quality 75, 4:2:0):
  not the lossless CIFAR-10 benchmark. Classes interleaved (``airplane/0000,
  automobile/0000, ...``), the order of ``jaxattr.runs.data``'s ``cifar10-test``, so
  ``limit=1000`` is the same first 1,000 test images there and here.
* ``tfds:cifar10[:SPLIT]``: tensorflow-datasets (lossless PNG), split ``train`` by
  default; ``tfds:cifar10:test`` for evaluation. Read from ``data_dir``, else
  ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``; tensorflow-datasets is imported
  only here.

CIFAR-10 fits in memory (50,000 x 32 x 32 x 3 uint8 = 150 MB), so, as in the flax
examples' small-data pipelines, a whole split is one array and each batch is gathered
and augmented by a jitted function from an explicit key.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxattr.models import CIFAR10_CLASSES
from jaxattr.runs.data import shared_dir

__all__ = ["SPECS", "Dataset", "augment", "epoch_permutation", "load"]

SPECS = ("cifar10-train", "cifar10-test", "tfds:cifar10[:SPLIT]")
_ZIPS = {
    "cifar10-train": ("assets/cifar10-train-jpeg/cifar10_train_jpeg.zip", "train"),
    "cifar10-test": ("assets/cifar10-test-jpeg/cifar10_test_jpeg.zip", "test"),
}


class Dataset(NamedTuple):
    """``images`` uint8 ``[N, 32, 32, 3]``, ``labels`` int32 ``[N]`` (0-9, in
    :data:`jaxattr.models.CIFAR10_CLASSES` order)."""

    images: np.ndarray
    labels: np.ndarray


def _zip_names(zf: zipfile.ZipFile, folder: str, spec: str, path) -> list[str]:
    by_class: dict[str, list[str]] = {}
    for name in sorted(zf.namelist()):
        parts = name.split("/")
        if (
            len(parts) == 3
            and parts[0] == folder
            and parts[1] in CIFAR10_CLASSES
            and parts[2].endswith(".jpg")
        ):
            by_class.setdefault(parts[1], []).append(name)
    if not by_class:
        raise ValueError(
            f"load({spec!r}): no '{folder}/<class>/<NNNN>.jpg' members in {path}"
        )
    depth = max(len(v) for v in by_class.values())
    classes = [c for c in CIFAR10_CLASSES if c in by_class]
    return [
        by_class[c][i] for i in range(depth) for c in classes if i < len(by_class[c])
    ]


def _load_zip(spec: str, limit: int | None) -> Dataset:
    from PIL import Image

    rel, folder = _ZIPS[spec]
    path = shared_dir() / rel
    if not path.exists():
        raise FileNotFoundError(
            f"load({spec!r}): expected {str(path)!r}, which does not exist; set "
            "JAXATTR_SHARED to the folder holding 'assets/' or use 'tfds:cifar10'"
        )
    with zipfile.ZipFile(path) as zf:
        names = _zip_names(zf, folder, spec, path)[:limit]
        images = np.empty((len(names), 32, 32, 3), np.uint8)
        for i, name in enumerate(names):
            with Image.open(io.BytesIO(zf.read(name))) as img:
                images[i] = np.asarray(img.convert("RGB"))
    labels = np.asarray(
        [CIFAR10_CLASSES.index(n.split("/")[1]) for n in names], np.int32
    )
    return Dataset(images, labels)


def _load_tfds(spec: str, limit: int | None, data_dir) -> Dataset:
    name, _, split = spec.removeprefix("tfds:").partition(":")
    if name != "cifar10":
        raise ValueError(
            f"load: only 'tfds:cifar10[:SPLIT]' is supported, got {spec!r}"
        )
    import tensorflow_datasets as tfds

    split = split or "train"
    if limit is not None:
        split = f"{split}[:{limit}]"
    data = tfds.as_numpy(
        tfds.load(
            "cifar10",
            split=split,
            batch_size=-1,
            data_dir=data_dir or os.environ.get("TFDS_DATA_DIR"),
            download=False,
        )
    )
    return Dataset(
        np.asarray(data["image"], np.uint8), np.asarray(data["label"], np.int32)
    )


def load(
    spec: str, *, limit: int | None = None, data_dir: str | os.PathLike | None = None
) -> Dataset:
    """The images and labels of ``spec`` (see the module docstring); ``limit``: only
    the first ``limit`` examples (``None``: all)."""
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"load: limit must be a positive int or None, got {limit!r}")
    if spec in _ZIPS:
        return _load_zip(spec, limit)
    if spec.startswith("tfds:"):
        return _load_tfds(spec, limit, data_dir)
    raise ValueError(f"load: spec must be one of {list(SPECS)}, got {spec!r}")


def epoch_permutation(key: jax.Array, epoch: int, n: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation of ``range(n)`` that depends only
    on ``key`` and ``epoch`` (so a resumed run sees the same batches)."""
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))


def augment(key: jax.Array, images: jax.Array, *, padding: int = 4) -> jax.Array:
    """Random crop with zero padding ``padding`` and random horizontal flip
    (torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``).

    ``images``: uint8 or float ``[N, H, W, C]``; returns float32 pixels in [0, 1] of the
    same shape. One offset pair and one flip per image, from ``key``. Jit-compatible
    (``padding`` static).
    """
    n, h, w, _ = images.shape
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
        x = x / 255.0
    k_crop, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * padding + 1)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    x = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (n,))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
