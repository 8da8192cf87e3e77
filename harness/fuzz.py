"""Fuzz campaigns: ``python -m harness.fuzz --build asan [options]`` (``--help`` lists them).

The driver on top of the pipeline. It resolves the builds and the target, starts libFuzzer
(harness.libfuzzer) over the atheris target, hands every persisted crash file to the crash
lifecycle (harness.lifecycle: triage, minimize, regressions) in a thread of its own, and at
the end writes the report (harness.report).

Crash isolation: with ``--jobs 1`` (the default) libFuzzer fuzzes in-process, so the
target is imported and the corpus read once, not once per fork-mode job. A crash, timeout
(``-timeout``) or OOM (``-rss_limit_mb``) ends that libFuzzer after it has written the
input to ``crashes/``; the driver starts it again on the corpus for the rest of the budget
while the lifecycle triages the crash. A crash loop (libFuzzer dying again before it
fuzzes: a corpus input that crashes whenever it is loaded, or runs that each end within
seconds) turns the rest of the budget to fork mode. ``--jobs N`` (N > 1, without
``--stop-on-find``) fuzzes in fork mode (``-fork=N``) from the start.

Native coverage: ``--build asan`` fuzzes the ``asan-cov`` build under ASan's runtime with
libFuzzer merged in, ``--build tsan`` the ``tsan-cov`` build under a libFuzzer shared
object preloaded ahead of the TSan runtime (harness.fuzzlibs); crashes are replayed and
triaged on the plain build. Other builds run without any coverage feedback (nothing of
theirs is instrumented): the campaign says so on stderr and in the report.

Exit status: 0 no new distinct crash; 1 at least one new distinct crash; 2 usage, build or
environment error (the message says what to do).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import atheris  # noqa: F401  (imported here so that a missing atheris is a clear error)

from harness import cli
from harness.build import Build, build
from harness.campaign_options import CampaignOptions, parse
from harness.checks import replay
from harness.child import child_env
from harness.fuzzlibs import fuzz_env, native_runtime
from harness.libfuzzer import (
    EXECS_ENV,
    LIFELINE_ENV,
    SEED_CRASH_PREFIX,
    CampaignDirs,
    Stats,
    artifacts,
    campaign_key,
    command,
    read_log,
    seed_dirs,
)
from harness import neighbours
from harness.lifecycle import CrashLifecycle, hang_timeout
from harness.program import RECORD, decode, from_fuzz_input
from harness.regressions import REGRESSIONS, git_revision, known_bugs
from harness.report import CampaignSummary, write
from harness.target import Target, resolve_target
from harness.triage import CONCURRENT_REPEATS, signature

__all__ = ["Campaign", "campaign", "main", "setup"]


@dataclasses.dataclass(frozen=True)
class Campaign:
    """A campaign ready to run: its options and everything resolved from them."""

    opts: CampaignOptions
    build: Build  #: the replay build
    fuzz_build: Build  #: the build the fuzzer loads (a coverage build when possible)
    target: Target
    dirs: CampaignDirs
    regressions: Path
    env: dict[str, str]
    native: bool
    note: str


def setup(opts: CampaignOptions) -> Campaign:
    """Validates the options, builds what the campaign needs, creates its folders."""
    opts.validate()
    target = resolve_target(opts.target, opts.prefix)
    source = Path(opts.source) if opts.source else None
    replay_build = build(opts.build, opts.inject, source=source)
    cov, libfuzzer, why = native_runtime(opts.build)
    fuzz_build = build(cov, opts.inject, source=source) if cov else replay_build
    note = "" if cov else (
        f"warning: no native coverage for build {opts.build!r} ({why}): libFuzzer gets no "
        "coverage feedback (nothing in the fuzzed process is instrumented) and mutates its "
        "corpus blind; fuzz --build asan or tsan for a guided campaign")
    key = campaign_key(replay_build.name, target.label if target.foreign else None, opts)
    dirs = CampaignDirs.create(key, opts)
    env = child_env(fuzz_env(fuzz_build, libfuzzer), target.foreign)
    env.update({
        "HAKMEM_FUZZ_LIB": str(fuzz_build.lib),
        "HAKMEM_FUZZ_MODE": opts.mode,
        "HAKMEM_FUZZ_THREADS": str(opts.threads),
        "HAKMEM_FUZZ_TARGET": "" if target.path is None else str(target.path),
        "HAKMEM_FUZZ_PREFIX": target.prefix or "",
        "PYTHONUNBUFFERED": "1",
    })
    regressions = Path(opts.regressions) if opts.regressions else REGRESSIONS
    return Campaign(opts, replay_build, fuzz_build, target, dirs, regressions, env,
                    cov is not None, note)


def _check_seeds(c: Campaign, say: Callable[[str], None]) -> list[Path]:
    """libFuzzer's -fork mode merges seed inputs without reporting those that crash: replay
    each seed once here (concurrent mode: CONCURRENT_REPEATS runs, as triage does) and
    persist a failing one as crashes/crash-seed-<name>. Returns the seed folders to fuzz:
    without the failing seeds (an in-process libFuzzer would crash on them at every start)."""
    failing: set[Path] = set()
    for seed in sorted(p for d in seed_dirs(c.build.scheduled) for p in d.glob("*")):
        data, mode = from_fuzz_input(seed.read_bytes(), c.opts.mode, c.opts.threads,
                                     c.build.scheduled)
        repeats = CONCURRENT_REPEATS if mode == "concurrent" and not c.build.scheduled else 1
        timeout = hang_timeout(c.opts.timeout) * (3 if repeats > 1 else 1)
        out = replay(decode(data), c.build, mode, repeats, timeout, target=c.target)
        if not out.passed and not out.harness_trouble:
            name = SEED_CRASH_PREFIX + seed.stem
            shutil.copyfile(seed, c.dirs.crashes / name)  # copyfile: its mtime is now
            say(f"seed {seed.name} fails ({signature(out)}): persisted as {name}")
            failing.add(seed)
            if out.name == "timeout":
                break  # every hanging seed would cost a timeout: one is enough
    return _passing_seeds(c, failing)


def _passing_seeds(c: Campaign, failing: set[Path]) -> list[Path]:
    """The seed folders, or copies of them in the run folder without ``failing``."""
    dirs = seed_dirs(c.build.scheduled)
    if not failing:
        return dirs
    out = []
    for d in dirs:
        copy = c.dirs.run_dir / "seeds" / d.name
        copy.mkdir(parents=True, exist_ok=True)
        for seed in d.glob("*"):
            if seed not in failing:
                shutil.copyfile(seed, copy / seed.name)
        out.append(copy)
    return out


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether libFuzzer has exited, without reaping it (see :func:`_end_session`)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _end_session(proc: subprocess.Popen[bytes]) -> None:
    """Kills whatever is left of libFuzzer's process group, then reaps libFuzzer: a fork-op
    child or a job orphaned by its exit (killed by SIGKILL, stopped by SIGINT mid-run)
    must not outlive the run. Reaping last keeps the group's id (libFuzzer's pid) from
    being reused before the kill."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _seed_neighbours(c: Campaign, seeds: list[Path], say: Callable[[str], None]) -> Path | None:
    """Writes the seeds' one-step neighbours (harness.neighbours) for the first in-process
    libFuzzer run; None when there are none to give: no seeds, ``--no-neighbours``, or
    fork mode from the start (its corpus merge skips a crashing input without a word)."""
    if not seeds or c.opts.no_neighbours or c.opts.forks_from_start:
        return None
    found = neighbours.neighbours(((p.name, p.read_bytes()) for d in seeds
                                   for p in sorted(d.glob("*"))),
                                  c.opts.threads, 1 + RECORD * c.opts.max_ops)
    count = neighbours.write(found, c.dirs.neighbours)
    say(f"seed neighbours: {count} programs one step from a seed, for libFuzzer's first run "
        f"({c.dirs.neighbours})")
    return c.dirs.neighbours


