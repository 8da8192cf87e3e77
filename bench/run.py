#!/usr/bin/env python3
"""Allocator benchmarks: hakmem side by side with glibc, mimalloc, jemalloc, tcmalloc.

Builds the C programs in bench/src/ and hakmem's release variant (through
harness.build) when stale, runs every benchmark against
every allocator via LD_PRELOAD, interleaving allocators run by run, verifies
before (and after) each measurement that the library under test really serves
malloc, and writes bench/out/results.md, results.json and ratios.png.

    python bench/run.py                          # full run, 5 reps, every allocator found
    python bench/run.py --quick --allocators glibc   # CI smoke: build + 1 small run each
    python bench/run.py --strace                 # show there is no syscall in steady state

Exit status: 0 = every requested measurement ran and verified; 1 = a verification
or a run failed (or --require-hakmem and no hakmem library); 2 = usage error.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

# `python bench/run.py` puts bench/ on sys.path, not the repo root: put the root first so
# that `bench.*` and `harness` come from this tree (not from an installed checkout).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchbuild import BENCH_DIR, build_programs
from bench.benchmarks import BENCH_BY_NAME, BENCHES, STRACE_DEFAULT_BENCHES
from bench.measure import measure
from bench.peers import ALL_NAMES, LIBDIR, Allocator, select_allocators, snapshot
from bench.report import loadavg, machine_meta, write_results
from bench.strace_mode import do_strace

Params = dict[str, dict[str, str]]  # bench -> parameter -> value, from --param


def parse_params(items: list[str] | None) -> Params:
    out: Params = {}
    for it in items or []:
        m = re.fullmatch(r"(\w+):(\w+)=(\S+)", it)
        if not m or m.group(1) not in BENCH_BY_NAME:
            raise SystemExit(f"error: bad --param '{it}' "
                             "(expected BENCH:KEY=VALUE, e.g. mixed:steps=1000000)")
        out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.split("\n\n")[0] + "\n\nBenchmarks: "
        + "; ".join(f"{b.name} ({b.what})" for b in BENCHES) + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Allocators: glibc (no preload), hakmem (the release variant of "
        "`python -m harness.build`, built here when stale), mimalloc, jemalloc, tcmalloc "
        "(Debian packages in " + str(LIBDIR)
        + "), or NAME=/path/to/lib.so for any other drop-in malloc. Every measurement is "
        "preceded by a BENCH_VERIFY=1 run in which the program reports, via dlsym+dladdr, "
        "which object serves malloc/free/calloc/realloc; a mismatch aborts that allocator "
        "and makes the exit status 1. Exit status: 0 = all requested measurements ran and "
        "verified; 1 = a verification or run failed, an explicitly requested library is "
        "missing, or --require-hakmem and hakmem was not measured; 2 = usage error.")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per benchmark and allocator "
                    "(default 5; allocators are interleaved run by run)")
    ap.add_argument("--bench", metavar="NAMES", help="comma-separated benchmarks (default: all: "
                    + ",".join(b.name for b in BENCHES) + "; with --strace: "
                    + ",".join(STRACE_DEFAULT_BENCHES) + ")")
    ap.add_argument("--allocators", metavar="NAMES", help="comma-separated allocators (default: "
                    + ",".join(ALL_NAMES) + "; hakmem is skipped with a notice when its library "
                    "cannot be built or is missing). NAME=PATH adds any LD_PRELOAD-able malloc "
                    "library.")
    ap.add_argument("--quick", action="store_true", help="1 rep with small sizes (CI smoke); "
                    "overrides --reps")
    ap.add_argument("--out", default=str(BENCH_DIR / "out"), help="output directory for "
                    "results.md, results.json, ratios.png (default bench/out)")
    ap.add_argument("--hakmem", metavar="PATH", help="hakmem drop-in library (default: "
                    "libhakmem_preload.so of the release build, built when stale)")
    ap.add_argument("--require-hakmem", action="store_true", help="fail (exit 1) if the hakmem "
                    "library is missing or fails verification")
    ap.add_argument("--param", action="append", metavar="BENCH:KEY=VALUE", help="override a "
                    "benchmark parameter, e.g. mixed:steps=5000000 (repeatable; see "
                    "bench/bin/NAME --help)")
    ap.add_argument("--strace", action="store_true", help="instead of timing: run each benchmark "
                    "under `strace -f -c` at N and 4N work units per allocator and print syscall "
                    "counts side by side (flat = no syscall in steady state)")
    ap.add_argument("--strace-n", type=int, metavar="N", help="base work units for --strace "
                    "(default per benchmark, e.g. mixed steps=1000000)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is "
                    "killed (default 300)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"),
                    help="C compiler (default $CC or cc)")
    ap.add_argument("--build-only", action="store_true", help="build the programs and exit")
    return ap


def announce(unavailable: list[Allocator]) -> int:
    """Print why each allocator is not measured; 1 if one of them was asked for by name."""
    status = 0
    for a in unavailable:
        print(("ERROR: " if a.explicit else "NOTE: ") + a.note, file=sys.stderr)
        status |= 1 if a.explicit else 0
    return status


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    params = parse_params(args.param)
    if args.quick:
        args.reps = 1
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    default_benches = STRACE_DEFAULT_BENCHES if args.strace else [b.name for b in BENCHES]
    benches = [b.strip() for b in args.bench.split(",")] if args.bench else default_benches
    for b in benches:
        if b not in BENCH_BY_NAME:
            ap.error(f"unknown benchmark '{b}' (known: {', '.join(BENCH_BY_NAME)})")

    build_programs(args.cc, [b.name for b in BENCHES] + ["rusage_exec"])
    if args.build_only:
        return 0

    allocs = select_allocators(args.allocators, args.hakmem, args.require_hakmem)
    status = announce([a for a in allocs if not a.available])
    tmpdir = Path(tempfile.mkdtemp(prefix="hakmem-bench-"))
    try:
        status |= announce(snapshot(allocs, tmpdir))
        if args.strace:
            return do_strace(allocs, benches, args.strace_n, params, args.timeout) | status
        return timed(args, allocs, benches, params, status)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def timed(args: argparse.Namespace, allocs: list[Allocator], benches: list[str],
          params: Params, status: int) -> int:
    """The timed runs, then results.md/json/png; the exit status."""
    meta = machine_meta(args.cc, args.reps, args.quick)
    run_params = {b: {**(BENCH_BY_NAME[b].quick if args.quick else {}), **params.get(b, {})}
                  for b in benches}
    m = measure(allocs, benches, args.reps, run_params, args.timeout)
    meta["loadavg_end"] = loadavg()
    errors = [a.note for a in allocs if not a.available and a.explicit] + m.errors
    if m.failed:
        status = 1
    if args.require_hakmem and not any(r["allocator"] == "hakmem" for r in m.runs):
        errors.append("--require-hakmem: hakmem was not measured")
        status = 1
    write_results(Path(args.out), m, benches, allocs, meta, errors)
    if status:
        print("FAILED: see errors above", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
