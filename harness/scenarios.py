"""C scenario programs for what op programs cannot reach, built against one hakmem build and
run in their own process; the suite's tests and the mutation tool's fast tests both run them.

* Memory given back to the OS (``src_c/scenarios/rss.c``): large blocks freed, a dead thread's
  blocks freed by another, an idle owner's blocks freed remotely, a mixed tiny/mid churn
  freed, a sparse heap whose freed units only the purge's madvise gives back (``pending``
  is the seeded-bug check), with the background purge thread on, which no program run
  starts. After everything is freed, RSS must come back within the
  program's bound (8 MiB) of its baseline: by itself (``wait``: the purge thread, polled
  for at most 30 s: a bound, not a timing assertion) or at once after ``hak_collect()``
  (``collect``), with no block left live; then the heap walk, in a fork child (the purge
  thread may be inside a pass at any moment; the child is quiescent), the only walk after
  the purge thread's passes.
* Allocation after a thread's exit (``src_c/scenarios/dtor_alloc.c``): threads whose TLS
  destructor allocates in every destructor round, the last one included; hakmem must keep
  the main thread's heap and its shared exit heap, nothing more, with no block live.
* Out of memory (``src_c/scenarios/oom.c``): a fixed workload run once per OS request it makes,
  that request refused (``hak_fail_os_maps``) with every later one (the kernel out of
  memory) or alone (a transient failure), each run in a fork child of an empty allocator:
  a NULL result must come with ENOMEM and a refusal, a failed realloc must keep its block,
  every block its size, alignment and contents, and after the refusals end everything must
  allocate again, with the heap walk clean and no block live once all is freed.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from harness import PROJECT_ROOT
from harness.build import Build, compile_program

__all__ = ["DTOR_PROGRAM", "OOM_PROGRAM", "RSS_PROGRAM", "SCENARIOS", "DtorRun", "OomRun",
           "RssRun", "ScenarioRun", "compile_scenario", "run_dtor", "run_oom", "run_rss"]

RSS_PROGRAM = PROJECT_ROOT / "src_c" / "scenarios" / "rss.c"
DTOR_PROGRAM = PROJECT_ROOT / "src_c" / "scenarios" / "dtor_alloc.c"
OOM_PROGRAM = PROJECT_ROOT / "src_c" / "scenarios" / "oom.c"
SCENARIOS = ("large", "exited", "idle", "mixed", "sparse")
#: the program's own bound on what may stay resident (its default)
BOUND_KIB = 8 * 1024
_LINE = re.compile(r"rss: scenario=\S+ mode=\S+ baseline_kib=(\d+) peak_kib=(\d+) "
                   r"after_kib=(\d+) waited_ms=(\d+) live=(\d+) heap_check=(.*)")


@dataclasses.dataclass(frozen=True)
class ScenarioRun:
    """A scenario program's run: its process, and what the figures it printed say."""

    proc: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def printed(self) -> bool:
        """The program printed its figures (a run that did not crashed or hung)."""
        raise NotImplementedError

    def faults(self) -> Iterator[tuple[str, bool]]:
        """(name, whether it happened) for each way the printed figures can fail, in the
        order they are reported."""
        raise NotImplementedError

    @property
    def failure(self) -> str:
        """The first thing that went wrong: ``crash`` (no figures, or a non-zero exit with
        none of the program's own faults), or the first of :meth:`faults`; "" when none."""
        if not self.printed:
            return "crash"
        for name, happened in self.faults():
            if happened:
                return name
        return "crash" if self.proc.returncode else ""

    @property
    def passed(self) -> bool:
        return not self.failure


@dataclasses.dataclass(frozen=True)
class WalkedRun(ScenarioRun):
    """A run that ends by counting the blocks left live and walking the heap. Its first
    faults: ``heap_check`` (the walk) and ``live`` (blocks left)."""

    live: int = 0
    heap_check: str = ""

    def faults(self) -> Iterator[tuple[str, bool]]:
        yield "heap_check", self.heap_check != "ok"
        yield "live", self.live > 0


@dataclasses.dataclass(frozen=True)
class RssRun(WalkedRun):
    """One memory-return scenario's run and its figures (baseline None: it printed none).
    Faults: those of :class:`WalkedRun`, then ``rss`` (RSS not back within the bound of
    its baseline)."""

    baseline_kib: int | None = None
    peak_kib: int = 0
    after_kib: int = 0

    @property
    def printed(self) -> bool:
        return self.baseline_kib is not None

    def faults(self) -> Iterator[tuple[str, bool]]:
        yield from super().faults()
        yield "rss", self.after_kib > (self.baseline_kib or 0) + BOUND_KIB


