"""The drop-in library (LD_PRELOAD) running real programs.

Each run first proves the program's malloc really is hakmem's (the ancestor benchmarked
glibc for weeks by accident): the Python script asks the dynamic linker which object
serves `malloc` and reads hakmem's own counters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import Build

SCRIPT = r"""
import ctypes, ctypes.util, hashlib, json, os, threading

class DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

libc = ctypes.CDLL(None)
info = DlInfo()
libc.dladdr(ctypes.cast(libc.malloc, ctypes.c_void_p), ctypes.byref(info))
print("malloc served by", info.fname.decode())

def work(n):
    d = {}
    for i in range(30000):
        d[str(i)] = [i] * (i % 70) + [hashlib.sha256(str(i * n).encode()).hexdigest()]
        if i % 3 == 0:
            d.pop(str(i - 1), None)
        if i % 5000 == 0:
            d[f"big{i}"] = bytearray(200000 + i)
    return len(json.dumps({k: v for k, v in d.items() if not k.startswith("big")}))

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
pid = os.fork()
if pid == 0:
    work(99)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
libc.hak_counters_snapshot.restype = None
buf = ctypes.create_string_buffer(48 * 72 + 9 * 8)
libc.hak_counters_snapshot(buf)
print("hakmem heaps:", int.from_bytes(buf.raw[48 * 72 + 6 * 8: 48 * 72 + 7 * 8], "little"))
print("done")
"""


def preload_env(build: Build) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(build.preload_lib)
    return env


def test_python_with_threads_and_fork(built: Callable[..., Build], tmp_path: Path) -> None:
    build = built("release")
    script = tmp_path / "load.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=preload_env(build),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"malloc served by {build.preload_lib}" in proc.stdout, proc.stdout
    assert "done" in proc.stdout


@pytest.mark.parametrize("variant", ["release", "debug"])
def test_sort_and_git(built: Callable[..., Build], tmp_path: Path, variant: str) -> None:
    build = built(variant)
    numbers = "\n".join(str((i * 7919) % 200003) for i in range(200000)) + "\n"
    proc = subprocess.run(["sort", "-n"], input=numbers, env=preload_env(build),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"{n}\n" for n in sorted(int(x) for x in numbers.split()))
    git = shutil.which("git")
    assert git, "git is required by this test"
    repo = Path(__file__).resolve().parents[1]
    plain = subprocess.run([git, "-C", str(repo), "log", "--stat", "-n", "20"],
                           capture_output=True, text=True, timeout=60)
    with_hak = subprocess.run([git, "-C", str(repo), "log", "--stat", "-n", "20"],
                              env=preload_env(build), capture_output=True, text=True, timeout=60)
    assert with_hak.returncode == 0, with_hak.stderr
    assert with_hak.stdout == plain.stdout
