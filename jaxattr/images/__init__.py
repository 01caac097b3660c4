"""Image loading and ImageNet-style preprocessing (Pillow + numpy, no JAX).

Every loader returns ``float32`` arrays in **HWC** layout with pixels in ``[0, 1]``.
Normalisation (mean/std, ``(x - 127) / 128``, ...) is *not* done here: it belongs inside
the model function, so that baselines such as "black" are simply ``zeros``.

Modules: ``transforms`` (resize, centre crop, :func:`preprocess`), ``files``
(:func:`read_image`, :func:`load_image`, :func:`load_images`), ``folders``
(:func:`list_images`, :func:`iter_folder`, :func:`load_folder` and the folder label
conventions), ``photos`` (:func:`default_images`, the offline demo photos).

The evaluation transform is the usual one: resize so that the short side is ``resize``
pixels (bicubic, long side ``int(resize * long / short)`` as in torchvision), then take the
centred ``size x size`` crop (offsets ``round((h - size) / 2)``, as in torchvision).

The folder label conventions (``labels=``) are described in :mod:`jaxattr.images.folders`.
"""

from __future__ import annotations

from jaxattr.images import files, folders, photos, transforms
from jaxattr.images.files import load_image, load_images, read_image
from jaxattr.images.folders import (
    IMAGE_EXTENSIONS,
    iter_folder,
    list_images,
    load_folder,
)
from jaxattr.images.photos import (
    DEFAULT_IMAGE_NAMES,
    DefaultImage,
    _package_file,  # noqa: F401  (kept importable: `images._package_file(...)`)
    default_images,
)
from jaxattr.images.transforms import center_crop, preprocess, resize_short_side

__all__ = [
    "DEFAULT_IMAGE_NAMES",
    "IMAGE_EXTENSIONS",
    "DefaultImage",
    "center_crop",
    "default_images",
    "files",
    "folders",
    "iter_folder",
    "list_images",
    "load_folder",
    "load_image",
    "load_images",
    "photos",
    "preprocess",
    "read_image",
    "resize_short_side",
    "transforms",
]
