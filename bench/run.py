#!/usr/bin/env python3
"""Allocator benchmarks: hakmem side by side with glibc, mimalloc, jemalloc, tcmalloc.

Builds the C programs in bench/src/ (when stale), runs every benchmark against
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
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SRC = BENCH_DIR / "src"
BIN = BENCH_DIR / "bin"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
HAKMEM_DEFAULT = REPO / "sanitizer_builds" / "release" / "libhakmem_preload.so"
CFLAGS = ["-O2", "-pthread", "-std=c11", "-Wall", "-Wextra"]
LDLIBS = ["-ldl", "-lm"]


@dataclass
class Bench:
    name: str
    what: str
    scale: str  # the parameter that sets the amount of timed work
    quick: dict  # parameters for --quick (small sizes)
    strace_n: int  # base value of `scale` for --strace (runs N and 4N)


BENCHES = [
    Bench("mixed", "ring of 4096, free random slot + malloc 16-1024 B", "steps",
          {"steps": 200_000}, 1_000_000),
    Bench("batch16", "100 x malloc(16) then 100 x free", "rounds",
          {"rounds": 10_000}, 50_000),
    Bench("fixed256", "malloc(256)/free pairs, one live block", "pairs",
          {"pairs": 500_000}, 2_000_000),
    Bench("mid", "ring of 1024, 8-32 KiB", "steps", {"steps": 50_000}, 200_000),
    Bench("large", "64 KiB-32 MiB log-uniform, 4 live", "steps", {"steps": 5_000}, 20_000),
    Bench("prodcons", "alloc on one thread, remote free on another (SPSC ring)", "blocks",
          {"blocks": 100_000}, 500_000),
    Bench("larson", "4 threads x 1024 slots, 8 generations hand arrays over", "steps",
          {"steps": 400_000}, 2_000_000),
]
BENCH_BY_NAME = {b.name: b for b in BENCHES}
STRACE_DEFAULT_BENCHES = ["mixed", "fixed256"]


@dataclass
class Allocator:
    name: str
    lib: Path | None  # None = no preload (glibc)
    explicit: bool = False  # named by the user (a missing library is then an error)
    available: bool = True
    note: str = ""
    failed: str = ""  # first verification/run error; the allocator is skipped after it
    variant: str = ""
    verify_line: str = ""
    source: Path | None = None  # the library the snapshot in `lib` was copied from

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("BENCH_VERIFY", None)
        if self.lib is not None:
            env["LD_PRELOAD"] = str(self.lib)
        return env

    def serves(self, obj: str) -> bool:
        """Is `obj` (a dladdr dli_fname) the object we expect to serve malloc?"""
        if obj in ("", "unknown", "unresolved"):
            return False
        if self.lib is None:
            return os.path.basename(obj) == "libc.so.6"
        try:
            return os.path.realpath(obj) == os.path.realpath(self.lib)
        except OSError:
            return False

    def expected(self) -> str:
        if self.lib is None:
            return "libc.so.6 (no preload)"
        return f"{self.lib} (snapshot of {self.source})" if self.source else str(self.lib)


PEERS = {
    "mimalloc": LIBDIR / "libmimalloc.so.2",
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4",
}
ALL_NAMES = ["glibc", "hakmem", "mimalloc", "jemalloc", "tcmalloc"]


class VerifyError(Exception):
    pass


# --------------------------------------------------------------------------- build
def build(cc: str, names: list[str], log=print) -> None:
    """Compile bench/src/NAME.c -> bench/bin/NAME when its inputs changed.

    Staleness is decided by a hash of the source, the shared headers, the compiler
    identity and the flags (stored next to the binary), not by mtime alone.
    """
    BIN.mkdir(parents=True, exist_ok=True)
    header = b"".join(h.read_bytes() for h in sorted(SRC.glob("*.h")))
    cc_path = shutil.which(cc)
    if cc_path is None:
        raise SystemExit(f"error: compiler '{cc}' not found (set CC or --cc)")
    cc_id = subprocess.run([cc, "--version"], capture_output=True,
                           text=True).stdout.splitlines()[:1]
    for name in names:
        src = SRC / f"{name}.c"
        out = BIN / name
        stamp = BIN / f"{name}.stamp"
        cmd = [cc, *CFLAGS, "-o", str(out), str(src), *LDLIBS]
        h = hashlib.sha256()
        for part in (src.read_bytes(), header, repr(cc_id).encode(), cc_path.encode(),
                     " ".join(cmd).encode()):
            h.update(part)
            h.update(b"\0")
        digest = h.hexdigest()
        if out.exists() and stamp.exists() and stamp.read_text().strip() == digest:
            continue
        log(f"build: {shlex.join(cmd)}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"error: building {name} failed")
        if r.stderr.strip():
            sys.stderr.write(r.stderr)
        stamp.write_text(digest + "\n")


# --------------------------------------------------------------------------- running
def run_process(argv: list[str], env: dict, timeout: float, rusage: bool = True
                ) -> tuple[int, str, str, float, float]:
    """Run argv; return (exit code, stdout, stderr, wall seconds, peak RSS MiB).

    Peak RSS is ru_maxrss from wait4() on the benchmark process, taken by the tiny
    bench/bin/rusage_exec launcher: os.wait4() from Python would report at least
    Python's own RSS, because Linux carries ru_maxrss across execve().
    """
    full = ([str(BIN / "rusage_exec")] if rusage else []) + argv
    t0 = time.monotonic()
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return (-signal.SIGKILL, out.decode(errors="replace"), err.decode(errors="replace"),
                time.monotonic() - t0, float("nan"))
    wall = time.monotonic() - t0
    out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
    rss = float("nan")
    if rusage:
        keep = []
        for ln in err_s.splitlines(keepends=True):
            if ln.startswith("rusage maxrss_kib="):
                rss = int(parse_kv(ln)["maxrss_kib"]) / 1024.0
            else:
                keep.append(ln)
        err_s = "".join(keep)
    return p.returncode, out_s, err_s, wall, rss


def parse_kv(line: str) -> dict:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def verify(alloc: Allocator, bench: str, timeout: float) -> dict:
    """BENCH_VERIFY=1: the program prints which objects malloc/free/calloc/realloc resolve to."""
    env = alloc.env()
    env["BENCH_VERIFY"] = "1"
    rc, out, err, _, _ = run_process([str(BIN / bench)], env, timeout)
    line = next((ln for ln in out.splitlines() if ln.startswith("verify ")), "")
    if rc != 0 or not line:
        raise VerifyError(f"{alloc.name}/{bench}: verification run failed (exit {rc}): "
                          f"{(err or out).strip()[:500]}")
    kv = parse_kv(line)
    for sym in ("malloc", "free", "calloc", "realloc"):
        obj = kv.get(sym, "")
        if not alloc.serves(obj):
            raise VerifyError(
                f"{alloc.name}/{bench}: {sym} resolves to '{obj}', expected {alloc.expected()}"
                f" -- the library under test does NOT serve {sym}; measurement aborted"
                + (f" (loader said: {err.strip()[:300]})" if err.strip() else ""))
    if alloc.name == "hakmem" and kv.get("variant", "none") == "none":
        raise VerifyError(f"hakmem/{bench}: hak_build_variant not exported by {alloc.lib}: "
                          "this is not the hakmem drop-in library")
    alloc.variant = kv.get("variant", "none")
    alloc.verify_line = line
    return kv


def run_bench(alloc: Allocator, bench: str, params: dict, timeout: float) -> dict:
    argv = [str(BIN / bench)] + [f"{k}={v}" for k, v in params.items()]
    rc, out, err, wall, rss = run_process(argv, alloc.env(), timeout)
    line = next((ln for ln in out.splitlines() if ln.startswith("bench=")), "")
    if rc != 0 or not line:
        why = (f"killed after {timeout:.0f}s timeout" if rc == -signal.SIGKILL
               else f"killed by signal {rc - 128}" if rc > 128 else f"exit {rc}")
        raise VerifyError(f"{alloc.name}/{bench}: run failed ({why}): {(err or out).strip()[:500]}")
    kv = parse_kv(line)
    if not alloc.serves(kv.get("malloc_so", "")):
        raise VerifyError(f"{alloc.name}/{bench}: measured run reports malloc from "
                          f"'{kv.get('malloc_so')}', expected {alloc.expected()}")
    return {
        "bench": bench, "allocator": alloc.name, "argv": argv,
        "ops": int(kv["ops"]), "seconds": float(kv["seconds"]),
        "ops_per_sec": float(kv["ops_per_sec"]), "wall": wall, "maxrss_mib": rss,
        "malloc_so": kv.get("malloc_so"), "line": line,
    }


# --------------------------------------------------------------------------- allocators
def select_allocators(args) -> list[Allocator]:
    hak = Path(args.hakmem) if args.hakmem else HAKMEM_DEFAULT
    requested = args.allocators.split(",") if args.allocators else None
    names = requested or ALL_NAMES
    out: list[Allocator] = []
    for spec in names:
        spec = spec.strip()
        if not spec:
            continue
        explicit = requested is not None
        if "=" in spec:  # NAME=PATH: any other drop-in library
            name, path = spec.split("=", 1)
            out.append(Allocator(name, Path(path).resolve(), explicit=True))
        elif spec == "glibc":
            out.append(Allocator("glibc", None, explicit=explicit))
        elif spec == "hakmem":
            out.append(Allocator("hakmem", hak.resolve(), explicit=explicit or args.require_hakmem))
        elif spec in PEERS:
            out.append(Allocator(spec, PEERS[spec], explicit=explicit))
        else:
            raise SystemExit(f"error: unknown allocator '{spec}' (known: {', '.join(ALL_NAMES)}, "
                             "or NAME=/path/to/lib.so)")
    if args.require_hakmem and not any(a.name == "hakmem" for a in out):
        out.insert(1 if out and out[0].name == "glibc" else 0,
                   Allocator("hakmem", hak.resolve(), explicit=True))
    for a in out:
        if a.lib is not None and not a.lib.is_file():
            a.available = False
            if a.name == "hakmem":
                a.note = (f"hakmem NOT MEASURED: {a.lib} does not exist "
                          "(build it with `python -m harness.build release`)")
            else:
                a.note = f"{a.name} NOT MEASURED: {a.lib} does not exist"
    return out


def snapshot(allocs: list[Allocator], tmpdir: Path, wait: float = 30.0) -> None:
    """Copy non-system libraries (hakmem, NAME=PATH) to a private directory.

    Other people rebuild sanitizer_builds/ while a run is in progress; measuring a
    snapshot keeps every rep on the same bytes (and its sha256 goes in results.json).
    A library that is missing for a moment (being relinked) is waited for.
    """
    for a in allocs:
        if a.lib is None or not a.available or a.lib.parent == LIBDIR:
            continue
        src = a.lib
        dst = tmpdir / a.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            try:
                shutil.copy2(src, dst)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    a.available = False
                    a.note = f"{a.name} NOT MEASURED: cannot copy {src}: {e}"
                    break
                time.sleep(0.5)
        if a.available:
            a.source, a.lib = src, dst


def one_line(msg: str) -> str:
    return " | ".join(part.strip() for part in msg.splitlines() if part.strip())


# --------------------------------------------------------------------------- reporting
def summarize(runs: list[dict], benches: list[str], allocs: list[Allocator]) -> dict:
    summary: dict = {}
    for b in benches:
        rows = {}
        for a in allocs:
            rs = [r for r in runs if r["bench"] == b and r["allocator"] == a.name]
            if not rs:
                continue
            ops = [r["ops_per_sec"] for r in rs]
            rows[a.name] = {
                "n": len(rs), "median": statistics.median(ops), "min": min(ops), "max": max(ops),
                "rss_median": statistics.median(r["maxrss_mib"] for r in rs),
                "rss_max": max(r["maxrss_mib"] for r in rs),
            }
        base = rows.get("glibc", {}).get("median")
        for row in rows.values():
            row["ratio"] = row["median"] / base if base else None
        summary[b] = rows
    return summary


def fmt_ops(x: float) -> str:
    return f"{x / 1e6:.1f}M" if x >= 1e5 else f"{x / 1e3:.1f}K"


def render_md(summary: dict, allocs: list[Allocator], meta: dict, errors: list[str]) -> str:
    names = [a.name for a in allocs]
    L = ["# Allocator benchmarks", ""]
    L.append(f"{meta['date']} — {meta['cpu']} ({meta['ncpu']} CPUs), {meta['kernel']}, "
             f"{meta['cc']}; reps={meta['reps']}{' (quick)' if meta['quick'] else ''}; "
             f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}.")
    L.append("")
    L.append("ops/s counts one malloc or one free as one op. ratio = median / glibc median in "
             "this run (>1 = faster than glibc). Peak RSS = median over runs of the process's "
             "ru_maxrss. Every run was verified to be served by the library named (see "
             "results.json: `verify`).")
    L.append("")
    for a in allocs:
        if a.note:
            L.append(f"**{a.note}**  ")
        if a.failed:
            L.append(f"**{a.name} FAILED: {a.failed}**  ")
        if a.variant and a.variant != "none":
            warn = "" if a.variant == "release" else " — **WARNING: not the release build**"
            L.append(f"{a.name}: hak_build_variant() = `{a.variant}`{warn} "
                     f"({a.source or a.lib}, "
                     f"sha256 {lib_identity(a.lib).get('lib_sha256', '?')[:16]})  ")
    L.append("")
    # overview
    L.append("## Ratio to glibc (median ops/s)")
    L.append("")
    shown = [n for n in names if any(n in rows for rows in summary.values())]
    L.append("| benchmark | " + " | ".join(shown) + " |")
    L.append("|---|" + "---:|" * len(shown))
    for b, rows in summary.items():
        cells = []
        for n in shown:
            r = rows.get(n)
            if not r:
                cells.append("—")
            else:
                cells.append(f"{r['ratio']:.2f}" if r["ratio"] else fmt_ops(r["median"]))
        L.append(f"| {b} | " + " | ".join(cells) + " |")
    L.append("")
    for b, rows in summary.items():
        L.append(f"## {b} — {BENCH_BY_NAME[b].what}")
        L.append("")
        L.append("| allocator | median ops/s | min – max | ratio to glibc | peak RSS MiB | runs |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for n in names:
            r = rows.get(n)
            if not r:
                continue
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "n/a"
            L.append(f"| {n} | {fmt_ops(r['median'])} | {fmt_ops(r['min'])} – {fmt_ops(r['max'])} "
                     f"| {ratio} | {r['rss_median']:.1f} | {r['n']} |")
        L.append("")
    if errors:
        L.append("## Errors")
        L.append("")
        L.extend(f"- {e}" for e in errors)
        L.append("")
    L.append("Command: `" + meta["command"] + "`")
    L.append("")
    return "\n".join(L)


def plot(summary: dict, allocs: list[Allocator], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = [b for b, rows in summary.items() if rows.get("glibc")]
    others = [a.name for a in allocs if a.name != "glibc"
              and any(a.name in summary[b] for b in benches)]
    if not benches or not others:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(benches) + 2), 4.5))
    width = 0.8 / len(others)
    ratios_all = []
    for i, n in enumerate(others):
        xs, ys = [], []
        for j, b in enumerate(benches):
            r = summary[b].get(n)
            if r and r["ratio"]:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(r["ratio"])
        ratios_all += ys
        ax.bar(xs, ys, width, label=n)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="glibc = 1")
    if ratios_all and max(ratios_all) / max(min(ratios_all), 1e-9) > 20:
        ax.set_yscale("log")
    ax.set_xticks(range(len(benches)))
    ax.set_xticklabels(benches)
    ax.set_ylabel("median ops/s relative to glibc")
    ax.set_title("Allocator throughput, ratio to glibc (higher is faster)")
    ax.legend(fontsize=8, ncol=min(len(others) + 1, 5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine_meta(args, cc: str) -> dict:
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ccv = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu, "ncpu": os.cpu_count(),
        "kernel": platform.platform(), "cc": ccv[0] if ccv else cc, "git": rev,
        "reps": args.reps, "quick": args.quick,
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "loadavg_end": "",
        "command": "python " + shlex.join(["bench/run.py"] + sys.argv[1:]),
    }


def lib_identity(lib: Path | None) -> dict:
    if lib is None or not lib.is_file():
        return {}
    st = lib.stat()
    return {"lib_sha256": hashlib.sha256(lib.read_bytes()).hexdigest(),
            "lib_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
            "lib_size": st.st_size}


# --------------------------------------------------------------------------- strace mode
STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def strace_counts(alloc: Allocator, argv: list[str], timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as tf:
        cmd = ["strace", "-f", "-c", "-o", tf.name]
        env = alloc.env()
        if alloc.lib is not None:  # strace itself must not run on the preloaded allocator
            cmd += ["-E", f"LD_PRELOAD={alloc.lib}"]
            env.pop("LD_PRELOAD", None)
        rc, out, err, _, _ = run_process(cmd + argv, env, timeout, rusage=False)
        if rc != 0:
            raise VerifyError(f"{alloc.name}: strace run failed (exit {rc}): {err.strip()[:400]}")
        line = next((ln for ln in out.splitlines() if ln.startswith("bench=")), "")
        if not alloc.serves(parse_kv(line).get("malloc_so", "")):
            raise VerifyError(f"{alloc.name}: under strace malloc came from "
                              f"'{parse_kv(line).get('malloc_so')}', expected {alloc.expected()}")
        counts = {}
        for ln in Path(tf.name).read_text().splitlines():
            m = STRACE_ROW.match(ln)
            if m and m.group(3) != "total":
                counts[m.group(3)] = int(m.group(1))
        return counts


def do_strace(args, allocs: list[Allocator], benches: list[str]) -> int:
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
            n = args.strace_n or bench.strace_n
            try:
                kv = verify(a, b, args.timeout)
                base = dict(args.params.get(b, {}))
                def argv_for(units: int) -> list[str]:
                    ps = {**base, bench.scale: units}
                    return [str(BIN / b)] + [f"{k}={v}" for k, v in ps.items()]

                c1 = strace_counts(a, argv_for(n), args.timeout)
                c4 = strace_counts(a, argv_for(4 * n), args.timeout)
            except VerifyError as e:
                print(f"ERROR: {e}", file=sys.stderr)
                status = 1
                continue
            t1, t4 = sum(c1.values()), sum(c4.values())
            print(f"\n== strace -f -c: {b} under {a.name} ({bench.scale}={n} vs {4 * n}); "
                  f"malloc served by {kv['malloc']}"
                  + (f" (variant {kv['variant']})" if kv.get("variant", "none") != "none" else ""))
            print(f"{'syscall':<20}{'N':>10}{'4N':>10}{'4N-N':>10}")
            for sc in sorted(set(c1) | set(c4), key=lambda s: (-c4.get(s, 0), s)):
                d = c4.get(sc, 0) - c1.get(sc, 0)
                mark = "   <-- grows" if d > 0 else ""
                print(f"{sc:<20}{c1.get(sc, 0):>10}{c4.get(sc, 0):>10}{d:>+10}{mark}")
            print(f"{'total':<20}{t1:>10}{t4:>10}{t4 - t1:>+10}")
            extra = 3 * n
            if t4 - t1 <= 2:
                print(f"verdict: flat -- no syscall on the steady-state path "
                      f"({t4 - t1:+d} syscalls for {extra} extra {bench.scale})")
            else:
                print(f"verdict: NOT flat -- {t4 - t1} more syscalls for {extra} extra "
                      f"{bench.scale} ({(t4 - t1) / extra:.4f} per "
                      f"{bench.scale[:-1] or bench.scale})")
    return status


# --------------------------------------------------------------------------- main
def parse_params(items: list[str]) -> dict:
    out: dict = {}
    for it in items or []:
        m = re.fullmatch(r"(\w+):(\w+)=(\S+)", it)
        if not m or m.group(1) not in BENCH_BY_NAME:
            raise SystemExit(f"error: bad --param '{it}' "
                             "(expected BENCH:KEY=VALUE, e.g. mixed:steps=1000000)")
        out.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.split("\n\n")[0] + "\n\nBenchmarks: "
        + "; ".join(f"{b.name} ({b.what})" for b in BENCHES) + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Allocators: glibc (no preload), hakmem (" + os.path.relpath(HAKMEM_DEFAULT, REPO)
        + "), mimalloc, jemalloc, tcmalloc (Debian packages in " + str(LIBDIR)
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
                    "is missing). NAME=PATH adds any LD_PRELOAD-able malloc library.")
    ap.add_argument("--quick", action="store_true", help="1 rep with small sizes (CI smoke); "
                    "overrides --reps")
    ap.add_argument("--out", default=str(BENCH_DIR / "out"), help="output directory for "
                    "results.md, results.json, ratios.png (default bench/out)")
    ap.add_argument("--hakmem", metavar="PATH", help=f"hakmem drop-in library (default "
                    f"{os.path.relpath(HAKMEM_DEFAULT, REPO)})")
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
    args = ap.parse_args(argv)
    args.params = parse_params(args.param)
    if args.quick:
        args.reps = 1
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    default_benches = STRACE_DEFAULT_BENCHES if args.strace else [b.name for b in BENCHES]
    benches = [b.strip() for b in args.bench.split(",")] if args.bench else default_benches
    for b in benches:
        if b not in BENCH_BY_NAME:
            ap.error(f"unknown benchmark '{b}' (known: {', '.join(BENCH_BY_NAME)})")

    build(args.cc, [b.name for b in BENCHES] + ["rusage_exec"])
    if args.build_only:
        return 0

    allocs = select_allocators(args)
    status = 0
    for a in allocs:
        if not a.available:
            print(("ERROR: " if a.explicit else "NOTE: ") + a.note, file=sys.stderr)
            if a.explicit:
                status = 1
    tmpdir = Path(tempfile.mkdtemp(prefix="hakmem-bench-"))
    try:
        snapshot(allocs, tmpdir)
        for a in allocs:
            if not a.available and "cannot copy" in a.note:
                print(("ERROR: " if a.explicit else "NOTE: ") + a.note, file=sys.stderr)
                status |= 1 if a.explicit else 0
        if args.strace:
            return do_strace(args, allocs, benches) | status
        return measure(args, allocs, benches, status)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def measure(args, allocs: list[Allocator], benches: list[str], status: int) -> int:
    from tqdm import tqdm

    live = [a for a in allocs if a.available]
    meta = machine_meta(args, args.cc)
    runs: list[dict] = []
    errors: list[str] = [a.note for a in allocs if not a.available and a.explicit]
    verifies: dict = {}
    total = args.reps * len(benches) * len(live)
    bar = tqdm(total=total, unit="run", disable=None, dynamic_ncols=True)
    for rep in range(args.reps):
        for b in benches:
            params = dict(BENCH_BY_NAME[b].quick) if args.quick else {}
            params.update(args.params.get(b, {}))
            # rotate the order each rep so no allocator always runs first/last
            k = (rep + benches.index(b)) % max(len(live), 1)
            for a in live[k:] + live[:k]:
                bar.set_description(f"rep {rep + 1}/{args.reps} {b} {a.name}")
                if a.failed:
                    bar.update(1)
                    continue
                try:
                    kv = verify(a, b, args.timeout)
                    verifies.setdefault(a.name, {})[b] = kv
                    r = run_bench(a, b, params, args.timeout)
                except VerifyError as e:
                    a.failed = one_line(str(e))
                    errors.append(a.failed)
                    bar.write(f"ERROR: {e}", file=sys.stderr)
                    status = 1
                    bar.update(1)
                    continue
                r["rep"] = rep + 1
                runs.append(r)
                bar.update(1)
                bar.write(f"rep {rep + 1} {a.name:<9} {r['line'].rsplit(' malloc_so=', 1)[0]} "
                          f"maxrss={r['maxrss_mib']:.1f}MiB")
    bar.close()
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.require_hakmem and not any(r["allocator"] == "hakmem" for r in runs):
        errors.append("--require-hakmem: hakmem was not measured")
        status = 1

    summary = summarize(runs, benches, allocs)
    md = render_md(summary, allocs, meta, errors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({
        "meta": meta,
        "allocators": [{"name": a.name, "lib": str(a.lib) if a.lib else None,
                        "source": str(a.source) if a.source else None,
                        "available": a.available, "note": a.note, "failed": a.failed,
                        "variant": a.variant, **lib_identity(a.lib)} for a in allocs],
        "verify": verifies, "summary": summary, "runs": runs, "errors": errors,
    }, indent=1))
    try:
        plot(summary, allocs, out / "ratios.png")
    except Exception as e:  # a plot is not worth failing the run for
        print(f"warning: plot failed: {e}", file=sys.stderr)
    print()
    print(md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'ratios.png'}")
    if status:
        print("FAILED: see errors above", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
