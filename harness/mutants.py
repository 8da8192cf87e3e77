"""The allocator's mutation score: ``python -m harness.mutants [--files remote.c,...]``.

Mutants of ``src_c/alloc/`` sources come from universalmutator (``mutate FILE --noCheck``,
run in a scratch folder). Each mutant is built as its own variant, the way ``--inject``
builds a seeded bug, but from a copy of ``src_c/`` with the one file replaced
(``sanitizer_builds/mutant-<id>/src_c``; its builds land beside it, never over the clean
ones: :func:`harness.build.build`'s ``source=``), and classified:

* ``no_compile``: clang-19 rejects it (universalmutator's own check is off: gcc accepts
  mutants clang refuses);
* ``equivalent``: the mutated file compiles (asan flags, debug info aside) to the very
  object code of the clean one (trivial compiler equivalence: dead code, debug-only or
  seeded-bug-only code, a mutation the optimiser undoes); it is not built or tested;
* ``killed_fast``: the fast tests fail on it: the asan reproducers of regressions/ replayed
  on the mutant (each passes on the clean build), then a short stress: programs that
  overflow a thread cache with one size class (freed locally and remotely), programs whose
  blocks outlive their thread and are freed into its abandoned slabs before a collect (the
  reclaim and purge paths, checked by the heap walk after the collect), and random programs
  (lockstep, 1-4 threads, every check on); each of them must also cost no more memory, kept
  memory after a collect, or mmap calls than on the clean build (``footprint:...``: the
  placement and caching policy no correctness check sees); then the C scenarios of
  harness.scenarios (memory given back by the purge thread, allocation in TLS destructors
  after a thread's exit, each OS request refused in turn); then, on a debug build of the
  mutant, the misuse cases of harness.misuse (a debug build must report each);
* ``killed_campaign``: ``python -m harness.fuzz --build asan --source ... --stop-on-find``
  found a reproducing crash within ``--budget`` seconds (the check that fired and the
  minimized reproducer are kept);
* ``timeout``: a fast test or the campaign's crash was a hang, or the campaign overran its
  wall limit: counted as killed, as mutation tools do;
* ``survived``: nothing failed; its diff is in the report, for a person to judge
  (equivalent, or a blind spot of the suite). Classes of survivors judged equivalent are
  rules of fuzz/equivalent_mutants.toml (a regular expression over the diff, and why); a
  survivor no rule matches is reported as unjudged.

Score per file: killed (fast + campaign + timeout) / compiling, non-equivalent mutants, and
the same without the survivors judged equivalent by a rule. Results are saved
after each mutant in ``--out``/state.json (``--resume`` continues an interrupted run);
``mutants.md`` and ``mutants.json`` are the report. Exit 0 when the run completed (survivors
are findings for a person, not failures), 2 on usage or environment errors.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import datetime
import difflib
import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT, cli
from harness.build import Build, build, compile_flags
from harness.campaign_options import CampaignOptions
from harness.checks import replay
from harness.child import communicate_or_kill
from harness.errors import BuildError, UsageError
from harness.libfuzzer import CAMPAIGNS
from harness.misuse import CASES, run_case
from harness.program import SLOTS, Op, Program, random_program
from harness.regressions import REGRESSIONS, Regression, git_revision, is_regression_file
from harness.report import CampaignSummary
from harness.scenarios import (DTOR_PROGRAM, OOM_PROGRAM, RSS_PROGRAM, ScenarioRun,
                               compile_scenario, run_dtor, run_oom, run_rss)
from harness.scenarios import SCENARIOS as RSS_SCENARIOS
from harness.toolchain import compiler_name, resolve_compiler
from harness.triage import run_signature, signature
from harness.verdict import Verdict
from harness.variants import load_variant

ALLOC = PROJECT_ROOT / "src_c" / "alloc"
SCRATCH = PROJECT_ROOT / "sanitizer_builds"
BUILD = "asan"  #: the variant mutants are built and fuzzed as
STATUSES = ("no_compile", "equivalent", "killed_fast", "killed_campaign", "timeout",
            "survived", "error")
KILLED = ("killed_fast", "killed_campaign", "timeout")
STRESS_PROGRAMS = 6
STRESS_OPS = 400
REPLAY_TIMEOUT = 30.0
STATE = "state.json"
EQUIVALENT = PROJECT_ROOT / "fuzz" / "equivalent_mutants.toml"
#: the purge thread's delay in the purge scenarios: short, so a scenario gives its memory
#: back in a few tenths of a second (the program polls up to 30 s)
PURGE_DECAY_MS = 100
DTOR_THREADS = 20


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutant: ``file`` with universalmutator's mutant number ``index``."""

    file: str
    index: int
    path: Path  #: the mutated file (in the generation scratch folder)

    @property
    def id(self) -> str:
        return f"{Path(self.file).stem}-{self.index}"

    def diff(self) -> str:
        old = (ALLOC / self.file).read_text().splitlines(keepends=True)
        new = self.path.read_text().splitlines(keepends=True)
        return "".join(difflib.unified_diff(old, new, f"a/src_c/alloc/{self.file}",
                                            f"b/src_c/alloc/{self.file}", n=1))


