"""Guided non-linearity IG (Kwon et al., ICPR 2020): deletion/insertion of IG vs GNL-IG.

See README.md in this folder; `python -m experiments gnl --config debug`.
"""

from experiments.gnl.config import CONFIGS, build

__all__ = ["CONFIGS", "build"]
