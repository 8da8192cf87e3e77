"""A hypothesis state machine whose rules are ops and whose model is the set of live
slots: it builds programs that mostly touch live blocks, runs each on the release build
in-process (white-box checks, both modes) and, in a separate shard, on asan in a child
process. A failure shrinks to a minimal program, printed in text form."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from harness import program as prog
from harness.binding import load, run_program
from harness.build import build
from harness.checks import replay
from harness.program import Op, Program

SLOTS = 16
THREADS = 4
slots = st.integers(0, SLOTS - 1)
threads = st.integers(0, THREADS - 1)
sizes = st.one_of(
    st.integers(0, 1024),
    st.sampled_from([15, 16, 17, 127, 128, 129, 1023, 1025, 4095, 4096, 4097, 65535, 65536,
                     65537, 1 << 20, (1 << 20) + 1, prog.SIZE_MAX, 1 << 47]),
    st.integers(1025, 65536),
    st.integers(65537, 3 << 20),
)


class ProgramMachine(RuleBasedStateMachine):
    """Subclasses set ``run`` (program -> verdict name)."""

    run = None
    n_threads = THREADS

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []
        self.live: set[int] = set()

    @initialize()
    def start(self) -> None:
        self.ops.clear()
        self.live.clear()

    def _alloc(self, op: Op) -> None:
        self.ops.append(op)
        if op.slot not in self.live and (op.size if op.op != "calloc" else op.size * op.count) \
                < prog.IMPOSSIBLE_MIN:
            self.live.add(op.slot)

    @rule(t=threads, s=slots, n=sizes)
    def malloc(self, t, s, n):
        self._alloc(Op("malloc", t, s, n))

    @rule(t=threads, s=slots, n=st.integers(0, 4096), c=st.integers(0, 4))
    def calloc(self, t, s, n, c):
        self._alloc(Op("calloc", t, s, n, count=c))

    @rule(t=threads, s=slots, n=sizes, a=st.integers(0, 20))
    def aligned(self, t, s, n, a):
        self._alloc(Op("aligned_alloc", t, s, n, align=1 << a))

    @rule(t=threads, s=slots, n=sizes)
    def realloc(self, t, s, n):
        self.ops.append(Op("realloc", t, s, n))
        if n < prog.IMPOSSIBLE_MIN:
            self.live.add(s)

    @precondition(lambda self: self.live)
    @rule(t=threads, data=st.data())
    def free(self, t, data):
        s = data.draw(st.sampled_from(sorted(self.live)))
        self.ops.append(Op("free", t, s))
        self.live.discard(s)

    @precondition(lambda self: self.live)
    @rule(t=threads, data=st.data())
    def write(self, t, data):
        s = data.draw(st.sampled_from(sorted(self.live)))
        self.ops.append(Op("write", t, s))

    @rule()
    def barrier(self):
        self.ops.append(Op("barrier"))

    @rule(t=threads)
    def thread_exit(self, t):
        self.ops.append(Op("thread_exit", t))

    @rule(t=threads)
    def flush(self, t):
        self.ops.append(Op("flush", t))

    def teardown(self) -> None:
        if not self.ops:
            return
        n = type(self).n_threads
        p = Program(n, tuple(dataclasses.replace(o, thread=o.thread % n)
                             if o.op not in ("barrier",) else o for o in self.ops))
        result = type(self).run(p)
        assert result == "pass", f"{result}\n{prog.to_text(p)}"


def _release_runner():
    lib = load(build("release").lib)

    def run(p: Program) -> str:
        for mode in ("lockstep", "concurrent"):
            v = run_program(lib, p, mode)
            if not v.passed:
                return f"{mode}: {v.describe()}"
        return "pass"

    return run


def _asan_runner():
    b = build("asan")

    def run(p: Program) -> str:
        out = replay(p, b, "lockstep", timeout=120)
        if not out.passed:
            return out.describe() + "\n" + out.stderr_tail[-2000:]
        return "pass"

    return run


@pytest.mark.parametrize("nthreads", [1, 2, 4])
def test_stateful_release(nthreads) -> None:
    """Sharded by thread count (xdist spreads tests, not examples)."""

    class M(ProgramMachine):
        run = staticmethod(_release_runner())
        n_threads = nthreads

    M.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None,
                                   suppress_health_check=list(HealthCheck))
    M.TestCase().runTest()


def test_stateful_asan() -> None:
    class M(ProgramMachine):
        run = staticmethod(_asan_runner())

    M.TestCase.settings = settings(max_examples=8, stateful_step_count=50, deadline=None,
                                   suppress_health_check=list(HealthCheck))
    M.TestCase().runTest()
