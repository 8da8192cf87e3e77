"""API-semantics cases, run inside a child process that has the build's runtime preloaded.

    python tests/api_cases.py LIB [CASE ...]

prints one JSON line per case: {"case": ..., "ok": bool, "error": str}. test_api.py runs
this once per build variant and turns each line into a test result. Each case is a
function ``case_<name>(alloc)`` that raises AssertionError with a precise message.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.allocator import HAK_LARGE_HEADER, Allocator  # noqa: E402

ENOMEM, EINVAL = 12, 22
SIZES = [0, 1, 15, 16, 17, 48, 100, 128, 129, 1000, 1024, 1025, 4096, 8191, 20000,
         65535, 65536, 65537, 100000, 1 << 20, 5 << 20]
Case = Callable[[Allocator], None]


def addr(alloc: Allocator, p: Any) -> int:
    return int(alloc.ffi.cast("uintptr_t", p))


def fill(alloc: Allocator, p: Any, n: int, byte: int) -> None:
    alloc.ffi.memmove(p, bytes([byte]) * n, n)


def read(alloc: Allocator, p: Any, n: int) -> bytes:
    return bytes(alloc.ffi.buffer(p, n))


def case_malloc_alignment_and_usable(alloc: Allocator) -> None:
    lib = alloc.lib
    live = []
    for size in SIZES + list(range(0, 2100, 7)):
        p = lib.hak_malloc(size)
        assert p != alloc.ffi.NULL, f"malloc({size}) returned NULL"
        assert addr(alloc, p) % 16 == 0, f"malloc({size}) = {addr(alloc, p):#x}, not 16-aligned"
        usable = lib.hak_usable_size(p)
        assert usable >= max(size, 16), f"usable_size(malloc({size})) = {usable}"
        fill(alloc, p, usable, 0x5A)
        live.append(p)
    assert len({addr(alloc, p) for p in live}) == len(live), "malloc returned a pointer twice"
    for p in live:
        lib.hak_free(p)


def case_malloc_zero_unique(alloc: Allocator) -> None:
    a, b = alloc.lib.hak_malloc(0), alloc.lib.hak_malloc(0)
    assert a != alloc.ffi.NULL and b != alloc.ffi.NULL and a != b, "malloc(0) not unique"
    alloc.lib.hak_free(a)
    alloc.lib.hak_free(b)


def case_free_null_is_noop(alloc: Allocator) -> None:
    before = alloc.counters().live_total
    alloc.lib.hak_free(alloc.ffi.NULL)
    assert alloc.counters().live_total == before


def case_impossible_sizes_enomem(alloc: Allocator) -> None:
    lib, ffi = alloc.lib, alloc.ffi
    for size in (2**64 - 1, 2**63, 2**63 - 4096, 2**62):
        ffi.errno = 0
        p = lib.hak_malloc(size)
        assert p == ffi.NULL, f"malloc({size:#x}) returned {p}"
        assert ffi.errno == ENOMEM, f"malloc({size:#x}): errno {ffi.errno}, expected ENOMEM"


def case_calloc_overflow_and_zero(alloc: Allocator) -> None:
    lib, ffi = alloc.lib, alloc.ffi
    ffi.errno = 0
    assert lib.hak_calloc(2**32, 2**32 + 1) == ffi.NULL, "calloc overflow returned a block"
    assert ffi.errno == ENOMEM, f"calloc overflow errno {ffi.errno}"
    for size in (1, 48, 1000, 30000, 200000):
        dirty = [lib.hak_malloc(size) for _ in range(8)]
        for p in dirty:
            fill(alloc, p, lib.hak_usable_size(p), 0xFF)
            lib.hak_free(p)
        p = lib.hak_calloc(1, size)
        assert read(alloc, p, size) == bytes(size), f"calloc(1, {size}) not zeroed"
        lib.hak_free(p)


def case_realloc_semantics(alloc: Allocator) -> None:
    lib, ffi = alloc.lib, alloc.ffi
    p = lib.hak_realloc(ffi.NULL, 40)
    assert p != ffi.NULL, "realloc(NULL, 40) returned NULL"
    data = bytes(range(40))
    ffi.memmove(p, data, 40)
    for size in (100, 1000, 5000, 70000, 3 << 20, 9 << 20, 50000, 600, 40):
        p = lib.hak_realloc(p, size)
        assert p != ffi.NULL, f"realloc to {size} returned NULL"
        assert addr(alloc, p) % 16 == 0
        assert read(alloc, p, 40) == data, f"realloc to {size} lost the first 40 bytes"
        assert lib.hak_usable_size(p) >= size
    ffi.errno = 0
    assert lib.hak_realloc(p, 2**63) == ffi.NULL and ffi.errno == ENOMEM
    assert read(alloc, p, 40) == data, "a failed realloc damaged the old block"
    q = lib.hak_realloc(p, 0)
    assert q != ffi.NULL, "realloc(p, 0) must return a fresh freeable block"
    lib.hak_free(q)


def case_aligned_alloc(alloc: Allocator) -> None:
    lib, ffi = alloc.lib, alloc.ffi
    for bad in (0, 1, 2, 4, 3, 24, 48, 100, 4097):
        ffi.errno = 0
        assert lib.hak_aligned_alloc(bad, 64) == ffi.NULL, f"alignment {bad} accepted"
        assert ffi.errno == EINVAL, f"alignment {bad}: errno {ffi.errno}, expected EINVAL"
    live = []
    for shift in range(3, 21):
        align = 1 << shift
        for size in (1, 100, 4000, 70000, 2 << 20):
            p = lib.hak_aligned_alloc(align, size)
            assert p != ffi.NULL, f"aligned_alloc({align}, {size}) returned NULL"
            assert addr(alloc, p) % max(align, 16) == 0, f"aligned_alloc({align}, {size}) = {p}"
            assert lib.hak_usable_size(p) >= size
            fill(alloc, p, size, 0x77)
            live.append(p)
    for p in live:
        lib.hak_free(p)
    ffi.errno = 0
    assert lib.hak_aligned_alloc(1 << 20, 2**63) == ffi.NULL and ffi.errno == ENOMEM


def case_aligned_zero_size_stays_in_its_block(alloc: Allocator) -> None:
    """aligned_alloc(A, 0) must not hand out the next block's BASE (found by the stress)."""
    lib = alloc.lib
    for align in (32, 64, 128, 256):
        blocks = [lib.hak_aligned_alloc(align, 0) for _ in range(200)]
        for p in blocks:
            info = alloc.block_info(p)
            assert info.base <= info.user < info.base + info.block_size, (
                f"aligned_alloc({align}, 0) = {info.user:#x} outside its block "
                f"[{info.base:#x}, +{info.block_size})")
        assert len({addr(alloc, p) for p in blocks}) == len(blocks), "a pointer handed out twice"
        for p in blocks:
            lib.hak_free(p)
        ok, msg = alloc.heap_check()
        assert ok, msg


