"""Out of memory (src_c/scenarios/oom.c): a workload run once per request hakmem makes to the OS,
that request refused (hak_fail_os_maps) alone or with every later one, each run in a fork
child of an empty allocator (with six worker threads alive together, and a fork while they
live). Every build must survive each refusal: NULL with ENOMEM where
a request was refused, nothing lost or damaged, allocation again once the OS gives memory,
the heap walk clean and no block live at the end.

Each of the sweep's checks is seen to fire on an allocator broken by hand (one edit,
release build); the first of them is a real bug the sweep found: a large block moved by
mremap in a realloc whose reinsertion needed a larger table, which the OS refused, was
lost to free and usable_size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build
from harness.scenarios import OOM_PROGRAM, OomRun, compile_scenario, run_oom

#: name -> (file of src_c/alloc, text, replacement, what the failing child says, or the
#: run's failure when no child speaks)
BREAKS = {
    # the realloc fix undone: the table grows after the mapping moved, and may be refused
    "realloc_lost": ("large.c", "        struct large_entry *e = table_reserve() ? table_find("
                     "(uintptr_t)user) : NULL;\n        void *moved = e ? hak_os_remap((void *)"
                     "base, map_size, span) : NULL;",
                     "        struct large_entry *e = table_find((uintptr_t)user);\n        void "
                     "*moved = hak_os_remap((void *)base, map_size, span);", "usable bytes"),
    # a refill the OS refused returns NULL with another errno (the refusal itself sets
    # ENOMEM, as the kernel's does)
    "errno": ("alloc.c", "    if (HAK_UNLIKELY(!p)) {\n        errno = ENOMEM;\n",
              "    if (HAK_UNLIKELY(!p)) {\n        errno = EAGAIN;\n", "not ENOMEM"),
    # one size fails with no OS request made
    "spurious_null": ("large.c", "    size_t span = span_for(size, align);\n    if (!span) {",
                      "    size_t span = span_for(size, align);\n"
                      "    if (!span || size == 2 << 20) {",
                      "with no OS request refused"),
    # a realloc by copy (after a refused mremap) keeps one byte less than it should
    "short_copy": ("large.c", "memcpy(p, user, usable < size ? usable : size);",
                   "memcpy(p, user, (usable < size ? usable : size) - 1);", "moved prefix"),
    # a realloc by copy (after a refused mremap) never frees the old block
    "copy_leak": ("large.c", "    memcpy(p, user, usable < size ? usable : size);\n"
                  "    hak_free(user);\n", "    memcpy(p, user, usable < size ? usable : size);\n",
                  "blocks live after every block was freed"),
    # the allocator keeps failing once the OS has memory again (here: refusals never end)
    "sticky": ("os.c", "    atomic_store_explicit(&fail_count, 0, memory_order_relaxed);\n"
               "    atomic_store_explicit(&fail_after",
               "    if (!count)\n        return;\n    atomic_store_explicit(&fail_after",
               "still fails after the refusals ended"),
    # a refill that found no slab goes on with none (heap-1225, a mutation survivor)
    "no_slab": ("heap.c", "            slab = acquire_slab(heap, size_class);\n        if (!slab)",
                "            slab = acquire_slab(heap, size_class);\n        if (0)",
                "died of signal"),
    # a collect leaves the caller's caches as they are: the walk after it sees them
    "no_flush": ("purge.c", "        hak_heap_flush_all(heap);\n", "",
                 "heap walk after the collect"),
    # a fork child keeps its dead threads' heaps as they were, their slabs still theirs
    "fork_keeps_heaps": ("heap.c", "            abandon_locked(heap);\n            if (!HAK_INJECT"
                         "_FORK_UNLOCKED)\n                hak_heap_unlock(heap);",
                         "            if (!HAK_INJECT_FORK_UNLOCKED)\n                hak_heap_"
                         "unlock(heap);", "fork child"),
    # hak_fail_os_maps is ignored: the sweep must not pass for want of refusals
    "unrefused": ("os.c", "    if (HAK_LIKELY(!atomic_load_explicit(&fail_count, "
                  "memory_order_relaxed)))\n        return false;",
                  "    if (1)\n        return false;", "unrefused"),
}


def _sweep(build: Build, tmp_path: Path) -> OomRun:
    return run_oom(compile_scenario(build, OOM_PROGRAM, tmp_path), build)


@pytest.mark.parametrize("variant", ["release", "asan", "debug"])
def test_every_refused_request_is_survived(built: Callable[..., Build], tmp_path: Path,
                                           variant: str) -> None:
    got = _sweep(built(variant), tmp_path)
    assert got.failure == "", (got.failure, got.complaints or got.output[-2000:])
    # both modes swept past the first requests, and some calls saw the refusals
    assert got.points is not None and got.points >= 20 and got.nulls > 0, got.output[-500:]
    print(got.proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_the_sweep_fires_on_its_break(edited: Callable[[str, str, str], Build],
                                      tmp_path: Path, name: str) -> None:
    file, old, new, says = BREAKS[name]
    got = _sweep(edited(file, old, new), tmp_path)
    if says == "unrefused":
        assert got.failure == "unrefused", (got.failure, got.output[-1000:])
        return
    assert got.failure == "child", (got.failure, got.output[-1000:])
    assert any(says in c for c in got.complaints), got.complaints[:5]
