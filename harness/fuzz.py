"""Fuzz campaigns: ``python -m harness.fuzz --build asan [options]``.

Coverage-guided fuzzing of op programs (binary form) with atheris/libFuzzer, with native
coverage of the allocator and the executor where the build allows it:

* ``--build asan`` fuzzes the ``asan-cov`` build (fuzz/variants/asan-cov.toml:
  ``-fsanitize=address,fuzzer-no-link``) under atheris's ``asan_with_fuzzer.so``, and
  ``--build tsan`` the ``tsan-cov`` build under a libFuzzer shared object preloaded ahead of
  the TSan runtime (harness.fuzzlibs, RECIPES.md); crashes are replayed and triaged on the
  plain build;
* other builds (release, debug, ubsan) are fuzzed as they are: libFuzzer then sees only
  Python-level coverage, and the campaign says so once, on stderr and in the report.

The campaign never dies with its target: the atheris target (fuzz/fuzz_target.py) runs under
libFuzzer's ``-fork=N -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1``, every job is a
child process, and every crash/timeout/oom input is written by libFuzzer straight into the
run's ``crashes/`` folder (``-artifact_prefix``) before the campaign looks at it. The corpus
lives in ``campaigns/<key>/corpus`` (git-ignored) and a later campaign resumes from it.

While fuzzing, a triage thread takes each new crash file: reproduce in fresh processes
(harness.triage), signature, dedupe (regressions/ and this run), minimize
(harness.minimize), write ``<regressions>/<slug>.json`` (harness.corpus). At the end:
``report.md`` + ``progress.png`` (harness.report).

Exit status: 0 no new distinct crash; 1 at least one new distinct crash; 2 usage, build or
environment error (the message says what to do).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT

MODES = ("lockstep", "concurrent", "mixed")
FUZZ_DIR = PROJECT_ROOT / "fuzz"
TARGET_SCRIPT = FUZZ_DIR / "fuzz_target.py"
SEEDS = FUZZ_DIR / "seeds"
DICT = FUZZ_DIR / "hakmem.dict"
RECORD = 8
#: crash files of seeds that failed as they are (the rest are libFuzzer's crash-<sha1>)
SEED_CRASH_PREFIX = "crash-seed-"


def normalize(data: bytes, mode: str = "lockstep", threads: int = 0) -> tuple[bytes, str]:
    """The program a fuzz input stands for, and its mode (shared by target and triage).

    ``threads`` > 0 folds byte 0 so the program has at most that many threads; in
    ``mixed`` mode bit 7 of byte 0 selects concurrent (set) or lockstep."""
    run_mode = mode
    if mode == "mixed":
        run_mode = "concurrent" if data[:1] and data[0] & 0x80 else "lockstep"
    if threads and data:
        data = bytes([data[0] % threads]) + data[1:]
    return data, run_mode


EPILOG = """\
examples:
  python -m harness.fuzz --build asan --max-time 600
  python -m harness.fuzz --build asan --inject NAME --max-time 300  # seeded bug
  python -m harness.fuzz --build asan --target fixture:overlap --max-time 60
  python -m harness.fuzz --target /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 --prefix mi_
  python -m harness.fuzz --build tsan --mode concurrent --threads 4 --jobs 2 --max-time 3600

