"""What a campaign tells: :class:`CampaignSummary` (``summary.json``), ``report.md`` (one
entry per distinct crash) and ``progress.png`` (execs/s, coverage and distinct crashes over
time), all in the campaign's run folder."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, wherever a campaign runs
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

from harness.triage import CrashEntry  # noqa: E402

__all__ = ["CampaignSummary", "plot", "write"]

#: the summary fields the report lists, in order
_LISTED = ("command", "build", "fuzz_build", "inject", "target", "mode", "threads", "jobs",
           "seed", "max_time", "elapsed", "execs", "execs_per_s", "coverage",
           "native_coverage", "custom_mutator", "corpus", "corpus_dir", "crash_files",
           "distinct", "new_distinct", "fuzzer_starts", "fork_fallback", "revision")


@dataclasses.dataclass
class CampaignSummary:
    """One campaign's figures and crash entries (``new_distinct`` decides its exit status)."""

    key: str = ""
    command: str = ""
    build: str = ""
    fuzz_build: str = ""
    inject: str | None = None
    target: str = ""
    mode: str = ""
    threads: int | str = 0
    jobs: int = 0
    seed: int | None = None
    max_time: float = 0.0
    elapsed: float = 0.0
    execs: int = 0
    execs_per_s: int = 0
    coverage: int = 0
    native_coverage: str = ""
    custom_mutator: str = ""
    corpus: int = 0
    corpus_dir: str = ""
    crash_files: int = 0
    distinct: int = 0
    new_distinct: int = 0
    revision: str = ""
    run_dir: str = ""
    fuzzer_exit: int | None = None
    fuzzer_starts: int = 0  #: libFuzzer runs (in-process fuzzing restarts after a crash)
    fork_fallback: str = ""  #: why in-process fuzzing turned to fork mode, if it did
    interrupted: bool = False
    crash_to_regression_s: list[float] = dataclasses.field(default_factory=list)
    first_detection_s: float | None = None
    entries: list[CrashEntry] = dataclasses.field(default_factory=list)
    report: str = ""

    @property
    def regressions(self) -> list[str]:
        return [e.regression for e in self.entries if e.regression]

    @property
    def by_mode(self) -> dict[str, int]:
        """Distinct crashes per mode they reproduce in (a mixed campaign runs both)."""
        return dict(collections.Counter(e.mode for e in self.entries if e.distinct))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["entries"] = [e.to_json(with_program=False) for e in self.entries]
        d["regressions"] = self.regressions
        d["by_mode"] = self.by_mode
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["entries"] = [CrashEntry.from_json(e) for e in data.get("entries", [])]
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> CampaignSummary:
        return cls.from_json(json.loads(path.read_text()))


def plot(samples: list[dict[str, float]], path: Path) -> Path | None:
    """Three stacked panels over elapsed seconds; None when there is no data."""
    if not samples:
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


def _entry_lines(e: CrashEntry) -> list[str]:
    status = "new" if e.new else f"known ({e.known_as})"
    lines = [f"### {e.signature}", "", f"- status: {status}",
             f"- reliability: {e.reliability} ({e.mode}, repeats {e.repeats})",
             f"- crash input: `{e.file}` (and {e.duplicates} duplicates)"]
    if e.origin:
        lines.append(f"- made by: {e.made_by}")
    if e.frames:
        lines.append(f"- frames: {' <- '.join(e.frames[:8])}")
    if e.minimized_ops is not None:
        lines.append(f"- minimized: {e.original_ops} -> {e.minimized_ops} ops "
                     f"({e.minimize_runs} replays, {e.minimize_seconds:.1f} s)")
    if e.regression:
        lines.append(f"- regression: `{e.regression}`")
    if e.replay:
        lines.append(f"- replay: `{e.replay}`")
    if e.program_text:
        lines += ["", "```json", e.program_text.rstrip(), "```"]
    if e.report_line:
        lines += ["", f"> {e.report_line}"]
    return lines + [""]


def write(run_dir: Path, summary: CampaignSummary, samples: list[dict[str, float]]) -> Path:
    """Writes run_dir/report.md (and progress.png); returns the report's path."""
    png = plot(samples, run_dir / "progress.png")
    fields = summary.to_json()
    lines = [f"# Fuzz campaign {summary.key}", ""]
    lines += [f"- **{k}**: {fields[k]}" for k in _LISTED]
    lines.append("- **distinct crashes by mode**: " + (", ".join(
        f"{mode} {n}" for mode, n in sorted(summary.by_mode.items())) or "none"))
    lines.append("")
    if png:
        lines += [f"![progress]({png.name})", ""]
    distinct = [e for e in summary.entries if e.distinct]
    lines += [f"## Distinct crashes ({len(distinct)})", ""]
    if not distinct:
        lines.append("None.")
    for e in distinct:
        lines += _entry_lines(e)
    others = [e for e in summary.entries if not e.distinct]
    if others:
        lines += ["## Other crash inputs", ""]
        lines += [f"- `{Path(e.file).name}`: {e.signature or '?'} ({e.note})" for e in others]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
