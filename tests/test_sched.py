"""Controlled schedules: the PCT scheduler of the asan-sched build (src_c/executor/sched.c).

A scheduled run is a function of the program (its ops and its schedule), so nothing here
depends on timing: a race found under one schedule is found under it every time, in any
process, on a busy machine or an idle one.
"""

from __future__ import annotations

import dataclasses
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.binding import load
from harness.cdefs import ffi
from harness.checks import replay
from harness.minimize import minimize, minimize_with
from harness.program import (HEADER_SCHEDULED, Op, Program, ProgramError, Schedule, decode,
                             encode, from_fuzz_input, from_text, horizon_estimate,
                             random_program)
from harness.target import Target
from harness.triage import reproduce

#: two threads freeing, in turns, the blocks a third allocated: the multi-producer side of
#: a slab's remote list (fuzz/seeds/remote2.bin)
TWO_PRODUCERS = Program(3, tuple(Op("malloc", 0, s, 48) for s in range(8))
                        + tuple(Op("free", 1 + s % 2, s) for s in range(8)))


def scheduled(p: Program, seed: int, depth: int = 2) -> Program:
    return dataclasses.replace(p, schedule=Schedule(seed, depth, horizon_estimate(p)))


def test_schedule_in_both_forms_and_in_the_c_decoder(built):
    p = scheduled(TWO_PRODUCERS, 0xDEADBEEF, 3)
    data = encode(p)
    assert data[0] & HEADER_SCHEDULED and decode(data) == p
    assert from_text(p.to_text()) == p
    assert '"schedule": {"seed": 3735928559, "depth": 3, "horizon": ' in p.to_text()
    lib = load(built("release").lib)
    sc = ffi.new("struct hakx_schedule *")
    assert lib.lib.hakx_schedule_of(data, len(data), sc) == 3
    assert (sc.seed, sc.depth, sc.horizon) == (0xDEADBEEF, 3, p.schedule.horizon)
    assert lib.lib.hakx_schedule_of(encode(TWO_PRODUCERS), len(encode(TWO_PRODUCERS)), sc) == 0
    assert not lib.lib.hakx_sched_supported() and not built("release").scheduled
    assert built("asan-sched").scheduled  # its library says so too: the replays below


@pytest.mark.parametrize("schedule, message", [
    ('{"seed": 1, "depth": 5, "horizon": 9}', "depth must be 1..4"),
    ('{"seed": 4294967296, "depth": 1, "horizon": 9}', "seed must be"),
    ('{"seed": 1, "depth": 1, "horizon": 0}', "horizon must be"),
    ('{"seed": 1, "depth": 1}', "must be {"),
])
def test_a_malformed_schedule_is_refused_by_name(schedule, message):
    with pytest.raises(ProgramError, match=f"field 'schedule': {re.escape(message)}"):
        from_text(f'{{"version": 1, "threads": 1, "schedule": {schedule}, "ops": []}}')


def test_concurrent_fuzz_inputs_run_scheduled_on_a_scheduled_build():
    data = encode(TWO_PRODUCERS)
    plain, mode = from_fuzz_input(data, "concurrent", 4, scheduled=False)
    assert mode == "concurrent" and decode(plain).schedule is None
    sched, _ = from_fuzz_input(data, "concurrent", 4, scheduled=True)
    assert decode(sched).schedule is not None and decode(sched).ops == TWO_PRODUCERS.ops
    # a new input is a new schedule; an input's own schedule is kept; lockstep has none
    other, _ = from_fuzz_input(data + bytes(8), "concurrent", 4, scheduled=True)
    assert decode(other).schedule != decode(sched).schedule
    own = encode(scheduled(TWO_PRODUCERS, 5))
    assert from_fuzz_input(own, "concurrent", 4, scheduled=True)[0] == own
    assert decode(from_fuzz_input(data, "lockstep", 4, scheduled=True)[0]).schedule is None


def test_minimizer_lowers_the_depth_and_keeps_the_schedule():
    p = scheduled(TWO_PRODUCERS, 9, 4)
    # the "bug": slots 0 and 1 freed, under a schedule of depth >= 2
    res = minimize_with(p, lambda q: q.schedule is not None and q.schedule.depth >= 2
                        and {o.slot for o in q.ops if o.op == "free"} >= {0, 1})
    assert res.program.schedule == dataclasses.replace(p.schedule, depth=2)
    assert len(res.program.ops) == 2  # the two frees (the predicate needs no more)


def test_scheduled_runs_replay_identically_and_pass_on_the_clean_build(built):
    """Random programs (thread exits, barriers, flushes, remote frees) with loops and forks
    pass under every schedule tried, and two fresh replays give the same trace."""
    b = built("asan-sched")
    rng = random.Random(11)
    for i in range(6):
        p = random_program(rng, 30, 2 + i % 3)
        body = tuple(o for o in p.ops[:4] if o.op != "barrier") or (Op("flush", 0),)
        p = dataclasses.replace(p, ops=(Op("loop", count=50, body=body), *p.ops[4:],
                                        Op("fork", i % p.threads)))
        p = scheduled(p, i, 1 + i % 4)
        a, c = (replay(p, b, "concurrent", timeout=120) for _ in range(2))
        assert a.name == c.name == "pass", a.verdict
        assert a.verdict.sched_steps > 0
        assert (a.verdict.sched_steps, a.verdict.sched_trace) == (
            c.verdict.sched_steps, c.verdict.sched_trace)


def test_a_scheduled_trial_detects_remote_plain_push_minimizes_and_replays_100_of_100(built):
    """The race of the seeded bug remote_plain_push (a plain load and store instead of the
    push's CAS: two threads pushing onto one slab's remote list lose a block) on a build
    without TSan: found by trying schedules, minimized, replayed 100 times identically."""
    bug = built("asan-sched", "remote_plain_push")
    clean = built("asan-sched")
    found = None
    for seed in range(300):  # PCT: a few percent of depth-2 schedules hit it
        p = scheduled(TWO_PRODUCERS, seed)
        out = replay(p, bug, "concurrent", timeout=120)
        if out.name != "pass":
            found = p
            break
    assert found is not None and out.name == "counters", out.verdict
    rep = reproduce(found, bug, Target(), runs=3, timeout=120, prefer="concurrent")
    assert rep.signature == "counters" and rep.mode == "concurrent" and rep.repeats == 1
    assert rep.reliability.full
    res = minimize(found, bug, Target(), "concurrent", "counters", timeout=120)
    small = res.program
    assert small.schedule is not None and small.records <= 12, small.to_text()
    assert replay(small, clean, "concurrent", timeout=120).name == "pass"
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: replay(small, bug, "concurrent", timeout=120),
                             range(100)))
    seen = {(o.name, o.verdict.sched_steps, o.verdict.sched_trace) for o in outs}
    assert len(seen) == 1 and next(iter(seen))[0] == "counters", seen
