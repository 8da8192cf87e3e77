#!/usr/bin/env python3
"""Executor throughput (effective ops per second), medians over repeated runs.

    python bench/executor_bench.py [--builds release,asan] [--ops 200000] [--runs 5] [--json]

Configurations: single-thread program (lockstep), 4 threads lockstep, 4 threads
concurrent; each with and without the white-box checks (black-box checks always on).
Programs: random malloc/free/write/realloc/calloc over 64 slots, sizes 16-1024 B (the
allocator's fast paths: the executor's own cost dominates). The loop rows run ten-record
deep programs: one loop op whose body a long-lived thread (and, remote, a second thread
freeing its blocks) repeats until the program has about --ops ops. Each build runs in its own
child process with the build's environment (sanitizer runtime preloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = [
    ("single-thread lockstep", 1, "lockstep"),
    ("4-thread lockstep", 4, "lockstep"),
    ("4-thread concurrent", 4, "concurrent"),
]
OPS = ("malloc", "malloc", "free", "free", "write", "realloc", "calloc")
#: (name, threads, mode, loop body): deep programs of one loop op
LOOPS = [
    ("loop, 1 thread churn", 1, "lockstep",
     (("malloc", 0, 1, 48), ("malloc", 0, 2, 1280), ("free", 0, 1, 0), ("free", 0, 2, 0))),
    ("loop, remote, lockstep", 2, "lockstep", (("malloc", 0, 1, 48), ("free", 1, 1, 0))),
    ("loop, remote, concurrent", 2, "concurrent", (("malloc", 0, 1, 48), ("free", 1, 1, 0))),
]


def programs(n_ops: int) -> list[tuple[str, str, bytes]]:
    """(configuration, mode, program): the random ones, then the loops."""
    from harness.program import Op, Program, encode, random_program

    sizes = list(range(16, 1025, 8))
    out = [(name, mode, encode(random_program(1234 + threads, n_ops, threads, sizes=sizes,
                                              ops=OPS)))
           for name, threads, mode in CONFIGS]
    for name, threads, mode, body in LOOPS:
        ops = tuple(Op(o, t, s, n) for o, t, s, n in body)
        count = max(1, n_ops // len(ops))
        out.append((name, mode, encode(Program(threads, (Op("loop", count=count, body=ops),)))))
    return out


def measure(lib_path: str, n_ops: int, runs: int) -> list[dict]:
    from harness.binding import load, run_program

    lib = load(lib_path)
    out = []
    for name, mode, p in programs(n_ops):
        for wb in (False, True):
            run_program(lib, p, mode, whitebox=wb)  # warm up
            rates = []
            for _ in range(runs):
                t0 = time.perf_counter()
                v = run_program(lib, p, mode, whitebox=wb)
                dt = time.perf_counter() - t0
                if not v.passed:
                    raise SystemExit(f"{name}: {v.describe()}")
                rates.append(v.ops_executed / dt)
            out.append({"config": name, "whitebox": wb, "ops": v.ops_executed,
                        "median_ops_per_s": statistics.median(rates),
                        "min": min(rates), "max": max(rates)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builds", default="release,asan")
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.ops, args.runs)))
        return 0
    from harness.build import build

    results = {}
    for variant in args.builds.split(","):
        b = build(variant)
        env = b.env()
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        r = subprocess.run([sys.executable, __file__, "--child", str(b.lib), "--ops",
                            str(args.ops), "--runs", str(args.runs)], env=env,
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{variant}: failed\n{r.stdout}{r.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[variant] = json.loads(r.stdout)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"executor throughput, {args.ops} ops/program, median of {args.runs} runs")
    print(f"{'build':8} {'configuration':26} {'white-box':9} {'ops/s (median)':>15} "
          f"{'min':>12} {'max':>12}")
    for variant, rows in results.items():
        for row in rows:
            print(f"{variant:8} {row['config']:26} {'on' if row['whitebox'] else 'off':9} "
                  f"{row['median_ops_per_s']:15,.0f} {row['min']:12,.0f} {row['max']:12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
