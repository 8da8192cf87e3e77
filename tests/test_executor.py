"""The executor: arbitrary inputs run clean, both modes, lockstep determinism, black-box
runs against peer allocators report nothing, and replay classifies crashes."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import PROJECT_ROOT
from harness import program as prog
from harness.binding import load, run_program
from harness.checks import classify, replay, run_inprocess
from harness.child import NO_ASLR, child_env
from harness.target import Target
from harness.program import Op, Program
from tests.fixtures.fxlib import PEERS, build_fixture, peer_missing

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def release(built):
    return built("release")


@pytest.fixture(scope="module")
def rlib(release):
    return load(release.lib)


@given(data=st.binary(max_size=500), concurrent=st.booleans())
@FAST
def test_arbitrary_bytes_run_clean_on_release(rlib, data, concurrent) -> None:
    v = run_program(rlib, data, "concurrent" if concurrent else "lockstep")
    assert v.passed, v.describe()
    p = prog.decode(data)
    assert v.ops_executed + v.ops_skipped == len(prog.expand(p))  # loops unrolled


@pytest.mark.parametrize("mode", ["lockstep", "concurrent"])
def test_random_programs_pass_white_box(rlib, mode) -> None:
    for seed in range(12):
        p = prog.random_program(seed, 400, threads=1 + seed % 8)
        v = run_program(rlib, p, mode, repeats=2)
        assert v.passed, (seed, v.describe())


def test_skips_follow_the_plan(rlib) -> None:
    p = Program(2, (Op("free", 0, 1), Op("write", 1, 1), Op("malloc", 0, 1, 10),
                    Op("malloc", 1, 1, 10), Op("thread_exit", 1), Op("free", 1, 1),
                    Op("thread_exit", 1), Op("realloc", 0, 2, 30), Op("malloc", 0, 3, 1 << 47),
                    Op("free", 0, 3)))
    v = run_program(rlib, p)
    assert v.passed, v.describe()
    # skipped: free/write of an empty slot, malloc into a full slot, thread_exit of a
    # thread that has not run yet, free of the never-filled slot 3 (impossible size)
    assert (v.ops_executed, v.ops_skipped) == (5, 5)


def _pattern(trace: list[int]) -> list[tuple[int, int]]:
    """Addresses made comparable across processes (ASLR moves every mapping): which
    earlier allocation got the same address (reuse), and the offset in the page."""
    last: dict[int, int] = {}
    out = []
    for k, a in enumerate(trace):
        out.append((last.get(a, -1), a & 4095))
        last[a] = k
    return out


_TRACE_CHILD = """
import json, sys
from harness.binding import run_program_traced
from harness.program import random_program
p = random_program(7, 400, threads=4)
out = []
for _ in range({runs}):
    v, tr = run_program_traced(sys.argv[1], p, "lockstep")
    out.append([v.name, tr])
