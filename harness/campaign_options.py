"""What a fuzz campaign is asked to do: :class:`CampaignOptions`, and the command line
(``python -m harness.fuzz --help``) that fills it.

The record is the one interface between whoever starts a campaign (the command line, the
scoreboard, a test) and the campaign: the scoreboard builds a campaign's argv with
:meth:`CampaignOptions.to_argv`, and the campaign summary keeps :meth:`to_json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from harness.errors import UsageError
from harness.program import FUZZ_MODES, MAX_THREADS

__all__ = ["CampaignOptions", "parser"]

EPILOG = """\
examples:
  python -m harness.fuzz --build asan --max-time 600
  python -m harness.fuzz --build asan --inject NAME --max-time 300  # seeded bug
  python -m harness.fuzz --build asan --target fixture:overlap --max-time 60
  python -m harness.fuzz --target /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 --prefix mi_
  python -m harness.fuzz --build tsan --mode concurrent --threads 4 --jobs 2 --max-time 3600

every flag:
  --build B         build variant to fuzz: release, debug, asan, tsan, ubsan (default asan;
                    asan and tsan fuzz their -cov build with native coverage of the
                    allocator and executor; the others run without coverage feedback: no
                    Python or C code of theirs is instrumented, so libFuzzer mutates its
                    corpus blind, and the campaign warns)
  --inject NAME     compile seeded bug NAME (src_c/alloc/inject.h) into the build
  --source DIR      build from DIR, a src_c/ tree standing in for the project's (a mutant:
                    python -m harness.mutants); the builds land beside DIR, never over the
                    clean ones
  --target T        fuzz a foreign allocator (black-box): a library path, a soname, or
                    fixture:NAME (tests/fixtures/fx_NAME.c, built for you, prefix fx_)
  --prefix P        symbol prefix of --target (mi_, tc_, "" for libc); default "" (fx_ for fixtures)
  --mode M          lockstep (deterministic), concurrent (real races) or mixed (bit 7 of
                    the first input byte picks per input, so the corpus holds both);
                    default mixed. In every mode programs may loop (long-lived threads,
                    thread churn, sustained remote frees) and fork
  --threads N       at most N program threads per input (1..8; default: any, up to 8)
  --max-ops N       longest program, in ops (default 64: libFuzzer -max_len=1+8*N)
  --max-time S      stop fuzzing after S seconds (default 600); triage then finishes
  --jobs N          1 (default): libFuzzer fuzzes in-process (the target is imported and
                    the corpus read once); a crash, hang or OOM ends it, its input already
                    in crashes/, and it is started again on the corpus; a crash loop (it
                    dies again loading the corpus, or 3 runs in a row end within 10 s) turns
                    the rest of the budget to fork mode. N > 1: N parallel jobs in
                    libFuzzer's fork mode (-fork=N; every job a fresh process)
  --seed N          libFuzzer -seed (default: random)
  --corpus DIR      corpus folder (default campaigns/<key>/corpus; resumed across runs)
  --campaigns DIR   where campaign folders go (default campaigns/)
  --regressions DIR where new reproducers are written (default regressions/)
  --timeout S       per-input timeout inside the fuzzer (default 25 s; a hang is a crash:
                    a loop program of a million ops takes seconds on a sanitized build)
  --triage-runs N   fresh-process replays per crash for reliability (default 3)
  --minimize-time S time budget for minimizing each distinct crash (default 300)
  --stop-on-find    stop fuzzing at the first crash that reproduces in a fresh process
                    (it is still minimized and written); for time-to-detect measurements.
                    Fuzzes in-process whatever --jobs says and waits for each crash's
                    triage; one that does not reproduce alone (a one-time crasher) restarts
                    libFuzzer on the corpus like any crash (a crash loop: fork mode)
  --ignore-known    minimize and write crashes even when regressions/ already keeps their
                    signature (dedupe only within --regressions and this campaign)
  --no-seeds        start from the corpus folder alone: no fuzz/seeds inputs and no seed
                    replay (the dictionary stays): what the fuzzer finds on its own
  --no-neighbours   no seed neighbours: by default the first in-process libFuzzer run also
                    loads every program one structural step from a seed (a record erased,
                    repeated, or moved to another thread; harness/neighbours.py), a few
                    hundred inputs; a crash on one is labelled "neighbour" with its seed
                    and step. Fork mode from the start (--jobs > 1) gets none: its corpus
                    merge skips a crashing input silently
  --no-progress     no live progress bar (log lines only)
  --libfuzzer-arg A extra libFuzzer flag, -name=value form, repeatable
