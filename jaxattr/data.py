"""tensorflow-datasets pipelines for ``imagenet2012``, ``imagenette`` and ``cifar10``.

Optional: needs ``pip install 'jaxattr[data]'`` (tensorflow-datasets and tensorflow-cpu),
imported only when a function here is called.  Examples come out exactly like the file
loaders in :mod:`jaxattr.images`: float32 **HWC** arrays with pixels in ``[0, 1]`` (the
same resize + centre-crop code), with integer labels.  Nothing is normalised here.

* ``imagenet2012``: cannot be downloaded automatically; pass ``manual_dir`` (the folder
  holding ``ILSVRC2012_img_train.tar`` / ``ILSVRC2012_img_val.tar``) once to build it in
  ``data_dir``.  Labels are the standard ImageNet-1k indices (wnid-sorted).
* ``imagenette`` (any config, e.g. ``"imagenette/320px-v2"``): labels are mapped to
  ImageNet-1k indices by default (``imagenet_labels=True``), so ImageNet models can be used
  directly; ``imagenet_labels=False`` keeps the 0..9 labels.
* ``cifar10``: 32 x 32 images, no resize/crop by default; labels 0..9 (:data:`CIFAR10_CLASSES`).

``data_dir``: where the prepared datasets are (tfds' ``data_dir``).  When it is not given,
the environment variable ``TFDS_DATA_DIR`` is used (read at each call, so setting it after
TensorFlow is imported works too), else tfds' default ``~/tensorflow_datasets``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .images import preprocess
from .models import CIFAR10_CLASSES  # label order, one list for the project

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGENETTE_TO_IMAGENET",
    "SUPPORTED_DATASETS",
    "DatasetDefaults",
    "dataset_defaults",
    "example_to_arrays",
    "tfds_class_names",
    "tfds_dataset",
]

#: Imagenette's 10 wnids -> their standard ImageNet-1k class index.
IMAGENETTE_TO_IMAGENET = {
    "n01440764": 0,  # tench
    "n02102040": 217,  # English springer
    "n02979186": 482,  # cassette player
    "n03000684": 491,  # chain saw
    "n03028079": 497,  # church
    "n03394916": 566,  # French horn
    "n03417042": 569,  # garbage truck
    "n03425413": 571,  # gas pump
    "n03445777": 574,  # golf ball
    "n03888257": 701,  # parachute
}


class DatasetDefaults(NamedTuple):
    """``(split, size, resize)`` used when the caller does not give them."""

    split: str
    size: int | None
    resize: int | None


#: Supported base dataset names and their defaults.
SUPPORTED_DATASETS = {
    "imagenet2012": DatasetDefaults("validation", 224, 256),
    "imagenette": DatasetDefaults("validation", 224, 256),
    "cifar10": DatasetDefaults("test", None, None),
}

_INSTALL_HINT = (
    "jaxattr.data needs tensorflow-datasets and tensorflow: "
    "`pip install 'jaxattr[data]'` (or `pip install tensorflow-datasets tensorflow-cpu`)"
)
_DEFAULT = object()


def _import_tfds():
    """Import tensorflow_datasets lazily; keep TensorFlow off the GPU (JAX owns it)."""
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):  # already initialised, or no GPU support
        pass
    return tfds


def dataset_defaults(name: str) -> DatasetDefaults:
    """Defaults for ``name`` (``"imagenette/160px-v2"`` uses ``"imagenette"``'s)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name string, got {name!r}")
    base = name.split("/", 1)[0].split(":", 1)[0]
    if base not in SUPPORTED_DATASETS:
        raise ValueError(
            f"name: expected one of {sorted(SUPPORTED_DATASETS)} (optionally with a "
            f"'/config' or ':version'), got {name!r}"
        )
    return SUPPORTED_DATASETS[base]


def example_to_arrays(
    example: dict,
    size=224,
    resize=256,
    *,
    label_map: dict[int, int] | None = None,
    resample: str | int = "bicubic",
) -> tuple[np.ndarray, int]:
    """Turn one numpy tfds example ``{"image": uint8 [H, W, C], "label": int}`` into
    ``(float32 [size, size, 3] in [0, 1], int label)``; ``label_map`` remaps labels."""
    if (
        not isinstance(example, dict)
        or "image" not in example
        or "label" not in example
    ):
        got = sorted(example) if isinstance(example, dict) else type(example).__name__
        raise ValueError(
            f"example: expected a dict with 'image' and 'label', got {got}"
        )
    image = np.asarray(example["image"])
    if image.dtype != np.uint8:
        raise ValueError(
            f"example['image']: expected uint8 pixels, got dtype {image.dtype}"
        )
    arr = preprocess(image, size=size, resize=resize, resample=resample)
    label = int(np.asarray(example["label"]))
    if label_map is not None:
        if label not in label_map:
            raise ValueError(
                f"example['label']: {label} is not in label_map {sorted(label_map)}"
            )
        label = int(label_map[label])
    return arr, label


def _data_dir(data_dir):
    """``data_dir``, else ``$TFDS_DATA_DIR`` (tfds reads it only once, on import)."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or None
    return None if data_dir is None else os.fspath(data_dir)


def _builder(tfds, name, data_dir, manual_dir, download):
    builder = tfds.builder(name, data_dir=_data_dir(data_dir))
    if manual_dir is not None or download:
        cfg = None
        if manual_dir is not None:
            cfg = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        builder.download_and_prepare(download_config=cfg)
    return builder


def tfds_class_names(
    name: str, *, data_dir=None, imagenet_labels: bool = True
) -> list[str]:
    """Class names indexed by the labels that :func:`tfds_dataset` yields.

    For imagenette with ``imagenet_labels=True`` the labels are ImageNet indices, so the
    result has 1000 entries: the wnid at imagenette's 10 indices and ``""`` elsewhere.
    """
    dataset_defaults(name)
    if name.startswith("cifar10"):
        return list(CIFAR10_CLASSES)
    tfds = _import_tfds()
    builder = tfds.builder(name, data_dir=_data_dir(data_dir))
    names = list(builder.info.features["label"].names)
    if name.startswith("imagenette") and imagenet_labels:
        out = [""] * 1000
        for wnid in names:
            out[IMAGENETTE_TO_IMAGENET[wnid]] = wnid
        return out
    return names


def tfds_dataset(
    name: str,
    split: str | None = None,
    *,
    size=_DEFAULT,
    resize=_DEFAULT,
    data_dir=None,
    manual_dir=None,
    download: bool = False,
    imagenet_labels: bool = True,
    take: int | None = None,
    batch_size: int | None = None,
    shuffle_files: bool = False,
    resample: str | int = "bicubic",
) -> Iterator[tuple[np.ndarray, int] | tuple[np.ndarray, np.ndarray]]:
    """Iterate a tensorflow-datasets dataset as numpy arrays.

    Yields ``(image float32 [size, size, 3], label int)``, or with ``batch_size``
    ``(images [B, size, size, 3], labels int64 [B])`` (the last batch may be smaller).
    ``size``/``resize`` default per dataset (:data:`SUPPORTED_DATASETS`; ``None`` skips).
    ``download=True`` lets tfds download/prepare the data; ``manual_dir`` builds
    ``imagenet2012`` from the local ILSVRC tar files.  ``data_dir``: where the prepared
    data is (default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).  A dataset that
    is not prepared in ``data_dir`` raises ``FileNotFoundError`` saying how to get it.
    """
    defaults = dataset_defaults(name)
    split = defaults.split if split is None else split
    size = defaults.size if size is _DEFAULT else size
    resize = defaults.resize if resize is _DEFAULT else resize
    for arg, val in (("take", take), ("batch_size", batch_size)):
        if val is not None and (not isinstance(val, (int, np.integer)) or val <= 0):
            raise ValueError(f"{arg}: expected a positive int or None, got {val!r}")
    tfds = _import_tfds()
    builder = _builder(tfds, name, data_dir, manual_dir, download)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=shuffle_files)
    except Exception as err:
        if not builder.is_prepared():
            how = (
                "pass manual_dir=<folder with the ILSVRC2012 tar files>"
                if name.startswith("imagenet2012")
                else "pass download=True (needs internet), or the data_dir where it was"
                " prepared (data_dir= or the environment variable TFDS_DATA_DIR)"
            )
            raise FileNotFoundError(
                f"dataset {name!r} is not prepared in data_dir={str(builder.data_dir)!r}; {how}"
            ) from err
        raise
    label_map = None
    if name.startswith("imagenette") and imagenet_labels:
        wnids = builder.info.features["label"].names
        unknown = [w for w in wnids if w not in IMAGENETTE_TO_IMAGENET]
        if unknown:
            raise ValueError(
                f"imagenette label names {unknown} have no known ImageNet index"
            )
        label_map = {i: IMAGENETTE_TO_IMAGENET[w] for i, w in enumerate(wnids)}
    if batch_size is not None and size is None:
        shape = builder.info.features["image"].shape
        if None in shape[:2]:
            raise ValueError(
                f"batch_size: {name!r} images have varying sizes {shape}, so batching "
                "needs size (a crop size), got size=None"
            )
    if take is not None:
        ds = ds.take(int(take))
    return _iterate(tfds.as_numpy(ds), size, resize, label_map, batch_size, resample)


def _iterate(examples, size, resize, label_map, batch_size, resample):
    batch_x, batch_y = [], []
    for ex in examples:
        x, y = example_to_arrays(
            ex, size, resize, label_map=label_map, resample=resample
        )
        if batch_size is None:
            yield x, y
            continue
        batch_x.append(x)
        batch_y.append(y)
        if len(batch_x) == batch_size:
            yield np.stack(batch_x), np.asarray(batch_y, np.int64)
            batch_x, batch_y = [], []
    if batch_x:
        yield np.stack(batch_x), np.asarray(batch_y, np.int64)
