"""Image loading and ImageNet-style preprocessing (Pillow + numpy, no JAX).

Every loader returns ``float32`` arrays in **HWC** layout with pixels in ``[0, 1]``.
Normalisation (mean/std, ``(x - 127) / 128``, ...) is *not* done here: it belongs inside
the model function, so that baselines such as "black" are simply ``zeros``.

The evaluation transform is the usual one: resize so that the short side is ``resize``
pixels (bicubic, long side ``int(resize * long / short)`` as in torchvision), then take the
centred ``size x size`` crop (offsets ``round((h - size) / 2)``, as in torchvision).

Folder layouts understood by :func:`iter_folder` (``labels=`` argument):

* ``"tsv"``: a ``labels.tsv`` file at the folder root, tab separated, with a header row that
  has a ``file`` (or ``path``) column and an ``index`` (or ``label``) column holding the integer
  class.  ``file`` is matched against the image's path relative to the folder, and then against
  its bare file name (which must be unique in the folder).
* ``"filename"``: the file name starts with the decimal class index and an underscore, e.g.
  ``967_espresso.jpg``; or, when ``class_index`` is given, with a key of it followed by an
  underscore (e.g. a wnid: ``n07920052_espresso.JPEG``).
* ``"subfolder"``: one subfolder per class (torchvision ``ImageFolder``): the label is
  ``class_index[subfolder]`` when ``class_index`` is given, else ``int(subfolder)`` when every
  subfolder name is an integer, else the position of the subfolder in sorted order.
* ``"auto"`` (default): ``"tsv"`` if ``labels.tsv`` exists, else ``"filename"`` if every file
  matches that convention, else ``"subfolder"`` if every image lies in a first-level subfolder
  and there are at least two of them, else no labels (``None``).
* ``None``: no labels.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_IMAGE_NAMES",
    "DefaultImage",
    "read_image",
    "resize_short_side",
    "center_crop",
    "preprocess",
    "load_image",
    "load_images",
    "list_images",
    "iter_folder",
    "load_folder",
    "default_images",
]

#: File extensions picked up by the folder loaders (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
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
_RESAMPLE = {
    "nearest": 0,
    "bilinear": 2,
    "bicubic": 3,
    "lanczos": 1,
    "box": 4,
    "hamming": 5,
}


def _pil():
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


def read_image(path, *, background=None, exif_transpose: bool = True):
    """Open a JPEG/PNG file and return it as an 8-bit RGB ``PIL.Image.Image``.

    ``background``: ``None`` drops an alpha channel (as ``Image.convert("RGB")`` and
    torchvision do); an ``(r, g, b)`` tuple of 0..255 ints composites the image over that
    colour instead.  ``exif_transpose`` applies the EXIF orientation tag (camera photos).

    Raises ``FileNotFoundError`` for a missing path, ``IsADirectoryError`` for a folder and
    ``ValueError`` for undecodable files, other formats and unsupported pixel modes.
    """
    Image, ImageOps = _pil()
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
    return _to_rgb(img, background)


def _to_rgb(img, background):
    Image, _ = _pil()
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
    Image, _ = _pil()
    if isinstance(image, Image.Image):
        return "pil", _to_rgb(image, None)
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
    Image, _ = _pil()
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
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
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


def _is_image_file(p: Path) -> bool:
    return (
        p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not p.name.startswith(".")
    )


def list_images(folder, *, recursive: bool = True) -> list[Path]:
    """Image files (``IMAGE_EXTENSIONS``) under ``folder``, sorted by relative path.

    Raises ``FileNotFoundError`` (missing), ``NotADirectoryError`` (a file) or
    ``ValueError`` (no image files).
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"folder={str(root)!r}: no such directory")
    if not root.is_dir():
        raise NotADirectoryError(f"folder={str(root)!r} is not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive:
            dirnames[:] = []
        found.extend(
            p for p in (Path(dirpath) / f for f in filenames) if _is_image_file(p)
        )
    if not found:
        raise ValueError(
            f"folder={str(root)!r} contains no image files "
            f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)}, case-insensitive)"
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


_FILENAME_INT = re.compile(r"^(\d+)_")


def _read_labels_tsv(path: Path) -> dict[str, int]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        cols = reader.fieldnames or []
        fcol = next((c for c in ("file", "path", "filename") if c in cols), None)
        lcol = next(
            (c for c in ("index", "label", "class", "target") if c in cols), None
        )
        if fcol is None or lcol is None:
            raise ValueError(
                f"labels file {str(path)!r}: expected a tab-separated header with a 'file' "
                f"(or 'path') column and an 'index' (or 'label') column, got columns {cols}"
            )
        table = {}
        for lineno, row in enumerate(reader, start=2):
            try:
                table[row[fcol]] = int(row[lcol])
            except (TypeError, ValueError):
                raise ValueError(
                    f"labels file {str(path)!r} line {lineno}: expected an integer "
                    f"{lcol!r}, got {row.get(lcol)!r}"
                ) from None
    return table