def case_usable_size_of_foreign(alloc: Allocator) -> None:
    buf = alloc.ffi.new("char[64]")
    assert alloc.lib.hak_usable_size(alloc.ffi.NULL) == 0
    assert alloc.lib.hak_usable_size(buf) == 0, "usable_size of a foreign pointer"
    assert alloc.block_info(buf).region == "not_ours"


def case_size_class_rules(alloc: Allocator) -> None:
    lib = alloc.lib
    previous = 0
    for size in range(0, 65537):
        c = lib.hak_size_class(size)
        block = lib.hak_class_block_size(c)
        assert block >= max(size, 1) and block % 16 == 0, f"size {size}: class {c} ({block} B)"
        assert c == 0 or lib.hak_class_block_size(c - 1) < size, f"size {size}: class not minimal"
        assert size <= 128 or block <= size * 1.25 + 16, f"size {size}: waste over 25% ({block})"
        assert c >= previous
        previous = c
    assert lib.hak_size_class(65537) == -1


def case_block_info_conversion(alloc: Allocator) -> None:
    lib = alloc.lib
    for size in (24, 3000, 40000):
        p = lib.hak_malloc(size)
        info = alloc.block_info(p)
        assert info.region == ("tiny" if size <= 1024 else "mid")
        assert info.base == addr(alloc, p), "plain slab block: USER must equal BASE"
        assert (info.base - info.slab_start) % info.block_size == 0
        lib.hak_free(p)
    p = lib.hak_malloc(300000)
    info = alloc.block_info(p)
    assert info.region == "large" and info.user - info.base == HAK_LARGE_HEADER
    lib.hak_free(p)
    p = lib.hak_aligned_alloc(256, 100)
    info = alloc.block_info(p)
    assert 0 <= info.user - info.base < 256, "aligned block: USER - BASE out of range"
    assert (info.base - info.slab_start) % info.block_size == 0
    lib.hak_free(p)


