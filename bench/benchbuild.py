"""Compiling the C programs in bench/src into bench/bin, only when their inputs changed."""
from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SRC = BENCH_DIR / "src"
BIN = BENCH_DIR / "bin"
CFLAGS = ["-O2", "-pthread", "-std=c11", "-Wall", "-Wextra"]
LDLIBS = ["-ldl", "-lm"]


def compiler_id(cc: str) -> str:
    """First line of `cc --version` ('' if it prints nothing)."""
    out = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return next(iter(out.splitlines()), "")


def build_programs(cc: str, names: list[str], log: Callable[[str], None] = print) -> None:
    """Compile bench/src/NAME.c -> bench/bin/NAME when its inputs changed.

    Staleness is decided by a hash of the source, the shared headers, the compiler
    identity and the flags (stored next to the binary), not by mtime alone.
    """
    BIN.mkdir(parents=True, exist_ok=True)
    header = b"".join(h.read_bytes() for h in sorted(SRC.glob("*.h")))
    cc_path = shutil.which(cc)
    if cc_path is None:
        raise SystemExit(f"error: compiler '{cc}' not found (set CC or --cc)")
    cc_id = compiler_id(cc)
    for name in names:
        src = SRC / f"{name}.c"
        out = BIN / name
        stamp = BIN / f"{name}.stamp"
        cmd = [cc, *CFLAGS, "-o", str(out), str(src), *LDLIBS]
        h = hashlib.sha256()
        for part in (src.read_bytes(), header, cc_id.encode(), cc_path.encode(),
                     " ".join(cmd).encode()):
            h.update(part)
            h.update(b"\0")
        digest = h.hexdigest()
        if out.exists() and stamp.exists() and stamp.read_text().strip() == digest:
            continue
        log(f"build: {shlex.join(cmd)}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"error: building {name} failed")
        if r.stderr.strip():
            sys.stderr.write(r.stderr)
        stamp.write_text(digest + "\n")


def program_argv(name: str, params: Mapping[str, object]) -> list[str]:
    """The command line of built program NAME with `key=value` parameters."""
    return [str(BIN / name)] + [f"{k}={v}" for k, v in params.items()]
