"""Image arrays and PIL images to float32 HWC pixels in [0, 1]: resize, crop, preprocess.

The evaluation transform is the usual one: resize so that the short side is ``resize``
pixels (bicubic, long side ``int(resize * long / short)`` as in torchvision), then take the
centred ``size x size`` crop (offsets ``round((h - size) / 2)``, as in torchvision).
"""

from __future__ import annotations

import numpy as np

__all__ = ["center_crop", "pillow", "preprocess", "resize_short_side", "to_rgb"]

_RESAMPLE = {
    "nearest": 0,
    "bilinear": 2,
    "bicubic": 3,
    "lanczos": 1,
    "box": 4,
    "hamming": 5,
}


def pillow():
    """Pillow's ``(Image, ImageOps)`` modules, with an install hint when missing."""
    try:
        from PIL import Image, ImageOps
    except (
        ImportError
    ) as err:  # pragma: no cover - Pillow is a dependency of matplotlib
        raise ImportError(
            "jaxattr.images needs Pillow: `pip install pillow` (it comes with the default "
            "install through matplotlib / scikit-image)"
        ) from err
    return Image, ImageOps


def _resample_code(resample: str | int) -> int:
    if isinstance(resample, str):
        key = resample.lower()
        if key not in _RESAMPLE:
            raise ValueError(
                f"resample: expected one of {sorted(_RESAMPLE)}, got {resample!r}"
            )
        return _RESAMPLE[key]
    return int(resample)


def to_rgb(img, background):
    """An 8-bit RGB ``PIL.Image``: alpha dropped, or composited over ``background``."""
    Image, _ = pillow()
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    has_alpha = img.mode in ("LA", "La", "PA", "RGBA", "RGBa")
    if has_alpha and background is not None:
        bg = tuple(int(c) for c in background)
        if len(bg) != 3 or not all(0 <= c <= 255 for c in bg):
            raise ValueError(
                f"background: expected an (r, g, b) tuple of ints in 0..255, got {background!r}"
            )
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, bg + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def _as_hw_size(size, name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected an int or (height, width), got {size!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name}: expected positive sizes, got {size!r}")
    return h, w


def _to_pil_or_float(image):
    """Return ``("pil", PIL image)`` for uint8 input / PIL images, ``("float", HWC float32)``."""
    Image, _ = pillow()
    if isinstance(image, Image.Image):
        return "pil", to_rgb(image, None)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image: expected a PIL image or an array of shape [H, W], [H, W, 1], [H, W, 3] "
            f"or [H, W, 4], got shape {arr.shape}"
        )
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return "pil", Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(
            f"image: expected uint8 or float pixels, got dtype {arr.dtype}"
        )
    if np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"image: integer arrays must be uint8 (0..255), got dtype {arr.dtype}; "
            "convert to float in [0, 1] first"
        )
    arr = arr.astype(np.float32)
    if arr.size and (np.nanmin(arr) < -1e-6 or np.nanmax(arr) > 1 + 1e-6):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        hint = (
            "; these look like 0-255 pixels: divide by 255, or pass them as uint8"
            if hi > 2 and lo >= -1e-6
            else ""
        )
        raise ValueError(
            f"image: float pixels must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
            f"{hint}"
        )
    return "float", arr


def _resize_float(arr: np.ndarray, hw: tuple[int, int], resample: int) -> np.ndarray:
    Image, _ = pillow()
    h, w = hw
    chans = [
        np.asarray(
            Image.fromarray(arr[:, :, c], "F").resize((w, h), resample), np.float32
        )
        for c in range(arr.shape[2])
    ]
    return np.clip(np.stack(chans, axis=2), 0.0, 1.0)


def _short_side_hw(h: int, w: int, resize: int) -> tuple[int, int]:
    if h <= w:
        return resize, int(resize * w / h)
    return int(resize * h / w), resize


def resize_short_side(
    image, resize: int = 256, *, resample: str | int = "bicubic"
) -> np.ndarray:
    """Resize so the short side is ``resize`` px, keeping the aspect ratio.

    ``image``: PIL image, uint8 ``[H, W(, C)]`` or float ``[H, W(, C)]`` in [0, 1].
    Returns float32 ``[H', W', 3]`` in [0, 1] (uint8 input is resized in 8 bits like PIL).
    """
    if not isinstance(resize, (int, np.integer)) or resize <= 0:
        raise ValueError(f"resize: expected a positive int, got {resize!r}")
    kind, img = _to_pil_or_float(image)
    code = _resample_code(resample)
    if kind == "pil":
        w, h = img.size
        nh, nw = _short_side_hw(h, w, int(resize))
        if (nh, nw) != (h, w):
            img = img.resize((nw, nh), code)
        return np.asarray(img, np.float32) / np.float32(255.0)
    h, w = img.shape[:2]
    nh, nw = _short_side_hw(h, w, int(resize))
    return img if (nh, nw) == (h, w) else _resize_float(img, (nh, nw), code)


def center_crop(image: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Centre crop ``[H, W, ...] -> [size_h, size_w, ...]`` (top = round((H - size_h) / 2))."""
    arr = np.asarray(image)
    ch, cw = _as_hw_size(size, "size")
    if arr.ndim < 2:
        raise ValueError(
            f"image: expected at least 2 dimensions [H, W, ...], got shape {arr.shape}"
        )
    h, w = arr.shape[:2]
    if ch > h or cw > w:
        raise ValueError(
            f"size: crop {(ch, cw)} is larger than the image {(h, w)}; "
            "resize first (e.g. resize >= size)"
        )
    top = round((h - ch) / 2.0)
    left = round((w - cw) / 2.0)
    return arr[top : top + ch, left : left + cw]


def preprocess(
    image,
    size: int | tuple[int, int] | None = 224,
    resize: int | None = 256,
    *,
    resample: str | int = "bicubic",
) -> np.ndarray:
    """Resize the short side to ``resize`` then centre-crop ``size``; pixels in [0, 1].

    ``image``: PIL image, uint8 ``[H, W(, C)]`` or float ``[H, W(, C)]`` in [0, 1]
    (grey is repeated to 3 channels, alpha is dropped).  ``resize=None`` skips the resize,
    ``size=None`` skips the crop.  Returns float32 ``[size, size, 3]``.
    """
    if resize is not None:
        arr = resize_short_side(image, resize, resample=resample)
    else:
        kind, img = _to_pil_or_float(image)
        arr = np.asarray(img, np.float32) / np.float32(255.0) if kind == "pil" else img
    if size is not None:
        arr = center_crop(arr, size)
    return np.ascontiguousarray(arr, dtype=np.float32)
