#!/usr/bin/env python3
"""Peak RSS and RSS after an idle, after ~1 GiB of mixed blocks freed across threads.

    python bench/rss_bench.py                  # 3 reps per allocator, medians
    python bench/rss_bench.py --reps 5 --mib 512

Runs bench/src/rss_idle.c (4 threads each allocate a quarter of MIB in a mixed tiny / mid
/ large profile, writing every page; each frees the next thread's blocks; the process
then idles 2 s without calling the allocator) under hakmem's drop-in, glibc, mimalloc,
jemalloc and tcmalloc (Debian packages, LD_PRELOAD), interleaved, and prints the median
peak RSS (VmHWM) and RSS after the idle (VmRSS) of each, with issue 13's targets: hakmem's
RSS after idle at most the best peer's + 10% or + 8 MiB (whichever is larger), its peak at
most mimalloc's + 20%. Writes bench/out/rss_bench.json. Every run first checks which
object serves malloc.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "bench" / "src" / "rss_idle.c"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
ALLOCS = {
    "hakmem": ROOT / "sanitizer_builds" / "release" / "libhakmem_preload.so",
    "glibc": None,
    "mimalloc": LIBDIR / "libmimalloc.so.2",
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4",
}


def parse(line: str) -> dict:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--idle-ms", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    exe = args.out / "rss_idle"
    subprocess.run(["clang-19", "-O2", "-pthread", "-std=c11", "-Wall", "-Wextra", str(SRC),
                    "-ldl", "-o", str(exe)], check=True)
    allocs = {n: lib for n, lib in ALLOCS.items() if lib is None or lib.exists()}
    if ALLOCS["hakmem"] not in allocs.values():
        print("hakmem NOT MEASURED: build it with python -m harness.build release")
    runs: dict[str, list[dict]] = {n: [] for n in allocs}
    for rep in range(args.reps):
        for name, lib in allocs.items():
            env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",
                                                                    "HAKMEM_DECAY_MS")}
            if lib is not None:
                env["LD_PRELOAD"] = str(lib)
            p = subprocess.run([str(exe), f"mib={args.mib}", f"idle_ms={args.idle_ms}",
                                f"seed={rep + 1}"], capture_output=True, text=True, env=env,
                               timeout=600)
            kv = parse(p.stdout)
            so = kv.get("malloc_so", "")
            want = "libc.so.6" if lib is None else os.path.realpath(lib)
            got = os.path.basename(so) if lib is None else os.path.realpath(so) if so else ""
            if p.returncode or got != want:
                print(f"ERROR: {name}: exit {p.returncode}, malloc from {so!r}: {p.stderr[-300:]}")
                return 1
            runs[name].append({"peak_mib": int(kv["peak_kib"]) / 1024,
                               "after_mib": int(kv["after_kib"]) / 1024})
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("peak_mib", "after_mib")}
           for n, rs in runs.items()}
    print(f"rss_idle: {args.mib} MiB mixed on 4 threads, freed across threads, idle "
          f"{args.idle_ms} ms; medians of {args.reps}")
    print(f"{'allocator':<10}{'peak MiB':>10}{'after idle MiB':>16}")
    for n, m in med.items():
        print(f"{n:<10}{m['peak_mib']:>10.1f}{m['after_mib']:>16.1f}")
    status = 0
    if "hakmem" in med:
        peers = [m for n, m in med.items() if n != "hakmem"]
        best_after = min(m["after_mib"] for m in peers)
        limit_after = max(best_after * 1.10, best_after + 8)
        h = med["hakmem"]
        ok_after = h["after_mib"] <= limit_after
        print(f"target after idle: <= {limit_after:.1f} MiB (best peer {best_after:.1f}): "
              f"{'met' if ok_after else 'MISSED'}")
        if "mimalloc" in med:
            limit_peak = med["mimalloc"]["peak_mib"] * 1.2
            ok_peak = h["peak_mib"] <= limit_peak
            print(f"target peak: <= {limit_peak:.1f} MiB (mimalloc + 20%): "
                  f"{'met' if ok_peak else 'MISSED'}")
    (args.out / "rss_bench.json").write_text(json.dumps({"runs": runs, "medians": med}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