every flag:
  --build B         build variant to fuzz: release, debug, asan, tsan, ubsan (default asan;
                    asan and tsan fuzz their -cov build with native coverage)
  --inject NAME     compile seeded bug NAME (src_c/alloc/inject.h) into the build
  --target T        fuzz a foreign allocator (black-box): a library path, a soname, or
                    fixture:NAME (tests/fixtures/fx_NAME.c, built for you, prefix fx_)
  --prefix P        symbol prefix of --target (mi_, tc_, "" for libc); default "" (fx_ for fixtures)
  --mode M          lockstep (deterministic), concurrent (real races) or mixed (bit 7 of
                    the first input byte picks per input); default lockstep
  --threads N       at most N program threads per input (1..8; default: any, up to 8)
  --max-ops N       longest program, in ops (default 64: libFuzzer -max_len=1+8*N)
  --max-time S      stop fuzzing after S seconds (default 600); triage then finishes
  --jobs N          parallel fuzzing jobs (libFuzzer -fork=N; default 1)
  --seed N          libFuzzer -seed (default: random)
  --corpus DIR      corpus folder (default campaigns/<key>/corpus; resumed across runs)
  --campaigns DIR   where campaign folders go (default campaigns/)
  --regressions DIR where new reproducers are written (default regressions/)
  --timeout S       per-input timeout inside the fuzzer (default 10 s; a hang is a crash)
  --triage-runs N   fresh-process replays per crash for reliability (default 3)
  --minimize-time S time budget for minimizing each distinct crash (default 300)
  --stop-on-find    stop fuzzing at the first crash that reproduces in a fresh process
                    (it is still minimized and written); for time-to-detect measurements.
                    Fuzzes in-process (no fork-mode job restarts), and in fork mode after
                    a crash that only failed in the state earlier inputs left behind
  --ignore-known    minimize and write crashes even when regressions/ already keeps their
                    signature (dedupe only within --regressions and this campaign)
  --no-seeds        start from the corpus folder alone: no fuzz/seeds inputs and no seed
                    replay (the dictionary stays): what the fuzzer finds on its own
  --no-progress     no live progress bar (log lines only)
  --libfuzzer-arg A extra libFuzzer flag, -name=value form, repeatable
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.fuzz",
        description="Coverage-guided fuzz campaign over op programs; every new distinct "
        "crash is reproduced, minimized and written to regressions/<slug>.json. "
        "Exit 0: no new distinct crash; 1: at least one; 2: usage/build/environment error.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--build", default="asan", help="build variant (release, debug, asan, tsan, ubsan)")
    a("--inject", default=None, metavar="NAME", help="seeded bug compiled into the build")
    a("--target", default=None, metavar="T", help="foreign allocator: path, soname, fixture:NAME")
    a("--prefix", default=None, metavar="P", help="symbol prefix of --target")
    a("--mode", default="lockstep", choices=MODES)
    a("--threads", type=int, default=0, metavar="N", help="at most N program threads (1..8)")
    a("--max-ops", type=int, default=64, metavar="N", help="longest program in ops")
    a("--max-time", type=float, default=600.0, metavar="S", help="fuzzing time in seconds")
    a("--jobs", type=int, default=1, metavar="N", help="parallel fuzzing jobs (-fork=N)")
    a("--seed", type=int, default=None, metavar="N", help="libFuzzer seed")
    a("--corpus", default=None, metavar="DIR", help="corpus folder (resumed)")
    a("--campaigns", default=None, metavar="DIR", help="campaign folders root")
    a("--regressions", default=None, metavar="DIR", help="where reproducers are written")
    a("--timeout", type=float, default=10.0, metavar="S", help="per-input timeout")
    a("--triage-runs", type=int, default=3, metavar="N", help="replays per crash")
    a("--minimize-time", type=float, default=300.0, metavar="S", help="minimize budget")
    a("--stop-on-find", action="store_true", help="stop fuzzing at the first reproduced crash")
    a("--ignore-known", action="store_true",
      help="do not dedupe against the repository's regressions/")
    a("--no-seeds", action="store_true", help="no fuzz/seeds inputs, no seed replay")
    a("--no-progress", action="store_true", help="no live progress bar")
    a("--libfuzzer-arg", action="append", default=[], metavar="A", help="-name=value flag")
    return p


# --------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Config:
    args: argparse.Namespace
    build: Any  #: the replay build
    fuzz_build: Any  #: the build the fuzzer loads (a coverage build when possible)
    target: Any
    key: str
    corpus: Path
    run_dir: Path
    crashes: Path
    regressions: Path
    env: dict[str, str]
    native: bool
    note: str


