"""--strace: syscall counts at N and 4N work units; flat counts mean a syscall-free steady state."""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bench.benchbuild import program_argv
from bench.benchmarks import BENCH_BY_NAME, Bench
from bench.peers import Allocator, VerifyError, check_served, verify
from bench.process import first_line, run_process

STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def strace_counts(alloc: Allocator, argv: list[str], timeout: float) -> dict[str, int]:
    """Calls per syscall of one run under `strace -f -c` (children included)."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as tf:
        cmd = ["strace", "-f", "-c", "-o", tf.name]
        env = alloc.env()
        if alloc.lib is not None:  # strace itself must not run on the preloaded allocator
            cmd += ["-E", f"LD_PRELOAD={alloc.lib}"]
            env.pop("LD_PRELOAD", None)
        p = run_process(cmd + argv, env, timeout, rusage=False)
        if p.rc != 0:
            raise VerifyError(f"{alloc.name}: strace run failed (exit {p.rc}): "
                              f"{p.err.strip()[:400]}")
        check_served(alloc, first_line(p.out, "bench="),
                     f"{alloc.name}: under strace malloc came from")
        counts = {}
        for ln in Path(tf.name).read_text().splitlines():
            m = STRACE_ROW.match(ln)
            if m and m.group(3) != "total":
                counts[m.group(3)] = int(m.group(1))
        return counts


def do_strace(allocs: list[Allocator], benches: list[str], strace_n: int | None,
              params: Mapping[str, Mapping[str, object]], timeout: float) -> int:
    """Print N-vs-4N syscall tables for each allocator and benchmark; 1 if any run failed."""
    if shutil.which("strace") is None:
        print("error: strace not installed", file=sys.stderr)
        return 1
    status = 0
    for a in allocs:
        if not a.available:
            print(a.note)
            status |= 1 if a.explicit else 0
            continue
        for b in benches:
            bench = BENCH_BY_NAME[b]
            n = strace_n or bench.strace_n
            base = params.get(b, {})
            try:
                kv = verify(a, b, timeout)
                c1 = strace_counts(a, program_argv(b, {**base, bench.scale: n}), timeout)
                c4 = strace_counts(a, program_argv(b, {**base, bench.scale: 4 * n}), timeout)
            except VerifyError as e:
                print(f"ERROR: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"\n== strace -f -c: {b} under {a.name} ({bench.scale}={n} vs {4 * n}); "
                  f"malloc served by {kv['malloc']}"
                  + (f" (variant {kv['variant']})" if kv.get("variant", "none") != "none" else ""))
            print_table(c1, c4, bench, n)
    return status


def print_table(c1: dict[str, int], c4: dict[str, int], bench: Bench, n: int) -> None:
    """Counts side by side, growing syscalls marked, and the verdict on the total."""
    print(f"{'syscall':<20}{'N':>10}{'4N':>10}{'4N-N':>10}")
    for sc in sorted(set(c1) | set(c4), key=lambda s: (-c4.get(s, 0), s)):
        d = c4.get(sc, 0) - c1.get(sc, 0)
        mark = "   <-- grows" if d > 0 else ""
        print(f"{sc:<20}{c1.get(sc, 0):>10}{c4.get(sc, 0):>10}{d:>+10}{mark}")
    t1, t4 = sum(c1.values()), sum(c4.values())
    print(f"{'total':<20}{t1:>10}{t4:>10}{t4 - t1:>+10}")
    extra = 3 * n
    if t4 - t1 <= 2:
        print(f"verdict: flat -- no syscall on the steady-state path "
              f"({t4 - t1:+d} syscalls for {extra} extra {bench.scale})")
    else:
        print(f"verdict: NOT flat -- {t4 - t1} more syscalls for {extra} extra "
              f"{bench.scale} ({(t4 - t1) / extra:.4f} per "
              f"{bench.scale[:-1] or bench.scale})")
