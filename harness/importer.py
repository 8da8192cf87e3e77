"""Crashes found elsewhere come home: ``python -m harness.run --import CRASH_FILE``.

A crash file from a nightly artifact, a ClusterFuzzLite or OSS-Fuzz run, or any libFuzzer
run of the atheris target enters the same lifecycle as a local finding: persisted first
(copied into an import campaign's ``crashes/``), then reproduced, signed, deduplicated,
minimized and written to ``regressions/`` (harness.lifecycle).

What the input means depends on how it was fuzzed (the campaign's mode and thread limit
fold its first byte, harness.program.from_fuzz_input), so the importer takes it from:

* a nightly/local campaign run folder: ``<run>/crashes/<file>`` next to ``<run>/summary.json``
  (its build, seeded bug, target, mode and threads);
* ClusterFuzzLite/OSS-Fuzz: ``--fuzzer hakmem_<mode>_fuzzer --sanitizer address|undefined``
  (the fleet's targets run one fixed mode, no thread limit: the file is the program);
* otherwise the flags given (``--build``, ``--inject``, ``--mode``, ``--threads``, ``--target``).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from harness.build import build
from harness.campaign_options import CampaignOptions
from harness.errors import UsageError
from harness.libfuzzer import CampaignDirs, Stats
from harness.lifecycle import CrashLifecycle
from harness.program import FUZZ_MODES, RECORD
from harness.regressions import REGRESSIONS, known_bugs
from harness.report import CampaignSummary
from harness.target import resolve_target
from harness.triage import CrashEntry

__all__ = ["FLEET_SANITIZERS", "fleet_options", "import_crash", "run_options"]

#: the fleet's sanitizer names -> this project's build variants
FLEET_SANITIZERS = {"address": "asan", "undefined": "ubsan"}
_FLEET_FUZZER = re.compile(r"hakmem_(lockstep|concurrent)_fuzzer")
#: the longest input a campaign makes is far below this: a bigger file is not ours
MAX_INPUT = 1 + RECORD * (1 << 16)


def fleet_options(fuzzer: str, sanitizer: str, inject: str | None) -> CampaignOptions:
    """How a ClusterFuzzLite/OSS-Fuzz target ran (build.sh names them hakmem_<mode>_fuzzer)."""
    m = _FLEET_FUZZER.fullmatch(fuzzer)
    if m is None:
        raise UsageError(f"--fuzzer {fuzzer!r}: the fleet's targets are "
                         "hakmem_lockstep_fuzzer and hakmem_concurrent_fuzzer")
    if sanitizer not in FLEET_SANITIZERS:
        raise UsageError(f"--sanitizer {sanitizer!r}: one of {', '.join(FLEET_SANITIZERS)}")
    return CampaignOptions(build=FLEET_SANITIZERS[sanitizer], inject=inject, mode=m.group(1))


def run_options(crash: Path) -> CampaignOptions | None:
    """The options of the campaign run whose ``crashes/`` holds ``crash``, when its
    ``summary.json`` is there (a nightly artifact keeps the run folder whole)."""
    path = crash.parent.parent / "summary.json"
    if crash.parent.name != "crashes" or not path.is_file():
        return None
    try:
        s = CampaignSummary.read(path)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"{path}: not a campaign summary ({e})") from None
    if s.mode not in FUZZ_MODES or not s.build:
        raise UsageError(f"{path}: no build or mode recorded")
    target = None if s.target in ("", "hakmem") else s.target
    if target and target.startswith("fx_"):
        target = "fixture:" + target[3:]
    threads = s.threads if isinstance(s.threads, int) else 0
    return CampaignOptions(build=s.build.split("+")[0], inject=s.inject, target=target,
                           mode=s.mode, threads=threads)


def _check_file(crash: Path) -> bytes:
    if not crash.is_file():
        raise UsageError(f"--import {crash}: no such file")
    data = crash.read_bytes()
    if not data:
        raise UsageError(f"--import {crash}: the file is empty (a crash input holds at least "
                         "the header byte of a program)")
    if len(data) > MAX_INPUT:
        raise UsageError(f"--import {crash}: {len(data)} bytes, more than any op program "
                         f"({MAX_INPUT}): not a crash input of this project's fuzzers")
    if data[:1] == b"{":
        raise UsageError(f"--import {crash}: a JSON file; replay text programs and "
                         "reproducers with python -m harness.run FILE")
    return data


def import_crash(crash: Path, opts: CampaignOptions, regressions: Path | None,
                 say: Callable[[str], None]) -> CrashEntry:
    """Persists ``crash`` into an import campaign, then takes it through the lifecycle;
    returns its record (``regression`` set when a new reproducer was written)."""
    _check_file(crash)
    target = resolve_target(opts.target, opts.prefix)
    replay_build = build(opts.build, opts.inject)
    dirs = CampaignDirs.create(f"import-{replay_build.name}-{opts.mode}", dataclasses.replace(
        opts, corpus=None))
    kept = dirs.crashes / f"crash-import-{crash.name}"
    shutil.copyfile(crash, kept)
    say(f"persisted as {kept}")
    regs = regressions or REGRESSIONS
    known = {**known_bugs(REGRESSIONS), **known_bugs(regs)}
    lifecycle = CrashLifecycle(opts, replay_build, target, dirs, regs, known, Stats(), say,
                               time.time())
    lifecycle.one(kept)
    return lifecycle.entries[-1] if lifecycle.entries else CrashEntry(
        str(kept), note="a duplicate of a crash this import already saw")
