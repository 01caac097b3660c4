"""IDG's claim, checked against the committed rows by `python -m experiments summary`.

Walker, Jha, Chen, Ewetz, AAAI 2024, abstract: IDG outperforms IG, left-IG, Guided IG and
AGI on insertion (higher is better) and deletion (lower is better) on three ImageNet
ResNets (no table of numbers could be read).
"""

from jaxattr.runs.report import beats

#: Experiment name -> the method of the paired table (`paired.md`).
REFERENCE = {"idg": "ig", "idg_sweep": "idg"}

CLAIMS = beats(
    "IDG beats IG, left-IG, Guided IG and AGI on insertion and deletion",
    "idg",
    "idg",
    ["ig", "left_ig", "guided_ig", "agi"],
    ["insertion", "deletion"],
)
