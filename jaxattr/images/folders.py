"""Folders of images, with labels from a ``labels.tsv``, file names or class subfolders.

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
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from jaxattr.images.files import load_image

__all__ = ["IMAGE_EXTENSIONS", "iter_folder", "labeller", "list_images", "load_folder"]

#: File extensions picked up by the folder loaders (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


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


def labeller(
    root: Path, files: list[Path], labels, class_index: Mapping[str, int] | None
):
    """``(mode, label_of)``: the resolved ``labels`` mode and ``Path -> int | None``.

    ``files`` lie under ``root``; see the module docstring for the modes.
    """
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
    _, label_of = labeller(root, files, labels, class_index)
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
