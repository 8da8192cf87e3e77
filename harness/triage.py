"""Crash triage: reproduce in fresh processes, reliability, signature, dedupe.

For each crash input of a campaign (already on disk in the campaign's crashes/ folder):

1. decode it the way the fuzz target did (:func:`harness.fuzz.normalize`);
2. reproduce it with :func:`harness.executor.replay`, each run in a fresh child process:
   lockstep first (``n`` runs); if lockstep does not reproduce it, concurrent mode with
   ``repeats`` runs per child (``n`` children). Reliability is ``k/n`` of the chosen mode;
   following ClusterFuzz, a crash is *reproducible* when k >= n/2;
3. signature = ``Outcome.name`` plus the top (at most 3) frames that belong to the code
   under test: sanitizer runtime, libFuzzer, Python, libc and executor frames are dropped,
   the allocator's own frames (``hak_*``, ``table_insert``, a fixture's ``fx_free``) are kept
   (ClusterFuzz drops ``malloc``/``free`` frames, which would merge distinct allocator bugs).
   Function names only (no addresses, no line numbers): stable across runs and builds;
4. dedupe against the reproducers in regressions/ and against this campaign's earlier crashes.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness import PROJECT_ROOT
from harness.corpus import Target
from harness.executor import Outcome, replay
from harness.program import Program, decode

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


def signature_frames(frames: tuple[str, ...] | list[str], limit: int = 3) -> list[str]:
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


def run_signature(program: Program | bytes, build, mode: str, target: Target,
                  repeats: int = 1, timeout: float = 60.0) -> tuple[str, Outcome]:
    """Replays once in a fresh process; returns (signature, outcome)."""
    out = replay(program, build, mode, repeats, timeout,
                 target=None if target.path is None else str(target.path),
                 prefix=target.prefix if target.path is not None else None)
    return signature(out), out


@dataclass
class Reproduction:
    """Result of :func:`reproduce`."""

    signature: str  #: "pass" when nothing reproduced
    mode: str
    repeats: int
    hits: int
    runs: int
    outcome: Outcome | None = None
    seen: dict[str, int] = field(default_factory=dict)  #: every signature seen -> count

    @property
    def reliability(self) -> str:
        return f"{self.hits}/{self.runs}"

    @property
    def reproducible(self) -> bool:
        return self.hits > 0 and 2 * self.hits >= self.runs


#: runs of a concurrent-mode program inside one replay: a race shows in a few percent of
#: interleavings, so one run is a coin toss and 20 rarely miss
CONCURRENT_REPEATS = 20


def reproduce(program: Program, build, target: Target, runs: int = 3,
              concurrent_repeats: int = CONCURRENT_REPEATS, timeout: float = 30.0,
              prefer: str = "lockstep") -> Reproduction:
    """Lockstep first (unless the program only fails concurrently), then concurrent."""
    modes = ["lockstep", "concurrent"]
    best = Reproduction("pass", prefer, 1, 0, runs)
    for mode in modes:
        repeats = 1 if mode == "lockstep" else concurrent_repeats
        counts: collections.Counter[str] = collections.Counter()
        first: dict[str, Outcome] = {}
        for _ in range(runs):
            sig, out = run_signature(program, build, mode, target, repeats, timeout)
            counts[sig] += 1
            first.setdefault(sig, out)
            if sig == "timeout":
                break  # a hang costs `timeout` per run: one is enough to know
        # child:exit-N / executor are harness trouble, not findings (harness.executor)
        failing = [(n, s) for s, n in counts.items() if s != "pass" and not _harness(s)]
        for s_, o in first.items():
            if _harness(s_):
                HARNESS_TROUBLE.append(o)
        if failing:
            n, sig = max(failing)
            total = sum(counts.values())
            rep = Reproduction(sig, mode, repeats, n, total, first[sig], dict(counts))
            if sig == "timeout":
                rep.runs = rep.hits = 1
            if n > best.hits or best.signature == "pass":
                best = rep
            if rep.reproducible:
                return rep
    return best


#: outcomes of replays that failed for harness reasons (kept for the report/log)
HARNESS_TROUBLE: list[Outcome] = []


def _harness(sig: str) -> bool:
    return sig.startswith(("child:", "executor"))


def decode_input(data: bytes, fuzz_mode: str, threads: int) -> tuple[Program, str]:
    """A raw fuzz input -> (program, mode it ran in)."""
    from harness.fuzz import normalize

    data, mode = normalize(data, fuzz_mode, threads)
    return decode(data), mode


def load_crash(path: Path, fuzz_mode: str = "lockstep", threads: int = 0) -> tuple[Program, str]:
    return decode_input(Path(path).read_bytes(), fuzz_mode, threads)
