"""GNL's claim, checked against the committed rows by `python -m experiments summary`.

Kwon, Koo, Cho, ICPR 2020: IG with guided non-linearities (GNL-IG) gives better deletion
(lower) and insertion (higher) scores than IG on ImageNet CNNs (no table of numbers could
be read). Checked on every `gnl.<model>` experiment.
"""

from jaxattr.runs.report import beats

#: Experiment name (or prefix before a dot) -> the method of the paired table.
REFERENCE = {"gnl": "ig"}

CLAIMS = beats(
    "GNL-IG beats IG on deletion and insertion",
    "gnl",
    "gnl_ig",
    ["ig"],
    ["deletion", "insertion"],
)
