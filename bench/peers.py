"""The allocators under test: which exist, which were chosen, and proof of who serves malloc.

hakmem's ancestor benchmarked glibc for weeks by accident; `verify` is there so that no
measurement is taken unless the library named really serves malloc/free/calloc/realloc.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.benchbuild import BIN
from bench.process import first_line, parse_kv, run_process
from harness.build import build
from harness.errors import HarnessError

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
PEERS = {
    "mimalloc": LIBDIR / "libmimalloc.so.2",
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4",
}
ALL_NAMES = ["glibc", "hakmem", "mimalloc", "jemalloc", "tcmalloc"]
MALLOC_FAMILY = ("malloc", "free", "calloc", "realloc")


class VerifyError(Exception):
    pass


@dataclass
class Allocator:
    name: str
    lib: Path | None  # None = no preload (glibc), or no library at all when not available
    explicit: bool = False  # named by the user (a missing library is then an error)
    available: bool = True
    note: str = ""
    failed: str = ""  # first verification/run error; the allocator is skipped after it
    variant: str = ""
    verify_line: str = ""
    source: Path | None = None  # the library the snapshot in `lib` was copied from

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("BENCH_VERIFY", None)
        if self.lib is not None:
            env["LD_PRELOAD"] = str(self.lib)
        return env

    def serves(self, obj: str) -> bool:
        """Is `obj` (a dladdr dli_fname) the object we expect to serve malloc?"""
        if obj in ("", "unknown", "unresolved"):
            return False
        if self.lib is None:
            return os.path.basename(obj) == "libc.so.6"
        try:
            return os.path.realpath(obj) == os.path.realpath(self.lib)
        except OSError:
            return False

    def expected(self) -> str:
        if self.lib is None:
            return "libc.so.6 (no preload)"
        return f"{self.lib} (snapshot of {self.source})" if self.source else str(self.lib)


def hakmem(path: str | None, explicit: bool) -> Allocator:
    """hakmem at PATH, or else harness.build's release variant (built now if stale)."""
    if path:
        return Allocator("hakmem", Path(path).resolve(), explicit=explicit)
    try:
        lib = build("release").preload_lib
    except HarnessError as e:
        return Allocator("hakmem", None, explicit=explicit, available=False,
                         note=f"hakmem NOT MEASURED: the release build failed: {one_line(str(e))}")
    return Allocator("hakmem", lib.resolve(), explicit=explicit)


def select_allocators(names: str | None, hakmem_path: str | None,
                      require_hakmem: bool) -> list[Allocator]:
    """The allocators named in NAMES (comma-separated; default all), in that order."""
    requested = names.split(",") if names else None
    explicit = requested is not None
    out: list[Allocator] = []
    for spec in requested or ALL_NAMES:
        spec = spec.strip()
        if not spec:
            continue
        if "=" in spec:  # NAME=PATH: any other drop-in library
            name, path = spec.split("=", 1)
            out.append(Allocator(name, Path(path).resolve(), explicit=True))
        elif spec == "glibc":
            out.append(Allocator("glibc", None, explicit=explicit))
        elif spec == "hakmem":
            out.append(hakmem(hakmem_path, explicit or require_hakmem))
        elif spec in PEERS:
            out.append(Allocator(spec, PEERS[spec], explicit=explicit))
        else:
            raise SystemExit(f"error: unknown allocator '{spec}' (known: {', '.join(ALL_NAMES)}, "
                             "or NAME=/path/to/lib.so)")
    if require_hakmem and not any(a.name == "hakmem" for a in out):
        out.insert(1 if out and out[0].name == "glibc" else 0, hakmem(hakmem_path, True))
    for a in out:
        if a.available and a.lib is not None and not a.lib.is_file():
            a.available = False
            a.note = f"{a.name} NOT MEASURED: {a.lib} does not exist"
            if a.name == "hakmem":
                a.note += " (build it with `python -m harness.build release`)"
    return out


def snapshot(allocs: list[Allocator], tmpdir: Path, wait: float = 30.0) -> list[Allocator]:
    """Copy non-system libraries (hakmem, NAME=PATH) to a private directory.

    Other people rebuild sanitizer_builds/ while a run is in progress; measuring a
    snapshot keeps every rep on the same bytes (and its sha256 goes in results.json).
    A library that is missing for a moment (being relinked) is waited for.
    Returns the allocators that could not be copied (now not available).
    """
    lost = []
    for a in allocs:
        if a.lib is None or not a.available or a.lib.parent == LIBDIR:
            continue
        src = a.lib
        dst = tmpdir / a.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            try:
                shutil.copy2(src, dst)
                a.source, a.lib = src, dst
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    a.available = False
                    a.note = f"{a.name} NOT MEASURED: cannot copy {src}: {e}"
                    lost.append(a)
                    break
                time.sleep(0.5)
    return lost


def verify(alloc: Allocator, bench: str, timeout: float) -> dict[str, str]:
    """BENCH_VERIFY=1: the program prints which objects malloc/free/calloc/realloc resolve to."""
    env = alloc.env()
    env["BENCH_VERIFY"] = "1"
    p = run_process([str(BIN / bench)], env, timeout)
    line = first_line(p.out, "verify ")
    if p.rc != 0 or not line:
        raise VerifyError(f"{alloc.name}/{bench}: verification run failed (exit {p.rc}): "
                          f"{(p.err or p.out).strip()[:500]}")
    kv = parse_kv(line)
    for sym in MALLOC_FAMILY:
        obj = kv.get(sym, "")
        if not alloc.serves(obj):
            raise VerifyError(
                f"{alloc.name}/{bench}: {sym} resolves to '{obj}', expected {alloc.expected()}"
                f" -- the library under test does NOT serve {sym}; measurement aborted"
                + (f" (loader said: {p.err.strip()[:300]})" if p.err.strip() else ""))
    if alloc.name == "hakmem" and kv.get("variant", "none") == "none":
        raise VerifyError(f"hakmem/{bench}: hak_build_variant not exported by {alloc.lib}: "
                          "this is not the hakmem drop-in library")
    alloc.variant = kv.get("variant", "none")
    alloc.verify_line = line
    return kv


def check_served(alloc: Allocator, line: str, where: str) -> None:
    """The result line's `malloc_so=` must name the library under test too."""
    obj = parse_kv(line).get("malloc_so")
    if not alloc.serves(obj or ""):
        raise VerifyError(f"{where} '{obj}', expected {alloc.expected()}")


def one_line(msg: str) -> str:
    return " | ".join(part.strip() for part in msg.splitlines() if part.strip())