def setup(args: argparse.Namespace) -> Config:
    from harness.build import build
    from harness.corpus import CAMPAIGNS, REGRESSIONS, resolve_target
    from harness.errors import UsageError
    from harness.executor import child_env
    from harness.fuzzlibs import fuzz_env, native_runtime

    try:
        import atheris  # noqa: F401
    except ImportError:
        raise UsageError("atheris is not installed: pip install atheris") from None
    if not 0 <= args.threads <= 8:
        raise UsageError("--threads must be 1..8")
    if args.jobs < 1 or args.max_ops < 1 or args.max_time <= 0 or args.triage_runs < 1:
        raise UsageError("--jobs, --max-ops, --triage-runs must be >= 1 and --max-time > 0")
    for a in args.libfuzzer_arg:
        if not re.fullmatch(r"-\w+=.*", a):
            raise UsageError(f"--libfuzzer-arg {a!r}: libFuzzer flags have the form -name=value")
    target = resolve_target(args.target, args.prefix)
    replay_build = build(args.build, args.inject)
    cov, libfuzzer, why = native_runtime(args.build)
    native, note = cov is not None, ""
    fuzz_build = build(cov, args.inject) if cov else replay_build
    if not native:
        note = (f"note: no native coverage for build {args.build!r} ({why}); fuzzing with "
                "libFuzzer guided by Python-level coverage only")
    tname = "" if target.path is None else "-" + re.sub(r"[^\w.]+", "_", target.label)
    key = f"{replay_build.name}{tname}-{args.mode}" + (f"-t{args.threads}" if args.threads else "")
    root = Path(args.campaigns) if args.campaigns else CAMPAIGNS
    corpus = Path(args.corpus) if args.corpus else root / key / "corpus"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = root / key / "runs" / f"{stamp}-{os.getpid()}"
    crashes = run_dir / "crashes"
    for d in (corpus, crashes):
        d.mkdir(parents=True, exist_ok=True)
    env = child_env(fuzz_env(fuzz_build, libfuzzer), target.path is not None)
    env.update({
        "HAKMEM_FUZZ_LIB": str(fuzz_build.lib),
        "HAKMEM_FUZZ_MODE": args.mode,
        "HAKMEM_FUZZ_THREADS": str(args.threads),
        "HAKMEM_FUZZ_TARGET": "" if target.path is None else str(target.path),
        "HAKMEM_FUZZ_PREFIX": target.prefix or "",
        "PYTHONUNBUFFERED": "1",
    })
    regs = Path(args.regressions) if args.regressions else REGRESSIONS
    return Config(args, replay_build, fuzz_build, target, key, corpus.resolve(),
                  run_dir.resolve(), crashes.resolve(), regs, env, native, note)


def libfuzzer_command(cfg: Config, seconds: float | None = None,
                      fork: bool = True) -> list[str]:
    """The libFuzzer command line for a run of ``seconds`` (default: the whole budget), in
    fork mode (jobs in child processes, going on past crashes) or in-process."""
    a = cfg.args
    seconds = a.max_time if seconds is None else seconds
    keep_going = [] if not fork else [
        f"-fork={a.jobs}", "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1"]
    cmd = [str(TARGET_SCRIPT), *keep_going, f"-artifact_prefix={cfg.crashes}/",
           f"-max_total_time={max(1, int(seconds))}", f"-max_len={1 + RECORD * a.max_ops}",
           f"-timeout={max(1, int(a.timeout))}", "-rss_limit_mb=4096", "-print_final_stats=1"]
    if a.seed is not None:
        cmd.append(f"-seed={a.seed}")
    if DICT.is_file():
        cmd.append(f"-dict={DICT}")
    cmd += list(a.libfuzzer_arg)
    cmd.append(str(cfg.corpus))
    if not a.no_seeds and SEEDS.is_dir() and any(SEEDS.iterdir()):
        cmd.append(str(SEEDS))
    return cmd


