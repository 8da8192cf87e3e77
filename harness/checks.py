"""Checks: their names, and what a run of a program concluded (:class:`Outcome`).

Every finding carries one stable name (DESIGN.md, "Checks"):

* black-box (any target): ``align``, ``overlap``, ``integrity``, ``usable_size``,
  ``realloc_preserve``, ``calloc_zero``, ``null``;
* white-box (hakmem only, through hakmem_debug.h): ``block_boundary``,
  ``double_conversion``, ``counters``, ``heap_check``, ``leak``;
* from the process: ``sanitizer:<kind>`` from the report (``sanitizer:heap-use-after-free``,
  ``sanitizer:use-after-poison``, ``sanitizer:data-race``, ``sanitizer:undefined-behavior``,
  ``sanitizer:leak``); a sanitizer's "deadly signal" report (ASan/TSan ``SEGV``, ``BUS``,
  ``FPE``, ``ABRT``...) is classified as the signal, so a SEGV has one name on every build;
  ``signal:<NAME>`` when the child died of one; ``timeout``.

Not findings: ``executor`` (the executor could not run: bad target, ...) and
``child:exit-<n>`` (the child died without any of the above: a bug in the harness).
The sanitizer report wins over a verdict (TSan reports and keeps going). The tail of the
child's stderr and the report's top frames are kept for triage.

:func:`replay` runs a program in a fresh process (harness.child) and classifies it;
:func:`run_inprocess` is the fast path with no child, for release builds (hypothesis,
benchmarks): a crash there kills the caller.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from typing import Any

from harness.binding import Library, run_program
from harness.build import Build
from harness.child import ChildRun, run_child
from harness.program import Program
from harness.symbolize import hang_stack
from harness.target import Target
from harness.verdict import PASS, Verdict

__all__ = ["ALL_CHECKS", "BLACK_BOX", "HARNESS_TROUBLE", "PASS", "WHITE_BOX", "Outcome",
           "classify", "replay", "run_inprocess"]

BLACK_BOX: tuple[str, ...] = (
    "align",
    "overlap",
    "integrity",
    "usable_size",
    "realloc_preserve",
    "calloc_zero",
    "null",
)
WHITE_BOX: tuple[str, ...] = (
    "block_boundary",
    "double_conversion",
    "counters",
    "heap_check",
    "leak",
)
ALL_CHECKS: tuple[str, ...] = BLACK_BOX + WHITE_BOX
#: Outcome names that say the harness could not run the program (not a finding).
HARNESS_TROUBLE: tuple[str, ...] = ("child:", "executor")

_ERROR = re.compile(r"(?:ERROR|WARNING): (\w+Sanitizer): ([^\n]*)")
_SUMMARY = re.compile(r"SUMMARY: (\w+Sanitizer): ([^\n]*)")
_KIND_END = re.compile(r" on | \(| at |:| /|$")
_FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ in (\S+)(?: (\S+))?", re.M)
_DEADLY = {"SEGV": "SIGSEGV", "BUS": "SIGBUS", "FPE": "SIGFPE", "ABRT": "SIGABRT",
           "ILL": "SIGILL", "TRAP": "SIGTRAP"}
_TAIL = 8000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What running a program concluded. ``name`` is the stable signature head."""

    name: str
    verdict: Verdict | None = None
    returncode: int | None = None
    stderr_tail: str = ""
    frames: tuple[str, ...] = ()
    report: str = ""

    @property
    def passed(self) -> bool:
        return self.name == PASS

    @property
    def harness_trouble(self) -> bool:
        """The harness could not run the program: no finding either way."""
        return self.name.startswith(HARNESS_TROUBLE)

    @property
    def kind(self) -> str:
        """``pass``, ``check``, ``sanitizer``, ``signal``, ``timeout``, ``executor``, ``child``."""
        if self.name in (PASS, "timeout", "executor"):
            return self.name
        head = self.name.split(":", 1)[0]
        return head if head in ("sanitizer", "signal", "child") else "check"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.to_dict() if self.verdict else None
        d["frames"] = list(self.frames)
        return d

    def describe(self) -> str:
        lines = [f"outcome: {self.name}"]
        if self.verdict is not None:
            lines.append(self.verdict.describe())
        if self.report:
            lines.append(f"report: {self.report}")
        if self.frames:
            lines.append("frames: " + " <- ".join(self.frames[:6]))
        if self.returncode not in (0, None):
            lines.append(f"child exit status: {self.returncode}")
        return "\n".join(lines)


