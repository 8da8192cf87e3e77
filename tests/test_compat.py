"""The drop-in answers the malloc family's edge calls as glibc does (tests/compat/edges.c).

One C program makes each edge call (memalign with alignment 0, 3, 24 or 5000,
aligned_alloc, posix_memalign's EINVAL cases, valloc/pvalloc, realloc to 0 and to an
impossible size, reallocarray overflow, calloc overflow, malloc_usable_size(NULL),
malloc_trim...) and prints what it got back: NULL with errno, or a block with its
alignment and usable size checked. The lines must be the same under glibc and under
hakmem's drop-in (before issue 13, memalign(0, n) and memalign(24, n) failed with
EINVAL under the drop-in, where glibc returns a block).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build

SOURCE = Path(__file__).resolve().parent / "compat" / "edges.c"


@pytest.mark.parametrize("variant", ["release", "debug"])
def test_edges_match_glibc(built: Callable[..., Build], tmp_path: Path, variant: str) -> None:
    build = built(variant)
    exe = tmp_path / "edges"
    proc = subprocess.run([str(build.compiler), "-O1", "-std=c11", "-D_GNU_SOURCE", str(SOURCE),
                           "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    glibc = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
    assert glibc.returncode == 0, glibc.stderr
    env["LD_PRELOAD"] = str(build.preload_lib)
    hak = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
    assert hak.returncode == 0, hak.stderr
    want, got = glibc.stdout.splitlines(), hak.stdout.splitlines()
    assert len(want) > 50, glibc.stdout
    diff = [f"glibc: {w}\n   hakmem: {g}" for w, g in zip(want, got, strict=False) if w != g]
    assert not diff and len(want) == len(got), "\n".join(diff) or hak.stdout
