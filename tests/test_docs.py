"""The project's reference in `docs/`: every pointer into it resolves.

* Every mention of a page of `docs/` (a path `docs/<page>.md`, optionally with an
  anchor `#<slug>`) in the project's text files names an existing page and, with an
  anchor, a heading of that page whose GitHub slug is the anchor.
* Every relative markdown link inside `docs/*.md` resolves: the file exists, and an
  anchor names a heading of the target page (or of the page itself for `#slug`).
* The checks fail on synthetic broken references, so they can fail.
* No file of the project points at the research notes outside the repository.

Anchors are GitHub's heading slugs: the heading's text (inline code, links and
emphasis markers removed) in lower case, every character other than letters, digits,
`_`, `-` and spaces dropped, spaces turned into `-`; a repeated slug gets `-1`, `-2`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]

#: Folders whose text files are checked, and the top-level files.
SCANNED_DIRS = ("jaxattr", "experiments", "tests", "notebooks", "benchmarks", "docs")
TOP_LEVEL = ("README.md",)
SUFFIXES = (".py", ".md", ".ipynb", ".cfg", ".cff", ".toml")
SKIPPED_DIRS = {
    ".venv",
    "venv",
    ".git",
    "build",
    "dist",
    "__pycache__",
    ".ipynb_checkpoints",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
}

#: `docs/<page>.md` or `docs/<page>.md#<anchor>` anywhere in a text.
DOC_REF = re.compile(r"(?<![\w-])docs/([\w-]+)\.md(?:#([\w-]+))?")
#: An inline markdown link `[text](target)` (optionally with a title).
MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def project_files(root: Path) -> list[Path]:
    """The text files checked: `SUFFIXES` under `SCANNED_DIRS`, plus the top-level
    README and the top-level `.cfg`, `.cff` and `.toml` files."""
    files = [root / name for name in TOP_LEVEL if (root / name).is_file()]
    files += sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix in (".cfg", ".cff", ".toml")
    )
    for folder in SCANNED_DIRS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root).parts
            if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in rel):
                continue
            if path.is_file() and path.suffix in SUFFIXES:
                files.append(path)
    return files


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (without the duplicate suffix)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links, images: text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = "".join(ch for ch in text.lower() if ch.isalnum() or ch in "_- ")
    return text.replace(" ", "-")


def _outside_fences(text: str) -> list[str]:
    """The lines of a markdown text that are not inside fenced code blocks."""
    lines, fence = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown page: its headings' slugs, duplicates numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(page.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _anchors_cached(page: Path, cache: dict[Path, set[str]]) -> set[str]:
    if page not in cache:
        cache[page] = anchors(page)
    return cache[page]


def broken_doc_refs(root: Path) -> list[str]:
    """`file:line: <reference> (why)` for each reference into the docs folder that
    does not resolve."""
    errors, cache = [], {}
    for path in project_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in DOC_REF.finditer(line):
                page, anchor = m.group(1), m.group(2)
                target = root / "docs" / f"{page}.md"
                where = f"{path.relative_to(root)}:{lineno}: {m.group(0)}"
                if not target.is_file():
                    errors.append(f"{where} (no page docs/{page}.md)")
                elif anchor and anchor not in _anchors_cached(target, cache):
                    errors.append(f"{where} (no heading with slug {anchor!r})")
    return errors


def broken_doc_links(root: Path) -> list[str]:
    """`page:line: target (why)` for each relative link in `docs/*.md` that does not
    resolve (external links and `mailto:` are not checked)."""
    errors, cache = [], {}
    docs = root / "docs"
    pages = sorted(docs.glob("*.md")) if docs.is_dir() else []
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        code = set()
        fence = None
        for i, line in enumerate(lines):
            m = FENCE.match(line)
            if m:
                fence = (
                    m.group(1)
                    if fence is None
                    else (None if m.group(1) == fence else fence)
                )
                code.add(i)
            elif fence is not None:
                code.add(i)
        for i, line in enumerate(lines):
            if i in code:
                continue
            for m in MD_LINK.finditer(re.sub(r"`[^`]*`", "", line)):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                    continue  # http:, https:, mailto:, ...
                file_part, _, anchor = target.partition("#")
                where = f"{page.relative_to(root)}:{i + 1}: {target}"
                dest = (page.parent / file_part).resolve() if file_part else page
                if not dest.exists():
                    errors.append(f"{where} (no file {file_part})")
                elif (
                    anchor
                    and dest.suffix == ".md"
                    and anchor not in _anchors_cached(dest, cache)
                ):
                    errors.append(f"{where} (no heading with slug {anchor!r})")
    return errors


#: What the project must not mention: the research notes outside the repository.
FORBIDDEN = ("algorithms" + ".md", "shared" + "/research")


def outside_references(root: Path) -> list[str]:
    """`file:line` for each mention of the research notes outside the repository."""
    hits = []
    for path in project_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(word in line for word in FORBIDDEN):
                hits.append(f"{path.relative_to(root)}:{lineno}")
    return hits


# ------------------------------------------------------------------------- the tests


def test_doc_references_resolve():
    errors = broken_doc_refs(REPO_DIR)
    assert not errors, "broken references into docs/:\n" + "\n".join(errors)


def test_doc_links_resolve():
    errors = broken_doc_links(REPO_DIR)
    assert not errors, "broken links in docs/*.md:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "heading, slug",
    [
        ("Insertion and deletion", "insertion-and-deletion"),
        ("Region perturbation (AUPC)", "region-perturbation-aupc"),
        ("The papers' protocols", "the-papers-protocols"),
        ("`full_gradients` and *FullGrad*", "full_gradients-and-fullgrad"),
        ("A [link](x.md) and <b>tag</b>", "a-link-and-tag"),
        ("MoRF / LeRF: 1.5x", "morf--lerf-15x"),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def _fake_repo(root: Path) -> None:
    """A repository with one page and references, some broken."""
    docs = root / "docs"
    docs.mkdir()
    (docs / "page.md").write_text(
        "# Page\n\n## Real heading\n\n## Real heading\n\n```\n## Not a heading\n```\n"
        "[ok](#real-heading) [ok](#real-heading-1) [bad](#not-a-heading)\n"
        "[ok](other.md#other) [bad](missing.md) [bad](other.md#nope)\n"
        "[ok](https://example.org/x.md) `[ignored](nowhere.md)`\n",
        encoding="utf-8",
    )
    (docs / "other.md").write_text("# Other\n", encoding="utf-8")
    pkg = root / "jaxattr"
    pkg.mkdir()
    d = "docs" + "/"  # kept apart so that this file holds no reference itself
    (pkg / "mod.py").write_text(
        f'"""See {d}page.md and {d}page.md#real-heading-1.\n\n'
        f'Broken: {d}page.md#missing, {d}nope.md, {d}nope.md#x."""\n',
        encoding="utf-8",
    )
    (root / "README.md").write_text(f"[docs]({d}other.md#other)\n", encoding="utf-8")
    skipped = root / "jaxattr" / "__pycache__"
    skipped.mkdir()
    (skipped / "old.py").write_text(f"{d}gone.md\n", encoding="utf-8")


