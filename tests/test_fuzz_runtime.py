"""The runtime a campaign preloads into the fuzzing process (harness.fuzzlibs) keeps a fork
child able to allocate.

The executor's fork op runs in that process. With a runtime that has no fork handler, a
fork made while another thread held one of the runtime allocator's locks hands the child
that lock held; the child hangs in its first allocation and the campaign records a
``fork:hang`` that does not replay. tests/runtime/fork_amid_malloc.c forks amid
allocation; it must see such a hang on atheris's ``asan_with_fuzzer.so`` (atheris 3.0.0
registers no fork handler) and none on the runtime campaigns use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import atheris
import pytest

from harness import PROJECT_ROOT
from harness.fuzzlibs import asan_fuzzer_lib
from tests.runtime.probe import build_probe, fork_amid_malloc


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_probe(tmp_path_factory.mktemp("probe"))


def test_the_campaign_runtime_keeps_fork_children_able_to_allocate(probe: Path) -> None:
    runtime = asan_fuzzer_lib()
    assert runtime is not None, "clang's asan and fuzzer_no_main archives are missing"
    # A healthy child ends in milliseconds; the wait is long so a busy machine is no hang.
    assert fork_amid_malloc(probe, runtime, 200, 5000) == "no child hung in 200 forks"


def test_the_probe_fires_on_a_runtime_without_a_fork_handler(probe: Path) -> None:
    shipped = Path(atheris.path()) / "asan_with_fuzzer.so"
    # On a quiet machine a child hangs within a few forks. Under load the three allocating
    # threads are mostly off CPU at a fork, and a run of 2,000 forks (28 s at load 7) was
    # seen to miss; hence forks until a hang, for up to 3 minutes (hung children: within 2,
    # 10, 498, 1,288 and 1,837 forks in six runs at load 5-8, one missing at 2,000).
    out = fork_amid_malloc(probe, shipped, 10**9, 2000, 180)
    assert out.startswith("hung at fork "), out


def test_a_clang_without_the_runtime_archives_is_named(tmp_path: Path) -> None:
    # build.sh runs the merge as a script, on a builder without the harness's dependencies
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "harness" / "merged_runtime.py"),
                           "--cxx", "no-such-clang++", str(tmp_path / "rt.so")],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "no-such-clang++: libclang_rt.fuzzer_no_main-x86_64.a not found" in proc.stderr
    assert not (tmp_path / "rt.so").exists()
