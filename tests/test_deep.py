"""Deep programs: loops drive long-lived threads, thread churn and sustained cross-thread
traffic through the executor; the fork op's checks fire on allocators that break in a
forked child and stay quiet on correct ones; the minimizer shrinks a loop's count and body."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness.binding import run_program
from harness.checks import replay
from harness.minimize import minimize
from harness.program import Op, Program, expand
from harness.target import Target
from tests.fixtures import procfs
from tests.fixtures.fxlib import build_fixture

CHURN = Program(3, (
    Op("loop", count=2000, body=(
        Op("malloc", 0, 1, 48), Op("malloc", 0, 2, 1280), Op("free", 1, 1),
        Op("free", 2, 2), Op("malloc", 1, 3, 100_000), Op("free", 0, 3))),
    Op("barrier"),
    Op("loop", count=200, body=(Op("malloc", 1, 4, 3000), Op("free", 0, 4),
                                Op("thread_exit", 1), Op("barrier"))),
))


@pytest.mark.parametrize("mode", ["lockstep", "concurrent"])
def test_loops_run_every_iteration_with_checks(built, mode):
    v = run_program(built("release").lib, CHURN, mode)
    assert v.passed, v.describe()
    assert v.ops_executed == len(expand(CHURN)) == 12_000 + 1 + 800


def test_a_failure_inside_a_loop_names_the_loop(built, tmp_path):
    """fx_overlap hands the 4th block out again at the 5th allocation: in iteration 2 of
    the loop (op 9 of the expanded program), which is op 1 of the program as written."""
    p = Program(1, (Op("malloc", 0, 0, 16), Op("loop", count=50, body=(
        Op("malloc", 0, 1, 32), Op("malloc", 0, 2, 32), Op("free", 0, 1), Op("free", 0, 2)))))
    target = Target(build_fixture("overlap", tmp_path), "fx_")
    v = run_program(built("release").lib, p, "lockstep", target)
    assert v.check == "overlap" and v.op_index == 6 and v.program_op == 1, v.describe()


def test_minimizer_shrinks_a_loop(built, tmp_path):
    """fx_overlap hands the 5th allocation the 4th's block: the 3rd iteration of this loop
    (whose slot 2 keeps the block of the iteration before) is the first that fails."""
    target = Target(build_fixture("overlap", tmp_path), "fx_")
    p = Program(2, (Op("barrier"), Op("loop", count=100_000, body=(
        Op("malloc", 0, 1, 32), Op("write", 1, 1), Op("free", 1, 2), Op("malloc", 1, 2, 32),
        Op("free", 0, 1), Op("flush", 0)))))
    assert run_program(built("release").lib, p, "lockstep", target).check == "overlap"
    res = minimize(p, built("release"), target, "lockstep", "overlap", timeout=60)
    loops = [o for o in res.program.ops if o.op == "loop"]
    assert res.program.records <= 6 and res.program.threads == 1, res.program
    assert all(o.count <= 3 and len(o.body) <= 4 for o in loops), res.program


PROGRAM = Program(2, (Op("malloc", 0, 1, 48), Op("malloc", 1, 2, 5000), Op("fork", 1),
                      Op("free", 0, 1)))


@pytest.mark.parametrize("fixture, check, says, env", [
    ("forkdup", "fork:integrity", "was overwritten", {}),
    ("forkcrash", "fork:crash", "died of signal", {}),
    # the child reports its own hang, with the stack it hangs in
    ("forkhang", "fork:hang", "still running after 1500 ms, at: (libc", {}),
    # even when it hangs inside fork(), in an atfork handler
    ("forkhang", "fork:hang", "still running after 1500 ms, at: (libc", {"FX_IN_FORK": "1"}),
    # a child that cannot (every signal blocked) is ended by the parent's wait
    ("forkhang", "fork:hang", "did not report within 6500 ms", {"FX_DEAF": "1"})])
def test_fork_checks_fire_on_a_broken_child(built, tmp_path, fixture, check, says, env):
    out = replay(PROGRAM, built("release"), target=Target(build_fixture(fixture, tmp_path),
                                                          "fx_"),
                 env={"HAKX_FORK_TIMEOUT_MS": "1500", **env}, timeout=60)
    assert out.name == check, out.describe()
    assert out.verdict is not None and out.verdict.program_op == 2
    assert says in out.verdict.message, out.verdict.message
    if fixture == "forkhang" and "FX_DEAF" not in env:
        assert "pthread_mutex_lock" in out.verdict.message
        # the executor's hidden frames, named by addr2line with their source lines
        waits_in = "fx_in_fork_child (" if env else "fx_malloc <- "
        assert f"<- {waits_in}" in out.report and "(fork.c:" in out.report, out.report
        assert not env or "<- __libc_fork <- hx_fork (" in out.report, out.report


def test_a_fork_child_runs_none_of_the_parents_signal_handlers(built, tmp_path):
    """The replay child (Python) catches SIGINT, as libFuzzer's process does: a group-wide
    SIGINT landing in the forked child would run that handler where the fork left
    allocator locks held. The child ignores SIGINT and catches no SIGTERM."""
    found: list[int] = []

    def forked_children() -> list[int]:
        me = os.getpid()
        return [p for p in procfs.pids()
                if procfs.ppid(p) > 0 and procfs.ppid(procfs.ppid(p)) == me
                and procfs.comm(p).startswith("python")]

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:
            found.extend((p, procfs.signal_mask(p, "SigIgn"), procfs.signal_mask(p, "SigCgt"))
                         for p in forked_children()[:1])
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    out = replay(PROGRAM, built("release"), target=Target(build_fixture("forkhang", tmp_path),
                                                          "fx_"),
                 env={"HAKX_FORK_TIMEOUT_MS": "3000"}, timeout=60)
    watcher.join()
    assert out.name == "fork:hang", out.describe()
    assert found, "the forked child was not seen"
    _, ignored, caught = found[0]
    bit = {s: 1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM)}
    assert ignored & bit[signal.SIGINT] and not caught & bit[signal.SIGINT]
    assert not caught & bit[signal.SIGTERM]


@pytest.mark.parametrize("variant", ["release", "asan"])
@pytest.mark.parametrize("mode", ["lockstep", "concurrent"])
def test_fork_is_quiet_on_correct_allocators(built, tmp_path, variant, mode):
    deep = Program(3, (Op("loop", count=20, body=(
        Op("malloc", 1, 1, 1280), Op("malloc", 2, 2, 70_000), Op("fork", 0),
        Op("free", 2, 1), Op("free", 1, 2))),))
    for target in (Target(), Target(build_fixture("good", tmp_path), "fx_")):
        out = replay(deep, built(variant), mode, target=target, timeout=120)
        assert out.passed, f"{target.prefix or 'hakmem'}: {out.describe()}"


def test_only_the_first_forks_of_a_run_take_effect(built):
    """A fork costs milliseconds: a loop of them would stall a campaign."""
    p = Program(2, (Op("loop", count=1000, body=(
        Op("malloc", 0, 1, 48), Op("fork", 1), Op("free", 0, 1))),))
    v = run_program(built("release").lib, p, "lockstep")
    assert v.passed and v.ops_skipped == 1000 - 2 and v.ops_executed == 2000 + 2


def test_minimizer_drops_a_loop_the_bug_does_not_need():
    """ddmin may empty a loop's body: the loop then goes, never an empty-bodied loop
    (which the format cannot hold)."""
    from harness.minimize import minimize_with

    p = Program(1, (Op("malloc", 0, 1, 48), Op("loop", count=7, body=(
        Op("write", 0, 1), Op("flush", 0))), Op("free", 0, 1)))

    def needs_free_only(q: Program) -> bool:
        assert all(o.body for o in q.ops if o.op == "loop")  # every candidate encodes
        q.to_text()
        return any(o.op == "free" for o in q.ops)

    res = minimize_with(p, needs_free_only)
    assert all(o.op != "loop" for o in res.program.ops), res.program


def test_white_box_checks_do_not_race_with_carving_under_tsan(built):
    """A remote free's white-box check (hak_block_info) reads the slab's `carved` while its
    owner carves: a plain read against a plain write was a data race that TSan reported
    on the clean build, 3 runs of 3, before both became relaxed atomics."""
    body = tuple(Op("malloc", 0, s, 16) for s in range(8)) + tuple(
        Op("free", 1, s) for s in range(8))
    p = Program(2, (Op("loop", count=2000, body=body),))
    out = replay(p, built("tsan"), "concurrent", repeats=3, timeout=600)
    assert out.passed, out.describe()
