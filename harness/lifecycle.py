"""A crash's way from its persisted input to a written regression.

:class:`CrashLifecycle` takes the crash files of a campaign one by one (in a thread of its
own, so fuzzing goes on): reproduce in fresh processes and sign (harness.triage), dedupe
against the bugs the regressions already keep and this campaign's earlier crashes,
minimize while the signature holds (harness.minimize), confirm the minimized program's
reliability, write ``<regressions>/<slug>.json`` (harness.regressions). Each input's record
(:class:`harness.triage.CrashEntry`) is appended to ``crashes/index.jsonl`` as it is decided.
The input itself was persisted before any of this.
"""

from __future__ import annotations

import json
import queue
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.build import Build, build
from harness.campaign_options import CampaignOptions
from harness import neighbours
from harness.libfuzzer import SEED_CRASH_PREFIX, CampaignDirs, Stats, artifacts
from harness.minimize import minimize
from harness.program import Program, decode, from_fuzz_input
from harness.regressions import Regression
from harness.target import Target
from harness.triage import (
    BugKey,
    CrashEntry,
    Reliability,
    Reproduction,
    reproduce,
    run_signature,
    signature_frames,
)

__all__ = ["CrashLifecycle", "hang_timeout"]

Say = Callable[[str], None]
#: repeats per replay stop growing here (a race that needs more is kept as it is)
MAX_CONFIRM_REPEATS = 1280


def hang_timeout(fuzz_timeout: float) -> float:
    """How long a replay may run before it counts as a hang: several times what the fuzzer
    gave the input, so that a legitimately slow program (a long loop of large blocks on a
    loaded machine, where a fresh process also pays its start-up) finishes and is dropped
    instead of kept as a hang."""
    return max(5.0, 4 * fuzz_timeout)


#: per-replay timeout of a crash file that is not a fuzzer timeout
CRASH_REPLAY_TIMEOUT = 30.0


