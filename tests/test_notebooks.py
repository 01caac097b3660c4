"""The notebooks in `notebooks/`: paired with their jupytext sources, Colab-ready, executable.

Each notebook's source of truth is `notebooks/<name>.py` (jupytext percent format); the
paired `<name>.ipynb` must hold the same cells (regenerate with
`jupytext --to ipynb notebooks/<name>.py`) and no outputs. Every notebook is executed with
`JAXATTR_NOTEBOOK_TINY=1` (tiny settings) through nbclient and a `python3` kernel.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_DIR / "notebooks"
EXPECTED = (
    "quickstart",
    "idg",
    "smooth_taylor",
    "guided_nonlinearity",
    "dga",
    "metrics",
    "tabular",
    "sequence",
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
    assert "JAXATTR_SOURCE" in install
    assert "jax.devices()" in code[1] and "jax.default_backend()" in code[1], (
        "the second code cell reports the accelerator"
    )
    assert TINY_ENV in "\n".join(code[1:3]), (
        "the TINY switch comes right after the install"
    )
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


# ------------------------------------------------- the source location: setup.cfg's url


def _setup_url() -> str:
    """The repository's URL, `setup.cfg`'s `[metadata] url`: the one place it is set."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO_DIR / "setup.cfg")
    return cfg["metadata"]["url"].strip()


def _colab_url(name: str) -> str:
    owner_repo = _setup_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}.ipynb"


COLAB_URL = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\]\"'`<>]+")


def test_setup_cfg_names_the_repository():
    url = _setup_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    cfg = configparser.ConfigParser()
    cfg.read(REPO_DIR / "setup.cfg")
    lines = cfg["metadata"]["project_urls"].strip().splitlines()
    project_urls = {
        k.strip(): v.strip() for k, v in (line.split("=", 1) for line in lines)
    }
    assert set(project_urls) == {"Source", "Documentation", "Issues"}
    assert project_urls["Source"] == url
    assert all(u.startswith(url) for u in project_urls.values()), project_urls


def _install_cell(name: str) -> str:
    return next(c.source for c in _from_py(name).cells if c.cell_type == "code")


def _run_install_cell(source: str, monkeypatch, *, colab: bool, importable: bool):
    """Executes an install cell with pip replaced by a recorder: the pip commands run."""
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd))
    if colab:
        monkeypatch.setitem(
            sys.modules, "google.colab", types.ModuleType("google.colab")
        )
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: find_spec(n, *a) if importable or n != "jaxattr" else None,
    )
    code = compile(source, "<install cell>", "exec")
    exec(code, {"__name__": "__main__"})  # noqa: S102 (the notebook's own cell)
    return calls


@pytest.mark.parametrize("name", EXPECTED)
def test_install_cell_reads_one_variable(name, monkeypatch, tmp_path):
    source = _install_cell(name)
    tree = ast.parse(source)
    assigned = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "JAXATTR_SOURCE" for t in node.targets)
    ]
    assert len(assigned) == 1, "JAXATTR_SOURCE is assigned exactly once"
    value = assigned[0].value
    assert isinstance(value, ast.Constant) and isinstance(value.value, str)
    assert value.value == f"git+{_setup_url()}@main", (
        f"{name}: JAXATTR_SOURCE must be setup.cfg's url, {_setup_url()!r}"
    )
    # No other place in the code names a location (comments may show examples).
    others = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n is not value
    ]
    assert not [s for s in others if "github" in s or "git+" in s or ".whl" in s]

    def pip_targets(calls):
        assert all(c[1:4] == ["-m", "pip", "install"] for c in calls), calls
        return [c[-1] for c in calls]

    # Offline, where jaxattr is importable (CI, a clone): nothing is installed.
    assert _run_install_cell(source, monkeypatch, colab=False, importable=True) == []
    # On Colab, or where jaxattr is missing: jaxattr[viz] from JAXATTR_SOURCE.
    want = f"jaxattr[viz] @ git+{_setup_url()}@main"
    for colab, importable in ((True, True), (False, False)):
        calls = _run_install_cell(
            source, monkeypatch, colab=colab, importable=importable
        )
        assert pip_targets(calls) == [want]
    # The one variable redirects the install: a fork, a local wheel.
    assignment = ast.get_source_segment(source, assigned[0])
    fork = "git+https://github.com/someone/jaxattr@a-branch"
    wheel = "dist/jaxattr-0.1.0-py3-none-any.whl"
    monkeypatch.chdir(tmp_path)
    for new, expected in (
        (fork, f"jaxattr[viz] @ {fork}"),
        (wheel, f"jaxattr[viz] @ {(tmp_path / wheel).resolve().as_uri()}"),
    ):
        edited = source.replace(assignment, f"JAXATTR_SOURCE = {new!r}")
        calls = _run_install_cell(edited, monkeypatch, colab=True, importable=True)
        assert pip_targets(calls) == [expected]


def _check_colab_urls(where: str, text: str, names) -> list[str]:
    """Every Colab link in `text` is built from setup.cfg's url and names a notebook."""
    urls = COLAB_URL.findall(text)
    allowed = {_colab_url(n) for n in names}
    wrong = sorted(set(urls) - allowed)
    assert not wrong, (
        f"{where}: Colab links not built from setup.cfg's url ({_setup_url()})"
        f" or naming another notebook: {wrong}"
    )
    return urls


@pytest.mark.parametrize("name", EXPECTED)
def test_colab_badge(name):
    nb = _from_py(name)
    assert _colab_url(name) in nb.cells[0].source, (
        f"{name}: the first cell carries an Open-in-Colab badge to {_colab_url(name)}"
    )
    assert "colab-badge.svg" in nb.cells[0].source
    for where, text in (
        (f"{name}.py", (NOTEBOOKS_DIR / f"{name}.py").read_text()),
        (f"{name}.ipynb", (NOTEBOOKS_DIR / f"{name}.ipynb").read_text()),
    ):
        _check_colab_urls(where, text, [name])


def test_colab_badges_in_the_readmes():
    text = (NOTEBOOKS_DIR / "README.md").read_text()
    urls = _check_colab_urls("notebooks/README.md", text, EXPECTED)
    assert set(urls) == {_colab_url(n) for n in EXPECTED}
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `(\w+)` \|.*$", text, re.MULTILINE)
    }
    for name in EXPECTED:
        assert _colab_url(name) in rows.get(name, ""), (
            f"notebooks/README.md: {name}'s row lacks its badge"
        )
    _check_colab_urls("README.md", (REPO_DIR / "README.md").read_text(), EXPECTED)


PLACEHOLDER = "<" + "org" + ">"


def _repository_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_DIR,
            capture_output=True,
            check=True,
        ).stdout
        files = [REPO_DIR / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # no git: every file but caches
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
        files = [
            p
            for p in REPO_DIR.rglob("*")
            if not skip.intersection(p.relative_to(REPO_DIR).parts)
        ]
    return [f for f in files if f.is_file()]


def test_no_placeholder_in_the_repository():
    files = _repository_files()
    assert any(f.name == "setup.cfg" for f in files)
    hits = [
        str(f.relative_to(REPO_DIR))
        for f in files
        if PLACEHOLDER.encode() in f.read_bytes()
    ]
    assert not hits, f"placeholder {PLACEHOLDER} left in: {hits}"


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
    fast = (
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        " --xla_cpu_use_fusion_emitters=false"
    )
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