def case_block_state_tracking(alloc: Allocator) -> None:
    lib = alloc.lib
    p = lib.hak_malloc(64)
    assert alloc.block_info(p, state=True).state == "live"
    lib.hak_free(p)
    assert alloc.block_info(p, state=True).state == "thread_cache"
    lib.hak_flush_thread()
    assert alloc.block_info(p, state=True).state in ("slab_free", "uncarved", "not_ours",
                                                     "interior")


def case_counters_and_heap_walk(alloc: Allocator) -> None:
    lib = alloc.lib
    lib.hak_flush_thread()
    base = alloc.counters()
    c = lib.hak_size_class(200)
    blocks = [lib.hak_malloc(200) for _ in range(1000)]
    big = [lib.hak_malloc(1 << 20) for _ in range(3)]
    now = alloc.counters()
    assert now.cls[c].live - base.cls[c].live == 1000, "per-class live count is off"
    assert now.large_live - base.large_live == 3
    ok, msg = alloc.heap_check()
    assert ok, msg
    for p in blocks + big:
        lib.hak_free(p)
    lib.hak_flush_thread()
    end = alloc.counters()
    assert end.live_total == base.live_total, f"live {end.live_total} != {base.live_total}"
    assert end.cls[c].thread_cached == 0 and end.cls[c].remote_pending == 0
    ok, msg = alloc.heap_check()
    assert ok, msg


def case_retire_thread_starts_a_fresh_heap(alloc: Allocator) -> None:
    """hak_retire_thread gives the heap back as a thread exit would (the executor's pool
    threads rely on it: every run starts on fresh heaps); the thread allocates on."""
    lib = alloc.lib
    kept = lib.hak_malloc(48)
    old = alloc.block_info(kept).owner
    assert old, "a live block of the calling thread's heap must have an owner"
    lib.hak_retire_thread()
    assert alloc.block_info(kept).owner == 0, "the retired heap's slab must be abandoned"
    ok, msg = alloc.heap_check()
    assert ok, msg
    fresh = lib.hak_malloc(48)
    new = alloc.block_info(fresh).owner
    assert new and new != old, f"after retiring, heap {new} is not a fresh one (was {old})"
    lib.hak_free(kept)
    lib.hak_free(fresh)
    lib.hak_retire_thread()
    lib.hak_retire_thread()  # no heap: nothing to do
    ok, msg = alloc.heap_check()
    assert ok, msg


def case_heap_walk_catches_corruption(alloc: Allocator) -> None:
    """A free block whose link is overwritten (a use-after-free write) is reported.

    Thread caches keep their blocks in an array, not linked through them, so the
    block is flushed to its slab's free list first; `keep` holds the slab."""
    lib, ffi = alloc.lib, alloc.ffi
    keep = lib.hak_malloc(96)
    p = lib.hak_malloc(96)
    lib.hak_free(p)
    lib.hak_flush_thread()
    assert alloc.block_info(p, state=True).state == "slab_free"
    link = ffi.cast("uintptr_t *", p)[0]
    ffi.cast("uintptr_t *", p)[0] = 0xDEADBEEF0
    ok, msg = alloc.heap_check()
    ffi.cast("uintptr_t *", p)[0] = link
    lib.hak_free(keep)
    assert not ok, "heap_check missed a corrupted free-list link"
    assert "free list" in msg, msg


def run(lib_path: str, names: list[str]) -> int:
    alloc = Allocator.open(lib_path)
    cases: dict[str, Case] = {
        n[5:]: f for n, f in globals().items() if n.startswith("case_") and callable(f)
    }
    for name in names or list(cases):
        try:
            cases[name](alloc)
            result = {"case": name, "ok": True, "error": ""}
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            result = {"case": name, "ok": False,
                      "error": f"{exc}\n{traceback.format_exc(limit=3)}"}
        print(json.dumps(result), flush=True)
    return 0


def all_case_names() -> list[str]:
    return [n[5:] for n, f in globals().items() if n.startswith("case_") and callable(f)]


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
