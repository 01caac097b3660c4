"""Image files (JPEG, PNG) to float32 HWC pixels in [0, 1]: read, load, load several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxattr.images.transforms import pillow, preprocess, to_rgb

__all__ = ["load_image", "load_images", "read_image"]

_FORMATS = ("JPEG", "PNG", "MPO")  # MPO: multi-picture JPEG written by many cameras
# Modes with an unambiguous 8-bit RGB conversion.  16-bit / 32-bit / float modes are refused.
_MODES = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
)


def read_image(path, *, background=None, exif_transpose: bool = True):
    """Open a JPEG/PNG file and return it as an 8-bit RGB ``PIL.Image.Image``.

    ``background``: ``None`` drops an alpha channel (as ``Image.convert("RGB")`` and
    torchvision do); an ``(r, g, b)`` tuple of 0..255 ints composites the image over that
    colour instead.  ``exif_transpose`` applies the EXIF orientation tag (camera photos).

    Raises ``FileNotFoundError`` for a missing path, ``IsADirectoryError`` for a folder and
    ``ValueError`` for undecodable files, other formats and unsupported pixel modes.
    """
    Image, ImageOps = pillow()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image path={str(p)!r}: no such file")
    if p.is_dir():
        raise IsADirectoryError(
            f"image path={str(p)!r} is a directory; expected an image file "
            "(use load_folder/iter_folder for folders)"
        )
    try:
        img = Image.open(p)
        img.load()  # decode now so truncated/corrupt data fails here
    except (
        Exception
    ) as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ValueError(
            f"image path={str(p)!r}: cannot decode file as an image "
            f"(expected a JPEG or PNG file; {type(err).__name__}: {err})"
        ) from err
    if img.format not in _FORMATS:
        raise ValueError(
            f"image path={str(p)!r}: expected a JPEG or PNG file, got format {img.format!r}"
        )
    if img.mode not in _MODES:
        raise ValueError(
            f"image path={str(p)!r}: unsupported pixel mode {img.mode!r}; expected one of "
            f"{list(_MODES)} (16-bit and float images are not converted implicitly)"
        )
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    return to_rgb(img, background)


def load_image(
    path,
    size: int | tuple[int, int] | None = 224,
    resize: int | None = 256,
    *,
    resample: str | int = "bicubic",
    background=None,
    exif_transpose: bool = True,
) -> np.ndarray:
    """Load one JPEG/PNG file and preprocess it: float32 ``[size, size, 3]`` in [0, 1].

    With ``size=None, resize=None`` the full-resolution image ``[H, W, 3]`` is returned.
    ``background`` / ``exif_transpose`` and the errors are as in :func:`read_image`.
    """
    img = read_image(path, background=background, exif_transpose=exif_transpose)
    return preprocess(img, size=size, resize=resize, resample=resample)


def load_images(paths: Sequence, size=224, resize=256, **kwargs) -> np.ndarray:
    """Load several files into one batch: float32 ``[N, size, size, 3]`` in [0, 1]."""
    paths = list(paths)
    if not paths:
        raise ValueError(
            "paths: expected at least one image path, got an empty sequence"
        )
    if size is None:
        raise ValueError("size: load_images stacks images, so size must not be None")
    return np.stack([load_image(p, size=size, resize=resize, **kwargs) for p in paths])
