"""A program run in a fresh child process: ``python -m harness.child``.

A sanitizer report or a deadly signal kills the process that runs the executor, so a
replay runs each program in a new Python process with the build's environment (its
sanitizer runtime preloaded, its options set) and collects what happened
(:class:`ChildRun`); harness.checks turns that into an outcome.

The child reads one JSON request on stdin (library, program in hex, mode, repeats,
white-box flag, hooks, target and prefix) and prints the executor's verdict as one marker
line (harness.verdict). It runs with address-space randomisation off (``setarch -R``,
util-linux), so each replay maps its libraries and blocks at the same addresses: a bug
that depends on where a block lies replays the same way every time instead of by the
luck of the layout. Its process group is killed on timeout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT
from harness.binding import load, run_program
from harness.build import Build
from harness.program import Program, encode
from harness.target import Target
from harness.verdict import Verdict

__all__ = ["NO_ASLR", "STATIC_TLS_TUNABLE", "ChildRun", "child_env", "communicate_or_kill",
           "run_child", "wait_or_stop"]

#: Lets a foreign allocator that uses initial-exec TLS (jemalloc) be dlopen()ed.
STATIC_TLS_TUNABLE = "glibc.rtld.optional_static_tls=65536"
#: command prefix that runs a child with address-space randomisation off
NO_ASLR = ["setarch", "-R"] if shutil.which("setarch") else []


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """What a child left behind: exit status (negative: the signal), output, and whether it
    was killed for running past its timeout."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def verdict(self) -> Verdict | None:
        return Verdict.from_output(self.stdout)


def child_env(base: dict[str, str], foreign: bool = False) -> dict[str, str]:
    """``base`` plus what any child running harness code needs (the package importable;
    room in the static TLS block for a foreign allocator)."""
    env = dict(base)
    pp = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + pp if pp else "")
    if foreign:
        tun = env.get("GLIBC_TUNABLES", "")
        if "optional_static_tls" not in tun:
            env["GLIBC_TUNABLES"] = STATIC_TLS_TUNABLE + (":" + tun if tun else "")
    return env


def run_child(program: Program | bytes, build: Build, mode: str = "lockstep",
              repeats: int = 1, timeout: float = 60.0, *, target: Target = Target(),
              whitebox: bool = True, hooks: int | str | None = None,
              env: dict[str, str] | None = None) -> ChildRun:
    """Runs ``program`` on ``build`` (and ``target``) in a fresh child process.
    ``repeats``: runs of the program inside the one child (stops at the first failure)."""
    base = build.env()
    base.update(env or {})
    req = {
        "lib": str(build.lib),
        "program": (encode(program) if isinstance(program, Program) else bytes(program)).hex(),
        "mode": mode,
        "repeats": repeats,
        "whitebox": whitebox,
        "hooks": hooks,
        "target": None if target.path is None else os.fspath(target.path),
        "prefix": target.prefix,
    }
    proc = subprocess.Popen(
        [*NO_ASLR, sys.executable, "-m", "harness.child"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env(base, target.foreign), cwd=str(PROJECT_ROOT),
        start_new_session=True, text=True, errors="replace",
    )
    out, err, timed_out = communicate_or_kill(proc, timeout, json.dumps(req))
    return ChildRun(proc.returncode, out, err, timed_out)


def communicate_or_kill(proc: subprocess.Popen[Any], timeout: float,
                        stdin: Any = None) -> tuple[Any, Any, bool]:
    """(stdout, stderr, timed out) of ``proc``, started in a session of its own: past
    ``timeout`` its whole process group is killed (a hung child's own children too)."""
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        out, err = proc.communicate()
        return out, err, True


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def wait_or_stop(proc: subprocess.Popen[Any], grace: float) -> int:
    """The exit status of ``proc``, a tool started in a session of its own. Interrupted
    (Ctrl-C, or a SIGTERM that cli.interrupt_on_sigterm made one), the tool is asked to
    stop as a Ctrl-C would ask it (SIGTERM to its process group: harness.fuzz then stops
    its fuzzer and writes what it found), given ``grace`` seconds, then killed with its
    group; the interrupt is raised again. Without this the tool, in a session the
    terminal's Ctrl-C does not reach, would run on alone to the end of its budget."""
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        raise


def _serve() -> int:
    req = json.loads(sys.stdin.read())
    target = Target() if req["target"] is None else Target(Path(req["target"]), req["prefix"])
    verdict = run_program(load(req["lib"]), bytes.fromhex(req["program"]), req["mode"], target,
                          whitebox=req["whitebox"], repeats=req["repeats"], hooks=req["hooks"])
    sys.stdout.write(verdict.to_line() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
