"""DGA's claim, checked against the committed rows by `python -m experiments summary`.

Jeon, Jeong, Choi, NeurIPS 2022, Table 1 (anonymous version; ImageNet val, 50 000
images): DGA has the best MoRF (lower) and LeRF (higher) of gradient x input, Guided
Backprop, IG, FullGrad and Guided IG on VGG-16, ResNet-18 and Inception-v3. On VGG-16: LeRF
G*I 0.078, GBP 0.094, IG 0.096, FG 0.415, GIG 0.110, DGA 0.434; MoRF 0.045, 0.113, 0.036,
0.110, 0.029, 0.023.

The "LeRF" column is most likely RISE insertion (README, "Which metric is Table 1's
LeRF column?"), so the claim is checked both ways: on the literal MoRF and LeRF, and on
MoRF and insertion.
"""

from jaxattr.runs.report import beats

#: Experiment name -> the method of the paired table (`paired.md`).
REFERENCE = {"dga": "ig"}

_OTHERS = ["grad_x_input", "guided_backprop", "ig", "fullgrad", "guided_ig"]
CLAIMS = [
    *beats(
        "DGA beats gradient x input, Guided Backprop, IG, FullGrad and Guided IG on MoRF "
        "and LeRF",
        "dga",
        "dga",
        _OTHERS,
        ["morf", "lerf"],
    ),
    *beats(
        "The same with Table 1's LeRF read as insertion: DGA beats them on MoRF and "
        "insertion",
        "dga",
        "dga",
        _OTHERS,
        ["morf", "insertion"],
    ),
]
