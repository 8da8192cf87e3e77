"""What a timed run leaves behind: results.md (tables), results.json (raw runs), ratios.png."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.benchbuild import BENCH_DIR, compiler_id
from bench.benchmarks import BENCH_BY_NAME
from bench.measure import Measurement, Run
from bench.peers import Allocator

Row = dict[str, Any]  # one allocator's figures for one benchmark
Summary = dict[str, dict[str, Row]]  # bench -> allocator -> row


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_meta(cc: str, reps: int, quick: bool) -> dict[str, Any]:
    """The machine, compiler, commit and command, for the header of results.md."""
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu, "ncpu": os.cpu_count(),
        "kernel": platform.platform(), "cc": compiler_id(cc) or cc, "git": rev,
        "reps": reps, "quick": quick, "loadavg_start": loadavg(), "loadavg_end": "",
        "command": "python " + shlex.join(["bench/run.py"] + sys.argv[1:]),
    }


def lib_identity(lib: Path | None) -> dict[str, Any]:
    if lib is None or not lib.is_file():
        return {}
    st = lib.stat()
    return {"lib_sha256": hashlib.sha256(lib.read_bytes()).hexdigest(),
            "lib_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)),
            "lib_size": st.st_size}


def summarize(runs: list[Run], benches: list[str], allocs: list[Allocator]) -> Summary:
    """Median, spread and peak RSS per benchmark and allocator; ratio to glibc's median."""
    summary: Summary = {}
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


def render_md(summary: Summary, allocs: list[Allocator], meta: dict[str, Any],
              errors: list[str]) -> str:
    L = _header(allocs, meta) + _overview(summary, allocs)
    for b, rows in summary.items():
        L += _bench_table(b, rows, allocs)
    if errors:
        L += ["## Errors", "", *(f"- {e}" for e in errors), ""]
    L += ["Command: `" + meta["command"] + "`", ""]
    return "\n".join(L)


def _header(allocs: list[Allocator], meta: dict[str, Any]) -> list[str]:
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
    return L


def _overview(summary: Summary, allocs: list[Allocator]) -> list[str]:
    shown = [a.name for a in allocs if any(a.name in rows for rows in summary.values())]
    L = ["## Ratio to glibc (median ops/s)", ""]
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
    return L


def _bench_table(b: str, rows: dict[str, Row], allocs: list[Allocator]) -> list[str]:
    L = [f"## {b} — {BENCH_BY_NAME[b].what}", ""]
    L.append("| allocator | median ops/s | min – max | ratio to glibc | peak RSS MiB | runs |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for a in allocs:
        r = rows.get(a.name)
        if not r:
            continue
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "n/a"
        L.append(f"| {a.name} | {fmt_ops(r['median'])} | {fmt_ops(r['min'])} – "
                 f"{fmt_ops(r['max'])} | {ratio} | {r['rss_median']:.1f} | {r['n']} |")
    L.append("")
    return L


def plot(summary: Summary, allocs: list[Allocator], path: Path) -> None:
    # matplotlib is imported here, not at the top: it is slow to import, only this chart
    # needs it, and a run without it still writes its tables (the caller warns).
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


def write_results(out: Path, m: Measurement, benches: list[str], allocs: list[Allocator],
                  meta: dict[str, Any], errors: list[str]) -> None:
    """Write results.md, results.json and ratios.png into `out`, and print the tables."""
    summary = summarize(m.runs, benches, allocs)
    md = render_md(summary, allocs, meta, errors)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({
        "meta": meta,
        "allocators": [{"name": a.name, "lib": str(a.lib) if a.lib else None,
                        "source": str(a.source) if a.source else None,
                        "available": a.available, "note": a.note, "failed": a.failed,
                        "variant": a.variant, **lib_identity(a.lib)} for a in allocs],
        "verify": m.verifies, "summary": summary, "runs": m.runs, "errors": errors,
    }, indent=1))
    try:
        plot(summary, allocs, out / "ratios.png")
    except Exception as e:  # a plot is not worth failing the run for
        print(f"warning: plot failed: {e}", file=sys.stderr)
    print()
    print(md)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'ratios.png'}")
