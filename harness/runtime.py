"""Sanitizer runtimes: where they are and how a process must be started to use them.

A sanitized ``libhakmem.so`` is a shared library: clang does not link the sanitizer
runtime into it, so any process that loads it (a Python interpreter, through cffi)
must have the runtime LD_PRELOADed, first in the list, and its options in the
environment. This module resolves both, once, for a given compiler.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError
from harness.toolchain import RUNTIME_PACKAGE

#: Undefined-symbol prefixes that betray sanitizer instrumentation in a library.
INSTRUMENTATION_PREFIXES: tuple[str, ...] = (
    "__asan_",
    "__tsan_",
    "__ubsan_",
    "__msan_",
    "__hwasan_",
    "__sanitizer_cov",
    "__sancov_",
)

def parse_options(text: str) -> dict[str, str]:
    """Parses a sanitizer option string (``a=1:b=2``, also space/comma separated)."""
    out: dict[str, str] = {}
    for item in re.split(r"[:\s,]+", text.strip()):
        if not item:
            continue
        key, _, value = item.partition("=")
        out[key] = value
    return out


def format_options(options: Mapping[str, str]) -> str:
    """Inverse of :func:`parse_options` (``a=1:b=2``)."""
    return ":".join(f"{k}={v}" for k, v in options.items())


@dataclass(frozen=True)
class SanitizerRuntime:
    """What a process needs in order to load a library of one build variant.

    ``library`` is the runtime to LD_PRELOAD (None: nothing to preload) and
    ``options`` maps option variables (ASAN_OPTIONS, ...) to their values.
    """

    library: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A copy of ``base`` (default: os.environ) set up for this runtime.

        The runtime goes first in LD_PRELOAD (existing entries are kept after it).
        For each option variable, options already present in ``base`` are kept
        and ours override them key by key, so the harness's settings
        (halt_on_error, detect_leaks=0, ...) always hold.
        """
        env = dict(os.environ if base is None else base)
        if self.library is not None:
            lib = str(self.library)
            rest = [p for p in re.split(r"[:\s]+", env.get("LD_PRELOAD", "")) if p and p != lib]
            env["LD_PRELOAD"] = " ".join([lib, *rest])
        for var, value in self.options.items():
            merged = parse_options(env.get(var, ""))
            merged.update(parse_options(value))
            env[var] = format_options(merged)
        return env


@functools.cache
def _print_file_name(compiler: str, library: str) -> str:
    proc = subprocess.run(
        [compiler, f"-print-file-name={library}"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def runtime_library_path(compiler: str | Path, library: str, package: str) -> Path:
    """Full path of sanitizer runtime ``library`` as known to ``compiler``.

    Raises UsageError naming ``package`` when the compiler does not know it
    (``-print-file-name`` echoes a bare name back) or the file does not exist.
    """
    printed = _print_file_name(str(compiler), library)
    path = Path(printed) if printed else None
    if path is None or not path.is_absolute() or not path.is_file():
        raise UsageError(
            f"sanitizer runtime {library} not found by {compiler} "
            f"(-print-file-name gave {printed!r}): apt-get install {package}"
        )
    return path


def resolve_runtime(
    compiler: str | Path,
    library: str | None,
    options: Mapping[str, str],
    package: str = RUNTIME_PACKAGE,
) -> SanitizerRuntime:
    """The runtime of a variant: ``library`` (None/"" for none) resolved through ``compiler``."""
    path = runtime_library_path(compiler, library, package) if library else None
    return SanitizerRuntime(library=path, options=dict(options))
