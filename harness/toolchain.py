"""The C toolchain the project builds with: one clang, named once.

Every variant, the coverage builds, the custom mutator and libFuzzer's shared object use
clang :data:`CLANG_MAJOR` (Debian packages ``clang-N`` and ``libclang-rt-N-dev``); the
environment variable ``HAKMEM_CC`` overrides the compiler for every variant.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import UsageError

__all__ = ["CLANG", "CLANGXX", "CLANG_MAJOR", "INSTALL_HINT", "RUNTIME_PACKAGE",
           "compiler_name", "compiler_version", "resolve_compiler", "runtime_package_for"]

CLANG_MAJOR = 19
CLANG = f"clang-{CLANG_MAJOR}"
CLANGXX = f"clang++-{CLANG_MAJOR}"
#: Debian package holding the sanitizer runtimes and libFuzzer's archive.
RUNTIME_PACKAGE = f"libclang-rt-{CLANG_MAJOR}-dev"
#: What to install when the toolchain is missing (Debian 12).
INSTALL_HINT = f"apt-get install {CLANG} {RUNTIME_PACKAGE}"


def compiler_name() -> str:
    """The compiler every build uses: ``$HAKMEM_CC`` or :data:`CLANG`."""
    return os.environ.get("HAKMEM_CC") or CLANG


def resolve_compiler(name: str) -> Path:
    """Absolute path of compiler ``name`` (a name on PATH or a path); UsageError if absent."""
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"compiler {name!r} not found on PATH: {INSTALL_HINT}")
    return Path(found)


@functools.cache
def compiler_version(compiler: str) -> str:
    """``<compiler> --version`` (hashed into build stamps: a new compiler rebuilds)."""
    proc = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UsageError(f"{compiler} --version failed: {proc.stderr.strip()}; {INSTALL_HINT}")
    return proc.stdout


def runtime_package_for(compiler: Path) -> str:
    """The runtime package matching ``compiler`` (HAKMEM_CC=clang-16 needs
    libclang-rt-16-dev)."""
    m = re.fullmatch(r"clang-(\d+)", compiler.name)
    return f"libclang-rt-{m.group(1)}-dev" if m else RUNTIME_PACKAGE
