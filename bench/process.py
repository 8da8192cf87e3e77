"""Running one benchmark process: its output, wall time and peak RSS."""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

from bench.benchbuild import BIN
from harness.child import communicate_or_kill


@dataclass(frozen=True)
class Completed:
    rc: int  # -SIGKILL when the timeout killed it
    out: str
    err: str  # without the launcher's rusage line
    wall: float  # seconds
    rss_mib: float  # peak RSS, nan when not taken


def parse_kv(line: str) -> dict[str, str]:
    """The `key=value` tokens of a result, verify or rusage line."""
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def run_process(argv: list[str], env: dict[str, str], timeout: float,
                rusage: bool = True) -> Completed:
    """Run argv in its own session; kill the whole group after `timeout` seconds.

    Peak RSS is ru_maxrss from wait4() on the benchmark process, taken by the tiny
    bench/bin/rusage_exec launcher: os.wait4() from Python would report at least
    Python's own RSS, because Linux carries ru_maxrss across execve().
    """
    full = ([str(BIN / "rusage_exec")] if rusage else []) + argv
    t0 = time.monotonic()
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    out, err, timed_out = communicate_or_kill(p, timeout)
    if timed_out:
        return Completed(-signal.SIGKILL, out.decode(errors="replace"),
                         err.decode(errors="replace"), time.monotonic() - t0, float("nan"))
    wall = time.monotonic() - t0
    err_s, rss = err.decode(errors="replace"), float("nan")
    if rusage:
        err_s, rss = _take_rusage(err_s)
    return Completed(p.returncode, out.decode(errors="replace"), err_s, wall, rss)


def _take_rusage(err: str) -> tuple[str, float]:
    """Split the launcher's `rusage maxrss_kib=` line off stderr; return (rest, MiB)."""
    rss = float("nan")
    keep = []
    for ln in err.splitlines(keepends=True):
        if ln.startswith("rusage maxrss_kib="):
            rss = int(parse_kv(ln)["maxrss_kib"]) / 1024.0
        else:
            keep.append(ln)
    return "".join(keep), rss


def first_line(text: str, prefix: str) -> str:
    """The first line of `text` starting with `prefix` ('' if none)."""
    return next((ln for ln in text.splitlines() if ln.startswith(prefix)), "")
