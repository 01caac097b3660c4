"""IG (Sundararajan et al., ICML 2017): completeness error against steps, every rule.

See README.md in this folder; `python -m experiments ig --config debug`.
"""

from experiments.ig.config import CONFIGS, build

__all__ = ["CONFIGS", "build"]