@dataclasses.dataclass
class Result:
    """What became of one mutant (a row of state.json and mutants.json)."""

    id: str
    file: str
    status: str
    check: str = ""  #: the check (signature) that killed it
    by: str = ""  #: which test: a regression file, a stress program, the campaign
    reproducer: str = ""
    detected_s: float | None = None  #: campaign: time to detect
    seconds: float = 0.0  #: wall time spent on this mutant
    diff: str = ""
    detail: str = ""
    equivalent: str = ""  #: a survivor matched by an equivalence rule: the rule and why

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**data)


# --------------------------------------------------------------------------- generation


def generate(files: list[str], scratch: Path) -> list[Mutant]:
    """Every universalmutator mutant of ``files`` (names in src_c/alloc), in file order."""
    if shutil.which("mutate") is None:
        raise UsageError("`mutate` (universalmutator) is not installed: pip install "
                         "universalmutator")
    out = []
    for name in files:
        src = ALLOC / name
        if not src.is_file():
            raise UsageError(f"--files: no {src}")
        d = scratch / Path(name).stem
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        shutil.copyfile(src, d / name)
        proc = subprocess.run(["mutate", name, "--noCheck"], cwd=d, capture_output=True,
                              text=True, check=False)
        found = sorted(d.glob(f"{src.stem}.mutant.*{src.suffix}"),
                       key=lambda p: int(p.name.split(".")[-2]))
        if proc.returncode != 0 or not found:
            raise UsageError(f"mutate {name} failed (exit {proc.returncode}): "
                             f"{(proc.stdout + proc.stderr)[-400:]}")
        out += [Mutant(name, int(p.name.split(".")[-2]), p) for p in found]
    return out


def sample(mutants: list[Mutant], n: int, seed: int) -> list[Mutant]:
    """``n`` mutants drawn with ``seed`` (all of them when n is 0 or larger)."""
    if n <= 0 or n >= len(mutants):
        return mutants
    picked = random.Random(seed).sample(range(len(mutants)), n)
    return [mutants[i] for i in sorted(picked)]


# --------------------------------------------------------------------------- the tests


#: Sizes whose thread cache holds fewer blocks than a program has slots (64 KiB: 16, 16 KiB:
#: 64; 1 KiB: 64), so that freeing every slot overflows the cache: the flush-when-full path
#: random programs almost never reach (a mutant there survived them).
CACHE_FILL_SIZES = (65536, 16384, 1024)