print(json.dumps(out))
"""


def test_lockstep_is_deterministic(release) -> None:
    """100 replays (20 fresh processes x 5 runs): same verdict and same address pattern
    for the same run index (a fresh process starts from the same allocator state).
    The children run as replays do, with ASLR off: whether the kernel grows a cached large
    mapping in place (mremap) depends on its neighbours, i.e. on the random layout."""
    procs = [subprocess.Popen([*NO_ASLR, sys.executable, "-c", _TRACE_CHILD.format(runs=5),
                               str(release.lib)], stdout=subprocess.PIPE, text=True,
                              env=child_env(release.env()), cwd=PROJECT_ROOT)
             for _ in range(20)]
    results = []
    for pr in procs:
        out, _ = pr.communicate(timeout=120)
        assert pr.returncode == 0
        results.append([(name, _pattern(tr)) for name, tr in json.loads(out)])
    first = results[0]
    assert all(name == "pass" for name, _ in first)
    assert len(first[0][1]) > 50
    for r in results[1:]:
        assert r == first


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_black_box_peers_report_nothing(release, peer) -> None:
    why = peer_missing(peer)
    if why:
        pytest.skip(why)
    lib, prefix = PEERS[peer]
    for mode in ("lockstep", "concurrent"):
        p = prog.random_program(zlib.crc32(peer.encode()) % 1000, 1500, threads=4)
        if peer == "mimalloc":
            p = Program(p.threads, tuple(op for op in p.ops if not hits_mimalloc_2_0_bug(op)))
        out = replay(p, release, mode, repeats=3, target=Target(Path(lib), prefix), timeout=120)
        assert out.passed, out.describe() + "\n" + out.stderr_tail[-2000:]


def hits_mimalloc_2_0_bug(op: Op) -> bool:
    """mimalloc 2.0.9 (Debian's) misaligns aligned allocations whose size equals an
    alignment of 256, 512 or 1024 (upstream issue #700): a real bug, which
    test_black_box_finds_mimalloc_aligned_bug shows the harness catches."""
    return op.op == "aligned_alloc" and op.size == op.align and op.align in (256, 512, 1024)


def mimalloc_misaligns(path: str) -> bool:
    """Asks mimalloc directly, so the expectation follows the installed version."""
    mi = ctypes.CDLL(path)
    mi.mi_malloc_aligned.restype = ctypes.c_void_p
    mi.mi_malloc_aligned.argtypes = (ctypes.c_size_t, ctypes.c_size_t)
    return any(mi.mi_malloc_aligned(256, 256) % 256 for _ in range(8))


def test_black_box_finds_mimalloc_aligned_bug(release) -> None:
    why = peer_missing("mimalloc")
    if why:
        pytest.skip(why)
    lib, prefix = PEERS["mimalloc"]
    ops = tuple(Op("aligned_alloc", 0, slot, 256, align=256) for slot in range(8))
    out = replay(Program(1, ops), release, target=Target(Path(lib), prefix), timeout=60)
    expected = "align" if mimalloc_misaligns(lib) else "pass"
    assert out.name == expected, out.describe()


def test_asan_build_runs_clean(built) -> None:
    asan = built("asan")
    for mode, seed in (("lockstep", 1), ("concurrent", 2)):
        p = prog.random_program(seed, 600, threads=4)
        out = replay(p, asan, mode, timeout=120)
        assert out.passed, out.describe() + "\n" + out.stderr_tail[-2000:]


def test_replay_classifies_sanitizer_report(built) -> None:
    p = Program(1, (Op("malloc", 0, 0, 48), Op("malloc", 0, 1, 48), Op("free", 0, 0),
                    Op("barrier")))
    out = replay(p, built("asan"), hooks="heap", timeout=120)
    assert out.name == "sanitizer:use-after-poison", out.describe()
    assert out.frames and "AddressSanitizer" in out.stderr_tail


def test_asan_sees_executor_writes_past_a_block(built) -> None:
    # fill/verify run uninstrumented under ASan (src_c/executor/pattern.c): their one
    # region check must still report a write into the free neighbour block
    p = Program(1, (Op("malloc", 0, 0, 48), Op("free", 0, 0)))
    out = replay(p, built("asan"), hooks="overrun", timeout=120)
    assert out.name == "sanitizer:use-after-poison", out.describe()
    assert "hx_fill" in out.frames, out.frames
    assert replay(p, built("asan"), timeout=120).passed


def test_replay_classifies_signal_and_timeout(release, tmp_path) -> None:
    p = Program(1, (Op("malloc", 0, 0, 48), Op("free", 0, 0)))
    out = replay(p, release, target=Target(build_fixture("segv", tmp_path), "fx_"),
                 timeout=60)
    assert out.name == "signal:SIGSEGV", out.describe()
    out = replay(p, release, target=Target(build_fixture("hang", tmp_path), "fx_"),
                 timeout=3)
    assert out.name == "timeout", out.describe()


def test_replay_reports_executor_errors(release) -> None:
    out = replay(Program(1, ()), release, target=Target(Path("/nonexistent/lib.so"), "x_"))
    assert out.name == "executor" and "dlopen" in out.verdict.message


def test_inprocess_fast_path(release) -> None:
    out = run_inprocess(prog.random_program(3, 200, threads=2), release, "concurrent")
    assert out.passed, out.describe()


ASAN_UAF = """=================================================================
==123==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020 at pc 0x1 bp 0x2 sp 0x3
WRITE of size 8 at 0x602000000010 thread T1
    #0 0x7f in hak_free_slow /src/free.c:10:3
    #1 0x7f in hak_free /src/free.c:40:3
    #2 0x7f in hx_exec ops.c:200
SUMMARY: AddressSanitizer: heap-use-after-free /src/free.c:10:3 in hak_free_slow
"""
TSAN_RACE = """==================
WARNING: ThreadSanitizer: data race (pid=4242)
  Write of size 8 at 0x7b04 by thread T2:
    #0 hak_remote_push remote.c:20 (libhakmem.so+0x1)
    #1 hak_free free.c:30 (libhakmem.so+0x2)
SUMMARY: ThreadSanitizer: data race remote.c:20 in hak_remote_push
"""
ASAN_SEGV = """==1==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000010 (pc 0x1 T0)
    #0 0x7f in hak_free free.c:9
"""
UBSAN = "src_c/alloc/slab.c:40:12: runtime error: shift exponent 64 is too large\n"


def test_classify_reports() -> None:
    o = classify(1, "", ASAN_UAF)
    assert o.name == "sanitizer:heap-use-after-free"
    assert o.frames[:2] == ("hak_free_slow", "hak_free")
    assert classify(66, "", TSAN_RACE).name == "sanitizer:data-race"
    assert classify(1, "", ASAN_SEGV).name == "signal:SIGSEGV"
    assert classify(1, "", UBSAN).name == "sanitizer:undefined-behavior"
    assert classify(-6, "", "").name == "signal:SIGABRT"
    assert classify(-9, "", "", timed_out=True).name == "timeout"
    v = ('HAKX-VERDICT {"status": "fail", "check": "overlap", "op_index": 3, "thread": 0, '
         '"slot": 1, "message": "m"}')
    o = classify(0, v + "\n", "")
    assert o.name == "overlap" and o.verdict.op_index == 3
    assert classify(0, v.replace('"fail"', '"pass"') + "\n", TSAN_RACE).name == \
        "sanitizer:data-race"
    assert classify(3, "", "boom").name == "child:exit-3"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.run", *args], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=300,
                          env=child_env(dict(__import__("os").environ)))


def test_cli_exit_codes(tmp_path, release) -> None:
    good = tmp_path / "good.json"
    prog.save(prog.random_program(1, 50, threads=2), good)
    r = _run_cli(str(good), "--build", "release", "--mode", "concurrent")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "outcome: pass" in r.stdout
    r = _run_cli(str(good), "--hook", "counters")
    assert r.returncode == 1 and "counters" in r.stdout
    r = _run_cli(str(good), "--build", "nosuchbuild")
    assert r.returncode == 2 and "nosuchbuild" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "threads": 1, "ops": [{"op": "free", "thread": 0, '
                   '"slot": 99}]}')
    r = _run_cli(str(bad))
    assert r.returncode == 2 and "op 0" in r.stderr and "'slot'" in r.stderr
    assert "bad.json" in r.stderr
    r = _run_cli(str(good), "--target", "libc.so.6", "--prefix", "", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "pass"


def test_cli_replays_a_reproducer_file_with_its_own_settings() -> None:
    reg = PROJECT_ROOT / "regressions" / "asan-drain-counter-counters.json"
    r = _run_cli(str(reg))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "build asan+drain_counter" in r.stdout and "outcome: counters" in r.stdout
    r = _run_cli(str(reg), "--inject", "")
    assert r.returncode == 0 and "build asan," in r.stdout, r.stdout + r.stderr
