"""DGA (Jeon et al., NeurIPS 2022): MoRF/LeRF and insertion/deletion of G*I, GBP, IG,

See README.md in this folder; `python -m experiments dga --config debug`.
"""

from experiments.dga.config import CONFIGS, build

__all__ = ["CONFIGS", "build"]
