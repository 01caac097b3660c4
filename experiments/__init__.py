"""Experiments that reproduce each paper's comparison (issue 7).

One package per paper, each with `config.py` (`CONFIGS`: plain JSON-able dicts, at
least `"default"` and `"debug"`; `build(config)` -> a `jaxattr.runs.Experiment` or a
list of them) and a README with the protocol and our measured table. Run one with
`python -m experiments <paper> [--config NAME] [--data SPEC] [--limit N]`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Paper name -> one-line description.
PAPERS: dict[str, str] = {
    "idg": "IDG (AAAI 2024): insertion/deletion of IG, LIG, GIG, AGI, IDG; N/M sweep",
    "smooth_taylor": "SmoothTaylor (ICPR 2020): AUPC/AUTVC of IG, SG, ST, adaptive ST",
    "gnl": "Guided non-linearity IG (ICPR 2020): deletion/insertion, IG vs GNL-IG",
    "dga": "DGA (NeurIPS 2022): MoRF/LeRF, insertion/deletion of 6 methods",
    "ig": "IG (ICML 2017): completeness error vs steps for every quadrature rule",
}


def load(paper: str) -> ModuleType:
    """The package `experiments.<paper>` (with `CONFIGS` and `build`)."""
    if paper not in PAPERS:
        raise ValueError(
            f"experiments.load: paper must be one of {sorted(PAPERS)}; got {paper!r}"
        )
    return importlib.import_module(f"experiments.{paper}")


__all__ = ["PAPERS", "load"]