def _frames(text: str, start: int) -> tuple[str, ...]:
    out: list[str] = []
    for m in _FRAME.finditer(text, start):
        if m.group(1) == "0" and out:
            break
        out.append(m.group(2))
    return tuple(out)


def _sanitizer_outcome(m: re.Match[str], stderr: str, verdict: Verdict | None,
                       returncode: int | None, tail: str) -> Outcome:
    tool, rest = m.group(1), m.group(2)
    end = _KIND_END.search(rest)
    kind = rest[: end.start() if end else len(rest)].strip()
    line = stderr[m.start(): stderr.find("\n", m.start())]
    frames = _frames(stderr, m.start())
    first = kind.split(" ")[0]
    if first in _DEADLY:
        return Outcome(f"signal:{_DEADLY[first]}", verdict, returncode, tail, frames, line)
    if tool == "LeakSanitizer":
        name = "leak"
    elif tool == "UndefinedBehaviorSanitizer":
        name = "undefined-behavior"
    else:
        name = kind.replace(" ", "-")
        name = {"detected-memory-leaks": "leak"}.get(name, name)
    return Outcome(f"sanitizer:{name}", verdict, returncode, tail, frames, line)


def classify(returncode: int | None, stdout: str, stderr: str,
             timed_out: bool = False) -> Outcome:
    """Turns a child's exit into an Outcome (see the module docstring for the rules)."""
    tail = stderr[-_TAIL:]
    verdict = Verdict.from_output(stdout)
    if timed_out:
        return Outcome("timeout", verdict, returncode, tail)
    m = _ERROR.search(stderr) or _SUMMARY.search(stderr)
    if m is None and "runtime error:" in stderr:
        i = stderr.index("runtime error:")
        line = stderr[stderr.rfind("\n", 0, i) + 1: stderr.find("\n", i)]
        return Outcome("sanitizer:undefined-behavior", verdict, returncode, tail,
                       _frames(stderr, i), line.strip())
    if m is not None:
        return _sanitizer_outcome(m, stderr, verdict, returncode, tail)
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = str(-returncode)
        return Outcome(f"signal:{sig}", verdict, returncode, tail, _frames(stderr, 0))
    if verdict is not None:
        return Outcome(verdict.name, verdict, returncode, tail)
    return Outcome(f"child:exit-{returncode}", None, returncode, tail)


def _classify_run(run: ChildRun) -> Outcome:
    return classify(run.returncode, run.stdout, run.stderr, run.timed_out)


def replay(program: Program | bytes, build: Build, mode: str = "lockstep", repeats: int = 1,
           timeout: float = 60.0, *, target: Target = Target(), whitebox: bool = True,
           hooks: int | str | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Runs ``program`` on ``build`` (and ``target``) in a fresh child process and
    classifies what happened. ``repeats``: runs inside the one child (stops at the first
    failure). A fork child's hang gets its stack, symbolized, as the outcome's report."""
    out = _classify_run(run_child(program, build, mode, repeats, timeout, target=target,
                                  whitebox=whitebox, hooks=hooks, env=env))
    if out.name != "fork:hang" or out.verdict is None:
        return out
    stack = hang_stack(out.verdict.message, (build.lib, build.runtime.library, target.path))
    return dataclasses.replace(out, report=f"hang stack: {stack}") if stack else out


def run_inprocess(program: Program | bytes, lib: Build | Library | str | os.PathLike[str],
                  mode: str = "lockstep", repeats: int = 1, *, target: Target = Target(),
                  whitebox: bool = True, hooks: int | str | None = None) -> Outcome:
    """The fast path: runs in this process (release builds only; a crash kills the caller)."""
    path = lib.lib if isinstance(lib, Build) else lib
    v = run_program(path, program, mode, target, whitebox=whitebox, repeats=repeats,
                    hooks=hooks)
    return Outcome(v.name, v, 0)
