"""Crashes found elsewhere come home: ``python -m harness.run --import`` takes a libFuzzer
crash file, a nightly artifact (a campaign run folder) and a ClusterFuzzLite/OSS-Fuzz crash
through the lifecycle into regressions/, and refuses files that are no crash input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import PROJECT_ROOT
from harness.program import Op, Program, encode
from harness.regression_check import check_regression
from harness.regressions import Regression
from harness.report import CampaignSummary

#: fx_overlap hands the 5th allocation the 4th's block
OVERLAP = encode(Program(1, tuple(Op("malloc", 0, i, 32) for i in range(8))))


def run(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_libfuzzer_crash_file_lands_in_regressions(tmp_path):
    crash = tmp_path / "crash-0123abcd"
    crash.write_bytes(OVERLAP)
    regs = tmp_path / "regs"
    rc, out = run("--import", str(crash), "--build", "asan", "--target", "fixture:overlap",
                  "--regressions", str(regs))
    assert rc == 1, out
    (path,) = regs.glob("*.json")
    reg = Regression.read(path)
    assert reg.signature == "overlap" and len(reg.program.ops) <= 5
    assert check_regression(path) == []
    assert "persisted as" in out and "crash-import-crash-0123abcd" in out
    # imported again: the bug is kept already, nothing new is written
    rc, out = run("--import", str(crash), "--build", "asan", "--target", "fixture:overlap",
                  "--regressions", str(regs))
    assert rc == 0 and "already kept" in out, out
    assert len(list(regs.glob("*.json"))) == 1


def test_a_nightly_artifact_carries_its_campaign_settings(tmp_path):
    """A run folder keeps summary.json: build, target and mode come from it (mixed mode:
    bit 7 of the first byte picked concurrent when the campaign ran the input)."""
    run_dir = tmp_path / "asan-fx_overlap-mixed" / "runs" / "20261202-000000-1"
    (run_dir / "crashes").mkdir(parents=True)
    summary = CampaignSummary(key="asan-fx_overlap-mixed", build="asan", target="fx_overlap",
                              mode="mixed", threads="any")
    (run_dir / "summary.json").write_text(json.dumps(summary.to_json()))
    crash = run_dir / "crashes" / "crash-feed"
    crash.write_bytes(bytes([0x80]) + OVERLAP[1:])
    regs = tmp_path / "regs"
    rc, out = run("--import", str(crash), "--regressions", str(regs))
    assert rc == 1, out
    (path,) = regs.glob("*.json")
    assert Regression.read(path).target == {"fixture": "overlap"}


def test_a_clusterfuzzlite_crash_names_its_fuzzer_and_sanitizer(tmp_path):
    """The fleet's hakmem_lockstep_fuzzer under address: the file is the program itself."""
    reg = Regression.read(PROJECT_ROOT / "regressions" / "asan-missing-used-add-counters.json")
    crash = tmp_path / "crash-da39a3ee5e6b4b0d3255bfef95601890afd80709"
    crash.write_bytes(encode(reg.program))
    regs = tmp_path / "regs"
    rc, out = run("--import", str(crash), "--fuzzer", "hakmem_lockstep_fuzzer",
                  "--sanitizer", "address", "--inject", "missing_used_add",
                  "--regressions", str(regs))
    # replayed on asan+missing_used_add in lockstep mode, it is the bug regressions/ keeps
    assert rc == 0, out
    assert "counters (3/3 lockstep)" in out and "import-asan+missing_used_add" in out
    assert "already kept as" in out and "asan-missing-used-add-counters.json" in out
    assert not regs.exists()


@pytest.mark.parametrize("content, args, message", ids=[
    "empty", "json", "too-big", "unknown-fuzzer", "unknown-sanitizer", "fuzzer-alone"],
                         argvalues=[
    (b"", [], "the file is empty"),
    (b'{"version": 1}', [], "a JSON file"),
    (bytes(1 + 8 * 70000), [], "not a crash input"),
    (b"\x00", ["--fuzzer", "hakmem_fast_fuzzer", "--sanitizer", "address"],
     "the fleet's targets are"),
    (b"\x00", ["--fuzzer", "hakmem_lockstep_fuzzer", "--sanitizer", "memory"],
     "one of address, undefined"),
    (b"\x00", ["--fuzzer", "hakmem_lockstep_fuzzer"], "go together"),
])
def test_files_that_are_no_crash_input_are_refused(tmp_path, content, args, message):
    crash = tmp_path / "crash-x"
    crash.write_bytes(content)
    rc, out = run("--import", str(crash), *args, "--regressions", str(tmp_path / "regs"))
    assert rc == 2 and message in out, out
    assert not (tmp_path / "regs").exists()


def test_a_missing_file_is_named(tmp_path):
    rc, out = run("--import", str(tmp_path / "nope"))
    assert rc == 2 and "no such file" in out
