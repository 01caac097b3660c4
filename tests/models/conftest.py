"""Fixtures for the model tests: the shared assets beside the checkout (skip when
absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jaxattr.runs.data import assets_dir

ASSETS = assets_dir().resolve()


def asset(*parts: str) -> Path:
    """Path of a file in ``../shared/assets``; skips the test with a reason when
    absent."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared asset not found: {path} (the shared/ folder sits beside the repo "
            "root)"
        )
    return path
