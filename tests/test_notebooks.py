"""The notebooks in `notebooks/`: paired with their jupytext sources, Colab-ready, executable.

Each notebook's source of truth is `notebooks/<name>.py` (jupytext percent format); the
paired `<name>.ipynb` must hold the same cells (regenerate with
`jupytext --to ipynb notebooks/<name>.py`) and no outputs. Every notebook is executed with
`JAXATTR_NOTEBOOK_TINY=1` (tiny settings) through nbclient and a `python3` kernel.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = (
    "quickstart",
    "idg",
    "smooth_taylor",
    "guided_nonlinearity",
    "dga",
    "metrics",
)
CELL_TIMEOUT_S = 180  # per cell; the whole tiny run takes well under two minutes
LOCAL_PATHS = re.compile(r"/work\b|\.\./shared|/home/|/Users/|/tmp/|[A-Za-z]:\\\\")
TINY_ENV = "JAXATTR_NOTEBOOK_TINY"


def _names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def _from_py(name: str):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed")
    return jupytext.read(NOTEBOOKS_DIR / f"{name}.py")


def _ipynb(name: str):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def _differences(src_nb, ipynb_nb) -> list[str]:
    """Differences between two notebooks' cells (empty: in sync)."""
    src, nb = _cells(src_nb), _cells(ipynb_nb)
    problems = []
    if len(src) != len(nb):
        problems.append(f"{len(src)} cells in the .py, {len(nb)} in the .ipynb")
    for i, (a, b) in enumerate(zip(src, nb)):
        if a != b:
            problems.append(f"cell {i} differs: {a[1][:60]!r} vs {b[1][:60]!r}")
    return problems


def test_every_notebook_is_there():
    assert _names() == sorted(EXPECTED)
    ipynbs = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert ipynbs == sorted(EXPECTED), "each .py needs its paired .ipynb and vice versa"


@pytest.mark.parametrize("name", EXPECTED)
def test_ipynb_in_sync_with_py(name):
    problems = _differences(_from_py(name), _ipynb(name))
    assert not problems, (
        f"notebooks/{name}.ipynb is out of sync with notebooks/{name}.py; regenerate it with"
        f" `jupytext --to ipynb notebooks/{name}.py`:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_ipynb_has_no_outputs(name):
    raw = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name}.ipynb cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{name}.ipynb cell {i} was run"


def test_sync_check_detects_a_change():
    nb = _from_py("quickstart")
    assert not _differences(nb, _from_py("quickstart"))
    edited = _from_py("quickstart")
    edited.cells[-1].source += "\nprint('edited')"
    assert _differences(nb, edited)
    edited.cells.pop()
    assert _differences(nb, edited)


@pytest.mark.parametrize("name", EXPECTED)
def test_colab_ready(name):
    nb = _from_py(name)
    text = (NOTEBOOKS_DIR / f"{name}.py").read_text()
    ipynb_text = (NOTEBOOKS_DIR / f"{name}.ipynb").read_text()
    for where, t in ((f"{name}.py", text), (f"{name}.ipynb", ipynb_text)):
        hits = sorted({m.group(0) for m in LOCAL_PATHS.finditer(t)})
        assert not hits, f"{where} contains local paths: {hits}"
    assert nb.cells[0].cell_type == "markdown", (
        "a notebook opens with its title and idea"
    )
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    install = code[0]
    assert 'find_spec("jaxattr")' in install and "pip" in install, (
        "the first code cell installs jaxattr when it is not importable"
    )
    assert "JAXATTR_REPO" in install and "PLACEHOLDER" in install
    assert TINY_ENV in "\n".join(code[1:3]), (
        "the TINY switch comes right after the install"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


# ----------------------------------------------------------------------------- execution


def _execute(nb, cwd: Path):
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)"
    )
    pytest.importorskip(
        "ipykernel", reason="ipykernel is not installed (no python3 kernel)"
    )
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


@pytest.fixture
def tiny_env(monkeypatch, request):
    # The kernel inherits this process's environment.
    monkeypatch.setenv(TINY_ENV, "1")
    # CI time is XLA compile time: cheaper CPU code generation, and a persistent
    # compilation cache in pytest's cache folder (reruns skip the compiles).
    flags = os.environ.get("XLA_FLAGS", "")
    fast = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    monkeypatch.setenv("XLA_FLAGS", f"{flags} {fast}".strip())
    cache = request.config.cache.mkdir("jax-compilation-cache-notebooks")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_executes_tiny(name, tiny_env, tmp_path):
    nb = _ipynb(name)
    t0 = time.perf_counter()
    out = _execute(nb, tmp_path)  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - t0
    errors = [
        o
        for c in out.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    print(f"{name}: executed in {seconds:.1f} s")


def test_execution_fails_on_an_error(tiny_env, tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)"
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import os\nassert os.environ['JAXATTR_NOTEBOOK_TINY']"
            ),
            nbformat.v4.new_code_cell("raise RuntimeError('boom')"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="boom"):
        _execute(nb, tmp_path)
