"""Replay a program in a fresh child process and classify what happened.

A sanitizer report or a deadly signal kills the process that runs the executor, so
:func:`replay` runs every program in a new ``python -m harness._child`` with the build's
environment (the sanitizer runtime preloaded, its options set) and turns the result
into an :class:`Outcome`:

* ``pass``;
* a check name (``integrity``, ``counters``, ...) when the executor's verdict failed;
* ``sanitizer:<kind>`` from the report (``sanitizer:heap-use-after-free``,
  ``sanitizer:use-after-poison``, ``sanitizer:data-race``, ``sanitizer:undefined-behavior``,
  ``sanitizer:leak``); a sanitizer's "deadly signal" report (ASan/TSan ``SEGV``, ``BUS``,
  ``FPE``, ``ABRT``...) is classified as the signal, so a SEGV has one name on every build;
* ``signal:<NAME>`` (``signal:SIGSEGV``, ``signal:SIGABRT``) when the child died of one;
* ``timeout`` (the child's process group is killed);
* ``executor`` when the executor could not run (bad target, ...); ``child:exit-<n>`` if
  the child died without any of the above (a bug in the harness, not a finding).

The sanitizer report wins over a verdict (TSan reports and keeps going). The tail of the
child's stderr and the report's top frames are kept for triage.

The child runs with address-space randomisation off (``setarch -R``, util-linux), so each
replay maps its libraries and blocks at the same addresses: a bug that depends on where a
block lies (a header guessed at an aligned-down address that may or may not be mapped)
replays the same way every time instead of by the luck of the layout.

:func:`run_inprocess` is the fast path (no child) for release builds: hypothesis and
benchmarks. A crash there kills the caller.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT
from harness.checks import Verdict
from harness.program import Program, encode

__all__ = ["Outcome", "replay", "run_inprocess", "classify", "child_env", "STATIC_TLS_TUNABLE"]

#: Lets a foreign allocator that uses initial-exec TLS (jemalloc) be dlopen()ed.
STATIC_TLS_TUNABLE = "glibc.rtld.optional_static_tls=65536"

_MARKER = "HAKX-VERDICT "
_ERROR = re.compile(r"(?:ERROR|WARNING): (\w+Sanitizer): ([^\n]*)")
_SUMMARY = re.compile(r"SUMMARY: (\w+Sanitizer): ([^\n]*)")
_KIND_END = re.compile(r" on | \(| at |:| /|$")
_FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ in (\S+)(?: (\S+))?", re.M)
_DEADLY = {"SEGV": "SIGSEGV", "BUS": "SIGBUS", "FPE": "SIGFPE", "ABRT": "SIGABRT",
           "ILL": "SIGILL", "TRAP": "SIGTRAP"}
_TAIL = 8000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What replaying a program concluded. ``name`` is the stable signature head."""

    name: str
    verdict: Verdict | None = None
    returncode: int | None = None
    stderr_tail: str = ""
    frames: tuple[str, ...] = ()
    report: str = ""

    @property
    def passed(self) -> bool:
        return self.name == "pass"

    @property
    def kind(self) -> str:
        """``pass``, ``check``, ``sanitizer``, ``signal``, ``timeout``, ``executor``, ``child``."""
        if self.name in ("pass", "timeout", "executor"):
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
        if self.verdict is not None and not self.verdict.passed:
            lines.append(self.verdict.describe())
        elif self.verdict is not None:
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


