"""The debug build reports misuse with its address and aborts; release ignores it.

Each case runs in a child (an abort kills the process); the control shows the same child
survives when the call is valid, so the report comes from the misuse under test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from harness.build import Build

PRELUDE = """
import sys
from harness.allocator import Allocator
a = Allocator.open(sys.argv[1]); lib, ffi = a.lib, a.ffi
"""
CASES = {
    "double_free": ("p = lib.hak_malloc(64); lib.hak_free(p); lib.hak_free(p)", "double free"),
    "foreign_pointer": ("buf = ffi.new('char[64]'); lib.hak_free(buf)",
                        "free of a pointer hakmem does not own"),
    "interior_pointer": ("p = lib.hak_malloc(64); lib.hak_free(ffi.cast('char *', p) + 16)",
                         "free of a pointer inside a block"),
    "control": ("p = lib.hak_malloc(64); lib.hak_free(p)", None),
}


def run_case(build: Build, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint('survived')",
                           str(build.lib)], env=build.env(), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_debug_build_reports_misuse(built: Callable[..., Build], case: str) -> None:
    code, report = CASES[case]
    proc = run_case(built("debug"), code)
    if report is None:
        assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
        return
    assert "survived" not in proc.stdout, f"debug build absorbed {case}"
    assert f"hakmem: {report} at 0x" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("case", ["foreign_pointer", "control"])
def test_release_build_ignores_foreign_pointer(built: Callable[..., Build], case: str) -> None:
    proc = run_case(built("release"), CASES[case][0])
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
