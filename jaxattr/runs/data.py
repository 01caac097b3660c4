"""Labelled images for runs, from one string spec: ``examples("folder:PATH", size=224, resize=256)``.

Specs:
  ``default``             the offline demo photos (``jaxattr.images.default_images``), ImageNet labels.
  ``folder:PATH``         any folder of images; labels from ``labels.tsv``, file names or class
                          subfolders (``jaxattr.images.iter_folder``).
  ``tfds:NAME[:SPLIT]``   a tensorflow-datasets dataset (``jaxattr.data.tfds_dataset``), read from
                          ``examples(..., data_dir=)``, else ``$TFDS_DATA_DIR``, else
                          ``~/tensorflow_datasets`` (the location is not part of the spec).
  ``imagenet-sample``     ``<shared>/assets/imagenet-sample-images`` with its ``labels.tsv``.
  ``cifar10-test``        ``<shared>/assets/cifar10-test-jpeg/cifar10_test_jpeg.zip``, read in place,
                          classes interleaved (``airplane/0000, automobile/0000, ...``).

``<shared>`` is ``$JAXATTR_SHARED`` if set, else the ``shared`` folder beside the repository
(:func:`shared_dir`); its ``assets/`` folder (:func:`assets_dir`) holds the datasets and the
checkpoints, for ``jaxattr.runs`` and ``experiments/`` alike. ``$JAXATTR_ASSETS``, the assets
folder itself, is a deprecated override (a ``DeprecationWarning``).
Ids are stable strings: paths relative to the folder or zip, photo names, ``NAME:SPLIT/INDEX``.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from jaxattr import images as _images
from jaxattr.models import CIFAR10_CLASSES

SPECS = (
    "default",
    "folder:PATH",
    "tfds:NAME[:SPLIT]",
    "imagenet-sample",
    "cifar10-test",
)
CIFAR10_ZIP = "assets/cifar10-test-jpeg/cifar10_test_jpeg.zip"
IMAGENET_SAMPLE = "assets/imagenet-sample-images"


class Example(NamedTuple):
    """One image: ``image`` float32 ``[H, W, 3]`` in [0, 1]; ``label`` int or ``None``."""

    id: str
    image: np.ndarray
    label: int | None


class _Examples:
    """An iterator that knows its length when the source does (for progress and ETA)."""

    def __init__(self, it, n: int | None):
        self._it, self._n, self._i = iter(it), n, 0

    def __iter__(self):
        return self

    def __next__(self) -> Example:
        ex = next(self._it)
        self._i += 1
        return ex

    def __length_hint__(self) -> int:
        return 0 if self._n is None else max(self._n - self._i, 0)


#: The environment variable naming the folder that holds ``assets/``.
SHARED_ENV = "JAXATTR_SHARED"
#: Deprecated: the assets folder itself (the name ``experiments/`` used to read).
ASSETS_ENV = "JAXATTR_ASSETS"


def shared_dir() -> Path:
    """The ``shared`` folder: ``$JAXATTR_SHARED`` or ``<repo>/../shared`` (may not exist)."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"


