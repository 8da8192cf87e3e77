"""Replay one program: ``python -m harness.run PROGRAM.json --build asan
[--mode lockstep|concurrent] [--target PATH --prefix P] [--inject NAME] [--repeats N]
[--timeout S] [--no-whitebox] [--json]``.

Runs the program in a fresh child process on the build (built if needed) and prints
the outcome. PROGRAM may also be a reproducer of regressions/: its build, seeded bug, mode,
repeats and target are then the defaults (``python -m harness.run regressions/X.json``
replays the bug; add ``--inject ""`` for the clean build). Exit status: 0 pass, 1 a
finding (check, sanitizer, signal, timeout), 2 usage error (unknown build or inject,
malformed program: the file, op index and field are named).
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
from harness.errors import UsageError
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
    p.add_argument("program", help="a text (.json) program, a binary one, or a reproducer "
                   "of regressions/")
    p.add_argument("--build", default=None, help="build variant (default: release)")
    p.add_argument("--inject", default=None, help="seeded bug compiled into the build")
    p.add_argument("--mode", choices=("lockstep", "concurrent"), default=None,
                   help="default: lockstep")
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


def _main(args: argparse.Namespace) -> int:
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
