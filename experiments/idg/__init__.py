"""IDG (Walker et al., AAAI 2024): insertion/deletion of IG, LIG, GIG, AGI, IDG (docs/idg.md).

See README.md in this folder; `python -m experiments idg --config debug`.
"""

from experiments.idg.config import CONFIGS, build

__all__ = ["CONFIGS", "build"]