def test_checks_detect_broken_references(tmp_path):
    _fake_repo(tmp_path)
    errors = broken_doc_refs(tmp_path)
    assert len(errors) == 3, errors
    assert "page.md#missing (no heading with slug 'missing')" in errors[0]
    missing = "(no page " + "docs" + "/nope.md)"
    assert errors[1].endswith("nope.md " + missing)
    assert errors[2].endswith("nope.md#x " + missing)
    assert all(e.startswith("jaxattr/mod.py:3:") for e in errors)


def test_checks_detect_broken_links(tmp_path):
    _fake_repo(tmp_path)
    errors = broken_doc_links(tmp_path)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "#not-a-heading (no heading with slug 'not-a-heading')",
        "missing.md (no file missing.md)",
        "other.md#nope (no heading with slug 'nope')",
    ], errors


def test_outside_reference_check_detects_a_mention(tmp_path):
    _fake_repo(tmp_path)
    assert outside_references(tmp_path) == []
    (tmp_path / "jaxattr" / "mod.py").write_text(
        "# see ../" + FORBIDDEN[1] + "/" + FORBIDDEN[0] + "\n", encoding="utf-8"
    )
    assert outside_references(tmp_path) == ["jaxattr/mod.py:1"]


def test_no_references_outside_the_repository():
    hits = outside_references(REPO_DIR)
    assert not hits, (
        "files mention the research notes outside the repository (point into docs/"
        " instead):\n" + "\n".join(hits)
    )
