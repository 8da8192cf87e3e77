"""The debug build reports misuse with its address and aborts; release ignores it.

Each case of harness.misuse runs in a child (an abort kills the process); the control
shows the same child survives when the calls are valid, so the report comes from the
misuse under test.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.build import Build
from harness.misuse import CASES, run_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_debug_build_reports_misuse(built: Callable[..., Build], case: str) -> None:
    got = run_case(built("debug"), case)
    if got.report is None:
        assert got.survived, got.proc.stderr[-2000:]
        return
    assert "survived" not in got.proc.stdout, f"debug build absorbed {case}"
    assert got.reported, got.proc.stderr[-2000:]


@pytest.mark.parametrize("case", ["foreign_pointer", "foreign_realloc", "control"])
def test_release_build_ignores_foreign_pointer(built: Callable[..., Build], case: str) -> None:
    got = run_case(built("release"), case)
    assert got.survived, got.proc.stderr[-2000:]
