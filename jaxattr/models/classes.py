"""Class names of the datasets the model ports were trained on."""

from __future__ import annotations

import functools
import importlib.resources

__all__ = ["CIFAR10_CLASSES", "imagenet_class_names"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard (sorted WordNet id) order, as
    short names (first WordNet synonym, spaces as underscores: ``'espresso'``,
    ``'tiger_cat'``)."""
    text = (
        importlib.resources.files("jaxattr.models")
        .joinpath("imagenet_classes.tsv")
        .read_text("utf-8")
    )
    rows = [
        line.split("\t")
        for line in text.splitlines()
        if line and not line.startswith("#")
    ]
    names = tuple(r[2] for r in rows[1:])
    if len(names) != 1000:
        raise RuntimeError(
            f"imagenet_classes.tsv: expected 1000 classes, found {len(names)}"
        )
    return names
