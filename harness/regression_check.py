"""The replay test of one regression file: what ``pytest regressions`` runs for each.

A reproducer must pass on the clean build (and, for a broken fixture, on the clean fixture
``fx_good``); a reproducer of a seeded bug or a broken fixture must also still fail, with
its signature, where it was found: one that no longer reproduces anything is a failure,
not a pass.
"""

from __future__ import annotations

from pathlib import Path

from harness.build import build
from harness.regressions import Regression
from harness.triage import run_signature

__all__ = ["check_regression"]


def check_regression(path: Path, timeout: float = 120.0) -> list[str]:
    """Replays the reproducer at ``path``; returns the problems (empty: fine). Raises
    RegressionError for a malformed file."""
    reg = Regression.read(path)
    problems = []
    clean_target = reg.target_obj(clean=True)
    clean = build(reg.build)
    sig, out = run_signature(reg.program, clean, reg.mode, clean_target, reg.repeats, timeout)
    if not out.passed:
        problems.append(f"clean build {reg.build}" + (
            f" / target {clean_target.label}" if clean_target.foreign else "") +
            f": expected pass, got {sig}\n{out.describe()}")
    if reg.inject or (reg.target or {}).get("fixture"):
        bad_target = reg.target_obj()
        bad = build(reg.build, reg.inject)
        sig, out = run_signature(reg.program, bad, reg.mode, bad_target, reg.repeats, timeout)
        if sig != reg.signature:
            problems.append(
                f"on {bad.name} / target {bad_target.label}: expected {reg.signature}, got "
                f"{sig} (a reproducer that no longer reproduces is a failure)\n{out.describe()}")
    return problems
