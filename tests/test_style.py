"""The code is formatted by ruff's formatter and passes `ruff check` with ruff's default
rules (ruff pinned in the `test` extra), so a formatting change or a lint finding shows
up as a red test, not as noise in later diffs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["jaxattr", "tests", "benchmarks", "experiments", "notebooks"]


def test_code_is_ruff_formatted():
    assert importlib.util.find_spec("ruff"), "ruff missing: pip install -e '.[test]'"
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *FOLDERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, (
        f"run `ruff format {' '.join(FOLDERS)}`:\n{out.stdout}{out.stderr}"
    )


def test_ruff_check_finds_nothing():
    if not importlib.util.find_spec("ruff"):
        pytest.skip("ruff is not installed: pip install -e '.[test]'")
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", *FOLDERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, (
        f"`ruff check {' '.join(FOLDERS)}` found:\n{out.stdout}{out.stderr}"
    )
