"""tests/runtime/fork_amid_malloc.c, built and run under a preloaded sanitizer runtime."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.fxlib import compiler

SOURCE = Path(__file__).resolve().parent / "fork_amid_malloc.c"


def build_probe(out_dir: Path) -> Path:
    """The probe's executable, compiled into ``out_dir``."""
    cc = compiler()
    assert cc is not None, "no C compiler on PATH"
    out = out_dir / "fork_amid_malloc"
    subprocess.run([cc, "-O1", "-std=c11", "-Wall", "-pthread", "-o", str(out), str(SOURCE)],
                   check=True, capture_output=True, text=True)
    return out


def fork_amid_malloc(probe: Path, runtime: Path, forks: int, wait_ms: int,
                     seconds: int = 600) -> str:
    """The probe's verdict ("no child hung in N forks" or "hung at fork K ...") with
    ``runtime`` preloaded: up to ``forks`` forks or ``seconds``, each child given
    ``wait_ms`` to allocate and exit."""
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(runtime),
           "ASAN_OPTIONS": "detect_leaks=0:quarantine_size_mb=0:"
                           "allocator_release_to_os_interval_ms=0"}
    proc = subprocess.run([str(probe), str(forks), str(wait_ms), str(seconds)], env=env,
                          capture_output=True, text=True, timeout=seconds + 300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()
