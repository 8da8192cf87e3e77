"""hakmem.h / hakmem_debug.h semantics and bad input, through cffi, on several builds.

Sanitized libraries need their runtime preloaded, so every build's cases run in one
child process (tests/api_cases.py) and each case becomes its own test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import api_cases  # noqa: E402

VARIANTS = ("release", "asan", "tsan", "debug")
#: Writing into a freed block is itself the bug ASan must report (test_poisoning).
NOT_UNDER = {"heap_walk_catches_corruption": {"asan"}}
_results: dict[str, dict[str, dict[str, object]]] = {}


def run_cases(build: Build) -> dict[str, dict[str, object]]:
    if build.variant not in _results:
        names = [n for n in api_cases.all_case_names() if build.variant not in NOT_UNDER.get(n, ())]
        proc = subprocess.run(
            [sys.executable, str(HERE / "api_cases.py"), str(build.lib), *names],
            env=build.env(), capture_output=True, text=True, timeout=300,
        )
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        got = {r["case"]: r for r in lines}
        if proc.returncode or len(got) != len(names):
            pytest.fail(f"api_cases died on {build.variant} (exit {proc.returncode}) after "
                        f"{len(got)}/{len(names)} cases:\n{proc.stderr[-3000:]}")
        _results[build.variant] = got
    return _results[build.variant]


@pytest.mark.parametrize(("variant", "case"), [
    (v, c) for v in VARIANTS for c in api_cases.all_case_names() if v not in NOT_UNDER.get(c, ())
])
def test_api(built: Callable[..., Build], variant: str, case: str) -> None:
    result = run_cases(built(variant))[case]
    assert result["ok"], result["error"]
