"""The heap walk's rules for the slab pool and for what a collect gives back, each seen to
fire on an allocator broken by hand (one edit of src_c/alloc, built as a release variant
beside the test, as harness.mutants builds its mutants) and to stay quiet on the clean one.

These rules close blind spots the mutation score found: nothing checked what the allocator
keeps mapped, so mutants that cached an empty superslab forever, kept a purged unit dirty,
miscounted the dirty units, skipped the reclaim of abandoned slabs, the caller's flush or
the purge of the large cache, or left a full superslab ahead of ones with room (every later
search stops there and maps a fresh superslab) all survived."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import PROJECT_ROOT
from harness.build import Build
from harness.checks import replay
from harness.program import Op, Program

#: name -> (file of src_c/alloc, text, replacement): each text occurs once in its file
BREAKS = {
    # a superslab that becomes full stays where it is on the pool's list
    "full_ahead": ("superslab.c", "        list_unlink(ss);\n        list_push_back(ss);\n",
                   ""),
    # an emptied superslab is neither cached nor unmapped
    "empty_kept": ("superslab.c",
                   "    if (ss->free_units == SLAB_UNITS) {\n        if (cached_count",
                   "    if (0) {\n        if (cached_count"),
    # the cache's count forgets a superslab it caches
    "cache_count": ("superslab.c", "            ss->cached = true;\n            cached_count++;\n",
                    "            ss->cached = true;\n"),
    # carving a slab adds its dirty units to the pool's count instead of taking them off
    "dirty_count": ("superslab.c", "    dirty_total -= (unsigned)__builtin_popcount(taken);",
                    "    dirty_total += (unsigned)__builtin_popcount(taken);"),
    # carving a slab leaves its units marked dirty (a purge would drop its blocks' pages)
    "dirty_carve": ("superslab.c", "    ss->dirty_units &= ~taken;\n", ""),
    # the purge reclaims abandoned slabs only when there are none (heap-2662, a survivor)
    "no_reclaim": ("heap.c",
                   "        if (!atomic_load_explicit(&abandoned_count, memory_order_relaxed))\n"
                   "            break;",
                   "        if (atomic_load_explicit(&abandoned_count, memory_order_relaxed))\n"
                   "            break;"),
    # a collect leaves the caller's caches as they are (heap-2070 and its kin: survivors)
    "no_flush": ("purge.c", "        hak_heap_flush_all(heap);\n", ""),
    # one tiny size sent to the next class's cache (the drop-in's malloc table)
    "size_table": ("heap.c", "(uint16_t)(hak_class_of(size) *",
                   "(uint16_t)((hak_class_of(size) + (size == 100)) *"),
    # the purge leaves the large cache alone
    "large_kept": ("large.c", "bool hak_large_purge(uint64_t now, uint64_t delay)\n{",
                   "bool hak_large_purge(uint64_t now, uint64_t delay)\n{\n    return false;"),
}

MID = 40000
#: break -> (program, what the heap_check report says); replayed in lockstep
PROGRAMS: dict[str, tuple[Program, str]] = {
    "empty_kept": (Program(1, (*(Op("malloc", 0, s, MID) for s in range(64)),
                               *(Op("free", 0, s) for s in range(0, 64, 2)), Op("barrier"))),
                   "is empty but neither cached nor unmapped"),
    "cache_count": (Program(1, (*(Op("malloc", 0, s, MID) for s in range(64)),
                                *(Op("free", 0, s) for s in range(0, 64, 2)), Op("barrier"))),
                    "counters say"),
    "dirty_carve": (Program(1, (*(Op("malloc", 0, s, 3000) for s in range(40)),
                                *(Op("free", 0, s) for s in range(40)), Op("barrier"),
                                *(Op("malloc", 0, s, 3000) for s in range(8)), Op("barrier"))),
                    "units in use marked dirty"),
    "dirty_count": (Program(1, (*(Op("malloc", 0, s, 3000) for s in range(40)),
                                *(Op("free", 0, s) for s in range(40)), Op("barrier"),
                                *(Op("malloc", 0, s, 3000) for s in range(8)), Op("barrier"))),
                    "dirty units in the superslabs' masks, the count says"),
    # a thread exits with live blocks, another frees them all and collects
    "no_reclaim": (Program(2, (*(Op("malloc", 0, s, 1000) for s in range(16)),
                               Op("thread_exit", 0), *(Op("free", 1, s) for s in range(16)),
                               Op("collect", 1))),
                   "after a collect: abandoned slab"),
    "no_flush": (Program(1, (*(Op("malloc", 0, s, 100) for s in range(8)),
                             *(Op("free", 0, s) for s in range(8)), Op("collect", 0))),
                 "the collecting thread's cache of class"),
    "size_table": (Program(1, (Op("malloc", 0, 0, 100), Op("barrier"))),
                   "size table sends 100 B to cache offset"),
    "large_kept": (Program(1, (Op("malloc", 0, 0, 300000), Op("free", 0, 0), Op("collect", 0))),
                   "after a collect: 1 freed large mapping(s) still cached"),
}

#: full_ahead needs a superslab filled to its last unit: thousands of blocks of a
#: one-unit class, more than a program's 64 slots, so it runs on the API directly
FULL_AHEAD = textwrap.dedent("""
    import sys
    from harness.allocator import Allocator
    a = Allocator.open(sys.argv[1])
    live = [a.lib.hak_malloc(4096) for _ in range(600)]
    ss = int(a.block_info(live[0]).base) >> 21
    first = [p for p in live if int(a.block_info(p).base) >> 21 == ss]
    for p in first:
        a.lib.hak_free(p)
    a.lib.hak_flush_thread()   # the first superslab empties and moves ahead
    refill = [a.lib.hak_malloc(4096) for _ in first]   # and fills again, ahead of the other
    print(a.heap_check())
""")


@pytest.fixture(scope="module")
def broken(edited: Callable[[str, str, str], Build]) -> Callable[[str], Build]:
    return lambda name: edited(*BREAKS[name])


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_pool_rule_fires_on_its_break(broken: Callable[[str], Build],
                                      built: Callable[..., Build], name: str) -> None:
    program, says = PROGRAMS[name]
    bad = replay(program, broken(name), "lockstep")
    assert bad.name == "heap_check" and says in bad.verdict.message, (
        bad.name, bad.verdict and bad.verdict.message, bad.stderr_tail)
    for variant in ("release", "asan"):
        clean = replay(program, built(variant), "lockstep")
        assert clean.passed, (variant, clean.report or clean.stderr_tail)


def _full_ahead(lib: Path) -> str:
    r = subprocess.run([sys.executable, "-c", FULL_AHEAD, str(lib)], cwd=PROJECT_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_full_superslab_ahead_of_room_is_seen(broken: Callable[[str], Build],
                                              built: Callable[..., Build]) -> None:
    assert "lies behind a full one on the pool's list" in _full_ahead(broken("full_ahead").lib)
    assert _full_ahead(built("release").lib).strip() == "(True, '')"