def _cache_fill_program(size: int, remote: bool) -> Program:
    """Every slot allocated with one size on thread 0 and freed (by thread 1 when
    ``remote``), twice: the thread cache overflows and is flushed (or the slab's remote
    list fills and is drained), and the counters are checked at each barrier; then a
    collect, which must give back what the rounds left."""
    freer = 1 if remote else 0
    rounds = [Op("malloc", 0, s, size) for s in range(SLOTS)] + [Op("barrier")] + [
        Op("free", freer, s) for s in range(SLOTS)] + [Op("barrier")]
    return Program(2 if remote else 1, tuple(rounds * 2 + [Op("flush", 0), Op("collect", 0)]))


def _reclaim_program(size: int) -> Program:
    """Every slot allocated with one size on thread 0, which exits (its slabs abandoned with
    their blocks live); thread 1 frees half of them into the abandoned slabs and collects
    (the heap walk after a collect checks that the emptied slabs were reclaimed, the others
    kept on their list, and everything that can be given back given back), then the rest;
    then thread 1 allocates every slot and frees half of them itself (its cache holds them),
    thread 0 frees a quarter and thread 1 collects (its own cache must come back) before
    the end verifies the quarter still live, after the purge gave back the free units
    around them."""
    half, rest = range(0, SLOTS, 2), range(1, SLOTS, 2)
    return Program(2, (*(Op("malloc", 0, s, size) for s in range(SLOTS)), Op("thread_exit", 0),
                       *(Op("free", 1, s) for s in half), Op("collect", 1),
                       *(Op("free", 1, s) for s in rest), Op("collect", 1),
                       *(Op("malloc", 1, s, size) for s in range(SLOTS)),
                       *(Op("free", 1, s) for s in rest),
                       *(Op("free", 0, s) for s in range(0, SLOTS, 4)), Op("flush", 0),
                       Op("collect", 1)))