def assets_dir() -> Path:
    """The assets folder: ``shared_dir() / "assets"`` (may not exist).

    ``$JAXATTR_ASSETS``, when set, overrides it with a ``DeprecationWarning``; set
    ``$JAXATTR_SHARED`` to the folder holding ``assets/`` instead.
    """
    env = os.environ.get(ASSETS_ENV)
    if env:
        warnings.warn(
            f"${ASSETS_ENV} is deprecated: set ${SHARED_ENV} to the folder that holds"
            " 'assets/' instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return Path(env)
    return shared_dir() / "assets"


def _shared_path(rel: str, spec: str) -> Path:
    """``rel`` (``assets/...``, relative to the shared folder) as a path that exists."""
    path = assets_dir() / PurePosixPath(rel).relative_to("assets")
    if not path.exists():
        raise FileNotFoundError(
            f"spec {spec!r}: expected {str(path)!r}, which does not exist; set"
            f" {SHARED_ENV} to the folder holding 'assets/' or use 'folder:PATH' /"
            " 'tfds:NAME'"
        )
    return path


def _order(items: list, limit: int | None, seed: int) -> list:
    """``seed == 0``: the given order; otherwise a fixed permutation of it. Then ``[:limit]``."""
    if seed:
        perm = np.random.default_rng(seed).permutation(len(items))
        items = [items[i] for i in perm]
    return items if limit is None else items[:limit]


def _folder(root: Path, spec: str, size, resize, limit, seed) -> _Examples:
    if not root.is_dir():
        raise FileNotFoundError(f"spec {spec!r}: folder {str(root)!r} does not exist")
    files = _images.list_images(root)
    if not files:
        raise ValueError(f"spec {spec!r}: no images found under {str(root)!r}")
    _, label_of = _images.folders.labeller(root, files, "auto", None)
    chosen = _order([(f, label_of(f)) for f in files], limit, seed)

    def gen():
        for f, lab in chosen:
            img = _images.load_image(f, size=size, resize=resize)
            yield Example(f.relative_to(root).as_posix(), img, lab)

    return _Examples(gen(), len(chosen))


def _cifar10_test(spec: str, size, resize, limit, seed) -> _Examples:
    path = _shared_path(CIFAR10_ZIP, spec)
    zf = zipfile.ZipFile(path)
    by_class: dict[str, list[str]] = {}
    for name in sorted(zf.namelist()):
        parts = name.split("/")
        if (
            len(parts) == 3
            and parts[2].endswith(".jpg")
            and parts[1] in CIFAR10_CLASSES
        ):
            by_class.setdefault(parts[1], []).append(name)
    if not by_class:
        raise ValueError(
            f"spec {spec!r}: no 'test/<class>/<NNNN>.jpg' members in {str(path)!r}"
        )
    classes = [c for c in CIFAR10_CLASSES if c in by_class]
    depth = max(len(v) for v in by_class.values())
    names = [
        by_class[c][i] for i in range(depth) for c in classes if i < len(by_class[c])
    ]
    chosen = _order(names, limit, seed)
    pil, _ = _images.transforms.pillow()

    def gen():
        with zf:
            for name in chosen:
                img = pil.open(io.BytesIO(zf.read(name)))
                arr = _images.preprocess(img, size=size, resize=resize)
                yield Example(name, arr, CIFAR10_CLASSES.index(name.split("/")[1]))

    return _Examples(gen(), len(chosen))


def _default(size, resize, limit, seed) -> _Examples:
    photos = _order(list(_images.default_images(size=size, resize=resize)), limit, seed)
    return _Examples((Example(p.name, p.image, p.label) for p in photos), len(photos))


def _tfds(spec: str, rest: str, size, resize, limit, seed, data_dir) -> _Examples:
    from jaxattr import data as _data

    name, _, split = rest.partition(":")
    if not name:
        raise ValueError(f"spec: expected 'tfds:NAME[:SPLIT]', got {spec!r}")
    split = split or _data.dataset_defaults(name).split
    it = _data.tfds_dataset(
        name, split, size=size, resize=resize, take=limit, data_dir=data_dir
    )

    def gen():
        for i, (img, lab) in enumerate(it):
            yield Example(f"{name}:{split}/{i}", img, None if lab is None else int(lab))

    return _Examples(gen(), limit)


def examples(
    spec: str,
    *,
    size: int,
    resize: int | None,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> Iterator[Example]:
    """Yield :class:`Example` for a data spec (see the module docstring).

    ``size``: centre-crop side; ``resize``: short side before the crop (``None``: no resize).
    ``limit``: the first ``limit`` examples of a deterministic order; ``seed`` picks a fixed
    permutation of that order, ``0`` keeps it (``tfds:`` always keeps the dataset order). The returned iterator
    has a ``__length_hint__`` when the count is known. ``data_dir``: tensorflow-datasets'
    folder for ``tfds:`` specs (default ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a string, got {type(spec).__name__}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit <= 0):
        raise ValueError(f"limit: expected a positive int or None, got {limit!r}")
    if spec == "default":
        return _default(size, resize, limit, seed)
    if spec == "imagenet-sample":
        return _folder(
            _shared_path(IMAGENET_SAMPLE, spec), spec, size, resize, limit, seed
        )
    if spec == "cifar10-test":
        return _cifar10_test(spec, size, resize, limit, seed)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "folder" and rest:
        return _folder(Path(rest).expanduser(), spec, size, resize, limit, seed)
    if sep and kind == "tfds":
        return _tfds(spec, rest, size, resize, limit, seed, data_dir)
    raise ValueError(f"spec: expected one of {list(SPECS)}, got {spec!r}")