# --------------------------------------------------------------------------- stats

_STAT = re.compile(r"^#(\d+):?\s.*?(?:cov: (\d+).*?)?corp: (\d+)\S*.*?exec/s:? (\d+)")


@dataclasses.dataclass
class Stats:
    execs: int = 0
    cov: int = 0
    corp: int = 0
    execs_per_s: int = 0
    crash_files: int = 0
    distinct: int = 0
    new_distinct: int = 0
    native_seen: bool = False
    mutator_seen: bool = False
    warned: bool = False
    base_execs: int = 0  #: execs of earlier libFuzzer runs of this campaign
    samples: list[dict[str, float]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def sample(self, elapsed: float) -> None:
        """Records the progress plot's point at ``elapsed`` seconds."""
        with self.lock:
            self.samples.append({"elapsed": elapsed, "execs": self.execs,
                                 "execs_per_s": self.execs_per_s, "cov": self.cov,
                                 "corp": self.corp, "crashes": self.crash_files,
                                 "distinct": self.distinct})

    def line(self, text: str) -> None:
        if "inline 8-bit counters" in text:
            self.native_seen = True
        if "found LLVMFuzzerCustomMutator" in text:
            self.mutator_seen = True
        m = _STAT.match(text)
        if m:
            execs, cov, corp, rate = (int(g or 0) for g in m.groups())
            with self.lock:
                self.execs, self.cov, self.corp, self.execs_per_s = (
                    self.base_execs + execs, cov, corp, rate)


def _reader(stream, log_path: Path, stats: Stats) -> None:
    with open(log_path, "a", errors="replace") as log:
        for raw in iter(stream.readline, b""):
            text = raw.decode(errors="replace")
            log.write(text)
            log.flush()
            stats.line(text)


# --------------------------------------------------------------------------- triage


def _artifacts(d: Path) -> list[Path]:
    from harness.corpus import ARTIFACT_PREFIXES

    return sorted((p for p in d.iterdir() if p.name.startswith(ARTIFACT_PREFIXES)
                   and p.is_file()), key=lambda p: p.stat().st_mtime)


class Triage:
    """Takes crash files one by one (in a thread); keeps the per-signature entries."""

    def __init__(self, cfg: Config, stats: Stats, say, start: float) -> None:
        from harness.corpus import REGRESSIONS, known_signatures

        self.cfg = cfg
        self.stats = stats
        self.say = say
        self.start = start  #: wall-clock start of the campaign (time to detect counts from it)
        repo = {} if cfg.args.ignore_known else known_signatures(REGRESSIONS)
        self.known = {**repo, **known_signatures(cfg.regressions)}
        self.found = threading.Event()  #: set at the first crash that reproduces
        self.by_sig: dict[str, dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.queue: queue.Queue[Path | None] = queue.Queue()
        self.index = cfg.crashes / "index.jsonl"
        self.crash_to_regression: list[float] = []

    def scan(self) -> None:
        for p in _artifacts(self.cfg.crashes):
            if p.name not in self.seen:
                self.seen.add(p.name)
                with self.stats.lock:
                    self.stats.crash_files += 1
                self.queue.put(p)

    def run(self) -> None:
        while True:
            p = self.queue.get()
            if p is None:
                return
            try:
                self.one(p)
            except Exception as e:  # a triage bug must not lose the other crashes
                self.say(f"triage of {p.name} failed: {type(e).__name__}: {e}")
                self._log({"file": str(p), "error": f"{type(e).__name__}: {e}"})
            finally:
                self.queue.task_done()

    def _log(self, rec: dict[str, Any]) -> None:
        with open(self.index, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _verified(self, small, program, rep, timeout: float):
        """(program, reliability, repeats) to keep: the minimized program with its own
        reliability over fresh replays, or the original input when the reduction reproduces
        in fewer than half of them. A concurrent-mode program must reproduce in each of at
        least 6 replays, run two at a time as `pytest -n auto regressions` runs them (a race
        that shows on an idle machine can hide when the threads share the cores with
        another replay): its repeats per replay are raised (x4, up to 1280) until it does,
        so that the regression test does not depend on one lucky interleaving."""
        from concurrent.futures import ThreadPoolExecutor

        from harness.triage import run_signature

        runs = self.cfg.args.triage_runs
        repeats = rep.repeats
        side_by_side = 1
        if rep.mode == "concurrent":
            runs, side_by_side = max(runs, 6), 2
        while True:
            with ThreadPoolExecutor(side_by_side) as pool:
                sigs = list(pool.map(lambda _: run_signature(
                    small, self.cfg.build, rep.mode, self.cfg.target, repeats, timeout)[0],
                    range(runs)))
            hits = sigs.count(rep.signature)
            if hits == runs or rep.mode != "concurrent" or repeats >= 1280:
                break
            repeats *= 4
            self.say(f"minimized program reproduces {hits}/{runs}: trying {repeats} repeats")
        if 2 * hits < runs and small != program:
            self.say(f"minimized program reproduces {hits}/{runs}: keeping the original input")
            return program, rep.reliability, rep.repeats
        return small, f"{hits}/{runs}", repeats

    def one(self, path: Path) -> None:
        from harness.corpus import regression_record, write_regression
        from harness.minimize import minimize
        from harness.triage import decode_input, reproduce, signature_frames

        t0 = path.stat().st_mtime
        a = self.cfg.args
        program, mode = decode_input(path.read_bytes(), a.mode, a.threads)
        is_timeout = path.name.startswith("timeout-")
        rtimeout = max(5.0, a.timeout + 2) if is_timeout else 30.0
        from harness.triage import HARNESS_TROUBLE

        trouble = len(HARNESS_TROUBLE)
        rep = reproduce(program, self.cfg.build, self.cfg.target, runs=a.triage_runs,
                        timeout=rtimeout, prefer=mode)
        if rep.signature == "pass" and len(HARNESS_TROUBLE) > trouble:
            # the replay child could not run (e.g. the build is being redone by someone
            # else in this tree): wait for the build (it holds a lock), then retry once
            from harness.build import build as do_build

            do_build(self.cfg.build.variant, self.cfg.build.inject)
            rep = reproduce(program, self.cfg.build, self.cfg.target, runs=a.triage_runs,
                            timeout=rtimeout, prefer=mode)
        entry: dict[str, Any] = {"file": str(path), "signature": rep.signature,
                                 "reliability": rep.reliability, "mode": rep.mode,
                                 "repeats": rep.repeats, "original_ops": len(program.ops),
                                 "detected_s": round(t0 - self.start, 2)}
        if rep.signature == "pass":
            entry["note"] = "did not reproduce in a fresh process (one-time crasher)"
            from harness.triage import HARNESS_TROUBLE
            if HARNESS_TROUBLE:
                entry["harness_trouble"] = HARNESS_TROUBLE[-1].stderr_tail[-2000:]
            self.entries.append(entry)
            self._log(entry)
            return
        if rep.signature in self.by_sig:
            self.by_sig[rep.signature]["duplicates"] += 1
            entry["note"] = "duplicate of an earlier crash in this campaign"
            self._log(entry)
            return
        self.found.set()
        out = rep.outcome
        entry.update(distinct=True, duplicates=0,
                     frames=list(out.frames[:12]) if out else [],
                     report_line=out.report if out else "")
        self.by_sig[rep.signature] = entry
        self.entries.append(entry)
        key = (rep.signature, self.cfg.build.inject, self.cfg.target.label)
        with self.stats.lock:
            self.stats.distinct += 1
        if key in self.known:
            entry.update(new=False, known_as=str(self.known[key]))
            self.say(f"known crash {rep.signature} ({rep.reliability}): {self.known[key]}")
            self._log(entry)
            return
        entry["new"] = True
        with self.stats.lock:
            self.stats.new_distinct += 1
        self.say(f"new crash {rep.signature} ({rep.reliability} {rep.mode}) from {path.name}; "
                 f"minimizing {len(program.ops)} ops")
        fail_index = None
        if out and out.verdict is not None and not out.verdict.passed:
            fail_index = out.verdict.op_index
        mres = minimize(program, self.cfg.build, self.cfg.target, rep.mode, rep.signature,
                        repeats=rep.repeats, fail_index=fail_index,
                        timeout=rtimeout, max_seconds=a.minimize_time)
        small, reliability, repeats = self._verified(mres.program, program, rep, rtimeout)
        record = regression_record(
            small, signature=rep.signature, build=self.cfg.build.variant,
            inject=self.cfg.build.inject, target=self.cfg.target, mode=rep.mode,
            repeats=repeats, reliability=reliability, original_ops=len(program.ops),
            campaign=str(self.cfg.run_dir), frames=signature_frames(out.frames) if out else [])
        reg = write_regression(record, self.cfg.regressions)
        self.crash_to_regression.append(time.time() - t0)
        mini_dir = self.cfg.run_dir / "minimized"
        mini_dir.mkdir(exist_ok=True)
        prog_path = mini_dir / f"{reg.stem}.json"
        prog_path.write_text(small.to_text())
        shutil.copy2(reg, mini_dir / f"{reg.stem}.regression.json")
        replay = ["python", "-m", "harness.run", str(prog_path), "--build",
                  self.cfg.build.variant, "--mode", rep.mode]
        if self.cfg.build.inject:
            replay += ["--inject", self.cfg.build.inject]
        if self.cfg.target.path is not None:
            replay += ["--target", str(self.cfg.target.path), "--prefix",
                       self.cfg.target.prefix or ""]
        if repeats > 1:
            replay += ["--repeats", str(repeats)]
        entry.update(minimized_ops=len(small.ops), minimize_runs=mres.runs,
                     minimize_seconds=mres.seconds, regression=str(reg),
                     program_text=small.to_text(), replay=shlex.join(replay))
        self.known[key] = reg
        self.say(f"wrote {reg} ({len(program.ops)} -> {len(small.ops)} ops)")
        self._log({k: v for k, v in entry.items() if k != "program_text"})


# --------------------------------------------------------------------------- campaign


def _check_seeds(cfg: Config, say) -> None:
    """libFuzzer's -fork mode merges seed inputs without reporting those that crash: replay
    each seed once here (concurrent mode: CONCURRENT_REPEATS runs, as triage does) and
    persist a failing one as crashes/crash-seed-<name>."""
    from harness.triage import CONCURRENT_REPEATS, decode_input, run_signature

    for seed in sorted(SEEDS.glob("*")) if SEEDS.is_dir() else []:
        data = seed.read_bytes()
        program, mode = decode_input(data, cfg.args.mode, cfg.args.threads)
        repeats = CONCURRENT_REPEATS if mode == "concurrent" else 1
        sig, _ = run_signature(program, cfg.build, mode, cfg.target, repeats,
                               max(2.0, cfg.args.timeout + 1) * (3 if repeats > 1 else 1))
        if sig != "pass" and not sig.startswith(("child:", "executor")):
            name = SEED_CRASH_PREFIX + seed.stem
            shutil.copyfile(seed, cfg.crashes / name)  # copyfile: its mtime is now
            say(f"seed {seed.name} fails ({sig}): persisted as {name}")
            if sig == "timeout":
                return  # every hanging seed would cost a timeout: one is enough


def _one_run(cfg: Config, stats: Stats, triage: Triage, say, bar, log_path: Path,
             start: float, seconds: float, fork: bool) -> tuple[int, bool]:
    """One libFuzzer process for ``seconds``, polled; returns (exit code, interrupted)."""
    args = cfg.args
    cmd = libfuzzer_command(cfg, seconds, fork)
    with stats.lock:
        stats.base_execs = stats.execs
    with open(cfg.run_dir / "command.txt", "a") as f:
        f.write(shlex.join(cmd) + "\n")
    proc = subprocess.Popen(cmd, cwd=str(cfg.run_dir), env=cfg.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    reader = threading.Thread(target=_reader, args=(proc.stdout, log_path, stats), daemon=True)
    reader.start()
    deadline = time.monotonic() + seconds + 60  # libFuzzer stops itself; the safety net
    stopping = interrupted = False
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            triage.scan()
            elapsed = time.monotonic() - start
            stats.sample(elapsed)
            _warn_once(cfg, stats, say, log_path, elapsed)
            if bar is not None:
                bar.n = min(int(elapsed), int(args.max_time))
                bar.set_postfix_str(
                    f"exec/s {stats.execs_per_s} cov {stats.cov} corp {stats.corp} "
                    f"crashes {stats.crash_files} bugs {stats.distinct}", refresh=True)
            if args.stop_on_find and triage.found.is_set() and not stopping:
                say("--stop-on-find: a crash reproduced; stopping the fuzzer")
                stopping = True
                deadline = time.monotonic()
            if time.monotonic() > deadline:
                if not stopping:
                    say("libFuzzer did not stop at -max_total_time; stopping it")
                os.killpg(proc.pid, signal.SIGINT)
                deadline += 30
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: stopping the fuzzer, then triaging what was found")
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    return proc.returncode, interrupted


def _warn_once(cfg: Config, stats: Stats, say, log_path: Path, elapsed: float) -> None:
    if elapsed < 20 or stats.warned:
        return
    if cfg.native and not stats.native_seen:
        say("warning: libFuzzer did not report inline 8-bit counters: native coverage "
            f"is NOT active (see {log_path})")
    if not stats.mutator_seen:
        say("warning: libFuzzer did not report the custom mutator (fuzz/mutator.c): "
            f"mutations are byte-level only (see {log_path})")
    stats.warned = True


def _drive(cfg: Config, stats: Stats, triage: Triage, say, bar, log_path: Path,
           start: float) -> tuple[int, bool]:
    """Fuzzes until the budget is spent. Fork mode is one libFuzzer run that outlives its
    crashes. ``--stop-on-find`` starts in-process instead (no job restarts: about three
    times the execs/s early on), so libFuzzer exits at its first crash, which is triaged.
    If that crash does not reproduce in a fresh process, it depended on the state earlier
    inputs left in the process (and a restart would replay the corpus into it again): the
    rest of the budget is fuzzed in fork mode."""
    fork = not cfg.args.stop_on_find
    while True:
        left = cfg.args.max_time - (time.monotonic() - start)
        rc, interrupted = _one_run(cfg, stats, triage, say, bar, log_path, start, left, fork)
        if interrupted or fork:
            return rc, interrupted
        triage.scan()
        triage.queue.join()  # every crash so far is reproduced (or not) before deciding
        if triage.found.is_set() or rc == 0 or cfg.args.max_time - (
                time.monotonic() - start) < 1:
            return rc, False
        say(f"libFuzzer exited {rc} on a crash that did not reproduce alone; fuzzing the "
            "rest of the budget in fork mode")
        fork = True


def campaign(cfg: Config) -> dict[str, Any]:
    """Runs the campaign; returns the summary (``new_distinct`` decides the exit status)."""
    from harness.corpus import git_revision
    from harness.report import write as write_report

    args = cfg.args
    stats = Stats()
    log_path = cfg.run_dir / "fuzz.log"
    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=int(args.max_time), unit="s", dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}")
        except ImportError:
            bar = None

    def say(msg: str) -> None:
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    if cfg.note:
        say(cfg.note)
    say(f"campaign {cfg.key}: run folder {cfg.run_dir}")
    say(f"corpus {cfg.corpus}; fuzzing {cfg.fuzz_build.name}, replaying on {cfg.build.name}")
    triage = Triage(cfg, stats, say, time.time())
    if not args.no_seeds:
        _check_seeds(cfg, say)
    worker = threading.Thread(target=triage.run, name="triage", daemon=True)
    worker.start()
    start = time.monotonic()
    returncode, interrupted = _drive(cfg, stats, triage, say, bar, log_path, start)
    elapsed = time.monotonic() - start
    triage.scan()
    triage.queue.put(None)
    if bar is not None:
        bar.n = min(int(elapsed), int(args.max_time))
        bar.set_postfix_str(f"fuzzing done; triaging {triage.queue.qsize() - 1} more",
                            refresh=True)
    worker.join()
    if bar is not None:
        bar.set_postfix_str(f"exec/s {stats.execs_per_s} cov {stats.cov} corp {stats.corp} "
                            f"crashes {stats.crash_files} bugs {stats.distinct}", refresh=True)
        bar.close()
    stats.sample(elapsed)
    with open(cfg.run_dir / "stats.csv", "w") as f:
        keys = ["elapsed", "execs", "execs_per_s", "cov", "corp", "crashes", "distinct"]
        f.write(",".join(keys) + "\n")
        for s in stats.samples:
            f.write(",".join(f"{s[k]:.1f}" if k == "elapsed" else str(s[k]) for k in keys)
                    + "\n")
    corpus_n = sum(1 for _ in cfg.corpus.iterdir())
    summary = {
        "key": cfg.key,
        "command": "python -m harness.fuzz " + shlex.join(sys.argv[1:]),
        "build": cfg.build.name, "fuzz_build": cfg.fuzz_build.name,
        "inject": cfg.build.inject, "target": cfg.target.label, "mode": args.mode,
        "threads": args.threads or "any", "jobs": args.jobs, "seed": args.seed,
        "max_time": args.max_time, "elapsed": round(elapsed, 1), "execs": stats.execs,
        "execs_per_s": round(stats.execs / elapsed) if elapsed else 0,
        "coverage": stats.cov,
        "native_coverage": "yes" if stats.native_seen else "no" + (
            f" ({cfg.note.removeprefix('note: ')})" if cfg.note else ""),
        "custom_mutator": "yes" if stats.mutator_seen else "no (libFuzzer did not report it)",
        "corpus": corpus_n, "corpus_dir": str(cfg.corpus), "crash_files": stats.crash_files,
        "distinct": stats.distinct, "new_distinct": stats.new_distinct,
        "revision": git_revision(), "run_dir": str(cfg.run_dir),
        "fuzzer_exit": returncode, "interrupted": interrupted,
        "crash_to_regression_s": triage.crash_to_regression,
        "first_detection_s": min((e["detected_s"] for e in triage.entries
                                  if e.get("distinct")), default=None),
        "entries": [{k: v for k, v in e.items() if k != "program_text"}
                    for e in triage.entries],
        "regressions": [e["regression"] for e in triage.entries if e.get("regression")],
    }
    report = write_report(cfg.run_dir, summary, triage.entries, stats.samples)
    summary["report"] = str(report)
    (cfg.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"done: {stats.execs} execs in {elapsed:.0f} s, coverage {stats.cov}, corpus "
        f"{corpus_n}, {stats.crash_files} crash files, {stats.distinct} distinct "
        f"({stats.new_distinct} new); report {report}")
    return summary


def main(argv: list[str] | None = None) -> int:
    from harness.errors import HarnessError

    args = _parser().parse_args(argv)
    try:
        cfg = setup(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = campaign(cfg)
    return 1 if summary["new_distinct"] else 0


if __name__ == "__main__":
    sys.exit(main())