_DTOR_LINE = re.compile(r"threads=(\d+) heaps=(\d+) live=(\d+) heap_check=(.*)")
#: heaps dtor_alloc may leave: the main thread's and the shared exit heap
DTOR_HEAPS = 2


@dataclasses.dataclass(frozen=True)
class DtorRun(WalkedRun):
    """dtor_alloc's run and its figures (heaps None: it printed nothing). Faults: those of
    :class:`WalkedRun`, then ``heaps`` (more than the two heaps hakmem keeps)."""

    heaps: int | None = None

    @property
    def printed(self) -> bool:
        return self.heaps is not None

    def faults(self) -> Iterator[tuple[str, bool]]:
        yield from super().faults()
        yield "heaps", (self.heaps or 0) > DTOR_HEAPS


_OOM_LINE = re.compile(r"oom: points=(\d+) refused=(\d+) nulls=(\d+) failures=(\d+)")


@dataclasses.dataclass(frozen=True)
class OomRun(ScenarioRun):
    """The out-of-memory sweep's run and its totals (points None: it printed none):
    children run, OS requests refused, NULL results seen, children that failed. Faults:
    ``child`` (a child failed a check or died, see :attr:`complaints`), ``unrefused`` (no
    request was ever refused: the build ignores ``hak_fail_os_maps``)."""

    points: int | None = None
    refused: int = 0
    nulls: int = 0
    failures: int = 0

    @property
    def complaints(self) -> list[str]:
        """What each failing child said (``oom: child K (MODE): ...``)."""
        return [ln for ln in self.proc.stdout.splitlines() if ln.startswith("oom: child ")]

    @property
    def printed(self) -> bool:
        return self.points is not None

    def faults(self) -> Iterator[tuple[str, bool]]:
        yield "child", self.failures > 0
        yield "unrefused", self.refused == 0


def compile_scenario(build: Build, program: Path, out_dir: Path) -> Path:
    """A scenario program built against ``build`` (its flags, linked to its library)."""
    return compile_program(build, program, out_dir / f"{program.stem}-{build.name}")


def _env(build: Build, **extra: str) -> dict[str, str]:
    env = build.env()
    env.pop("LD_PRELOAD", None)  # the program is linked to its runtime and library
    env.update(extra)
    return env


def run_rss(exe: Path, scenario: str, mode: str, build: Build, decay_ms: int = 500,
            timeout: float = 120.0) -> RssRun:
    """Runs one scenario (``mode``: ``wait`` or ``collect``) with the purge thread's delay
    ``decay_ms`` (the hak_ API library starts no purge thread unless told to)."""
    proc = subprocess.run([str(exe), scenario, mode], capture_output=True, text=True,
                          env=_env(build, HAKMEM_DECAY_MS=str(decay_ms)), timeout=timeout,
                          check=False)
    m = _LINE.search(proc.stdout)
    if not m:
        return RssRun(proc)
    baseline, peak, after, _, live = map(int, m.groups()[:5])
    return RssRun(proc, live=live, heap_check=m.group(6).strip(), baseline_kib=baseline,
                  peak_kib=peak, after_kib=after)


def run_dtor(exe: Path, threads: int, build: Build, timeout: float = 60.0) -> DtorRun:
    """Runs dtor_alloc with ``threads`` threads."""
    proc = subprocess.run([str(exe), str(threads)], capture_output=True, text=True,
                          env=_env(build), timeout=timeout, check=False)
    m = _DTOR_LINE.search(proc.stdout)
    if not m or int(m.group(1)) != threads:
        return DtorRun(proc)
    return DtorRun(proc, live=int(m.group(3)), heap_check=m.group(4).strip(),
                   heaps=int(m.group(2)))


def run_oom(exe: Path, build: Build, timeout: float = 300.0) -> OomRun:
    """Runs the out-of-memory sweep."""
    proc = subprocess.run([str(exe)], capture_output=True, text=True, env=_env(build),
                          timeout=timeout, check=False)
    m = _OOM_LINE.search(proc.stdout)
    if not m:
        return OomRun(proc)
    return OomRun(proc, *map(int, m.groups()))