#: an in-process libFuzzer run that ends this soon after loading its corpus made no progress
QUICK_RUN_S = 10.0
#: in-process runs in a row that end without progress before the campaign turns to fork
#: mode: QUICK_RUNS that loaded their corpus, or DEAD_LOADS that died loading it (the same
#: corpus input crashes again: every restart would)
QUICK_RUNS = 3
DEAD_LOADS = 2
#: in-process loads a seed neighbour may end (each such neighbour is taken out and the next
#: run loads the rest) before the rest of the neighbours are dropped
NEIGHBOUR_DEATHS = 3


@dataclasses.dataclass(frozen=True)
class _Exit:
    """How one libFuzzer run ended."""

    rc: int
    interrupted: bool
    fuzzed_s: float | None  #: seconds from its corpus loaded (INITED) to its end; None: never
    #: it died loading a seed neighbour, taken out for the next run (not a crash loop)
    by_neighbour: bool = False


@dataclasses.dataclass
class _Run:
    """The live state of a campaign's fuzzing."""

    c: Campaign
    stats: Stats
    lifecycle: CrashLifecycle
    progress: cli.Progress
    start: float  #: monotonic
    seeds: list[Path]  #: the seed folders libFuzzer reads
    #: the seed neighbours' folder, while in-process runs still have them to load
    neighbours: Path | None = None
    neighbour_deaths: int = 0  #: in-process loads a neighbour's crash ended
    starts: int = 0  #: libFuzzer runs started
    counter: Path | None = None  #: the in-process run's execution count (EXECS_ENV)
    fork_fallback: str = ""  #: why in-process fuzzing turned to fork mode, if it did
    quick: int = 0  #: in-process runs in a row that ended within QUICK_RUN_S of INITED
    dead: int = 0  #: in-process runs in a row that died loading their corpus

    @property
    def log_path(self) -> Path:
        return self.c.dirs.run_dir / "fuzz.log"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def warn_once(self) -> None:
        if self.elapsed() < 20 or self.stats.warned:
            return
        if self.c.native and not self.stats.native_seen:
            self.progress.say("warning: libFuzzer did not report inline 8-bit counters: "
                              f"native coverage is NOT active (see {self.log_path})")
        if not self.stats.mutator_seen:
            self.progress.say("warning: libFuzzer did not report the custom mutator "
                              f"(fuzz/mutator.c): mutations are byte-level only (see "
                              f"{self.log_path})")
        self.stats.warned = True

    def tick(self) -> None:
        self.lifecycle.scan()
        if self.counter is not None:
            self.stats.executed(int.from_bytes(self.counter.read_bytes()[:8], "little"),
                                time.monotonic())
        self.stats.sample(self.elapsed())
        self.warn_once()
        self.progress.show(min(int(self.elapsed()), int(self.c.opts.max_time)),
                           self.stats.status())

    def left(self) -> float:
        return self.c.opts.max_time - self.elapsed()

    def one_libfuzzer(self, seconds: float, fork: bool) -> _Exit:
        """One libFuzzer process for ``seconds``, polled."""
        extra = [self.neighbours] if self.neighbours is not None and not fork else []
        cmd = command(self.c.opts, self.c.dirs, seconds, fork, self.seeds + extra, self.starts)
        self.stats.new_run()
        self.starts += 1
        before = {p.name for p in artifacts(self.c.dirs.crashes)}
        with open(self.c.dirs.run_dir / "command.txt", "a") as f:
            f.write(shlex.join(cmd) + "\n")
        env = dict(self.c.env)
        # An in-process libFuzzer prints its count only at new coverage and powers of two:
        # the target counts every input in a file the ticks read. Fork-mode jobs do not
        # (N of them would race on one count; the main process reports after each job).
        self.counter = None if fork else self.c.dirs.run_dir / "execs"
        if self.counter is not None:
            self.counter.write_bytes(bytes(8))
            env[EXECS_ENV] = str(self.counter)
        # libFuzzer and its fork-mode jobs run in a session of their own (a Ctrl-C is the
        # driver's to forward). The lifeline's read end is all they inherit of the driver:
        # it reads EOF once the driver is gone, even by SIGKILL, and the target then kills
        # its session (fuzz/fuzz_target.py), so no job outlives the campaign.
        lifeline, keep = os.pipe()
        try:
            proc = subprocess.Popen(cmd, cwd=str(self.c.dirs.run_dir),
                                    env={**env, LIFELINE_ENV: str(lifeline)},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=(lifeline,))
        finally:
            os.close(lifeline)
        assert proc.stdout is not None
        reader = threading.Thread(target=read_log, args=(proc.stdout, self.log_path, self.stats),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + seconds + 60  # libFuzzer stops itself; the safety net
        stopping = interrupted = False
        try:
            while not _exited(proc):
                time.sleep(0.5)
                self.tick()
                if self.c.opts.stop_on_find and self.lifecycle.found.is_set() and not stopping:
                    self.progress.say("--stop-on-find: a crash reproduced; stopping the fuzzer")
                    stopping = True
                    deadline = time.monotonic()
                if time.monotonic() > deadline:
                    if not stopping:
                        self.progress.say("libFuzzer did not stop at -max_total_time; "
                                          "stopping it")
                    os.killpg(proc.pid, signal.SIGINT)
                    deadline += 30
        except KeyboardInterrupt:
            interrupted = True
            self.progress.say("interrupted: stopping the fuzzer, then triaging what was found")
            os.killpg(proc.pid, signal.SIGINT)
            stop = time.monotonic() + 20
            while not _exited(proc) and time.monotonic() < stop:
                time.sleep(0.1)
        _end_session(proc)
        os.close(keep)
        reader.join(timeout=5)
        inited = self.stats.inited_at
        by_neighbour = bool(extra) and self.neighbours_loaded(inited is not None, before)
        return _Exit(proc.returncode, interrupted,
                     None if inited is None else time.monotonic() - inited, by_neighbour)

    def neighbours_loaded(self, loaded: bool, before: set[str]) -> bool:
        """After an in-process run given the seed neighbours: a run that loaded its whole
        corpus ran them all, and none is given again. One that died loading it crashed on
        one of them (the crash file is its sha1) or on another input: that neighbour is
        taken out and the rest go to the next run, up to NEIGHBOUR_DEATHS such deaths; a
        death on another input ends the stage (the crash loop's count is the judge).
        Returns whether a neighbour ended the run and the next one gets the rest."""
        assert self.neighbours is not None
        new = [p for p in artifacts(self.c.dirs.crashes) if p.name not in before]
        culprits = [nb for nb in (neighbours.named(p, self.neighbours) for p in new)
                    if nb.is_file()]
        if loaded or not culprits or self.neighbour_deaths + 1 >= NEIGHBOUR_DEATHS:
            self.neighbours = None
            return False
        self.neighbour_deaths += 1
        for p in culprits:
            p.unlink()
        return True

    def drive(self) -> tuple[int, bool]:
        """Fuzzes until the budget is spent; returns libFuzzer's last exit code and whether
        the campaign was interrupted. Fork mode (``--jobs`` > 1) is one libFuzzer run that
        outlives its crashes. Otherwise libFuzzer runs in-process and every crash (timeout,
        OOM) ends it, its input already in crashes/; it is started again on the corpus,
        until a crash loop (:meth:`crash_loop`) turns the rest of the budget to fork mode.
        ``--stop-on-find`` also waits for each crash's triage and stops at the first that
        reproduces. One that does not (a one-time crasher: it needed the state earlier
        inputs left in the process, or the moment) restarts libFuzzer in-process like any
        other crash: fork mode costs a fresh process per job, and a restart whose corpus
        replay rebuilds that state dies quickly again, which is a crash loop."""
        fork, rc = self.c.opts.forks_from_start, 0
        try:
            while True:
                end = self.one_libfuzzer(self.left(), fork)
                rc = end.rc
                if end.interrupted or fork or end.rc == 0 or self.left() < 1:
                    return rc, end.interrupted
                if self.c.opts.stop_on_find and self.reproduced():
                    return rc, False
                self.fork_fallback = self.fork_reason(end)
                fork = bool(self.fork_fallback)
                if fork:
                    self.progress.say(f"libFuzzer exited {rc}: {self.fork_fallback}; "
                                      "fuzzing the rest of the budget in fork mode")
                else:
                    self.progress.say(f"libFuzzer exited {rc} (its input is in crashes/); "
                                      "starting it again on the corpus")
        except KeyboardInterrupt:  # between two runs (one_libfuzzer handles its own)
            self.progress.say("interrupted: triaging what was found")
            return rc, True

    def reproduced(self) -> bool:
        """Whether a crash so far reproduced in a fresh process (waits for their triage)."""
        self.lifecycle.scan()
        self.lifecycle.queue.join()
        return self.lifecycle.found.is_set()

    def fork_reason(self, end: _Exit) -> str:
        """Why the run after ``end`` (a crashed in-process run) fuzzes in fork mode; empty:
        it restarts in-process."""
        if end.by_neighbour:
            return ""
        self.dead = self.dead + 1 if end.fuzzed_s is None else 0
        quick = end.fuzzed_s is None or end.fuzzed_s < QUICK_RUN_S
        self.quick = self.quick + 1 if quick else 0
        return self.crash_loop(self.quick, self.dead)

    @staticmethod
    def crash_loop(quick: int, dead: int) -> str:
        """Why restarting in-process would loop (empty: it would not), given the in-process
        runs in a row that ended within QUICK_RUN_S of loading the corpus or before it."""
        if dead >= DEAD_LOADS:
            return f"it died loading its corpus {dead} times in a row (a crash loop)"
        if quick >= QUICK_RUNS:
            return (f"{quick} runs in a row ended within {QUICK_RUN_S:.0f} s of loading "
                    "the corpus (a crash loop)")
        return ""


def _summary(run: _Run, elapsed: float, rc: int, interrupted: bool,
             argv: Sequence[str]) -> CampaignSummary:
    c, stats, lc = run.c, run.stats, run.lifecycle
    return CampaignSummary(
        key=c.dirs.key, command="python -m harness.fuzz " + shlex.join(argv),
        build=c.build.name, fuzz_build=c.fuzz_build.name, inject=c.build.inject,
        target=c.target.label, mode=c.opts.mode, threads=c.opts.threads or "any",
        jobs=c.opts.jobs, seed=c.opts.seed, max_time=c.opts.max_time,
        elapsed=round(elapsed, 1), execs=stats.execs,
        execs_per_s=round(stats.execs / elapsed) if elapsed else 0, coverage=stats.cov,
        native_coverage="yes" if stats.native_seen else "no" + (
            f" ({c.note.removeprefix('warning: ')})" if c.note else ""),
        custom_mutator="yes" if stats.mutator_seen else "no (libFuzzer did not report it)",
        corpus=sum(1 for _ in c.dirs.corpus.iterdir()), corpus_dir=str(c.dirs.corpus),
        crash_files=stats.crash_files, distinct=stats.distinct,
        new_distinct=stats.new_distinct, revision=git_revision(), run_dir=str(c.dirs.run_dir),
        fuzzer_exit=rc, fuzzer_starts=run.starts, fork_fallback=run.fork_fallback,
        interrupted=interrupted, crash_to_regression_s=lc.crash_to_regression,
        first_detection_s=min((e.detected_s for e in lc.entries if e.distinct), default=None),
        entries=lc.entries)


def campaign(c: Campaign, argv: Sequence[str] = ()) -> CampaignSummary:
    """Runs the campaign to its end; returns its summary (also written as summary.json)."""
    stats = Stats()
    progress = cli.Progress(int(c.opts.max_time), "s", enabled=not c.opts.no_progress,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}")
    if c.note:
        progress.say(c.note)
    progress.say(f"campaign {c.dirs.key}: run folder {c.dirs.run_dir}")
    progress.say(f"corpus {c.dirs.corpus}; fuzzing {c.fuzz_build.name}, replaying on "
                 f"{c.build.name}")
    known = {**({} if c.opts.ignore_known else known_bugs(REGRESSIONS)),
             **known_bugs(c.regressions)}
    lifecycle = CrashLifecycle(c.opts, c.build, c.target, c.dirs, c.regressions, known, stats,
                               progress.say, time.time())
    seeds = [] if c.opts.no_seeds else _check_seeds(c, progress.say)
    worker = threading.Thread(target=lifecycle.run, name="lifecycle", daemon=True)
    worker.start()
    run = _Run(c, stats, lifecycle, progress, time.monotonic(), seeds,
               _seed_neighbours(c, seeds, progress.say))
    rc, interrupted = run.drive()
    elapsed = run.elapsed()
    lifecycle.scan()
    lifecycle.queue.put(None)
    progress.show(min(int(elapsed), int(c.opts.max_time)),
                  f"fuzzing done; triaging {lifecycle.queue.qsize() - 1} more")
    worker.join()
    progress.show(postfix=stats.status())
    progress.close()
    stats.sample(elapsed)
    stats.write_csv(c.dirs.run_dir / "stats.csv")
    summary = _summary(run, elapsed, rc, interrupted, argv)
    summary.report = str(write(c.dirs.run_dir, summary, stats.samples))
    (c.dirs.run_dir / "summary.json").write_text(
        json.dumps(summary.to_json(), indent=2) + "\n")
    progress.say(f"done: {stats.execs} execs in {elapsed:.0f} s, coverage {stats.cov}, corpus "
                 f"{summary.corpus}, {stats.crash_files} crash files, {stats.distinct} distinct "
                 f"({stats.new_distinct} new); report {summary.report}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse(argv)
    # the fuzzer is stopped and what it found is still triaged and written
    cli.interrupt_on_sigterm()
    return cli.run(lambda: 1 if campaign(setup(opts), argv).new_distinct else 0, findings=True)


if __name__ == "__main__":
    sys.exit(main())
