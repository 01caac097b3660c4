"""Real photos that ship inside scikit-image, scikit-learn and matplotlib (offline)."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxattr.images.files import load_image

__all__ = ["DEFAULT_IMAGE_NAMES", "DefaultImage", "default_images"]


@dataclass(frozen=True)
class DefaultImage:
    """A bundled demo photo: ``image`` float32 ``[size, size, 3]`` in [0, 1].

    ``label`` / ``class_name``: ImageNet-1k class index and name (standard wnid-sorted order)
    when the photo shows one, else ``None``.  ``path``: the file inside the installed package.
    """

    name: str
    image: np.ndarray
    label: int | None
    class_name: str | None
    source: str
    path: Path


# name -> (python package, file inside the package, ImageNet index, ImageNet class name)
_DEFAULTS = {
    "coffee": ("skimage", "data/coffee.png", 967, "espresso"),
    "chelsea": ("skimage", "data/chelsea.png", 282, "tiger_cat"),
    "stereo_motorcycle": ("skimage", "data/motorcycle_left.png", 665, "moped"),
    "rocket": ("skimage", "data/rocket.jpg", 657, "missile"),
    "astronaut": ("skimage", "data/astronaut.png", None, None),
    "china": ("sklearn", "datasets/images/china.jpg", 698, "palace"),
    "flower": ("sklearn", "datasets/images/flower.jpg", 985, "daisy"),
    "grace_hopper": (
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        400,
        "academic_gown",
    ),
}
#: Names accepted by :func:`default_images`, in its default order.
DEFAULT_IMAGE_NAMES = tuple(_DEFAULTS)
_PIP_NAME = {
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
}


def _package_file(package: str, relpath: str) -> Path | None:
    # find_spec locates the package without importing it (scikit-learn's import is slow).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / relpath
        if candidate.is_file():
            return candidate
    return None


def default_images(
    names: Sequence[str] | None = None,
    size: int | tuple[int, int] | None = 224,
    resize: int | None = 256,
    **kwargs,
) -> list[DefaultImage]:
    """Real photos that ship inside scikit-image, scikit-learn and matplotlib (offline).

    ``names``: a subset of :data:`DEFAULT_IMAGE_NAMES` (default: all of them; a photo whose
    package is not installed is then skipped with a warning).  Naming a photo whose package
    is missing raises ``ImportError``; an unknown name raises ``ValueError``.
    Returns a list of :class:`DefaultImage` with ``image`` float32 ``[size, size, 3]``.
    """
    explicit = names is not None
    if isinstance(names, str):
        names = [names]
    names = list(DEFAULT_IMAGE_NAMES if names is None else names)
    if not names:
        raise ValueError(
            f"names: expected a non-empty sequence of names, got {names!r}"
        )
    unknown = [n for n in names if n not in _DEFAULTS]
    if unknown:
        raise ValueError(
            f"names: unknown default image(s) {unknown}; expected some of {list(DEFAULT_IMAGE_NAMES)}"
        )
    out, missing = [], []
    for name in names:
        package, rel, label, cname = _DEFAULTS[name]
        path = _package_file(package, rel)
        if path is None:
            msg = (
                f"default image {name!r} needs the package {_PIP_NAME[package]!r} "
                f"(file {rel!r}); install it with `pip install {_PIP_NAME[package]}`"
            )
            if explicit:
                raise ImportError(msg)
            missing.append(msg)
            continue
        img = load_image(path, size=size, resize=resize, **kwargs)
        out.append(DefaultImage(name, img, label, cname, f"{package}:{rel}", path))
    if missing:
        if not out:
            raise ImportError("no default images available: " + "; ".join(missing))
        warnings.warn("skipping default images: " + "; ".join(missing), stacklevel=2)
    return out
