"""The timed runs: every benchmark under every allocator, interleaved, each one verified first."""
from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from bench.benchbuild import program_argv
from bench.peers import Allocator, VerifyError, check_served, one_line, verify
from bench.process import first_line, parse_kv, run_process

Run = dict[str, Any]  # one measured run, as written to results.json


@dataclass
class Measurement:
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    verifies: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    failed: bool = False  # a verification or a run failed


def run_bench(alloc: Allocator, bench: str, params: Mapping[str, object],
              timeout: float) -> Run:
    """One timed run; its result line must say malloc came from the allocator under test."""
    argv = program_argv(bench, params)
    p = run_process(argv, alloc.env(), timeout)
    line = first_line(p.out, "bench=")
    if p.rc != 0 or not line:
        why = (f"killed after {timeout:.0f}s timeout" if p.rc == -signal.SIGKILL
               else f"killed by signal {p.rc - 128}" if p.rc > 128 else f"exit {p.rc}")
        raise VerifyError(f"{alloc.name}/{bench}: run failed ({why}): "
                          f"{(p.err or p.out).strip()[:500]}")
    check_served(alloc, line, f"{alloc.name}/{bench}: measured run reports malloc from")
    kv = parse_kv(line)
    return {
        "bench": bench, "allocator": alloc.name, "argv": argv,
        "ops": int(kv["ops"]), "seconds": float(kv["seconds"]),
        "ops_per_sec": float(kv["ops_per_sec"]), "wall": p.wall, "maxrss_mib": p.rss_mib,
        "malloc_so": kv.get("malloc_so"), "line": line,
    }


def measure(allocs: list[Allocator], benches: list[str], reps: int,
            params: Mapping[str, Mapping[str, object]], timeout: float) -> Measurement:
    """`reps` rounds of every benchmark under every available allocator.

    The allocator order rotates from round to round (and bench to bench), so machine
    drift is spread over all allocators instead of landing on whichever runs first.
    An allocator that fails once is skipped from then on.
    """
    live = [a for a in allocs if a.available]
    m = Measurement()
    bar = tqdm(total=reps * len(benches) * len(live), unit="run", disable=None,
               dynamic_ncols=True)
    for rep in range(reps):
        for b in benches:
            k = (rep + benches.index(b)) % max(len(live), 1)
            for a in live[k:] + live[:k]:
                bar.set_description(f"rep {rep + 1}/{reps} {b} {a.name}")
                if not a.failed:
                    _one(m, bar, a, b, rep + 1, params.get(b, {}), timeout)
                bar.update(1)
    bar.close()
    return m


def _one(m: Measurement, bar: tqdm, a: Allocator, b: str, rep: int,
         params: Mapping[str, object], timeout: float) -> None:
    try:
        kv = verify(a, b, timeout)
        m.verifies.setdefault(a.name, {})[b] = kv
        r = run_bench(a, b, params, timeout)
    except VerifyError as e:
        a.failed = one_line(str(e))
        m.errors.append(a.failed)
        m.failed = True
        bar.write(f"ERROR: {e}", file=sys.stderr)
        return
    r["rep"] = rep
    m.runs.append(r)
    bar.write(f"rep {rep} {a.name:<9} {r['line'].rsplit(' malloc_so=', 1)[0]} "
              f"maxrss={r['maxrss_mib']:.1f}MiB")
