"""Memory given back to the OS: the scenarios of ``tests/purge/rss.c`` (large blocks freed,
a dead thread's blocks freed by another, an idle owner's blocks freed remotely, a mixed
tiny/mid churn freed; ``pending`` is the seeded-bug check), built against one hakmem build
and run in their own process with the background purge thread on.

After everything is freed, RSS must come back within the program's bound (8 MiB) of its
baseline: by itself (``wait``: the purge thread, polled for at most 30 s: a bound, not a
timing assertion) or at once after ``hak_collect()`` (``collect``), with no block left live.
The suite's RSS tests and the mutation tool's fast tests both run them.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from harness import PROJECT_ROOT
from harness.build import Build, compile_program

__all__ = ["PROGRAM", "SCENARIOS", "RssRun", "compile_rss", "run_rss"]

PROGRAM = PROJECT_ROOT / "tests" / "purge" / "rss.c"
SCENARIOS = ("large", "exited", "idle", "mixed")
#: the program's own bound on what may stay resident (its default)
BOUND_KIB = 8 * 1024
_LINE = re.compile(r"rss: scenario=\S+ mode=\S+ baseline_kib=(\d+) peak_kib=(\d+) "
                   r"after_kib=(\d+) waited_ms=(\d+) live=(\d+)")


@dataclasses.dataclass(frozen=True)
class RssRun:
    """One scenario's run: its process and the figures it printed (None: it printed none)."""

    proc: subprocess.CompletedProcess[str]
    baseline_kib: int | None = None
    peak_kib: int = 0
    after_kib: int = 0
    waited_ms: int = 0
    live: int = 0

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def gave_back(self) -> bool:
        """Exit 0, nothing live, and RSS back within the bound of its baseline."""
        return (self.baseline_kib is not None and self.proc.returncode == 0
                and self.live == 0 and self.after_kib <= self.baseline_kib + BOUND_KIB)


def compile_rss(build: Build, out_dir: Path) -> Path:
    """The scenario program built against ``build`` (its flags, linked to its library)."""
    return compile_program(build, PROGRAM, out_dir / f"rss-{build.name}")


def run_rss(exe: Path, scenario: str, mode: str, build: Build, decay_ms: int = 500,
            timeout: float = 120.0) -> RssRun:
    """Runs one scenario (``mode``: ``wait`` or ``collect``) with the purge thread's delay
    ``decay_ms`` (the hak_ API library starts no purge thread unless told to)."""
    env = build.env()
    env.pop("LD_PRELOAD", None)  # the program is linked to its runtime and library
    env["HAKMEM_DECAY_MS"] = str(decay_ms)
    proc = subprocess.run([str(exe), scenario, mode], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    m = _LINE.search(proc.stdout)
    if not m:
        return RssRun(proc)
    baseline, peak, after, waited, live = map(int, m.groups())
    return RssRun(proc, baseline, peak, after, waited, live)
