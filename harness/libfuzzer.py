"""libFuzzer, seen from a campaign: its command line, its log, and a campaign's folders.

The atheris target (fuzz/fuzz_target.py) runs under libFuzzer in-process (one process
fuzzes until a crash, timeout or OOM ends it; the campaign driver then starts it again on
the corpus) or in fork mode (``-fork=N -ignore_crashes=1 -ignore_timeouts=1
-ignore_ooms=1``: every job is a child process that re-imports the target and re-reads
the corpus). Either way every crash/timeout/oom input is written by libFuzzer straight into
the run's ``crashes/`` folder (``-artifact_prefix``) before it exits or goes on, and before
the campaign looks at it.

Layout of a campaign (``campaigns/`` is git-ignored)::

    campaigns/<key>/corpus/            the corpus: persists, a later campaign resumes it
    campaigns/<key>/runs/<stamp>/      one campaign run
        crashes/                       every crash input, persisted by libFuzzer first
        crashes/index.jsonl            one line per triaged input
        fuzz.log, stats.csv, command.txt, report.md, progress.png, summary.json, minimized/
        execs                          the in-process target's count of inputs run
        seeds/                         the seed folders without failing seeds (if any)
        neighbours/                    the seeds' one-step neighbours (harness.neighbours)

``<key>`` is ``<build>[+<inject>][-<target>]-<mode>[-t<threads>]``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from harness import PROJECT_ROOT
from harness.campaign_options import CampaignOptions
from harness.program import RECORD

__all__ = ["ARTIFACT_PREFIXES", "CAMPAIGNS", "DICT", "EXECS_ENV", "LIFELINE_ENV", "SCHED_SEEDS",
           "SEEDS", "SEED_CRASH_PREFIX", "TARGET_SCRIPT", "CampaignDirs", "Stats", "artifacts",
           "campaign_key", "command", "read_log", "seed_dirs"]

FUZZ_DIR = PROJECT_ROOT / "fuzz"
TARGET_SCRIPT = FUZZ_DIR / "fuzz_target.py"
SEEDS = FUZZ_DIR / "seeds"
#: seeds for schedule-controlled builds only: a fork among threads in their slow paths is
#: what a schedule can time, and elsewhere every descendant would pay a fork per run
SCHED_SEEDS = FUZZ_DIR / "seeds-sched"
DICT = FUZZ_DIR / "hakmem.dict"
CAMPAIGNS = PROJECT_ROOT / "campaigns"
#: names libFuzzer gives the inputs it persists
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")
#: crash files of seeds that failed as they are (the rest are libFuzzer's crash-<sha1>)
SEED_CRASH_PREFIX = "crash-seed-"
#: names the descriptor on which the fuzz target reads EOF once the campaign driver is gone
LIFELINE_ENV = "HAKMEM_FUZZ_LIFELINE"
#: names the 8-byte file in which an in-process fuzz target counts the inputs it ran
EXECS_ENV = "HAKMEM_FUZZ_EXECS"


@dataclasses.dataclass(frozen=True)
class CampaignDirs:
    """The folders of one campaign run (created)."""

    key: str
    corpus: Path
    run_dir: Path

    @property
    def crashes(self) -> Path:
        return self.run_dir / "crashes"

    @property
    def neighbours(self) -> Path:
        return self.run_dir / "neighbours"

    @classmethod
    def create(cls, key: str, opts: CampaignOptions) -> CampaignDirs:
        root = Path(opts.campaigns) if opts.campaigns else CAMPAIGNS
        corpus = Path(opts.corpus) if opts.corpus else root / key / "corpus"
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = root / key / "runs" / f"{stamp}-{os.getpid()}"
        dirs = cls(key, corpus.resolve(), run_dir.resolve())
        for d in (dirs.corpus, dirs.crashes):
            d.mkdir(parents=True, exist_ok=True)
        return dirs


def campaign_key(build_name: str, target_label: str | None, opts: CampaignOptions) -> str:
    tname = "" if target_label is None else "-" + re.sub(r"[^\w.]+", "_", target_label)
    return f"{build_name}{tname}-{opts.mode}" + (f"-t{opts.threads}" if opts.threads else "")


def seed_dirs(scheduled: bool) -> list[Path]:
    """The seed folders of a campaign: ``SEEDS``, and ``SCHED_SEEDS`` on a
    schedule-controlled build; those that exist and hold a file."""
    dirs = [SEEDS, SCHED_SEEDS] if scheduled else [SEEDS]
    return [d for d in dirs if d.is_dir() and any(d.iterdir())]


def command(opts: CampaignOptions, dirs: CampaignDirs, seconds: float, fork: bool,
            seeds: Sequence[Path], start: int = 0) -> list[str]:
    """The libFuzzer command line for a run of ``seconds``, in fork mode (jobs in child
    processes, going on past crashes) or in-process; ``seeds``: the seed folders (none
    with ``--no-seeds`` either way); ``start``: how many libFuzzer runs of this campaign
    came before (a restart with ``--seed`` N gets seed N+start: the same seed on the same
    corpus would make the same mutations to the same crash)."""
    keep_going = [] if not fork else [
        f"-fork={opts.jobs}", "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1"]
    cmd = [str(TARGET_SCRIPT), *keep_going, f"-artifact_prefix={dirs.crashes}/",
           f"-max_total_time={max(1, int(seconds))}", f"-max_len={1 + RECORD * opts.max_ops}",
           f"-timeout={max(1, int(opts.timeout))}", "-rss_limit_mb=4096", "-print_final_stats=1"]
    if opts.seed is not None:
        cmd.append(f"-seed={opts.seed + start}")
    if DICT.is_file():
        cmd.append(f"-dict={DICT}")
    cmd += list(opts.libfuzzer_arg)
    cmd.append(str(dirs.corpus))
    if not opts.no_seeds:
        cmd += [str(d) for d in seeds]
    return cmd


def artifacts(crashes: Path) -> list[Path]:
    """The inputs libFuzzer (or the seed replay) persisted, oldest first."""
    return sorted((p for p in crashes.iterdir() if p.name.startswith(ARTIFACT_PREFIXES)
                   and p.is_file()), key=lambda p: p.stat().st_mtime)


_FINAL = "stat::number_of_executed_units:"
_STAT = re.compile(r"^#(\d+):?\s.*?(?:cov: (\d+).*?)?corp: (\d+)\S*.*?exec/s:? (\d+)")


@dataclasses.dataclass
class Stats:
    """A campaign's live figures, from libFuzzer's log and the crash lifecycle."""

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
    #: monotonic time at which the current libFuzzer run loaded its corpus (INITED)
    inited_at: float | None = None
    #: the last (monotonic time, execs) the rate of :meth:`executed` counts from; None:
    #: the current run has no count of its own (execs/s is libFuzzer's)
    rate_from: tuple[float, int] | None = None
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
        """Takes one line of libFuzzer's output."""
        if "inline 8-bit counters" in text:
            self.native_seen = True
        if "found LLVMFuzzerCustomMutator" in text:
            self.mutator_seen = True
        if "INITED" in text and self.inited_at is None:
            self.inited_at = time.monotonic()
        if text.startswith(_FINAL):  # a run's last count (none after a crash's last #N)
            with self.lock:
                self.execs = max(self.execs, self.base_execs + int(text[len(_FINAL):]))
            return
        m = _STAT.match(text)
        if m:
            execs, cov, corp, rate = (int(g or 0) for g in m.groups())
            with self.lock:
                self.execs = max(self.execs, self.base_execs + execs)
                self.cov, self.corp = cov, corp
                if self.rate_from is None:  # libFuzzer's average since its start
                    self.execs_per_s = rate

    def new_run(self) -> None:
        """A libFuzzer run starts: its counts add to those of the runs before it."""
        with self.lock:
            self.base_execs = self.execs
            self.inited_at = None
            self.rate_from = None

    def executed(self, count: int, now: float) -> None:
        """The current run's own count of inputs run (ahead of libFuzzer's log), read at
        ``now`` (monotonic); execs/s over the last 2 seconds or more."""
        with self.lock:
            self.execs = max(self.execs, self.base_execs + count)
            if self.rate_from is None:
                self.rate_from = (now, self.base_execs)
            since, then = self.rate_from
            if now - since >= 2:
                self.execs_per_s = round((self.execs - then) / (now - since))
                self.rate_from = (now, self.execs)

    def status(self) -> str:
        return (f"exec/s {self.execs_per_s} cov {self.cov} corp {self.corp} "
                f"crashes {self.crash_files} bugs {self.distinct}")

    def write_csv(self, path: Path) -> None:
        keys = ["elapsed", "execs", "execs_per_s", "cov", "corp", "crashes", "distinct"]
        with open(path, "w") as f:
            f.write(",".join(keys) + "\n")
            for s in self.samples:
                f.write(",".join(f"{s[k]:.1f}" if k == "elapsed" else str(s[k]) for k in keys)
                        + "\n")


def read_log(stream: IO[bytes], log_path: Path, stats: Stats) -> None:
    """Copies libFuzzer's output to ``log_path`` line by line, feeding ``stats``."""
    with open(log_path, "a", errors="replace") as log:
        for raw in iter(stream.readline, b""):
            text = raw.decode(errors="replace")
            log.write(text)
            log.flush()
            stats.line(text)
