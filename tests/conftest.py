"""Shared fixtures: the `../shared` assets folder (skipped cleanly when absent); and
the tests' XLA:CPU code generation.

Most of the suite's time is XLA compiling small programs, and most of that is LLVM
optimising the generated loops, so the tests compile with LLVM's optimisation level 1
and without its expensive passes (`XLA_FLAGS`, set here before any computation, unless
`XLA_FLAGS` already names the level). The programs (XLA's HLO: fusion, layouts, the
convolution rewrite) are the same as at the default level; only the machine code
differs, within float rounding. Measured on a 2-core AVX2 CPU, 2026-12-03: the suite
took 1 798 s at the default level and 1 370 s at level 1 (this setting); level 0
(1 493 s with the test fixes of that day) flips near-tied
rankings in two float32 tests (Guided IG against PAIR, DGA's masks) that level 1 keeps.
The fusions are emitted by XLA:CPU's older elemental emitter
(`--xla_cpu_use_fusion_emitters=false`; it also changes which operations XLA fuses, so
the memory tests compile with `PRODUCT_COMPILE`): 20-25 % less compile time, measured on
2026-12-04 (600 one-op programs: 21-26 s against 28-30 s; IG, IDG, Guided IG, DGA and
SmoothTaylor on a ResNet-8: 9.0-10.1 s against 12.2-12.5 s).
"""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
        + " --xla_cpu_use_fusion_emitters=false"
    ).strip()

from pathlib import Path

import pytest

#: Compile options that undo the fusion-emitter setting above, for the tests that
#: measure the compiled program itself (XLA's temporaries): its fusions are XLA's
#: default ones, as users get them (59 against 50 fusions in a ResNet-8's IG).
PRODUCT_COMPILE = {"xla_cpu_use_fusion_emitters": True}

from jaxattr.runs.data import shared_dir as _shared_dir

#: `$JAXATTR_SHARED`, else `shared` beside the checkout (`jaxattr.runs.data.shared_dir`).
SHARED = _shared_dir()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "assets").is_dir():
        pytest.skip(
            f"shared assets not found at {SHARED} (they sit beside the checkout)"
        )
    return SHARED
