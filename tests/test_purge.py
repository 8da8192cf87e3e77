"""Memory given back to the OS (src_c/scenarios/rss.c), and the thread-exit heap leak
(src_c/scenarios/dtor_alloc.c).

Each RSS scenario of issue 13 (large blocks freed, a dead thread's blocks freed by
another, an idle owner's blocks freed remotely, a mixed tiny/mid churn freed) runs in its
own process on the release build: after everything is freed, RSS must come back within
8 MiB of its baseline, by itself (the purge thread, HAKMEM_DECAY_MS=500; the program polls for
at most 30 s, a bound and not a timing assertion) and at once after hak_collect(), and the
heap walk (in a fork child: the purge thread never stops) must then be clean. The
seeded bug `early_purge` (a purge returning a slab's pages while blocks of it are still
pending remotely) must lose blocks; the clean build must not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build
from harness.checks import replay
from harness.program import Op, Program
from harness.scenarios import (DTOR_PROGRAM, RSS_PROGRAM, SCENARIOS, compile_scenario,
                               run_dtor, run_rss)



@pytest.mark.parametrize("mode", ["wait", "collect"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rss_comes_back(built: Callable[..., Build], tmp_path: Path, scenario: str,
                        mode: str) -> None:
    build = built("release")
    got = run_rss(compile_scenario(build, RSS_PROGRAM, tmp_path), scenario, mode, build)
    assert got.baseline_kib is not None, got.output
    assert got.peak_kib > got.baseline_kib + 20 * 1024, f"the scenario used no memory: {got.output}"
    assert got.passed, got.output
    print(got.proc.stdout.strip())


@pytest.mark.parametrize("inject", [None, "early_purge"])
def test_early_purge_seeded_bug(built: Callable[..., Build], tmp_path: Path,
                                inject: str | None) -> None:
    """Blocks pending on an idle owner's remote lists all come back at hak_collect();
    the seeded bug returns their pages first and loses them."""
    build = built("release", inject)
    got = run_rss(compile_scenario(build, RSS_PROGRAM, tmp_path), "pending", "collect", build)
    assert got.baseline_kib is not None, got.output
    if inject:
        assert got.live > 0, f"early_purge lost no block: {got.output}"
    else:
        assert got.proc.returncode == 0 and got.live == 0, got.output


#: The owner flushes its cache (so its slab's used blocks are exactly the program's), another
#: thread frees them all remotely (every one pending) and collects: the purge finds the
#: owner's slab with all its used blocks pending. The barrier orders the flush before the
#: frees in concurrent mode too (a flush takes no slot's baton, so without it the frees and
#: the collect could come first: the test failed once on CI that way).
PENDING_THEN_COLLECT = Program(2, (*(Op("malloc", 0, s, 1000) for s in range(16)), Op("flush", 0),
                                   Op("barrier"),
                                   *(Op("free", 1, s) for s in range(16)), Op("collect", 1)))


@pytest.mark.parametrize(("mode", "check", "says"), [
    # in lockstep the collect op is a quiescent point: the heap walk after it sees the
    # purge's damage at once; concurrent runs see the lost blocks at the end
    ("lockstep", "heap_check", "collect: "),
    ("concurrent", "counters", "allocator counts 15 live blocks"),
])
def test_the_collect_op_lets_a_program_find_early_purge(built: Callable[..., Build],
                                                       mode: str, check: str, says: str) -> None:
    """The program op behind campaigns' reach into the purge: the seeded bug loses the
    pending blocks, the clean build passes."""
    bad = replay(PENDING_THEN_COLLECT, built("asan", "early_purge"), mode)
    assert bad.name == check and says in bad.verdict.message, (
        bad.name, bad.report or bad.stderr_tail)
    if mode == "lockstep":
        assert bad.verdict.op_index == len(PENDING_THEN_COLLECT.ops) - 1
    clean = replay(PENDING_THEN_COLLECT, built("asan"), mode)
    assert clean.passed, clean.report or clean.stderr_tail


def test_destructor_allocating_in_the_last_round_leaks_no_heap(
        built: Callable[..., Build], tmp_path: Path) -> None:
    """50 threads whose destructor allocates in every round, the last one included:
    hakmem keeps the main thread's heap and its shared exit heap, nothing more (it kept
    51 heaps before issue 13)."""
    build = built("release")
    got = run_dtor(compile_scenario(build, DTOR_PROGRAM, tmp_path), 50, build)
    assert got.passed, got.output
