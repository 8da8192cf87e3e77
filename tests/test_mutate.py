"""The structure-aware custom mutator (fuzz/mutator.c): record-aligned, bounded,
deterministic, and preloaded into campaigns where libFuzzer finds it."""

from __future__ import annotations

import cffi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.fuzzlibs import mutator_lib
from harness.program import HEADER, HEADER_SCHEDULED, RECORD, Op, Program, Schedule, decode, encode

_FFI = cffi.FFI()
_FFI.cdef("size_t hakmem_mutate_records(uint8_t *, size_t, size_t, unsigned);"
          "size_t LLVMFuzzerCustomMutator(uint8_t *, size_t, size_t, unsigned);")


@pytest.fixture(scope="module")
def lib():
    return _FFI.dlopen(str(mutator_lib()))


def mutate(lib, data: bytes, max_size: int, seed: int, fn: str = "hakmem_mutate_records"):
    buf = _FFI.new("uint8_t[]", max(max_size, len(data), 1))
    _FFI.memmove(buf, data, len(data))
    n = getattr(lib, fn)(buf, len(data), max_size, seed)
    return bytes(_FFI.buffer(buf, n))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 600), st.integers(0, 2**32 - 1))
def test_records_stay_aligned_bounded_and_deterministic(lib, data, max_size, seed):
    out = mutate(lib, data, max_size, seed)
    assert len(out) <= max_size
    if out:
        assert (len(out) - HEADER) % RECORD == 0
        # the header is kept, but for the schedule bit (a schedule mutation sets it)
        assert out[0] & ~HEADER_SCHEDULED == (data[:1] or b"\x00")[0] & ~HEADER_SCHEDULED
    decode(out)  # the decoder is total: any result is a program
    assert mutate(lib, data, max_size, seed) == out
    # without libFuzzer in the process, the exported hook falls back to record mutations
    assert len(mutate(lib, data, max_size, seed, "LLVMFuzzerCustomMutator")) <= max_size


def test_nothing_is_written_past_max_size(lib):
    """A header with the schedule bit and no record (an input cut at max_size): the
    schedule mutation wrote a seed past the buffer (found by the test above, as a worker
    aborting on a corrupt heap)."""
    canary = bytes(range(1, 33))
    for data in (bytes([HEADER_SCHEDULED]), bytes([HEADER_SCHEDULED | 3]), b""):
        for max_size in (1, 2, RECORD, RECORD + 1):
            for seed in range(300):
                room = max(max_size, len(data), 1)
                buf = _FFI.new("uint8_t[]", room + len(canary))
                _FFI.memmove(buf, data, len(data))
                _FFI.memmove(buf + room, canary, len(canary))
                n = lib.hakmem_mutate_records(buf, len(data), max_size, seed)
                assert n <= max_size
                assert bytes(_FFI.buffer(buf + room, len(canary))) == canary, (data, max_size, seed)


def test_mutations_grow_same_class_runs_on_fresh_slots(lib):
    base = encode(Program(1, (Op("malloc", 0, 3, 4096), Op("free", 0, 3))))
    grown = 0
    for seed in range(300):
        ops = decode(mutate(lib, base, 513, seed)).ops
        mallocs = [o for o in ops if o.op == "malloc" and o.size == 4096]
        if len(mallocs) > 2 and len({o.slot for o in mallocs}) == len(mallocs):
            grown += 1
    assert grown >= 20, grown  # `repeat` and `segment`: about a third of the mutations


def test_every_kind_of_change_happens(lib):
    base = encode(Program(2, tuple(Op("malloc", s % 2, s, 64 << s) for s in range(6))))
    seen = set()
    for seed in range(500):
        out = decode(mutate(lib, base, 513, seed))
        before = decode(base)
        if out.records > before.records:
            seen.add("grow")
        elif out.records < before.records:
            seen.add("shrink")
        elif out != before:
            seen.add("edit")
        if any(o.op in ("barrier", "flush", "thread_exit", "fork") for o in out.ops):
            seen.add("structural")
        if any(o.op == "collect" for o in out.ops):
            seen.add("collect")
        loops = [o for o in out.ops if o.op == "loop"]
        if loops:
            seen.add("loop")
            if max(o.count for o in loops) >= 1000:
                seen.add("long loop")
    assert seen == {"grow", "shrink", "edit", "structural", "collect", "loop", "long loop"}


def test_orphan_frees_an_exited_threads_blocks_elsewhere(lib):
    """`orphan`: a thread exits right after one of its ops, and the later frees of blocks
    it allocated before that go to threads picked at random (its successor included)."""
    base = Program(3, (*(Op("malloc", 0, s, 1000) for s in range(4)), Op("malloc", 1, 4, 64),
                       *(Op("free", 0, s) for s in range(5))))
    freers = set()
    for seed in range(1500):
        out = decode(mutate(lib, encode(base), 513, seed))
        exits = [i for i, o in enumerate(out.ops) if o.op == "thread_exit"]
        if len(exits) != 1 or out.ops[exits[0] - 1].thread != out.ops[exits[0]].thread:
            continue
        at, who = exits[0], out.ops[exits[0]].thread
        mine = {o.slot for o in out.ops[:at] if o.op == "malloc" and o.thread == who}
        later = [o for o in out.ops[at + 1:] if o.op == "free"]
        if who != 0 or len(mine) < 2 or [o.slot for o in later] != [0, 1, 2, 3, 4]:
            continue
        freers |= {(o.slot in mine, o.thread) for o in later}
    # the orphaned blocks went to every thread, the others stayed with their thread
    assert {t for m, t in freers if m} == {0, 1, 2}, freers
    assert {t for m, t in freers if not m} == {0}, freers


def test_schedules_are_given_and_varied_and_never_mutated_as_ops(lib):
    plain = Program(3, tuple(Op("malloc", 0, s, 48) for s in range(4))
                    + tuple(Op("free", 1 + s % 2, s) for s in range(4)))
    given_one = {decode(mutate(lib, encode(plain), 513, seed)).schedule
                 for seed in range(300)} - {None}
    assert len(given_one) >= 10  # one mutation in ten, each with its own seed
    scheduled = Program(3, plain.ops, Schedule(7, 2, 64))
    seen = set()
    for seed in range(300):
        out = decode(mutate(lib, encode(scheduled), 513, seed))
        assert out.schedule is not None  # record mutations work on the ops after it
        if out.schedule != scheduled.schedule:
            assert out.ops == scheduled.ops
            seen |= {f for f in ("seed", "depth", "horizon")
                     if getattr(out.schedule, f) != getattr(scheduled.schedule, f)}
    assert seen == {"seed", "depth", "horizon"}
