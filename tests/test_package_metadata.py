"""The licence and citation files that ship with the repository agree with setup.cfg."""

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _metadata() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["metadata"]


def test_licence_text_is_the_declared_licence():
    meta = _metadata()
    assert meta["license"] == "Apache-2.0"
    assert meta["license_files"].strip() == "LICENSE"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_citation_cites_jaxattr_and_the_five_papers():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["license"] == _metadata()["license"]
    import jaxattr

    assert str(cff["version"]) == jaxattr.__version__
    titles = [r["title"] for r in cff["references"]]
    for words in ("Axiomatic Attribution", "SmoothTaylor", "Guided Non-Linearity",
                  "Distilled Gradient Aggregation", "Integrated Decision Gradients"):  # fmt: skip
        assert sum(words.lower() in t.lower() for t in titles) == 1, words
    for ref in cff["references"]:
        assert ref["authors"] and isinstance(ref["year"], int)