"""


@dataclasses.dataclass(frozen=True)
class CampaignOptions:
    """Every knob of one campaign (the flags above, by the same names)."""

    build: str = "asan"
    inject: str | None = None
    source: str | None = None
    target: str | None = None
    prefix: str | None = None
    mode: str = "mixed"
    threads: int = 0
    max_ops: int = 64
    max_time: float = 600.0
    jobs: int = 1
    seed: int | None = None
    corpus: str | None = None
    campaigns: str | None = None
    regressions: str | None = None
    timeout: float = 25.0
    triage_runs: int = 3
    minimize_time: float = 300.0
    stop_on_find: bool = False
    ignore_known: bool = False
    no_seeds: bool = False
    no_neighbours: bool = False
    no_progress: bool = False
    libfuzzer_arg: tuple[str, ...] = ()

    @property
    def forks_from_start(self) -> bool:
        """Whether libFuzzer runs in fork mode from the start (``--jobs`` > 1 without
        ``--stop-on-find``, which fuzzes in-process whatever --jobs says)."""
        return self.jobs > 1 and not self.stop_on_find

    def validate(self) -> CampaignOptions:
        """Itself, or UsageError naming the first bad value."""
        if not 0 <= self.threads <= MAX_THREADS:
            raise UsageError(f"--threads must be 1..{MAX_THREADS}")
        if self.mode not in FUZZ_MODES:
            raise UsageError(f"--mode must be one of {', '.join(FUZZ_MODES)}")
        if self.jobs < 1 or self.max_ops < 1 or self.max_time <= 0 or self.triage_runs < 1:
            raise UsageError("--jobs, --max-ops, --triage-runs must be >= 1 and --max-time > 0")
        for a in self.libfuzzer_arg:
            if not re.fullmatch(r"-\w+=.*", a):
                raise UsageError(f"--libfuzzer-arg {a!r}: libFuzzer flags have the form "
                                 "-name=value")
        return self

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> CampaignOptions:
        values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)}
        values["libfuzzer_arg"] = tuple(values["libfuzzer_arg"])
        return cls(**values)

    def to_argv(self) -> list[str]:
        """The ``python -m harness.fuzz`` arguments that give these options."""
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if value == f.default:
                continue
            if isinstance(value, bool):
                argv.append(flag)
            elif isinstance(value, tuple):  # flag=value: a value may begin with "-"
                argv += [f"{flag}={a}" for a in value]
            else:
                argv += [flag, str(value)]
        return argv

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m harness.fuzz``."""
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
    a("--source", default=None, metavar="DIR", help="src_c/ tree to build from (a mutant)")
    a("--target", default=None, metavar="T", help="foreign allocator: path, soname, fixture:NAME")
    a("--prefix", default=None, metavar="P", help="symbol prefix of --target")
    a("--mode", default="mixed", choices=FUZZ_MODES)
    a("--threads", type=int, default=0, metavar="N", help="at most N program threads (1..8)")
    a("--max-ops", type=int, default=64, metavar="N", help="longest program in ops")
    a("--max-time", type=float, default=600.0, metavar="S", help="fuzzing time in seconds")
    a("--jobs", type=int, default=1, metavar="N",
      help="1: in-process, restarted after crashes; N > 1: -fork=N")
    a("--seed", type=int, default=None, metavar="N", help="libFuzzer seed")
    a("--corpus", default=None, metavar="DIR", help="corpus folder (resumed)")
    a("--campaigns", default=None, metavar="DIR", help="campaign folders root")
    a("--regressions", default=None, metavar="DIR", help="where reproducers are written")
    a("--timeout", type=float, default=25.0, metavar="S", help="per-input timeout")
    a("--triage-runs", type=int, default=3, metavar="N", help="replays per crash")
    a("--minimize-time", type=float, default=300.0, metavar="S", help="minimize budget")
    a("--stop-on-find", action="store_true", help="stop fuzzing at the first reproduced crash")
    a("--ignore-known", action="store_true",
      help="do not dedupe against the repository's regressions/")
    a("--no-seeds", action="store_true", help="no fuzz/seeds inputs, no seed replay")
    a("--no-neighbours", action="store_true", help="no seed neighbours at the first run")
    a("--no-progress", action="store_true", help="no live progress bar")
    a("--libfuzzer-arg", action="append", default=[], metavar="A", help="-name=value flag")
    return p


def parse(argv: Sequence[str] | None = None) -> CampaignOptions:
    """Options from a command line (not yet validated)."""
    return CampaignOptions.from_args(parser().parse_args(argv))
