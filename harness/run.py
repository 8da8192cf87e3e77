"""Replay one program: ``python -m harness.run PROGRAM.json --build asan
[--mode lockstep|concurrent] [--target PATH --prefix P] [--inject NAME] [--repeats N]
[--timeout S] [--no-whitebox] [--json]``; or import a crash found elsewhere:
``python -m harness.run --import CRASH [--fuzzer F --sanitizer S | --build B --mode M ...]``.

Runs the program in a fresh child process on the build (built if needed) and prints
the outcome. PROGRAM may also be a reproducer of regressions/: its build, seeded bug, mode,
repeats and target are then the defaults (``python -m harness.run regressions/X.json``
replays the bug; add ``--inject ""`` for the clean build). Exit status: 0 pass, 1 a
finding (check, sanitizer, signal, timeout), 2 usage error (unknown build or inject,
malformed program: the file, op index and field are named).

``--import`` (harness.importer) persists the crash file into an import campaign, then
reproduces, signs, dedupes, minimizes and writes it to regressions/ as a local campaign
would. Exit status: 0 it did not reproduce or regressions/ already keeps the bug, 1 a new
reproducer was written, 2 usage error (a file that is no crash input of ours is refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import cli
from harness import program as prog
from harness.binding import hook_mask
from harness.build import build
from harness.checks import replay
from harness.campaign_options import CampaignOptions
from harness.errors import UsageError
from harness.importer import fleet_options, import_crash, run_options
from harness.regressions import Regression, is_regression_file
from harness.target import Target, resolve_target


@dataclasses.dataclass
class _Request:
    """What to replay: the program and its settings, defaults filled from a reproducer."""

    program: prog.Program
    build: str
    inject: str | None
    mode: str
    repeats: int
    target: Target


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__.split("\n\n")[0])
    p.add_argument("program", nargs="?", help="a text (.json) program, a binary one, or a "
                   "reproducer of regressions/")
    p.add_argument("--import", dest="crash", default=None, metavar="CRASH",
                   help="a crash file found elsewhere (nightly artifact, ClusterFuzzLite/OSS-Fuzz,"
                   " libFuzzer): triage, minimize, write to regressions/")
    p.add_argument("--fuzzer", default=None, help="with --import: the fleet target that found "
                   "it (hakmem_lockstep_fuzzer, hakmem_concurrent_fuzzer)")
    p.add_argument("--sanitizer", default=None, help="with --fuzzer: address or undefined")
    p.add_argument("--threads", type=int, default=0, help="with --import: the campaign's "
                   "--threads (folds the first byte)")
    p.add_argument("--regressions", default=None, help="with --import: where the reproducer "
                   "goes (default regressions/)")
    p.add_argument("--build", default=None, help="build variant (default: release)")
    p.add_argument("--inject", default=None, help="seeded bug compiled into the build")
    p.add_argument("--mode", choices=("lockstep", "concurrent", "mixed"), default=None,
                   help="default: lockstep (mixed: with --import, as a mixed campaign ran it)")
    p.add_argument("--target", default=None, help="foreign allocator library (black-box)")
    p.add_argument("--prefix", default=None, help="symbol prefix of --target (\"\" for libc)")
    p.add_argument("--repeats", type=int, default=None, help="runs inside the child "
                   "(default 1)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--no-whitebox", action="store_true", help="black-box checks only")
    p.add_argument("--hook", default=None, help="executor test hooks (comma-separated)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return p


def _request(args: argparse.Namespace) -> _Request:
    """The program, with the defaults a reproducer file carries under the flags given."""
    if args.prefix is not None and args.target is None:
        raise UsageError("--prefix needs --target")
    if args.repeats is not None and args.repeats < 1:
        raise UsageError("--repeats must be >= 1")
    path = Path(args.program)
    target = resolve_target(args.target, args.prefix) if args.target else None
    if path.suffix == ".json" and path.is_file() and is_regression_file(path):
        reg = Regression.read(path)
        return _Request(reg.program, args.build or reg.build,
                        reg.inject if args.inject is None else (args.inject or None),
                        args.mode or reg.mode, args.repeats or reg.repeats,
                        target or reg.target_obj())
    return _Request(prog.load(path), args.build or "release", args.inject or None,
                    args.mode or "lockstep", args.repeats or 1, target or Target())


def _import(args: argparse.Namespace) -> int:
    crash = Path(args.crash)
    if args.program:
        raise UsageError("give a PROGRAM to replay or --import CRASH, not both")
    if args.fuzzer or args.sanitizer:
        if not (args.fuzzer and args.sanitizer):
            raise UsageError("--fuzzer and --sanitizer go together (the fleet's target and "
                             "the sanitizer it ran under)")
        opts = fleet_options(args.fuzzer, args.sanitizer, args.inject or None)
    else:
        opts = run_options(crash) or CampaignOptions(
            build=args.build or "asan", inject=args.inject or None, target=args.target,
            prefix=args.prefix, mode=args.mode or "lockstep", threads=args.threads)
    entry = import_crash(crash, opts.validate(), Path(args.regressions) if args.regressions
                         else None, lambda m: print(m, flush=True))
    print(f"{crash}: {entry.signature or 'not reproduced'} "
          f"({entry.reliability or '-'} {entry.mode}); "
          + (f"wrote {entry.regression}" if entry.regression else
             f"already kept as {entry.known_as}" if entry.known_as else entry.note))
    return 1 if entry.regression else 0


def _main(args: argparse.Namespace) -> int:
    if args.crash:
        return _import(args)
    if not args.program:
        raise UsageError("give a PROGRAM to replay (or --import CRASH)")
    if args.mode == "mixed":
        raise UsageError("--mode mixed is for --import (a program replays in one mode)")
    hook_mask(args.hook)  # an unknown hook is a usage error before anything is built
    req = _request(args)
    b = build(req.build, req.inject)
    out = replay(req.program, b, req.mode, req.repeats, args.timeout, target=req.target,
                 whitebox=not args.no_whitebox, hooks=args.hook)
    if args.json:
        print(json.dumps(out.to_dict(), indent=2))
    else:
        target = (f"{req.target.path} (prefix {req.target.prefix or ''!r})"
                  if req.target.foreign else "hakmem")
        print(f"{args.program}: {len(req.program)} ops, {req.program.threads} thread(s), "
              f"build {b.name}, target {target}, mode {req.mode}")
        if req.program.schedule is not None and not (b.scheduled and req.mode == "concurrent"):
            print("(its schedule is ignored: only the concurrent mode of a schedule-controlled "
                  "build, asan-sched, runs one)")
        print(out.describe())
        if not out.passed and out.stderr_tail and out.kind in ("sanitizer", "signal", "child"):
            print("--- stderr (tail) ---")
            print(out.stderr_tail[-3000:])
    return 0 if out.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return cli.run(lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