def _stress_programs(seed: int) -> list[tuple[str, Program]]:
    """(label, program) of each stress program."""
    rng = random.Random(seed)
    return [*((f"cache-fill program ({size} B, {'remote' if remote else 'local'} frees)",
               _cache_fill_program(size, remote))
              for size in CACHE_FILL_SIZES for remote in (False, True)),
            *((f"reclaim program ({size} B)", _reclaim_program(size))
              for size in CACHE_FILL_SIZES),
            *((f"random program {k} (seed {seed})",
               random_program(rng, STRESS_OPS, threads=1 + k % 4))
              for k in range(STRESS_PROGRAMS))]


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What a lockstep run of a program cost the allocator in memory and syscalls (the
    verdict's white-box figures; a lockstep run is deterministic, so the clean build's
    figures are the reference a mutant is held to)."""

    peak_mapped: int  #: the most bytes mapped at a check point
    collect_mapped: int  #: bytes kept mapped after each collect op, summed
    os_maps: int  #: mmap calls

    @classmethod
    def of(cls, v: Verdict) -> Footprint:
        return cls(v.peak_mapped, v.collect_mapped, v.os_maps)

    def worse(self, ref: Footprint) -> str:
        """The check a footprint above ``ref`` fails (``footprint:...``), or ""."""
        for name, mine, theirs in (("kept", self.collect_mapped, ref.collect_mapped),
                                   ("mapped", self.peak_mapped, ref.peak_mapped),
                                   ("maps", self.os_maps, ref.os_maps)):
            if mine > theirs:
                return f"footprint:{name}"
        return ""


def footprints(b: Build, seed: int) -> dict[str, Footprint]:
    """Each stress program's footprint on ``b`` (the clean build: the reference); raises if
    one fails there, since every mutant would then look killed."""
    out = {}
    for label, program in _stress_programs(seed):
        o = replay(program, b, "lockstep", 1, REPLAY_TIMEOUT)
        if not o.passed or o.verdict is None:
            raise UsageError(f"the fast tests fail on the clean {b.variant} build ({label}: "
                             f"{o.name}): fix that before measuring mutants")
        out[label] = Footprint.of(o.verdict)
    return out


def fast_tests(b: Build, seed: int,
               reference: dict[str, Footprint] | None = None) -> tuple[str, str] | None:
    """(signature, which test) of the first fast test failing on ``b``, or None: every
    reproducer of regressions/ made for this variant and a hakmem target (replayed as on
    the clean build, where it passes), then the stress programs, each of which must also
    cost no more memory, kept memory or mmap calls than on the clean build (``reference``:
    :func:`footprints` of the clean build; computed when not given). A mutant that maps
    more is a footprint regression the allocator's correctness checks cannot see. Then the
    C scenarios (:func:`_scenarios`)."""
    if reference is None:
        reference = footprints(build(BUILD), seed)
    return _regressions(b) or _stress(b, seed, reference) or _scenarios(b)


def _regressions(b: Build) -> tuple[str, str] | None:
    """The first reproducer of regressions/ for this variant failing on ``b``."""
    for path in sorted(REGRESSIONS.glob("*.json")):
        if not is_regression_file(path):
            continue
        reg = Regression.read(path)
        if reg.build != b.variant or reg.target:
            continue
        sig, out = run_signature(reg.program, b, reg.mode, reg.target_obj(clean=True),
                                 reg.repeats, REPLAY_TIMEOUT)
        if not out.passed:
            return sig, f"regression {path.name}"
    return None


def _stress(b: Build, seed: int, reference: dict[str, Footprint]) -> tuple[str, str] | None:
    """The first stress program failing on ``b``, or costing more than ``reference``."""
    for label, program in _stress_programs(seed):
        out = replay(program, b, "lockstep", 1, REPLAY_TIMEOUT)
        if not out.passed:
            return signature(out), label
        worse = Footprint.of(out.verdict).worse(reference[label]) if out.verdict else ""
        if worse:
            return worse, label
    return None


def _scenario_failed(kind: str, label: str,
                     run: Callable[[], ScenarioRun]) -> tuple[str, str] | None:
    """(``kind:failure`` or ``timeout``, ``label``) when the scenario ``run`` starts fails."""
    try:
        got = run()
    except subprocess.TimeoutExpired:
        return "timeout", label
    return (f"{kind}:{got.failure}", label) if got.failure else None


def _scenarios(b: Build) -> tuple[str, str] | None:
    """The C scenarios of harness.scenarios, for what no program run reaches: memory given
    back by the background purge thread (and at a collect), allocation from a TLS
    destructor after the thread's exit (no leaked heap), and every OS request refused."""
    with tempfile.TemporaryDirectory(prefix="hakmem-scenario-") as d:
        rss, dtor, oom = (compile_scenario(b, p, Path(d))
                          for p in (RSS_PROGRAM, DTOR_PROGRAM, OOM_PROGRAM))
        runs = [*((f"purge scenario {scenario} ({mode})", "purge",
                   functools.partial(run_rss, rss, scenario, mode, b, PURGE_DECAY_MS,
                                     REPLAY_TIMEOUT + 30))
                  for scenario in RSS_SCENARIOS for mode in ("wait", "collect")),
                (f"exit scenario ({DTOR_THREADS} threads allocating in their TLS destructors)",
                 "exit", functools.partial(run_dtor, dtor, DTOR_THREADS, b, REPLAY_TIMEOUT)),
                ("out-of-memory scenario (each OS request refused in turn)", "oom",
                 functools.partial(run_oom, oom, b, REPLAY_TIMEOUT * 4))]
        for label, kind, run in runs:
            failed = _scenario_failed(kind, label, run)
            if failed:
                return failed
    return None


