"""Verification of a freshly linked build: is it really this build of hakmem?

The ancestor's benchmarks measured glibc for weeks because nothing checked what was linked.
After every link: the exported API; the drop-in's exports and the absence of libc's
allocator among its imports (it would call glibc's); the variant's instrumentation (and
none in an unsanitized variant); and a child process that loads the library under its
runtime and checks that ``hak_build_variant()`` / ``hak_injected_bug()`` name this build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import BuildError, UsageError
from harness.runtime import INSTRUMENTATION_PREFIXES, SanitizerRuntime
from harness.variants import VariantSpec

__all__ = ["FORBIDDEN_IMPORTS", "REQUIRED_API", "REQUIRED_DROPIN", "nm", "verify"]

#: Symbols libhakmem.so must export.
REQUIRED_API: tuple[str, ...] = (
    "hak_malloc",
    "hak_free",
    "hak_calloc",
    "hak_realloc",
    "hak_aligned_alloc",
    "hak_usable_size",
    "hak_block_info",
    "hak_counters_snapshot",
    "hak_heap_check",
    "hak_heap_check_collected",
    "hak_flush_thread",
    "hak_fail_os_maps",
    "hak_os_refusals",
    "hak_build_variant",
    "hak_injected_bug",
)
#: Symbols libhakmem_preload.so must export.
REQUIRED_DROPIN: tuple[str, ...] = (
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "malloc_usable_size",
)
#: libc allocation functions the drop-in must never import (it would call glibc's).
FORBIDDEN_IMPORTS: tuple[str, ...] = (*REQUIRED_DROPIN, "valloc", "pvalloc")

_IDENTITY_SCRIPT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for name in ("hak_build_variant", "hak_injected_bug"):
    fn = getattr(lib, name)
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    value = fn()
    print(value.decode() if value is not None else "<NULL>")
"""


def nm(path: Path, *flags: str) -> set[str]:
    """Dynamic symbol names of ``path`` (``nm -D`` with ``flags``), versions stripped."""
    tool = shutil.which("nm")
    if tool is None:
        raise UsageError("'nm' not found on PATH: apt-get install binutils")
    proc = subprocess.run([tool, "-D", *flags, str(path)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise BuildError(f"nm -D {' '.join(flags)} {path} failed: {proc.stderr.strip()}")
    return {line.split()[-1].split("@", 1)[0] for line in proc.stdout.splitlines() if line.split()}


def _label(path: Path) -> str:
    return path.name.removesuffix(".tmp")


def _check_api(lib: Path) -> str:
    exported = nm(lib, "--defined-only")
    missing = [s for s in REQUIRED_API if s not in exported]
    if missing:
        raise BuildError(f"{_label(lib)} ({lib}) does not export: {', '.join(missing)}")
    leaked = sorted({"malloc", "free", "calloc", "realloc"} & exported)
    if leaked:
        raise BuildError(
            f"{_label(lib)} ({lib}) exports {', '.join(leaked)}: only the drop-in may define "
            "the standard names"
        )
    return f"{_label(lib)} exports the {len(REQUIRED_API)} API symbols"


def _check_dropin(preload_lib: Path) -> str:
    exported = nm(preload_lib, "--defined-only")
    missing = [s for s in REQUIRED_DROPIN if s not in exported]
    if missing:
        raise BuildError(
            f"{_label(preload_lib)} ({preload_lib}) does not export: {', '.join(missing)}"
        )
    imported = nm(preload_lib, "--undefined-only")
    bad = [s for s in FORBIDDEN_IMPORTS if s in imported]
    if bad:
        raise BuildError(
            f"{_label(preload_lib)} ({preload_lib}) imports {', '.join(bad)}: the drop-in "
            "would call libc's allocator (it must never call libc malloc)"
        )
    return f"{_label(preload_lib)} exports the malloc family and imports none of it"


def _check_instrumentation(path: Path, spec: VariantSpec) -> str | None:
    imported = nm(path, "--undefined-only")
    if spec.instrumentation_prefix:
        hits = [s for s in imported if s.startswith(spec.instrumentation_prefix)]
        if not hits:
            raise BuildError(
                f"{_label(path)} ({path}) has no undefined {spec.instrumentation_prefix}* "
                f"symbol: variant {spec.name!r} is not instrumented"
            )
        return f"{_label(path)}: {len(hits)} {spec.instrumentation_prefix}* imports"
    hits = sorted(s for s in imported if s.startswith(INSTRUMENTATION_PREFIXES))
    if hits:
        raise BuildError(
            f"{_label(path)} ({path}) of unsanitized variant {spec.name!r} imports "
            f"sanitizer symbols: {', '.join(hits[:5])}"
        )
    return None


def _check_identity(lib: Path, spec: VariantSpec, inject: str | None,
                    runtime: SanitizerRuntime) -> str:
    env = runtime.env()
    proc = subprocess.run(
        [sys.executable, "-c", _IDENTITY_SCRIPT, str(lib.resolve())],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    if proc.returncode != 0:
        raise BuildError(
            f"loading {lib} in a child process (LD_PRELOAD={env.get('LD_PRELOAD', '')!r}) "
            f"failed with exit {proc.returncode}:\n{proc.stderr.strip()[-4000:]}"
        )
    lines = proc.stdout.splitlines()
    got_variant = lines[0] if lines else ""
    got_inject = lines[1] if len(lines) > 1 else ""
    if got_variant != spec.name:
        raise BuildError(
            f"{lib}: hak_build_variant() returned {got_variant!r}, expected {spec.name!r}"
        )
    if got_inject != (inject or ""):
        raise BuildError(
            f"{lib}: hak_injected_bug() returned {got_inject!r}, expected {inject or ''!r}"
        )
    return f'hak_build_variant() == "{got_variant}", hak_injected_bug() == "{got_inject}"'


def verify(lib: Path, preload_lib: Path | None, spec: VariantSpec, inject: str | None,
           runtime: SanitizerRuntime) -> list[str]:
    """Checks that ``lib`` (and ``preload_lib``) really are this build of hakmem.

    Raises BuildError saying precisely what is wrong; returns one-line notes on success.
    """
    lib = Path(lib)
    notes = [_check_api(lib)]
    libs = [lib]
    if preload_lib is not None:
        notes.append(_check_dropin(Path(preload_lib)))
        libs.append(Path(preload_lib))
    notes += [n for n in (_check_instrumentation(p, spec) for p in libs) if n]
    notes.append(_check_identity(lib, spec, inject, runtime))
    return notes
