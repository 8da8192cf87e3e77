"""Replay one program: ``python -m harness.run PROGRAM.json --build asan
[--mode lockstep|concurrent] [--target PATH --prefix P] [--inject NAME] [--repeats N]
[--timeout S] [--no-whitebox] [--json]``.

Runs the program in a fresh child process on the build (built if needed) and prints
the outcome. Exit status: 0 pass, 1 a finding (check, sanitizer, signal, timeout),
2 usage error (unknown build or inject, malformed program: the file, op index and
field are named).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from harness.errors import HarnessError, UsageError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__.split("\n\n")[0])
    p.add_argument("program", help="a text (.json) program, or a binary one")
    p.add_argument("--build", default="release", help="build variant (default: release)")
    p.add_argument("--inject", default=None, help="seeded bug compiled into the build")
    p.add_argument("--mode", choices=("lockstep", "concurrent"), default="lockstep")
    p.add_argument("--target", default=None, help="foreign allocator library (black-box)")
    p.add_argument("--prefix", default=None, help="symbol prefix of --target (\"\" for libc)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--no-whitebox", action="store_true", help="black-box checks only")
    p.add_argument("--hook", default=None, help="executor test hooks (comma-separated)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from harness import program as prog
        from harness.build import build
        from harness.executor import replay

        if args.prefix is not None and args.target is None:
            raise UsageError("--prefix needs --target")
        if args.repeats < 1:
            raise UsageError("--repeats must be >= 1")
        if args.hook:
            from harness.binding import HOOKS

            bad = [h for h in args.hook.split(",") if h not in HOOKS]
            if bad:
                raise UsageError(f"unknown hook {bad[0]!r}; one of {', '.join(HOOKS)}")
        program = prog.load(args.program)
        b = build(args.build, args.inject)
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
