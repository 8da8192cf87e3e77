"""The seeded-bug scoreboard: ``python -m harness.scoreboard --trials 5 --budget 300``.

For every entry of the seeded-bug catalogue (src_c/alloc/inject.h), run ``--trials``
fixed-budget fuzz campaigns (``python -m harness.fuzz --inject NAME --stop-on-find
--ignore-known``, each with a fresh corpus and its own libFuzzer seed, configured by
fuzz/scoreboard.toml) and score them:

* a trial *detects* its bug when its campaign wrote a minimized reproducer that still fails
  with its signature on the injected build and passes on the clean one
  (:func:`harness.regression_check.check_regression`, the same check ``pytest regressions``
  makes). A
  crash that also fails on the clean build is a real bug of the clean allocator: the
  trial does not count as a detection and the scoreboard says so loudly;
* time to detect is from the campaign's start (seed replay included) to the moment the
  crash input was written, so triage and minimization are not counted; "found by" says
  whether the fuzzer made the input, a seed neighbour (harness.neighbours) failed, or a
  seed of fuzz/seeds failed as it is.

Statistics (harness.survival): each entry's detection rate with a 95% Wilson interval, the
Kaplan-Meier median time to detect and the restricted mean survival time up to the budget
(misses censored at the budget), and ``survival.png`` with every entry's Kaplan-Meier curve
and its 95% band. ``--rerun ENTRY:INDEX`` re-runs one trial alone with the seed it had;
``--compare A.json B.json`` compares two runs per entry (log-rank, Mann-Whitney U).

Output: a table on stdout, ``scoreboard.md``, ``scoreboard.json`` and ``survival.png`` in
``--out`` (default ``campaigns/scoreboard/<time>/``), each trial's campaign folder beside
them. ``--save`` copies each entry's smallest fully reliable reproducer into regressions/ (or
``--regressions``) when it is new there or smaller than the one kept. Exit status: 0 every
trial detected its bug; 1 some trial did not; 2 usage or environment error; 130
interrupted. Each trial is also appended to ``trials.jsonl`` as it ends; Ctrl-C or SIGTERM
stops the campaign in progress (it writes what it found) and writes the outputs of the
trials that finished, marked ``"interrupted": true``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT, cli
from harness.build import build
from harness.campaign_options import CampaignOptions
from harness.child import wait_or_stop
from harness.errors import UsageError
from harness.inject import inject_catalogue
from harness.libfuzzer import CAMPAIGNS, SEED_CRASH_PREFIX
from harness.regression_check import check_regression
from harness.regressions import REGRESSIONS, Regression, RegressionError, git_revision, known_bugs
from harness.report import CampaignSummary
from harness.survival import Detections, compare, plot_survival
from harness.triage import Reliability

CONFIG = PROJECT_ROOT / "fuzz" / "scoreboard.toml"
#: Exit status of a board stopped by Ctrl-C or SIGTERM (what finished is written).
INTERRUPTED_EXIT = 130
#: Seconds an interrupted trial's campaign gets beyond its minimization budget to stop its
#: fuzzer and write what it found, before it is killed.
STOP_GRACE_S = 60.0


@dataclasses.dataclass(frozen=True)
class Entry:
    """How one seeded bug is hunted (a table of fuzz/scoreboard.toml)."""

    name: str
    build: str
    mode: str
    threads: int = 0


@dataclasses.dataclass
class Trial:
    """One campaign's result."""

    entry: str
    index: int
    seed: int
    detected: bool = False
    seconds: float | None = None  #: time to detect
    signature: str = ""
    minimized_ops: int | None = None
    original_ops: int | None = None
    reliability: str = ""
    regression: str = ""
    found_by: str = ""  #: "fuzzer", "neighbour" (harness.neighbours), or "seed"
    step: str = ""  #: a neighbour's seed and step
    wall: float = 0.0  #: the whole campaign, triage included
    problem: str = ""  #: why a trial failed, or what else it found