def classify(returncode: int | None, stdout: str, stderr: str,
             timed_out: bool = False) -> Outcome:
    """Turns a child's exit into an Outcome (see the module docstring for the rules)."""
    tail = stderr[-_TAIL:]
    verdict = None
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            verdict = Verdict.from_dict(json.loads(line[len(_MARKER):]))
    if timed_out:
        return Outcome("timeout", verdict, returncode, tail)
    m = _ERROR.search(stderr) or _SUMMARY.search(stderr)
    if m is None and "runtime error:" in stderr:
        i = stderr.index("runtime error:")
        line = stderr[stderr.rfind("\n", 0, i) + 1: stderr.find("\n", i)]
        return Outcome("sanitizer:undefined-behavior", verdict, returncode, tail,
                       _frames(stderr, i), line.strip())
    if m is not None:
        tool, rest = m.group(1), m.group(2)
        kind = rest[: _KIND_END.search(rest).start()].strip()
        first = kind.split(" ")[0]
        line = stderr[m.start(): stderr.find("\n", m.start())]
        frames = _frames(stderr, m.start())
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
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = str(-returncode)
        return Outcome(f"signal:{sig}", verdict, returncode, tail, _frames(stderr, 0))
    if verdict is not None:
        return Outcome(verdict.name, verdict, returncode, tail)
    return Outcome(f"child:exit-{returncode}", None, returncode, tail)


def _resolve(build_or_lib: Any) -> tuple[str, dict[str, str]]:
    """(library path, child environment) for a Build, a library path, or a variant name."""
    if build_or_lib is None or isinstance(build_or_lib, str) and not build_or_lib.endswith(".so"):
        from harness.build import build

        build_or_lib = build(build_or_lib or "release")
    if hasattr(build_or_lib, "lib") and hasattr(build_or_lib, "env"):
        return str(build_or_lib.lib), dict(build_or_lib.env())
    return str(Path(build_or_lib).resolve()), dict(os.environ)


def child_env(base: dict[str, str], foreign: bool = False) -> dict[str, str]:
    env = dict(base)
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + pp if pp else "")
    if foreign:
        tun = env.get("GLIBC_TUNABLES", "")
        if "optional_static_tls" not in tun:
            env["GLIBC_TUNABLES"] = STATIC_TLS_TUNABLE + (":" + tun if tun else "")
    return env


def replay(
    program: Program | bytes,
    build_or_lib: Any = None,
    mode: str = "lockstep",
    repeats: int = 1,
    timeout: float = 60.0,
    *,
    target: str | os.PathLike[str] | None = None,
    prefix: str | None = None,
    whitebox: bool = True,
    hooks: int | str | None = None,
    env: dict[str, str] | None = None,
) -> Outcome:
    """Runs ``program`` in a fresh child process and classifies the outcome.

    ``build_or_lib``: a harness.build.Build (its lib and env), a variant name
    ("release", "asan", ...; built if needed), or a path to a library holding the
    executor (run without a sanitizer runtime). ``target``/``prefix``: a foreign
    allocator (black-box). ``repeats``: runs of the program inside the one child
    (stops at the first failure).
    """
    lib, base = _resolve(build_or_lib)
    if env:
        base.update(env)
    req = {
        "lib": lib,
        "program": encode(program).hex() if isinstance(program, Program) else bytes(program).hex(),
        "mode": mode,
        "repeats": repeats,
        "whitebox": whitebox,
        "hooks": hooks,
        "target": None if target is None else os.fspath(target),
        "prefix": prefix,
    }
    proc = subprocess.Popen(
        [*NO_ASLR, sys.executable, "-m", "harness._child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(base, target is not None),
        cwd=str(PROJECT_ROOT),
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        out, err = proc.communicate(json.dumps(req), timeout=timeout)
        return classify(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return classify(proc.returncode, out, err, timed_out=True)


#: command prefix that runs a child with address-space randomisation off (see above)
NO_ASLR = ["setarch", "-R"] if shutil.which("setarch") else []


def run_inprocess(
    program: Program | bytes,
    lib: Any,
    mode: str = "lockstep",
    repeats: int = 1,
    *,
    target: str | os.PathLike[str] | None = None,
    prefix: str | None = None,
    whitebox: bool = True,
    hooks: int | str | None = None,
) -> Outcome:
    """The fast path: runs in this process (release builds only; a crash kills the caller)."""
    from harness.binding import run_program

    path = lib.lib if hasattr(lib, "lib") else lib
    v = run_program(path, program, mode, target, prefix, whitebox=whitebox, repeats=repeats,
                    hooks=hooks)
    return Outcome(v.name, v, 0)
