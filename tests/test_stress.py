"""The multithreaded stress program (tests/stress/stress.c) on every sanitizer build.

It is C, compiled with the variant's own flags and linked against its libhakmem.so, so
threads really race inside the allocator (Python threads would serialise on the GIL) and
the sanitizer instruments both sides. LeakSanitizer stays on in the ASan run: the
program's own exit is leak-checked too.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build
from harness.build import compile_program

SOURCE = Path(__file__).resolve().parent / "stress" / "stress.c"
#: (threads, ops per thread, rounds): sized to finish in seconds under each sanitizer.
SHAPE = {"release": (8, 40_000, 3), "debug": (4, 40_000, 3), "asan": (4, 40_000, 3),
         "tsan": (4, 15_000, 3), "ubsan": (4, 40_000, 3)}


def compile_stress(build: Build, out: Path) -> Path:
    return compile_program(build, SOURCE, out / f"stress-{build.name}")


@pytest.mark.parametrize("variant", sorted(SHAPE))
def test_stress(built: Callable[..., Build], tmp_path: Path, variant: str) -> None:
    build = built(variant)
    exe = compile_stress(build, tmp_path)
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # a C binary links its sanitizer runtime itself
    env.update({k: v.replace("detect_leaks=0", "detect_leaks=1")
                for k, v in build.runtime.options.items()})
    threads, ops, rounds = SHAPE[variant]
    proc = subprocess.run([str(exe), str(threads), str(ops), str(rounds), "12345"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"stress failed on {variant}:\n{proc.stdout}{proc.stderr[-4000:]}"
    assert proc.stdout.startswith("stress: ops="), proc.stdout
    print(f"{variant}: {proc.stdout.strip()}")