def load_config(path: Path = CONFIG, names: list[str] | None = None) -> list[Entry]:
    """The entries to score, in catalogue order; every catalogue entry must be configured."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{path}: cannot read the scoreboard configuration: {e}") from None
    tables = data.get("entry", {})
    catalogue = inject_catalogue()
    missing = [n for n in catalogue if n not in tables]
    unknown = [n for n in tables if n not in catalogue]
    if missing or unknown:
        raise UsageError(f"{path}: entries must match src_c/alloc/inject.h; missing "
                         f"{missing or 'none'}, not in the catalogue {unknown or 'none'}")
    wanted = names or catalogue
    bad = [n for n in wanted if n not in catalogue]
    if bad:
        raise UsageError(f"--entries: unknown seeded bug(s) {bad}; known: {catalogue}")
    entries = []
    for name in wanted:
        t = tables[name]
        try:
            entries.append(Entry(name, str(t["build"]), str(t.get("mode", "lockstep")),
                                 int(t.get("threads", 0))))
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{path}: [entry.{name}]: bad or missing field: {e}") from None
    return entries


@dataclasses.dataclass(frozen=True)
class Hunt:
    """What every trial of a run shares: its fuzzing budget, the minimization budget,
    whether the seed corpus and its neighbours are used, and extra libFuzzer flags (to
    compare two ways of fuzzing with --compare)."""

    budget: float = 300.0
    minimize_time: float = 120.0
    seeds: bool = True
    neighbours: bool = True
    libfuzzer_args: tuple[str, ...] = ()


def campaign_options(entry: Entry, trial_dir: Path, seed: int, hunt: Hunt) -> CampaignOptions:
    """The campaign of one trial: a fresh corpus, its own seed, stopped at its first find."""
    return CampaignOptions(
        build=entry.build, inject=entry.name, mode=entry.mode, threads=entry.threads,
        max_time=hunt.budget, seed=seed, corpus=str(trial_dir / "corpus"),
        campaigns=str(trial_dir / "campaigns"), regressions=str(trial_dir / "regressions"),
        minimize_time=hunt.minimize_time, stop_on_find=True, ignore_known=True,
        no_seeds=not hunt.seeds, no_neighbours=not hunt.neighbours, no_progress=True,
        libfuzzer_arg=hunt.libfuzzer_args)


def campaign_command(entry: Entry, trial_dir: Path, seed: int, hunt: Hunt) -> list[str]:
    opts = campaign_options(entry, trial_dir, seed, hunt)
    return [sys.executable, "-m", "harness.fuzz", *opts.to_argv()]


def _summary(trial_dir: Path) -> CampaignSummary | None:
    found = sorted((trial_dir / "campaigns").glob("*/runs/*/summary.json"))
    return CampaignSummary.read(found[-1]) if found else None


def score_trial(entry: Entry, trial: Trial, trial_dir: Path, rc: int) -> Trial:
    """Reads the trial's campaign summary and checks its reproducers."""
    summary = _summary(trial_dir)
    if summary is None:
        log = (trial_dir / "campaign.log").read_text(errors="replace")[-600:]
        trial.problem = f"campaign failed (exit {rc}) before writing a summary: {log}"
        return trial
    others = []
    for e in summary.entries:
        if not e.regression:
            continue
        try:
            problems = check_regression(Path(e.regression))
        except RegressionError as err:
            problems = [str(err)]
        if problems:
            others.append(f"{e.signature}: " + problems[0].splitlines()[0])
            continue
        if not trial.detected or e.detected_s < (trial.seconds or 0):
            trial.detected = True
            trial.seconds = e.detected_s
            trial.signature = e.signature
            trial.minimized_ops = e.minimized_ops
            trial.original_ops = e.original_ops
            # the reproducer's own, confirmed reliability (its repeats raised until every
            # replay fails), not the raw crash's first triage
            trial.reliability = str(Regression.read(Path(e.regression)).reliability)
            trial.regression = e.regression
            trial.found_by = e.origin or (  # a summary from before origins
                "seed" if Path(e.file).name.startswith(SEED_CRASH_PREFIX) else "fuzzer")
            trial.step = e.step
    if others:
        trial.problem = "; ".join(others)
    elif not trial.detected:
        trial.problem = (f"not detected in {summary.elapsed} s ({summary.execs} execs, "
                         f"{summary.crash_files} crash files)")
    return trial


