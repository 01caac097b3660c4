"""Shared fixtures: the `../shared` assets folder (skipped cleanly when absent)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "assets").is_dir():
        pytest.skip(
            f"shared assets not found at {SHARED} (they sit beside the checkout)"
        )
    return SHARED
