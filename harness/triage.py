"""Crash triage: reproduce in fresh processes, reliability, signature, dedupe.

For each crash input (already persisted by the campaign):

1. decode it the way the fuzz target did (:func:`harness.program.from_fuzz_input`);
2. reproduce it with :func:`harness.checks.replay`, each run in a fresh child process:
   lockstep first (``n`` runs); if lockstep does not reproduce it, concurrent mode with
   ``repeats`` runs per child (``n`` children). Reliability is hits/runs of the chosen
   mode; following ClusterFuzz, a crash is *reproducible* when hits >= runs/2;
3. signature = ``Outcome.name`` plus the top (at most 3) frames that belong to the code
   under test: sanitizer runtime, libFuzzer, Python, libc and executor frames are dropped,
   the allocator's own frames (``hak_*``, ``table_insert``, a fixture's ``fx_free``) are kept
   (ClusterFuzz drops ``malloc``/``free`` frames, which would merge distinct allocator bugs).
   Function names only (no addresses, no line numbers): stable across runs and builds;
4. dedupe by :class:`BugKey` (signature, seeded bug, target) against the keys the caller
   knows (its regressions) and this campaign's earlier crashes.

:class:`CrashEntry` is the record of one crash input's way through the lifecycle; later
stages (minimize, regressions) fill in its remaining fields.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness import PROJECT_ROOT
from harness.build import Build
from harness.checks import Outcome, replay
from harness.program import Program
from harness.target import Target

__all__ = ["CONCURRENT_REPEATS", "BugKey", "CrashEntry", "Reliability", "Reproduction",
           "reproduce", "run_signature", "signature", "signature_frames"]

_RUNTIME = re.compile(
    r"^(__asan|__sanitizer|__interceptor|___interceptor|__tsan|__ubsan|__lsan|__msan|"
    r"__sancov|fuzzer::|atheris|_Py|Py|_PyEval|ffi_|cfunc|_cffi|_ctypes|start_thread|clone|"
    r"__libc|_start$|main$|__GI_|__memcpy|__memset|__memmove|memcpy|memset|memmove|"
    r"__pthread|pthread_|abort$|raise$|__restore_rt|<null>|\?\?)")


def _executor_functions() -> frozenset[str]:
    names = set()
    for p in (PROJECT_ROOT / "src_c" / "executor").glob("*.c"):
        for m in re.finditer(r"^[A-Za-z_][\w \*]*?\b(\w+)\s*\([^;{]*\)\s*\{", p.read_text(),
                             re.M):
            names.add(m.group(1))
    return frozenset(names)


EXECUTOR_FUNCTIONS = _executor_functions()


def signature_frames(frames: Iterable[str], limit: int = 3) -> list[str]:
    """The top frames of the code under test (see the module docstring)."""
    out: list[str] = []
    for f in frames:
        if _RUNTIME.match(f):
            continue
        if f in EXECUTOR_FUNCTIONS or f.startswith(("hx_", "hakx_")):
            break  # below this point the stack is the executor's, not the allocator's
        out.append(f)
        if len(out) == limit:
            break
    return out


def signature(outcome: Outcome) -> str:
    """``overlap`` / ``sanitizer:use-after-poison@table_put_raw>table_insert>hak_large_alloc``."""
    frames = signature_frames(outcome.frames)
    return outcome.name + ("@" + ">".join(frames) if frames else "")


def run_signature(program: Program | bytes, build: Build, mode: str, target: Target,
                  repeats: int = 1, timeout: float = 60.0) -> tuple[str, Outcome]:
    """Replays once in a fresh process; returns (signature, outcome)."""
    out = replay(program, build, mode, repeats, timeout, target=target)
    return signature(out), out


@dataclass(frozen=True)
class Reliability:
    """How often a program reproduced its signature: ``hits`` of ``runs`` replays."""

    hits: int
    runs: int

    def __str__(self) -> str:
        return f"{self.hits}/{self.runs}"

    @property
    def full(self) -> bool:
        return self.runs > 0 and self.hits == self.runs

    @property
    def reproducible(self) -> bool:
        return self.hits > 0 and 2 * self.hits >= self.runs

    @classmethod
    def parse(cls, text: str) -> Reliability:
        """Inverse of ``str()`` (``"3/3"``); ValueError when malformed."""
        hits, _, runs = text.partition("/")
        return cls(int(hits), int(runs))


@dataclass
class Reproduction:
    """Result of :func:`reproduce`."""

    signature: str  #: "pass" when nothing reproduced
    mode: str
    repeats: int
    reliability: Reliability
    outcome: Outcome | None = None
    seen: dict[str, int] = field(default_factory=dict)  #: every signature seen -> count
    trouble: Outcome | None = None  #: a replay the harness could not run, if any

    @property
    def reproducible(self) -> bool:
        return self.reliability.reproducible


#: runs of a concurrent-mode program inside one replay: a race shows in a few percent of
#: interleavings, so one run is a coin toss and 20 rarely miss
CONCURRENT_REPEATS = 20


def reproduce(program: Program, build: Build, target: Target, runs: int = 3,
              concurrent_repeats: int = CONCURRENT_REPEATS, timeout: float = 30.0,
              prefer: str = "lockstep", hang: bool = False) -> Reproduction:
    """Lockstep first, then concurrent; the first mode that reproduces the crash reliably
    wins, else the one that reproduced it most often.

    ``hang``: the fuzzer timed the input out. It is replayed once, in the mode it was
    fuzzed in (``prefer``): run ``concurrent_repeats`` times in one process, or in the
    other mode, a slow program would outlast ``timeout`` without hanging."""
    best = Reproduction("pass", prefer, 1, Reliability(0, runs))
    scheduled = program.schedule is not None and build.scheduled
    for mode in (prefer,) if hang else ("lockstep", "concurrent"):
        # a scheduled run replays the same interleaving every time: one is the answer
        repeats = 1 if mode == "lockstep" or scheduled or hang else concurrent_repeats
        counts: collections.Counter[str] = collections.Counter()
        first: dict[str, Outcome] = {}
        for _ in range(runs):
            sig, out = run_signature(program, build, mode, target, repeats, timeout)
            counts[sig] += 1
            first.setdefault(sig, out)
            if sig == "timeout":
                break  # a hang costs `timeout` per run: one is enough to know
        trouble = next((o for o in first.values() if o.harness_trouble), None)
        best.trouble = best.trouble or trouble
        failing = [(n, s) for s, n in counts.items()
                   if s != "pass" and not first[s].harness_trouble]
        if not failing:
            continue
        n, sig = max(failing)
        total = sum(counts.values())
        rel = Reliability(1, 1) if sig == "timeout" else Reliability(n, total)
        rep = Reproduction(sig, mode, repeats, rel, first[sig], dict(counts), best.trouble)
        if n > best.reliability.hits or best.signature == "pass":
            best = rep
        if rep.reproducible:
            return rep
    return best


@dataclass(frozen=True)
class BugKey:
    """What makes two crashes the same bug: signature, seeded bug and target."""

    signature: str
    inject: str | None
    target: str  #: Target.label


@dataclass
class CrashEntry:
    """One crash input's record: triage's findings, then what minimization and the
    regression writer added. Read and written as JSON (the campaign summary, the crash
    index) by :meth:`to_json` / :meth:`from_json`."""

    file: str
    signature: str = ""
    reliability: str = ""  #: str(Reliability)
    mode: str = ""
    repeats: int = 1
    original_ops: int = 0
    detected_s: float = 0.0  #: from the campaign's start to the crash file's mtime
    distinct: bool = False  #: the first crash of its signature in this campaign
    duplicates: int = 0
    new: bool | None = None  #: distinct and not yet kept in regressions/
    known_as: str = ""
    frames: list[str] = field(default_factory=list)
    report_line: str = ""
    note: str = ""
    harness_trouble: str = ""
    error: str = ""
    minimized_ops: int | None = None
    minimize_runs: int = 0
    minimize_seconds: float = 0.0
    regression: str = ""
    program_text: str = ""
    replay: str = ""
    origin: str = ""  #: who made the input: "seed", "neighbour" or "fuzzer"
    step: str = ""  #: a neighbour's "<seed>: <step>" (harness.neighbours)

    @property
    def made_by(self) -> str:
        return f"{self.origin} ({self.step})" if self.step else self.origin

    def to_json(self, with_program: bool = True) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not with_program:
            del d["program_text"]
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrashEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