def run_trial(entry: Entry, index: int, seed: int, root: Path, hunt: Hunt) -> Trial:
    trial_dir = root / entry.name / f"trial{index}"
    if trial_dir.exists():
        shutil.rmtree(trial_dir)
    trial_dir.mkdir(parents=True)
    cmd = campaign_command(entry, trial_dir, seed, hunt)
    (trial_dir / "command.txt").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    with open(trial_dir / "campaign.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        rc = wait_or_stop(proc, hunt.minimize_time + STOP_GRACE_S)
    trial = Trial(entry.name, index, seed)
    trial.wall = round(time.monotonic() - t0, 1)
    return score_trial(entry, trial, trial_dir, rc)


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def aggregate(entry: Entry, trials: list[Trial], budget: float) -> dict[str, Any]:
    hits = [t for t in trials if t.detected]
    times = [t.seconds for t in hits if t.seconds is not None]
    ops = [t.minimized_ops for t in hits if t.minimized_ops is not None]
    sigs = sorted({t.signature for t in hits})
    missed = len(trials) - len(hits)
    stats = detections(entry.name, trials, budget).stats()
    return {
        "entry": entry.name,
        "build": entry.build + ("" if entry.mode == "lockstep" else f" {entry.mode}")
        + (f" t{entry.threads}" if entry.threads else ""),
        "detected": f"{len(hits)}/{len(trials)}",
        "median_s": statistics.median(times) if times else None,
        "worst_s": None if missed else (max(times) if times else None),
        "worst": f"> {budget:.0f} (missed)" if missed else _fmt_s(max(times) if times else None),
        "ops": (f"{min(ops)}" if min(ops) == max(ops) else f"{min(ops)}-{max(ops)}")
        if ops else "-",
        "ops_median": statistics.median(ops) if ops else None,
        "signature": ", ".join(sigs) if sigs else "-",
        "found_by": ", ".join(f"{k} {n}" for k, n in sorted(collections.Counter(
            t.found_by for t in hits).items())) or "-",
        **{f"stat_{k}": v for k, v in stats.items()},
    }


def detections(name: str, trials: list[Trial], budget: float) -> Detections:
    """One entry's trials as times to detect (None: missed) for harness.survival."""
    return Detections.of(name, [t.seconds if t.detected else None for t in trials], budget)


def _fmt_rate(r: dict[str, Any]) -> str:
    return (f"{r['stat_rate']:.2f} [{r['stat_rate_lo95']:.2f}, {r['stat_rate_hi95']:.2f}]")


def stats_markdown(rows: list[dict[str, Any]], budget: float) -> list[str]:
    """The survival statistics table (harness.survival) of a run's rows."""
    lines = ["| entry | trials | detection rate [95% Wilson] | KM median s to detect "
             f"| RMST s (to {budget:.0f} s) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        med = r["stat_km_median_s"]
        lines.append(f"| `{r['entry']}` | {r['stat_trials']} | {_fmt_rate(r)} | "
                     f"{'not reached' if med is None else f'{med:.1f}'} | "
                     f"{r['stat_rmst_s']:.1f} |")
    return lines


def _flags(meta: dict[str, Any]) -> str:
    """The run's extra libFuzzer flags as a phrase ("" when none)."""
    flags = meta.get("libfuzzer_args") or []
    return f"libFuzzer {' '.join(flags)}, " if flags else ""


def _inputs(meta: dict[str, Any]) -> str:
    """What the run's campaigns started from (a run from before the seed neighbours has
    no "neighbours" key: it had none)."""
    if not meta.get("seeds", True):
        return "no seeds"
    return "seeds and their neighbours" if meta.get("neighbours", False) else "seeds, no neighbours"


def markdown(rows: list[dict[str, Any]], trials: list[Trial], meta: dict[str, Any]) -> str:
    lines = [
        "| entry | build | detected | median s to detect | worst s | minimized ops | signature "
        "| found by |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['entry']}` | {r['build']} | {r['detected']} | "
                     f"{_fmt_s(r['median_s'])} | {r['worst']} | {r['ops']} | "
                     f"`{r['signature']}` | {r['found_by']} |")
    lines += ["", *stats_markdown(rows, meta["budget"])]
    lines += ["", f"{meta['trials']} trials per entry, budget {meta['budget']:.0f} s each, "
              + _inputs(meta) + ", "
              + _flags(meta) + f"{meta['host']}, {meta['date']}, revision {meta['revision'][:12]}; "
              f"{meta['wall']:.0f} s in all.", ""]
    if meta.get("interrupted"):
        lines += [f"**Interrupted** after {len(trials)} finished trials: entries and trials "
                  "past that point were not run.", ""]
    steps = sorted({(t.entry, t.step) for t in trials if t.detected and t.step})
    if steps:
        lines += ["Seed neighbours that detected a bug:", ""]
        lines += [f"- `{entry}`: {step}" for entry, step in steps] + [""]
    problems = [t for t in trials if t.problem]
    if problems:
        lines += ["Trials with problems:", ""]
        lines += [f"- `{t.entry}` trial {t.index} (seed {t.seed}): {t.problem} (re-run it "
                  f"alone: `--rerun {t.entry}:{t.index} --seed {t.seed - t.index}`)"
                  for t in problems]
        lines.append("")
    return "\n".join(lines)


def save_best(entry: Entry, trials: list[Trial], regressions: Path) -> Path | None:
    """Keeps one reproducer per seeded bug in ``regressions``: the entry's smallest fully
    reliable one, when the bug has none there yet or only larger ones (which it replaces,
    whatever their signature)."""
    good = [t for t in trials if t.detected and t.regression
            and Reliability.parse(t.reliability).full]
    if not good:
        return None
    best = min(good, key=lambda t: (t.minimized_ops or 0, t.seconds or 0))
    kept = [p for key, p in known_bugs(regressions).items()
            if key.inject == entry.name and key.target == "hakmem"]
    ops = [len(Regression.read(p).program.ops) for p in kept]
    if any(n <= (best.minimized_ops or 0) for n in ops):
        return None
    regressions.mkdir(parents=True, exist_ok=True)
    dest = regressions / Path(best.regression).name
    tmp = dest.with_suffix(".json.tmp")
    shutil.copyfile(best.regression, tmp)
    os.replace(tmp, dest)
    for p in kept:  # only once the new one is in place
        if p.resolve() != dest.resolve():
            p.unlink()
    return dest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.scoreboard",
        description="Fixed-budget fuzz campaigns against every seeded bug of "
        "src_c/alloc/inject.h: detected trials, median and worst time to detect, minimized "
        "size and signature per entry. Exit 0: every trial detected its bug; 1: some trial "
        "did not; 2: usage or environment error; 130: interrupted by Ctrl-C or SIGTERM (the "
        "campaign in progress is stopped, the trials that finished are written).")
    a = p.add_argument
    a("--trials", type=int, default=5, metavar="N", help="campaigns per entry (default 5)")
    a("--budget", type=float, default=300.0, metavar="S",
      help="fuzzing seconds per campaign before it counts as missed (default 300)")
    a("--entries", default="", metavar="NAMES",
      help="comma-separated seeded bugs (default: the whole catalogue)")
    a("--seed", type=int, default=1, metavar="N",
      help="libFuzzer seed of trial 0; trial k uses N+k (default 1)")
    a("--minimize-time", type=float, default=120.0, metavar="S",
      help="minimization budget per trial (default 120)")
    a("--config", default=str(CONFIG), metavar="TOML", help="campaign configuration")
    a("--out", default="", metavar="DIR",
      help="output folder (default campaigns/scoreboard/<time>)")
    a("--save", action="store_true",
      help="keep each entry's smallest reproducer in --regressions (new or smaller only)")
    a("--regressions", default="", metavar="DIR",
      help="where --save keeps reproducers (default regressions/)")
    a("--no-seeds", action="store_true",
      help="campaigns without fuzz/seeds inputs: what the fuzzer finds on its own")
    a("--no-neighbours", action="store_true",
      help="campaigns without the seed neighbours (harness/neighbours.py)")
    a("--libfuzzer-arg", action="append", default=[], metavar="A",
      help="extra libFuzzer flag of every campaign, -name=value form, repeatable (recorded "
      "in scoreboard.json; compare two ways of fuzzing with --compare)")
    a("--no-progress", action="store_true", help="no live progress bar")
    a("--rerun", default="", metavar="ENTRY:INDEX",
      help="re-run trial INDEX of ENTRY alone, with the seed it had (--seed N + INDEX) and "
      "the same --budget/--no-seeds/--no-neighbours/--libfuzzer-arg; prints its result")
    a("--compare", nargs=2, default=None, metavar=("A.json", "B.json"),
      help="compare two scoreboard.json runs per entry (log-rank and Mann-Whitney U) "
      "instead of running campaigns; writes compare.md/.json (and survival.png) in --out")
    return p


def _hunt(args: argparse.Namespace) -> Hunt:
    return Hunt(args.budget, args.minimize_time, not args.no_seeds, not args.no_neighbours,
                tuple(args.libfuzzer_arg))


def _run_entries(args: argparse.Namespace, entries: list[Entry], root: Path,
                 progress: cli.Progress) -> tuple[list[Trial], list[dict[str, Any]], bool]:
    """Every entry's trials and rows, each trial also appended to trials.jsonl as it ends.
    Interrupted (Ctrl-C, SIGTERM), the trial in progress is stopped and left out, and
    what finished before it is returned, with True."""
    trials: list[Trial] = []
    rows = []
    interrupted = False
    for e in entries:
        mine = []
        try:
            for k in range(args.trials):
                progress.show(postfix=f"{e.name} trial {k}")
                t = run_trial(e, k, args.seed + k, root, _hunt(args))
                mine.append(t)
                with open(root / "trials.jsonl", "a") as f:
                    f.write(json.dumps(dataclasses.asdict(t)) + "\n")
                progress.advance()
                progress.say(f"{e.name} trial {k}: " + (
                    f"detected in {t.seconds:.1f} s, {t.signature}, "
                    f"{t.original_ops} -> {t.minimized_ops} ops" if t.detected else "MISSED")
                    + (f" [{t.problem}]" if t.problem else ""))
        except KeyboardInterrupt:
            interrupted = True
            progress.say(f"interrupted in {e.name} trial {len(mine)}: writing the "
                         f"{len(trials) + len(mine)} trials that finished")
        trials += mine
        if mine:
            rows.append(aggregate(e, mine, args.budget))
            saved = args.save and save_best(e, mine, Path(args.regressions)
                                            if args.regressions else REGRESSIONS)
            if saved:
                progress.say(f"{e.name}: kept {saved}")
        if interrupted:
            break
    return trials, rows, interrupted


def _read_run(path: Path) -> tuple[dict[str, Any], dict[str, list[Trial]]]:
    """A scoreboard.json: its meta and its trials by entry."""
    try:
        data = json.loads(path.read_text())
        by_entry: dict[str, list[Trial]] = collections.defaultdict(list)
        for t in data["trials"]:
            by_entry[t["entry"]].append(Trial(**t))
        return data["meta"], dict(by_entry)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a scoreboard.json: {e}") from None


def compare_runs(path_a: Path, path_b: Path, out: Path) -> str:
    """Markdown comparing two scoreboard runs entry by entry; writes compare.md, compare.json
    and survival.png (both runs' curves) in ``out``."""
    (meta_a, a), (meta_b, b) = _read_run(path_a), _read_run(path_b)
    common = [n for n in a if n in b]
    if not common:
        raise UsageError(f"{path_a} and {path_b} have no entry in common")
    lines = [f"{label}: `{path}` ({meta['trials']} trials, budget {meta['budget']:.0f} s, "
             f"{_inputs(meta)}, {_flags(meta)}revision "
             f"{meta['revision'][:12]})"
             for label, path, meta in (("A", path_a, meta_a), ("B", path_b, meta_b))]
    lines += ["",
             "| entry | A detected | B detected | A median s | B median s | A RMST s | B RMST s "
             "| log-rank p | Mann-Whitney p |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    results, curves = [], []
    for name in common:
        da = detections(f"{name} (A)", a[name], meta_a["budget"])
        db = detections(f"{name} (B)", b[name], meta_b["budget"])
        c = compare(da, db)
        results.append({"entry": name, **dataclasses.asdict(c)})
        curves += [da, db]
        med = ["-" if x["km_median_s"] is None else f"{x['km_median_s']:.1f}" for x in (c.a, c.b)]
        lines.append(f"| `{name}` | {c.a['hits']}/{c.a['trials']} | {c.b['hits']}/{c.b['trials']}"
                     f" | {med[0]} | {med[1]} | {c.a['rmst_s']:.1f} | {c.b['rmst_s']:.1f} | "
                     f"{c.logrank_p:.3g}{' *' if c.differs() else ''} | {c.mannwhitney_p:.3g} |")
    lines += ["", "Both runs censored at the smaller budget; `*`: log-rank p < 0.05.", ""]
    md = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(md)
    (out / "compare.json").write_text(json.dumps(
        {"a": str(path_a), "b": str(path_b), "entries": results}, indent=2) + "\n")
    plot_survival(curves, out / "survival.png", "time to detect: A vs B")
    return md


def _rerun(args: argparse.Namespace) -> int:
    name, _, index = args.rerun.partition(":")
    if not index.isdigit():
        raise UsageError(f"--rerun {args.rerun!r}: expected ENTRY:INDEX, e.g. eager_release:2")
    (entry,) = load_config(Path(args.config), [name])
    build(entry.build)
    build(entry.build, entry.name)
    k = int(index)
    root = Path(args.out) if args.out else CAMPAIGNS / "scoreboard" / "rerun"
    t = run_trial(entry, k, args.seed + k, root, _hunt(args))
    print(json.dumps(dataclasses.asdict(t), indent=2))
    return 0 if t.detected else 1


def _main(args: argparse.Namespace) -> int:
    if args.trials < 1 or args.budget <= 0:
        raise UsageError("--trials must be >= 1 and --budget > 0")
    if args.compare:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else CAMPAIGNS / "scoreboard" / f"compare-{stamp}"
        print(compare_runs(Path(args.compare[0]), Path(args.compare[1]), out))
        print(f"written: {out / 'compare.md'}", file=sys.stderr)
        return 0
    if args.rerun:
        return _rerun(args)
    names = [n.strip() for n in args.entries.split(",") if n.strip()]
    entries = load_config(Path(args.config), names or None)
    for e in entries:  # build up front: a build error is an error, not a missed bug
        build(e.build)
        build(e.build, e.name)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.out) if args.out else CAMPAIGNS / "scoreboard" / stamp
    root.mkdir(parents=True, exist_ok=True)
    progress = cli.Progress(len(entries) * args.trials, "trial", not args.no_progress)
    t0 = time.monotonic()
    trials, rows, interrupted = _run_entries(args, entries, root, progress)
    progress.close()
    meta = {"trials": args.trials, "budget": args.budget, "revision": git_revision(),
            "seeds": not args.no_seeds, "neighbours": not args.no_neighbours,
            "libfuzzer_args": list(args.libfuzzer_arg),
            "date": datetime.date.today().isoformat(), "host": f"{os.cpu_count()} cores",
            "wall": time.monotonic() - t0, "interrupted": interrupted}
    md = markdown(rows, trials, meta)
    ran = [e for e in entries if any(t.entry == e.name for t in trials)]
    if ran:  # none when interrupted in the first trial
        plot_survival([detections(e.name, [t for t in trials if t.entry == e.name],
                                  args.budget) for e in ran], root / "survival.png",
                      f"time to detect, {args.trials} trials per entry"
                      + ("" if not args.no_seeds else " (no seeds)"))
        md += "\n![survival curves](survival.png)\n"
    (root / "scoreboard.md").write_text(md)
    (root / "scoreboard.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "trials": [dataclasses.asdict(t) for t in trials]},
        indent=2) + "\n")
    print(md)
    print(f"written: {root / 'scoreboard.md'}", file=sys.stderr)
    if interrupted:
        return INTERRUPTED_EXIT
    return 0 if all(t.detected for t in trials) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cli.interrupt_on_sigterm()
    return cli.run(lambda: _main(args), findings=True)


if __name__ == "__main__":
    sys.exit(main())
