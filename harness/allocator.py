"""Direct calls into the allocator's own API (hakmem.h, hakmem_debug.h), for API-semantics
tests, counter and heap-walk inspection, and ad-hoc debugging.

    alloc = Allocator.open(build("release").lib)
    p = alloc.lib.hak_malloc(100)
    info = alloc.block_info(p)

The declarations are the headers' (harness.cdefs). A sanitized library must be opened in a
process started with its runtime preloaded (``Build.env()``); this module starts none.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from harness.binding import Library, load
from harness.cdefs import constants, enum_names, ffi

__all__ = ["Allocator", "BlockInfo", "REGIONS", "STATES", "HAK_LARGE_HEADER"]

REGIONS: tuple[str, ...] = enum_names("HAK_REGION_")
STATES: tuple[str, ...] = enum_names("HAK_STATE_")
HAK_INFO_STATE: int = constants("HAK_")["info_state"]
HAK_LARGE_HEADER: int = constants("HAK_")["large_header"]


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
    """An opened libhakmem.so: ``ffi`` and ``lib`` for raw calls, plus helpers."""

    library: Library

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Allocator:
        return cls(load(path))

    @property
    def ffi(self) -> Any:
        return ffi

    @property
    def lib(self) -> Any:
        return self.library.lib

    def block_info(self, ptr: Any, state: bool = False) -> BlockInfo:
        out = ffi.new("struct hak_block_info *")
        self.lib.hak_block_info(ptr, out, HAK_INFO_STATE if state else 0)
        return BlockInfo(
            region=REGIONS[out.region], state=STATES[out.state], size_class=out.size_class,
            user=out.user, base=out.base, slab_start=out.slab_start, block_size=out.block_size,
            usable_size=out.usable_size, owner=out.owner, block_index=out.block_index,
        )

    def counters(self) -> Any:
        out = ffi.new("struct hak_counters *")
        self.lib.hak_counters_snapshot(out)
        return out

    def heap_check(self) -> tuple[bool, str]:
        """``(ok, first violation)`` from the full heap walk."""
        report = ffi.new("struct hak_heap_report *")
        ok = bool(self.lib.hak_heap_check(report))
        return ok, ffi.string(report.message).decode(errors="replace")

    def variant(self) -> str:
        return self.library.variant()