def _campaign(tree: Path, budget: float, seed: int, minimize_time: float) -> Result | str:
    """The mutant's campaign: a kill (status, check, reproducer), or why nothing was found."""
    opts = CampaignOptions(
        build=BUILD, source=str(tree / "src_c"), max_time=budget, seed=seed,
        corpus=str(tree / "corpus"), campaigns=str(tree / "campaigns"),
        regressions=str(tree / "regressions"), minimize_time=minimize_time,
        stop_on_find=True, ignore_known=True, no_progress=True)
    cmd = [sys.executable, "-m", "harness.fuzz", *opts.to_argv()]
    limit = budget + minimize_time + 240  # builds, seed replay, triage
    with open(tree / "campaign.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        _, _, timed_out = communicate_or_kill(proc, limit)
    if timed_out:
        return Result("", "", "timeout", "timeout", "campaign",
                      detail=f"the campaign overran its {limit:.0f} s wall limit")
    found = sorted((tree / "campaigns").glob("*/runs/*/summary.json"))
    if not found:
        tail = (tree / "campaign.log").read_text(errors="replace")[-500:]
        return f"campaign failed (exit {proc.returncode}) before a summary: {tail}"
    summary = CampaignSummary.read(found[-1])
    # the first crash that was kept as a reproducer, else the first crash at all
    hits = sorted((e for e in summary.entries if e.signature and e.signature != "pass"),
                  key=lambda e: (not e.regression, e.detected_s))
    if not hits:
        return (f"not detected in {summary.elapsed} s ({summary.execs} execs, "
                f"{summary.crash_files} crash files)")
    e = hits[0]
    status = "timeout" if e.signature.startswith("timeout") else "killed_campaign"
    return Result("", "", status, e.signature, "campaign", e.regression or e.file, e.detected_s)


def _keep(src: str, dest: Path) -> str:
    """Copies a reproducer or crash file out of the mutant's scratch tree."""
    if not src or not Path(src).is_file():
        return src
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return str(dest)


def _compile_object(cwd: Path, file: str, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(resolve_compiler(compiler_name())), *compile_flags(load_variant(BUILD), None),
           "-g0", "-c", f"src_c/alloc/{file}", "-o", str(out)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def compile_alone(tree: Path, file: str) -> tuple[str, bool]:
    """Compiles the mutated file alone with the variant's flags (a second or so, instead of a
    whole build): (the first compiler error or "", whether its object is byte-identical to
    the clean file's, debug info aside: trivial compiler equivalence)."""
    mutant, clean = tree / f"{file}.mutant.o", tree / f"{file}.clean.o"
    proc = _compile_object(tree, file, mutant)
    if proc.returncode != 0:
        lines = proc.stderr.splitlines()
        return next((ln for ln in lines if "error:" in ln), lines[0] if lines else "error")[
            :300], False
    if _compile_object(PROJECT_ROOT, file, clean).returncode != 0:
        raise BuildError(f"the clean src_c/alloc/{file} does not compile")
    return "", mutant.read_bytes() == clean.read_bytes()


def _build_mutant(variant: str, tree: Path, r: Result) -> Build | None:
    """The mutant's ``variant`` build, or None with ``r`` classified: it does not compile or
    link, or it linked and the build's verification rejected it (killed)."""
    try:
        return build(variant, source=tree / "src_c")
    except BuildError as e:
        first = str(e).splitlines()
        if " compiling " in first[0] or " linking " in first[0]:
            r.status = "no_compile"  # e.g. an undefined symbol at link time
            r.detail = next((ln for ln in first if "error:" in ln), first[0])[:300]
        else:
            r.status, r.check, r.by, r.detail = "killed_fast", "build-verify", "build", \
                first[0][:300]
        return None


def _misuse(debug: Build) -> tuple[str, str] | None:
    """The first case of harness.misuse the mutant's debug build gets wrong: a misuse it
    does not report, or the valid control it does not survive."""
    for case, (_, report) in CASES.items():
        label = f"misuse case {case} (debug build)"
        try:
            got = run_case(debug, case, REPLAY_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "timeout", label
        if not (got.reported if report else got.survived):
            return f"misuse:{case}", label
    return None


def run_mutant(m: Mutant, out: Path, budget: float, seed: int, minimize_time: float,
               reference: dict[str, Footprint] | None = None) -> Result:
    """Builds, tests and classifies one mutant (``reference``: the clean build's
    :func:`footprints`, computed when not given); its scratch tree is removed afterwards."""
    t0 = time.monotonic()
    tree = SCRATCH / f"mutant-{m.id}"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "src_c", tree / "src_c")
    shutil.copyfile(m.path, tree / "src_c" / "alloc" / m.file)
    r = Result(m.id, m.file, "survived", diff=m.diff())
    try:
        r.detail, same = compile_alone(tree, m.file)
        if r.detail or same:
            r.status = "no_compile" if r.detail else "equivalent"
            r.detail = r.detail or "compiles to the very object code of the clean file"
            return r
        b = _build_mutant(BUILD, tree, r)
        if b is None:
            return r
        killed = fast_tests(b, seed, reference)
        if killed is None:  # the misuse reports exist on the debug build only
            debug = _build_mutant("debug", tree, r)
            if debug is None:
                return r
            killed = _misuse(debug)
        if killed is not None:
            r.check, r.by = killed
            r.status = "timeout" if r.check.startswith("timeout") else "killed_fast"
            return r
        got = _campaign(tree, budget, seed, minimize_time)
        if isinstance(got, str):
            r.detail = got
            r.status = "error" if got.startswith("campaign failed") else "survived"
            return r
        r.status, r.check, r.by, r.detected_s = got.status, got.check, got.by, got.detected_s
        r.detail = got.detail
        suffix = ".json" if got.reproducer.endswith(".json") else ""
        r.reproducer = _keep(got.reproducer, out / "reproducers" / f"{m.id}{suffix}")
        return r
    finally:
        log = tree / "campaign.log"
        if log.is_file():
            _keep(str(log), out / "logs" / f"{m.id}.log")
        shutil.rmtree(tree, ignore_errors=True)
        r.seconds = round(time.monotonic() - t0, 1)


# --------------------------------------------------------------------------- state, report


def load_rules(path: Path = EQUIVALENT) -> list[tuple[str, re.Pattern[str], str]]:
    """The equivalence rules: (name, pattern over the diff, why)."""
    try:
        rules = tomllib.loads(path.read_text()).get("rule", [])
        return [(r["name"], re.compile(r["diff"], re.M), " ".join(r["why"].split()))
                for r in rules]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, re.error) as e:
        raise UsageError(f"{path}: bad equivalence rules: {e}") from None


def judge(results: list[Result], rules: list[tuple[str, re.Pattern[str], str]]) -> None:
    """Marks each survivor that a rule matches as equivalent (the others as unjudged)."""
    for r in results:
        if r.status == "survived":
            r.equivalent = next((f"{name}: {why}" for name, pat, why in rules
                                 if pat.search(r.diff)), "")


class State:
    """state.json: the run's parameters and every finished mutant, saved after each."""

    def __init__(self, path: Path, params: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.results: dict[str, Result] = {}
        if path.is_file():
            if not resume:
                raise UsageError(f"{path} exists: --resume to continue that run, or another "
                                 "--out")
            data = json.loads(path.read_text())
            if data["params"] != params:
                raise UsageError(f"{path}: --resume with other parameters than the run's "
                                 f"{data['params']}")
            self.results = {k: Result.from_json(v) for k, v in data["results"].items()}
        self.params = params
        self.save()

    def add(self, r: Result) -> None:
        with self.lock:
            self.results[r.id] = r
            self.save()

    def forget_stale(self, diffs: dict[str, str]) -> None:
        """Drops the results whose mutant is no longer the one of that id (``diffs``: the
        current diff of each sampled id): after a source changes, the mutator numbers its
        mutants anew, so an id may name another mutation."""
        self.results = {k: r for k, r in self.results.items()
                        if k not in diffs or diffs[k] == r.diff}
        self.save()

    def forget(self, status: str) -> None:
        """Drops the results of ``status``, so that those mutants run again."""
        self.results = {k: r for k, r in self.results.items() if r.status != status}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"params": self.params, "results": {
            k: dataclasses.asdict(v) for k, v in self.results.items()}}, indent=2) + "\n")
        os.replace(tmp, self.path)