def _labeller(
    root: Path, files: list[Path], labels, class_index: Mapping[str, int] | None
):
    """Return (mode, function Path -> int | None)."""
    modes = ("auto", "tsv", "filename", "subfolder", None)
    if labels not in modes:
        raise ValueError(f"labels: expected one of {list(modes)}, got {labels!r}")
    rel = [f.relative_to(root) for f in files]

    def from_name(p: Path):
        m = _FILENAME_INT.match(p.name)
        if m:
            return int(m.group(1))
        if class_index is not None and "_" in p.name:
            return class_index.get(p.name.split("_", 1)[0])
        return None

    if labels == "auto":
        if (root / "labels.tsv").is_file():
            labels = "tsv"
        elif all(from_name(r) is not None for r in rel):
            labels = "filename"
        elif (
            all(len(r.parts) == 2 for r in rel) and len({r.parts[0] for r in rel}) >= 2
        ):
            labels = "subfolder"
        else:
            labels = None
    if labels is None:
        return None, lambda p: None

    if labels == "tsv":
        tsv = root / "labels.tsv"
        if not tsv.is_file():
            raise FileNotFoundError(f"labels='tsv' but {str(tsv)!r} does not exist")
        table = _read_labels_tsv(tsv)
        names: dict[str, list[str]] = {}
        for r in rel:
            names.setdefault(r.name, []).append(r.as_posix())

        def from_tsv(p: Path):
            r = p.relative_to(root)
            if r.as_posix() in table:
                return table[r.as_posix()]
            if r.name in table:
                if len(names[r.name]) > 1:
                    raise ValueError(
                        f"labels file {str(tsv)!r}: file name {r.name!r} is ambiguous, it "
                        f"matches {names[r.name]}; use paths relative to the folder"
                    )
                return table[r.name]
            raise ValueError(
                f"labels file {str(tsv)!r} has no row for image {r.as_posix()!r}"
            )

        return "tsv", from_tsv

    if labels == "filename":

        def from_file(p: Path):
            lab = from_name(p)
            if lab is None:
                raise ValueError(
                    f"image {str(p)!r}: file name does not start with a class index and '_' "
                    "(e.g. '967_espresso.jpg')"
                    + (
                        ""
                        if class_index is None
                        else " or a key of class_index and '_'"
                    )
                )
            return lab

        return "filename", from_file

    # subfolder
    bad = [r.as_posix() for r in rel if len(r.parts) != 2]
    if bad:
        raise ValueError(
            f"labels='subfolder': expected every image in a first-level subfolder of "
            f"{str(root)!r}, got {bad[:3]}"
        )
    classes = sorted({r.parts[0] for r in rel})
    if class_index is not None:
        missing = [c for c in classes if c not in class_index]
        if missing:
            raise ValueError(f"class_index: no entry for subfolder(s) {missing[:5]}")
        mapping = {c: int(class_index[c]) for c in classes}
    elif all(c.isdigit() for c in classes):
        mapping = {c: int(c) for c in classes}
    else:
        mapping = {c: i for i, c in enumerate(classes)}
    return "subfolder", lambda p: mapping[p.relative_to(root).parts[0]]


def iter_folder(
    folder,
    size: int | tuple[int, int] | None = 224,
    resize: int | None = 256,
    *,
    labels: str | None = "auto",
    class_index: Mapping[str, int] | None = None,
    recursive: bool = True,
    **kwargs,
) -> Iterator[tuple[Path, np.ndarray, int | None]]:
    """Yield ``(path, image, label)`` for every image under ``folder`` (sorted order).

    ``image`` is float32 ``[size, size, 3]`` in [0, 1]; ``label`` an int or ``None``.
    See the module docstring for the ``labels`` conventions.  The folder is listed and the
    labels resolved before the first image is decoded, so layout errors surface at once.
    """
    root = Path(folder)
    files = list_images(root, recursive=recursive)
    _, label_of = _labeller(root, files, labels, class_index)
    resolved = [(f, label_of(f)) for f in files]
    for f, lab in resolved:
        yield f, load_image(f, size=size, resize=resize, **kwargs), lab


def load_folder(folder, size=224, resize=256, **kwargs):
    """Load a whole folder: ``(paths, images [N, size, size, 3] float32, labels)``.

    ``labels`` is an int64 array ``[N]`` when every image has a label, else a list with
    ``None`` entries.
    """
    if size is None:
        raise ValueError("size: load_folder stacks images, so size must not be None")
    paths, images, labs = [], [], []
    for p, img, lab in iter_folder(folder, size=size, resize=resize, **kwargs):
        paths.append(p)
        images.append(img)
        labs.append(lab)
    out_labels = (
        np.asarray(labs, np.int64) if all(l is not None for l in labs) else labs
    )
    return paths, np.stack(images), out_labels


# ----------------------------------------------------------------------------- default photos


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
