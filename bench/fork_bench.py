#!/usr/bin/env python3
"""fork() with threads in flight, across the scenario matrix (issue 13's fork benchmark).

    python bench/fork_bench.py                         # 10,000 forks per allocator/build
    python bench/fork_bench.py --forks 2000 --only hakmem-release,glibc

Runs tests/fork/fork_stress.c: worker threads churn tiny/mid/large blocks, free each
other's, start and end threads with blocks live, and allocate aligned blocks, while the
main thread forks; every child checks its heap (hak_heap_check, when the allocator has
it), allocates, fills, verifies and frees 300 blocks, and exits with a status. The forks
are split evenly over the scenarios churn, remote, exit, aligned and all. `misal.` counts
aligned allocations that missed their alignment (Debian's mimalloc 2.0 has this bug),
which are not used: they are no fork failure, and the children's are not counted as ok.

Rows: hakmem's own API on the release, asan and tsan builds (`hakmem-<build>`), hakmem
through the drop-in library (`hakmem-dropin`), and glibc, jemalloc, mimalloc and
tcmalloc (Debian packages, LD_PRELOAD). Prints, per row, forks and children that were
ok, failed their heap check, found a corrupt block, got NULL, crashed or hung; writes
bench/out/fork_bench.json. Exit 0 when every child of every row passed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.build import build  # noqa: E402

SOURCE = ROOT / "tests" / "fork" / "fork_stress.c"
INCLUDE = ROOT / "src_c" / "include"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
PEERS = {"glibc": None, "jemalloc": LIBDIR / "libjemalloc.so.2",
         "mimalloc": LIBDIR / "libmimalloc.so.2", "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4"}
SCENARIOS = ["churn", "remote", "exit", "aligned", "all"]
LINE = re.compile(r"forks=(\d+) ok=(\d+) check=(\d+) corrupt=(\d+) null=(\d+) crashed=(\d+) "
                  r"hung=(\d+) scenario=\S+ misaligned=(\d+)")
KEYS = ("forks", "ok", "check", "corrupt", "null", "crashed", "hung", "misaligned")


def compile_exe(out: Path, b=None) -> Path:
    exe = out / (f"fork_stress-{b.name}" if b else "fork_stress-libc")
    cmd = [str(b.compiler) if b else "clang-19", "-std=c11", "-D_GNU_SOURCE", "-pthread",
           *(b.spec.cflags if b else ["-O2", "-g"]), f"-I{INCLUDE}", str(SOURCE)]
    if b:
        cmd += ["-DFORK_HAK_API", str(b.lib), f"-Wl,-rpath,{b.dir}", *b.spec.ldflags]
    cmd += ["-ldl", "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return exe


def run_row(exe: Path, env: dict, forks: int, seed: int) -> dict:
    total = dict.fromkeys(KEYS, 0)
    per = max(1, forks // len(SCENARIOS))
    for i, sc in enumerate(SCENARIOS):
        done = 0
        while done < per:  # chunks of at most 500 forks: bounded runs
            n = min(500, per - done)
            p = subprocess.run([str(exe), str(n), sc, str(seed + i * 1000 + done)],
                               capture_output=True, text=True, env=env, timeout=3600)
            m = LINE.search(p.stdout)
            if not m:
                total["crashed"] += n
                sys.stderr.write(f"no result line (exit {p.returncode}): {p.stderr[-500:]}\n")
            else:
                for k, v in zip(KEYS, map(int, m.groups()), strict=True):
                    total[k] += v
            done += n
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forks", type=int, default=10_000, help="forks per row (default 10000)")
    ap.add_argument("--sanitizer-forks", type=int, default=None,
                    help="forks for the asan/tsan rows (default: --forks)")
    ap.add_argument("--only", default="", help="comma-separated row names")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, Path, dict, int]] = []
    base_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    libc_exe = compile_exe(args.out)
    for variant in ("release", "asan", "tsan"):
        b = build(variant)
        env = dict(base_env, **b.runtime.options)
        forks = args.forks if variant == "release" else (args.sanitizer_forks or args.forks)
        rows.append((f"hakmem-{variant}", compile_exe(args.out, b), env, forks))
        if variant == "release":
            rows.append(("hakmem-dropin", libc_exe, dict(base_env, LD_PRELOAD=str(b.preload_lib)),
                         args.forks))
    for name, lib in PEERS.items():
        env = dict(base_env) if lib is None else dict(base_env, LD_PRELOAD=str(lib))
        if lib is None or lib.exists():
            rows.append((name, libc_exe, env, args.forks))
    only = {x for x in args.only.split(",") if x}
    results = {}
    status = 0
    print(f"{'row':<16}{'forks':>7}{'ok':>7}{'check':>7}{'corrupt':>8}{'null':>6}{'crashed':>8}"
          f"{'hung':>6}{'misal.':>8}{'s':>8}")
    for name, exe, env, forks in rows:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        r = run_row(exe, env, forks, args.seed)
        r["seconds"] = round(time.monotonic() - t0, 1)
        results[name] = r
        status |= r["ok"] != r["forks"]
        print(f"{name:<16}{r['forks']:>7}{r['ok']:>7}{r['check']:>7}{r['corrupt']:>8}"
              f"{r['null']:>6}{r['crashed']:>8}{r['hung']:>6}{r['misaligned']:>8}"
              f"{r['seconds']:>8}", flush=True)
    (args.out / "fork_bench.json").write_text(json.dumps(results, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
