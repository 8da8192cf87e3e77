"""Campaign report: ``report.md`` (one entry per distinct crash) and ``progress.png``
(execs/s, coverage and distinct crashes over time), both in the campaign's run folder."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any


def plot(samples: list[dict[str, float]], path: Path) -> Path | None:
    """Three stacked panels over elapsed seconds; None if matplotlib is missing or no data."""
    if not samples:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    t = [s["elapsed"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    for ax, key, label in zip(axes, ("execs_per_s", "cov", "distinct"),
                              ("execs/s", "coverage (edges)", "distinct crashes"), strict=True):
        ax.plot(t, [s.get(key, 0) for s in samples], drawstyle="steps-post")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("elapsed (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def replay_command(reg_path: Path | None, entry: dict[str, Any]) -> str:
    if reg_path is None:
        return ""
    parts = ["python", "-m", "harness.run", str(reg_path.with_suffix(".program.json")),
             "--build", entry["build"], "--mode", entry["mode"]]
    if entry.get("inject"):
        parts += ["--inject", entry["inject"]]
    if entry.get("target_path"):
        parts += ["--target", entry["target_path"], "--prefix", entry.get("prefix") or ""]
    if entry.get("repeats", 1) > 1:
        parts += ["--repeats", str(entry["repeats"])]
    return " ".join(shlex.quote(p) for p in parts)


def write(run_dir: Path, summary: dict[str, Any], entries: list[dict[str, Any]],
          samples: list[dict[str, float]]) -> Path:
    """Writes run_dir/report.md (and progress.png); returns the report's path."""
    png = plot(samples, run_dir / "progress.png")
    lines = [f"# Fuzz campaign {summary.get('key', '')}", ""]
    for k in ("command", "build", "fuzz_build", "inject", "target", "mode", "threads",
              "jobs", "seed", "max_time", "elapsed", "execs", "execs_per_s", "coverage",
              "native_coverage", "custom_mutator", "corpus", "corpus_dir", "crash_files",
              "distinct", "new_distinct", "revision"):
        if k in summary:
            lines.append(f"- **{k}**: {summary[k]}")
    lines.append("")
    if png:
        lines += [f"![progress]({png.name})", ""]
    distinct = [e for e in entries if e.get("distinct")]
    lines.append(f"## Distinct crashes ({len(distinct)})")
    lines.append("")
    if not distinct:
        lines.append("None.")
    for e in distinct:
        lines.append(f"### {e['signature']}")
        lines.append("")
        status = "new" if e.get("new") else f"known ({e.get('known_as', '')})"
        lines.append(f"- status: {status}")
        lines.append(f"- reliability: {e['reliability']} ({e['mode']}, repeats {e['repeats']})")
        lines.append(f"- crash input: `{e['file']}` (and {e.get('duplicates', 0)} duplicates)")
        if e.get("frames"):
            lines.append(f"- frames: {' <- '.join(e['frames'][:8])}")
        if e.get("minimized_ops") is not None:
            lines.append(f"- minimized: {e['original_ops']} -> {e['minimized_ops']} ops "
                         f"({e.get('minimize_runs', 0)} replays, "
                         f"{e.get('minimize_seconds', 0):.1f} s)")
        if e.get("regression"):
            lines.append(f"- regression: `{e['regression']}`")
        if e.get("replay"):
            lines.append(f"- replay: `{e['replay']}`")
        if e.get("program_text"):
            lines += ["", "```json", e["program_text"].rstrip(), "```"]
        if e.get("report_line"):
            lines += ["", f"> {e['report_line']}"]
        lines.append("")
    others = [e for e in entries if not e.get("distinct")]
    if others:
        lines += ["## Other crash inputs", ""]
        for e in others:
            lines.append(f"- `{Path(e['file']).name}`: {e.get('signature', '?')} "
                         f"({e.get('note', '')})")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