class CrashLifecycle:
    """Takes crash files one by one; keeps one entry per distinct signature."""

    def __init__(self, opts: CampaignOptions, build_: Build, target: Target, dirs: CampaignDirs,
                 regressions: Path, known: dict[BugKey, Path], stats: Stats, say: Say,
                 start: float) -> None:
        self.opts = opts
        self.build = build_
        self.target = target
        self.dirs = dirs
        self.regressions = regressions
        self.known = dict(known)
        self.stats = stats
        self.say = say
        self.start = start  #: wall-clock start of the campaign (time to detect counts from it)
        self.found = threading.Event()  #: set at the first crash that reproduces
        self.by_sig: dict[str, CrashEntry] = {}
        self.entries: list[CrashEntry] = []
        self.seen: set[str] = set()
        self.queue: queue.Queue[Path | None] = queue.Queue()
        self.crash_to_regression: list[float] = []

    def scan(self) -> None:
        """Queues the crash files not seen yet."""
        for p in artifacts(self.dirs.crashes):
            if p.name not in self.seen:
                self.seen.add(p.name)
                with self.stats.lock:
                    self.stats.crash_files += 1
                self.queue.put(p)

    def run(self) -> None:
        """The worker: takes queued files until a None arrives."""
        while True:
            p = self.queue.get()
            if p is None:
                return
            try:
                self.one(p)
            except Exception as e:  # a lifecycle bug must not lose the other crashes
                self.say(f"triage of {p.name} failed: {type(e).__name__}: {e}")
                self._log(CrashEntry(str(p), error=f"{type(e).__name__}: {e}"))
            finally:
                self.queue.task_done()

    def _log(self, entry: CrashEntry) -> None:
        with open(self.dirs.crashes / "index.jsonl", "a") as f:
            f.write(json.dumps(entry.to_json(with_program=False)) + "\n")

    def _reproduce(self, program: Program, mode: str, timeout: float,
                   hang: bool) -> Reproduction:
        rep = reproduce(program, self.build, self.target, runs=self.opts.triage_runs,
                        timeout=timeout, prefer=mode, hang=hang)
        if rep.signature == "pass" and rep.trouble is not None:
            # the replay child could not run (e.g. the build is being redone by someone
            # else in this tree): wait for the build (it holds a lock), then retry once
            build(self.build.variant, self.build.inject, source=self.build.source)
            rep = reproduce(program, self.build, self.target, runs=self.opts.triage_runs,
                            timeout=timeout, prefer=mode, hang=hang)
        return rep

    def _origin(self, path: Path) -> tuple[str, str]:
        """(origin, step) of a crash file, as CrashEntry records them."""
        if path.name.startswith(SEED_CRASH_PREFIX):
            return "seed", ""
        step = neighbours.origin(path, self.dirs.neighbours)
        return ("fuzzer", "") if step is None else ("neighbour", step)

    def one(self, path: Path) -> None:
        """One crash file through the lifecycle."""
        t0 = path.stat().st_mtime
        data, mode = from_fuzz_input(path.read_bytes(), self.opts.mode, self.opts.threads,
                                     self.build.scheduled)
        program = decode(data)
        hang = path.name.startswith("timeout-")  # libFuzzer's name for a timed-out input
        timeout = hang_timeout(self.opts.timeout) if hang else CRASH_REPLAY_TIMEOUT
        rep = self._reproduce(program, mode, timeout, hang)
        origin, step = self._origin(path)
        entry = CrashEntry(str(path), rep.signature, str(rep.reliability), rep.mode,
                           rep.repeats, len(program.ops), round(t0 - self.start, 2),
                           origin=origin, step=step)
        if rep.signature == "pass":
            entry.note = "did not reproduce in a fresh process (one-time crasher)"
            if rep.trouble is not None:
                entry.harness_trouble = rep.trouble.stderr_tail[-2000:]
            self.entries.append(entry)
            self._log(entry)
            return
        if rep.signature in self.by_sig:
            self.by_sig[rep.signature].duplicates += 1
            entry.note = "duplicate of an earlier crash in this campaign"
            self._log(entry)
            return
        self.found.set()
        out = rep.outcome
        entry.distinct = True
        entry.frames = list(out.frames[:12]) if out else []
        entry.report_line = out.report if out else ""
        self.by_sig[rep.signature] = entry
        self.entries.append(entry)
        with self.stats.lock:
            self.stats.distinct += 1
        key = BugKey(rep.signature, self.build.inject, self.target.label)
        if key in self.known:
            entry.new, entry.known_as = False, str(self.known[key])
            self.say(f"known crash {rep.signature} ({rep.reliability}): {self.known[key]}")
            self._log(entry)
            return
        entry.new = True
        with self.stats.lock:
            self.stats.new_distinct += 1
        self.say(f"new crash {rep.signature} ({rep.reliability} {rep.mode}) from {path.name} "
                 f"(made by: {entry.made_by}); minimizing {len(program.ops)} ops")
        self._minimize_and_keep(entry, program, rep, timeout, t0)
        self.known[key] = Path(entry.regression)

    def _minimize_and_keep(self, entry: CrashEntry, program: Program, rep: Reproduction,
                           timeout: float, t0: float) -> None:
        out = rep.outcome
        fail_index = None
        if out and out.verdict is not None and not out.verdict.passed:
            fail_index = out.verdict.program_op
        mres = minimize(program, self.build, self.target, rep.mode, rep.signature,
                        repeats=rep.repeats, fail_index=fail_index, timeout=timeout,
                        max_seconds=self.opts.minimize_time)
        small, reliability, repeats = self._confirmed(mres.program, program, rep, timeout)
        reg = Regression.new(
            small, signature=rep.signature, build=self.build.variant, inject=self.build.inject,
            target=self.target, mode=rep.mode, repeats=repeats, reliability=reliability,
            original_ops=len(program.ops), campaign=str(self.dirs.run_dir),
            frames=signature_frames(out.frames) if out else [])
        path = reg.write(self.regressions)
        self.crash_to_regression.append(time.time() - t0)
        mini_dir = self.dirs.run_dir / "minimized"
        mini_dir.mkdir(exist_ok=True)
        prog_path = mini_dir / f"{path.stem}.json"
        prog_path.write_text(small.to_text())
        shutil.copy2(path, mini_dir / f"{path.stem}.regression.json")
        entry.minimized_ops, entry.minimize_runs = len(small.ops), mres.runs
        entry.minimize_seconds, entry.regression = mres.seconds, str(path)
        entry.program_text = small.to_text()
        entry.replay = self._replay_command(prog_path, rep.mode, repeats)
        self.say(f"wrote {path} ({len(program.ops)} -> {len(small.ops)} ops)")
        self._log(entry)

    def _replay_command(self, prog_path: Path, mode: str, repeats: int) -> str:
        cmd = ["python", "-m", "harness.run", str(prog_path), "--build", self.build.variant,
               "--mode", mode]
        if self.build.inject:
            cmd += ["--inject", self.build.inject]
        if self.target.foreign:
            cmd += ["--target", str(self.target.path), "--prefix", self.target.prefix or ""]
        if repeats > 1:
            cmd += ["--repeats", str(repeats)]
        return shlex.join(cmd)

    def _confirmed(self, small: Program, program: Program, rep: Reproduction,
                   timeout: float) -> tuple[Program, Reliability, int]:
        """(program, reliability, repeats) to keep: the minimized program with its own
        reliability over fresh replays, or the original input when the reduction reproduces
        in fewer than half of them. A concurrent-mode program must reproduce in each of at
        least 6 replays, run two at a time as `pytest -n auto regressions` runs them (a race
        that shows on an idle machine can hide when the threads share the cores with
        another replay): its repeats per replay are raised (x4, up to 1280) until it does,
        so that the regression test does not depend on one lucky interleaving. A scheduled
        program (on a schedule-controlled build) replays identically: no repeats."""
        runs, side_by_side, repeats = self.opts.triage_runs, 1, rep.repeats
        deterministic = rep.mode != "concurrent" or (small.schedule is not None
                                                     and self.build.scheduled)
        if not deterministic:
            runs, side_by_side = max(runs, 6), 2
        while True:
            with ThreadPoolExecutor(side_by_side) as pool:
                sigs = list(pool.map(lambda _: run_signature(
                    small, self.build, rep.mode, self.target, repeats, timeout)[0],
                    range(runs)))
            hits = sigs.count(rep.signature)
            if hits == runs or deterministic or repeats >= MAX_CONFIRM_REPEATS:
                break
            repeats *= 4
            self.say(f"minimized program reproduces {hits}/{runs}: trying {repeats} repeats")
        if 2 * hits < runs and small != program:
            self.say(f"minimized program reproduces {hits}/{runs}: keeping the original input")
            return program, rep.reliability, rep.repeats
        return small, Reliability(hits, runs), repeats
