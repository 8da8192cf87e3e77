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
import json
import sys
from collections.abc import Sequence

from harness.errors import HarnessError, UsageError


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


def _load(args: argparse.Namespace):
    """The program, with the defaults a reproducer file carries filled into ``args``."""
    from pathlib import Path

    from harness import program as prog
    from harness.corpus import FORMAT, read_regression, target_from_json

    path = Path(args.program)
    try:
        head = json.loads(path.read_text()) if path.suffix == ".json" else None
    except (OSError, UnicodeDecodeError, ValueError):
        head = None
    if not (isinstance(head, dict) and head.get("format") == FORMAT):
        return prog.load(args.program)
    data, program = read_regression(path)
    args.build = args.build or data["build"]
    args.inject = data.get("inject") if args.inject is None else (args.inject or None)
    args.mode = args.mode or data["mode"]
    args.repeats = args.repeats or int(data.get("repeats") or 1)
    if args.target is None and data.get("target"):
        t = target_from_json(data["target"], data.get("prefix"), str(path))
        args.target, args.prefix = str(t.path), t.prefix
    return program


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from harness.build import build
        from harness.executor import replay

        if args.prefix is not None and args.target is None:
            raise UsageError("--prefix needs --target")
        if args.repeats is not None and args.repeats < 1:
            raise UsageError("--repeats must be >= 1")
        if args.hook:
            from harness.binding import HOOKS

            bad = [h for h in args.hook.split(",") if h not in HOOKS]
            if bad:
                raise UsageError(f"unknown hook {bad[0]!r}; one of {', '.join(HOOKS)}")
        program = _load(args)
        args.build, args.mode, args.repeats = (args.build or "release",
                                               args.mode or "lockstep", args.repeats or 1)
        b = build(args.build, args.inject or None)
        out = replay(program, b, args.mode, args.repeats, args.timeout, target=args.target,
                     prefix=args.prefix, whitebox=not args.no_whitebox, hooks=args.hook)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print(json.dumps(out.to_dict(), indent=2))
    else:
        target = f"{args.target} (prefix {args.prefix or ''!r})" if args.target else "hakmem"
        print(f"{args.program}: {len(program)} ops, {program.threads} thread(s), "
              f"build {b.name}, target {target}, mode {args.mode}")
        print(out.describe())
        if not out.passed and out.stderr_tail and out.kind in ("sanitizer", "signal", "child"):
            print("--- stderr (tail) ---")
            print(out.stderr_tail[-3000:])
    return 0 if out.passed else 1


if __name__ == "__main__":
    sys.exit(main())
