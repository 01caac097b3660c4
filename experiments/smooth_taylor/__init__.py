"""SmoothTaylor (Goh et al., ICPR 2020): AUPC ("sensitivity") and AUTVC ("noise level")

See README.md in this folder; `python -m experiments smooth_taylor --config debug`.
"""

from experiments.smooth_taylor.config import CONFIGS, build

__all__ = ["CONFIGS", "build"]
