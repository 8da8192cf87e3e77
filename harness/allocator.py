"""cffi (ABI mode) binding of the allocator's own API: hakmem.h and hakmem_debug.h.

The executor (harness.binding) drives whole programs; this module is for direct calls:
API-semantics tests, counter and heap-walk inspection, and ad-hoc debugging.

    alloc = Allocator.open(build("release").lib)
    p = alloc.lib.hak_malloc(100)
    info = alloc.block_info(p)

A sanitized library must be opened in a process started with its runtime preloaded
(``Build.env()``); this module does not start processes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from cffi import FFI

__all__ = ["CDEF", "Allocator", "BlockInfo", "REGIONS", "STATES"]

CDEF = """
void *hak_malloc(size_t size);
void hak_free(void *ptr);
void *hak_calloc(size_t count, size_t size);
void *hak_realloc(void *ptr, size_t size);
void *hak_aligned_alloc(size_t alignment, size_t size);
size_t hak_usable_size(const void *ptr);

struct hak_block_info {
    int region; int state; int size_class;
    uintptr_t user; uintptr_t base; uintptr_t slab_start;
    size_t block_size; size_t usable_size;
    uint64_t owner; uint32_t block_index;
};
int hak_block_info(const void *ptr, struct hak_block_info *out, unsigned flags);

struct hak_class_counters {
    uint32_t block_size; uint32_t slabs;
    uint64_t capacity; uint64_t carved; uint64_t used; uint64_t free_list;
    uint64_t remote_pending; uint64_t thread_cached; uint64_t live;
};
struct hak_counters {
    struct hak_class_counters cls[48];
    uint64_t superslabs; uint64_t superslabs_cached; uint64_t superslab_active;
    uint64_t large_live; uint64_t large_bytes; uint64_t large_cached;
    uint64_t heaps; uint64_t abandoned_slabs; uint64_t live_total;
};
void hak_counters_snapshot(struct hak_counters *out);

struct hak_heap_report { int ok; int errors; uintptr_t where; char message[512]; };
int hak_heap_check(struct hak_heap_report *report);
void hak_flush_thread(void);
int hak_size_class(size_t size);
size_t hak_class_block_size(int size_class);
const char *hak_injected_bug(void);
const char *hak_build_variant(void);
"""

#: hakmem_debug.h's enums, by value.
REGIONS = ("not_ours", "tiny", "mid", "large")
STATES = ("not_ours", "uncarved", "live", "thread_cache", "slab_free", "remote", "interior")
HAK_INFO_STATE = 1
HAK_LARGE_HEADER = 64

_ffi = FFI()
_ffi.cdef(CDEF)


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """hak_block_info's answer, with enum values named."""

    region: str
    state: str
    size_class: int
    user: int
    base: int
    slab_start: int
    block_size: int
    usable_size: int
    owner: int
    block_index: int


@dataclasses.dataclass
class Allocator:
    """An opened libhakmem.so (or drop-in library): ``ffi`` and ``lib`` plus helpers."""

    ffi: Any
    lib: Any

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Allocator:
        return cls(_ffi, _ffi.dlopen(os.fspath(os.path.abspath(path))))

    def block_info(self, ptr: Any, state: bool = False) -> BlockInfo:
        out = self.ffi.new("struct hak_block_info *")
        self.lib.hak_block_info(ptr, out, HAK_INFO_STATE if state else 0)
        return BlockInfo(
            region=REGIONS[out.region], state=STATES[out.state], size_class=out.size_class,
            user=out.user, base=out.base, slab_start=out.slab_start, block_size=out.block_size,
            usable_size=out.usable_size, owner=out.owner, block_index=out.block_index,
        )

    def counters(self) -> Any:
        out = self.ffi.new("struct hak_counters *")
        self.lib.hak_counters_snapshot(out)
        return out

    def heap_check(self) -> tuple[bool, str]:
        """``(ok, first violation)`` from the full heap walk."""
        report = self.ffi.new("struct hak_heap_report *")
        ok = bool(self.lib.hak_heap_check(report))
        return ok, self.ffi.string(report.message).decode(errors="replace")

    def variant(self) -> str:
        return self.ffi.string(self.lib.hak_build_variant()).decode()
