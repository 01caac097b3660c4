"""Shared fixtures: the `../shared` assets folder (skipped cleanly when absent)."""

from pathlib import Path

import pytest

from jaxattr.runs.data import shared_dir as _shared_dir

#: `$JAXATTR_SHARED`, else `shared` beside the checkout (`jaxattr.runs.data.shared_dir`).
SHARED = _shared_dir()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "assets").is_dir():
        pytest.skip(
            f"shared assets not found at {SHARED} (they sit beside the checkout)"
        )
    return SHARED
