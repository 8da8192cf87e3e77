"""The asan variant poisons free and uncarved slab memory, so ASan sees inside slabs.

Each case runs in a child process with the ASan runtime preloaded (a report kills it).
The control case proves the child reaches its end when nothing is wrong, so a report
in the other cases is caused by the access under test and nothing else.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from harness.build import Build

PRELUDE = """
import sys
from harness.allocator import Allocator
a = Allocator.open(sys.argv[1]); lib, ffi = a.lib, a.ffi
def poke(p, off):  # memmove is intercepted by ASan; cffi's own stores are not instrumented
    ffi.memmove(ffi.cast('char *', p) + off, b'x', 1)
def peek(p, off):
    ffi.memmove(ffi.new('char[1]'), ffi.cast('char *', p) + off, 1)
"""
CASES = {
    # block freed into the thread cache (the fast path), then written
    "use_after_free_in_thread_cache": ("p = lib.hak_malloc(64); lib.hak_free(p); poke(p, 8)",
                                       "use-after-poison"),
    # block flushed back to its slab's free list, then read
    "use_after_free_in_slab": ("p = lib.hak_malloc(200); lib.hak_free(p); lib.hak_flush_thread();"
                               "peek(p, 100)", "use-after-poison"),
    # one byte past the block, into a neighbour that is free or not yet carved
    "overflow_into_neighbour": ("p = lib.hak_malloc(48); poke(p, 48)",
                                "use-after-poison"),
    # a large block freed into the mapping cache
    "use_after_free_large": ("p = lib.hak_malloc(1 << 20); lib.hak_free(p); poke(p, 4096)",
                             "use-after-poison"),
    "control": ("p = lib.hak_malloc(48); ffi.memmove(p, b'y' * lib.hak_usable_size(p),"
                " lib.hak_usable_size(p)); lib.hak_free(p)", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_asan_sees_inside_slabs(built: Callable[..., Build], case: str) -> None:
    build = built("asan")
    code, report = CASES[case]
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint('survived')",
                           str(build.lib)], env=build.env(), capture_output=True, text=True,
                          timeout=120)
    if report is None:
        assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
        return
    assert "survived" not in proc.stdout, f"ASan did not see {case}"
    assert f"AddressSanitizer: {report}" in proc.stderr, proc.stderr[-3000:]
