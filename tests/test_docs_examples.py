"""The Python examples of the documentation run, so they cannot rot.

Every fenced ```` ```python ```` block of the pages in `PAGES` is executed, in order, in one
namespace per page, in a temporary working folder (figures a block saves land there), with
matplotlib's Agg backend. A block is marked by an HTML comment on the line just above its
fence (invisible on the rendered page):

* `<!-- docs-test: skip REASON -->`: never run (a download, a GPU, a long job);
* `<!-- docs-test: requires MODULE, MODULE -->`: run only when the modules import (e.g.
  `torch, captum`, installed by the `interop` extra, or `equinox`); otherwise the block
  is left out and `test_blocks_needing_modules_ran` skips, naming it. Blocks without such a
  marker must not use names that only a `requires` block defines.

Any other `docs-test:` comment is an error. A failing block is reported with its page and
line numbers (the code is compiled with the page's line numbers).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("captum.md", "integrated_gradients.md", "models.md", "sequences.md")

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARK = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


class Block(NamedTuple):
    line: int  # first line of the code, 1-based
    code: str
    skip: str | None  # reason, for `skip`
    requires: tuple[str, ...]  # modules, for `requires`


def blocks(page: str) -> list[Block]:
    """The python blocks of `docs/<page>` with their markers."""
    text = (DOCS / page).read_text()
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start(1)) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip, requires = None, ()
        mark = _MARK.search(before)
        if mark:
            word, _, rest = mark.group(1).partition(" ")
            if word == "skip":
                skip = rest.strip() or "marked skip"
            elif word == "requires" and rest.strip():
                requires = tuple(r.strip() for r in rest.split(",") if r.strip())
            else:
                raise ValueError(
                    f"docs/{page}:{line - 2}: unknown marker {mark.group(0)!r}; expected"
                    " <!-- docs-test: skip REASON --> or"
                    " <!-- docs-test: requires MODULE, ... -->"
                )
        found.append(Block(line, m.group(1), skip, requires))
    return found


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class PageRun(NamedTuple):
    namespace: dict
    missing: list[str]  # "line N (needs X)" for blocks left out


_RUNS: dict[str, PageRun | BaseException] = {}


def run_page(page: str, tmp_path_factory) -> PageRun:
    """Runs the page once per session (the tests share it); re-raises its error."""
    if page not in _RUNS:
        try:
            _RUNS[page] = _run(page, tmp_path_factory.mktemp(page.replace(".", "_")))
        except BaseException as err:  # noqa: BLE001 - re-raised by every caller
            _RUNS[page] = err
    run = _RUNS[page]
    if isinstance(run, BaseException):
        raise run
    return run


def _run(page: str, folder: Path) -> PageRun:
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a real module, so that classes defined on the page (Flax modules are dataclasses)
    # find their module in sys.modules
    module = types.ModuleType(f"docs_{page.replace('.', '_')}")
    module.__file__ = str(DOCS / page)
    namespace = module.__dict__
    missing = []
    cwd = os.getcwd()
    os.chdir(folder)
    sys.modules[module.__name__] = module
    try:
        for b in blocks(page):
            if b.skip:
                continue
            absent = [m for m in b.requires if not _available(m)]
            if absent:
                missing.append(f"docs/{page}:{b.line} (needs {', '.join(absent)})")
                continue
            code = compile("\n" * (b.line - 1) + b.code, str(DOCS / page), "exec")
            exec(code, namespace)  # noqa: S102 - our own documentation
            plt.close("all")
    finally:
        os.chdir(cwd)
        sys.modules.pop(module.__name__, None)
    return PageRun(namespace, missing)


def test_markers_are_known_and_pages_have_examples():
    for page in PAGES:
        found = blocks(page)
        assert len(found) >= 1, page
        assert any(not b.skip and not b.requires for b in found), page


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, tmp_path_factory):
    run_page(page, tmp_path_factory)


@pytest.mark.parametrize("page", PAGES)
def test_blocks_needing_modules_ran(page, tmp_path_factory):
    run = run_page(page, tmp_path_factory)
    if run.missing:
        pytest.skip("left out, a module is not installed: " + "; ".join(run.missing))


def test_captum_example_gives_captums_attributions(tmp_path_factory):
    """The page's Captum and jaxattr code give the same IG on the same weights, and the
    one-image call gives the batch's first row."""
    pytest.importorskip("torch", reason="torch is not installed (extra: interop)")
    pytest.importorskip(
        "captum.attr", reason="captum is not installed (extra: interop)"
    )
    ns = run_page("captum.md", tmp_path_factory).namespace
    ours, theirs = np.asarray(ns["result"].attributions), ns["captum_attributions"]
    assert ours.shape == theirs.shape == (2, 8, 8, 3)
    scale = np.abs(theirs).max()
    assert scale > 1e-3  # not a trivially zero map
    assert np.abs(ours - theirs).max() <= 1e-4 * scale
    np.testing.assert_allclose(ns["result"].delta, ns["captum_delta"], atol=1e-5)
    np.testing.assert_allclose(
        ns["one"].attributions, ours[0], rtol=1e-5, atol=1e-6 * scale
    )
    # completeness holds on both sides: the deltas are small against f(x) - f(x')
    gap = np.abs(ours.sum(axis=(1, 2, 3)) - ns["result"].delta)
    assert np.all(np.abs(ns["captum_delta"]) < 0.05 * gap)


def test_every_model_example_explains_the_same_way(tmp_path_factory):
    """models.md: each bring-your-own-model example's IG satisfies completeness and its
    batch agrees with the single-image call."""
    ns = run_page("models.md", tmp_path_factory).namespace
    names = ["jax", "linen", "nnx"] + (["equinox"] if "ig_equinox" in ns else [])
    for name in names:
        one, batch = ns[f"ig_{name}"], ns[f"batch_{name}"]
        assert batch.attributions.shape[0] == 2, name
        np.testing.assert_allclose(
            batch.attributions[0],
            one.attributions,
            rtol=1e-4,
            atol=1e-6 * float(np.abs(one.attributions).max()),
            err_msg=name,
        )
        gap = abs(float(one.aux["f_x"]) - float(one.aux["f_baseline"].mean()))
        assert abs(float(one.delta)) <= 0.05 * gap + 1e-6, name
