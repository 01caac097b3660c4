"""The code is formatted by ruff's formatter (pinned in the `test` extra), so a
formatting change shows up as a red test, not as noise in later diffs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["jaxattr", "tests", "benchmarks", "experiments", "notebooks"]


def test_code_is_ruff_formatted():
    assert importlib.util.find_spec("ruff"), "ruff missing: pip install -e '.[test]'"
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *FOLDERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, (
        f"run `ruff format {' '.join(FOLDERS)}`:\n{out.stdout}{out.stderr}"
    )