def scores(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Per file (and ``all``): the count of each status and the score."""
    by_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        for f in (r.file, "all"):
            by_file[f][r.status] += 1
            by_file[f]["judged"] += bool(r.status == "survived" and r.equivalent)
    table = {}
    for f, c in by_file.items():
        compiling = sum(c[s] for s in (*KILLED, "survived"))
        killed = sum(c[s] for s in KILLED)
        judged = compiling - c["judged"]
        table[f] = {"mutants": sum(c[s] for s in STATUSES), **{s: c[s] for s in STATUSES},
                    "judged_equivalent": c["judged"], "compiling": compiling, "killed": killed,
                    "score": killed / compiling if compiling else None,
                    "score_nonequivalent": killed / judged if judged else None}
    return table


def markdown(results: list[Result], params: dict[str, Any], total: dict[str, int]) -> str:
    table = scores(results)
    lines = ["| file | generated | sampled | no compile | same code | killed fast | "
             "killed campaign | timeout | survived (judged equivalent) | error | score "
             "| score without judged equivalent |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in sorted(table, key=lambda k: (k == "all", k)):
        t = table[f]
        judged = t["compiling"] - t["judged_equivalent"]
        score = "-" if t["score"] is None else f"{t['score']:.0%} ({t['killed']}/{t['compiling']})"
        score_ne = ("-" if t["score_nonequivalent"] is None
                    else f"{t['score_nonequivalent']:.0%} ({t['killed']}/{judged})")
        lines.append(f"| {'**all**' if f == 'all' else f'`{f}`'} | "
                     f"{total.get(f, sum(total.values()))} | {t['mutants']} | {t['no_compile']} "
                     f"| {t['equivalent']} | {t['killed_fast']} | {t['killed_campaign']} | "
                     f"{t['timeout']} | {t['survived']} ({t['judged_equivalent']}) | "
                     f"{t['error']} | {score} | "
                     f"{score_ne} |")
    lines += ["", f"universalmutator mutants, sample {params['sample'] or 'all'} (seed "
              f"{params['seed']}); score = killed / (compiling - same code); campaign "
              f"budget {params['budget']:.0f} s each on {BUILD}; "
              f"revision {git_revision()[:12]}, {datetime.date.today().isoformat()}.", ""]
    killed = [r for r in results if r.status in KILLED]
    if killed:
        lines += ["## Killed", "", "| mutant | by | check | detected s | reproducer |",
                  "|---|---|---|---:|---|"]
        lines += [f"| `{r.id}` | {r.by} | `{r.check}` | "
                  f"{'-' if r.detected_s is None else f'{r.detected_s:.1f}'} | "
                  f"{r.reproducer or '-'} |" for r in sorted(killed, key=lambda r: r.id)]
        lines.append("")
    for title, status in (("Survivors (equivalent, or a blind spot?)", "survived"),
                          ("Errors (no verdict)", "error")):
        rows = sorted((r for r in results if r.status == status), key=lambda r: r.id)
        if rows:
            lines += [f"## {title}", ""]
            for r in rows:
                verdict = ([f"Judged equivalent ({r.equivalent})."] if r.equivalent else
                           ["**Unjudged**: equivalent, or a blind spot of the suite?"]
                           if status == "survived" else [])
                lines += [f"### `{r.id}`", "", r.detail, *verdict, "", "```diff",
                          r.diff.rstrip(), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.mutants",
        description="Mutation score of the allocator: universalmutator mutants of "
        "src_c/alloc sources, each built as an asan variant and classified (no_compile, "
        "killed_fast, killed_campaign, timeout, survived). Exit 0: the run completed; "
        "2: usage or environment error.")
    a = p.add_argument
    a("--files", default="", metavar="F,F",
      help="comma-separated files of src_c/alloc (default: every .c there)")
    a("--budget", type=float, default=60.0, metavar="S",
      help="campaign seconds per mutant (default 60)")
    a("--jobs", type=int, default=1, metavar="N", help="mutants in parallel (default 1)")
    a("--sample", type=int, default=0, metavar="N",
      help="test N mutants drawn at random (default: all)")
    a("--seed", type=int, default=1, metavar="S",
      help="sampling, stress-program and libFuzzer seed (default 1)")
    a("--minimize-time", type=float, default=60.0, metavar="S",
      help="minimization budget of a campaign's crash (default 60)")
    a("--out", default="", metavar="DIR", help="report folder (default campaigns/mutants/<time>)")
    a("--resume", action="store_true", help="continue the run whose state.json is in --out")
    a("--rerun-survivors", action="store_true",
      help="with --resume: test the run's survivors again (after the checks or programs "
      "grew: a kill stays a kill, the fast tests only gain tests)")
    a("--no-progress", action="store_true", help="no live progress bar")
    return p


def _check_clean(seed: int) -> dict[str, Footprint]:
    """The fast tests must pass on the clean build, or every mutant would look killed; its
    footprints are the reference."""
    clean = build(BUILD)
    reference = footprints(clean, seed)  # runs (and checks) the stress programs once
    failed = _regressions(clean) or _scenarios(clean) or _misuse(build("debug"))
    if failed is not None:
        raise UsageError(f"the fast tests fail on the clean {BUILD} build ({failed[1]}: "
                         f"{failed[0]}): fix that before measuring mutants")
    return reference


def _main(args: argparse.Namespace) -> int:
    if args.budget <= 0 or args.jobs < 1 or args.sample < 0:
        raise UsageError("--budget must be > 0, --jobs >= 1, --sample >= 0")
    files = [f.strip() for f in args.files.split(",") if f.strip()] or sorted(
        p.name for p in ALLOC.glob("*.c"))
    if args.resume and not args.out:
        raise UsageError("--resume needs the --out of the run to continue")
    if args.rerun_survivors and not args.resume:
        raise UsageError("--rerun-survivors needs --resume (and the run's --out)")
    out = Path(args.out) if args.out else CAMPAIGNS / "mutants" / datetime.datetime.now(
        ).strftime("%Y%m%d-%H%M%S")
    params = {"files": files, "sample": args.sample, "seed": args.seed, "budget": args.budget,
              "minimize_time": args.minimize_time}
    state = State(out / STATE, params, args.resume)
    if args.rerun_survivors:
        state.forget("survived")
    everything = generate(files, SCRATCH / "mutants-gen")
    total = collections.Counter(m.file for m in everything)
    chosen = sample(everything, args.sample, args.seed)
    state.forget_stale({m.id: m.diff() for m in chosen})
    todo = [m for m in chosen if m.id not in state.results]
    progress = cli.Progress(len(chosen), "mutant", not args.no_progress)
    progress.show(len(chosen) - len(todo))
    progress.say(f"{len(everything)} mutants of {', '.join(files)}; {len(chosen)} sampled, "
                 f"{len(chosen) - len(todo)} already done")
    reference = _check_clean(args.seed)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_mutant, m, out, args.budget, args.seed, args.minimize_time,
                               reference) for m in todo]
        for f in concurrent.futures.as_completed(futures):
            r = f.result()
            state.add(r)
            progress.advance()
            progress.say(f"{r.id}: {r.status}" + (f" by {r.by}: {r.check}" if r.check else "")
                         + f" ({r.seconds:.0f} s)")
    progress.close()
    results = [state.results[m.id] for m in chosen]
    judge(results, load_rules())
    md = markdown(results, params, dict(total))
    (out / "mutants.md").write_text(md)
    (out / "mutants.json").write_text(json.dumps(
        {"params": params, "generated": dict(total), "scores": scores(results),
         "results": [dataclasses.asdict(r) for r in results]}, indent=2) + "\n")
    print(md)
    print(f"written: {out / 'mutants.md'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return cli.run(lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
