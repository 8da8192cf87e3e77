"""Triage, minimization and regression files, without a fuzzer (fast)."""

from __future__ import annotations

import json

import pytest

from harness.checks import Outcome
from harness.minimize import minimize, minimize_with
from harness.program import Op, Program, decode, from_fuzz_input, random_program
from harness.regression_check import check_regression
from harness.regressions import Regression, RegressionError, known_bugs
from harness.target import resolve_target
from harness.triage import BugKey, Reliability, reproduce, signature, signature_frames


def test_signature_keeps_allocator_frames_and_drops_runtime_and_executor():
    frames = ("__asan_memcpy", "table_put_raw", "table_insert", "hak_large_alloc",
              "hak_malloc", "hx_target_aligned", "alloc_op", "worker", "start_thread")
    assert signature_frames(frames) == ["table_put_raw", "table_insert", "hak_large_alloc"]
    out = Outcome("sanitizer:use-after-poison", frames=frames)
    assert signature(out) == ("sanitizer:use-after-poison@table_put_raw>table_insert>"
                              "hak_large_alloc")
    assert signature(Outcome("overlap")) == "overlap"
    assert signature(Outcome("signal:SIGSEGV", frames=("fx_free", "hx_exec"))) == \
        "signal:SIGSEGV@fx_free"


def test_fuzz_input_folds_threads_and_picks_mode():
    data = bytes([0x87]) + bytes(8)
    assert from_fuzz_input(data, "mixed", 0) == (data, "concurrent")
    assert from_fuzz_input(bytes([0x07]), "mixed", 0)[1] == "lockstep"
    folded, mode = from_fuzz_input(bytes([7]) + bytes(8), "lockstep", 2)
    assert decode(folded).threads <= 2 and mode == "lockstep"


def test_ddmin_reaches_the_minimal_program_without_processes():
    prog = random_program(7, 64, threads=3)
    keep = [prog.ops[5], prog.ops[40]]

    def still_fails(p: Program) -> bool:  # "the bug" needs these two ops, in order
        it = iter(p.ops)
        return all(any(o == k for o in it) for k in keep)

    res = minimize_with(prog, still_fails)
    assert list(res.program.ops) == keep or len(res.program.ops) == 2
    assert res.original_ops == 64 and not res.exhausted


def test_minimize_simplifies_sizes_and_threads():
    prog = Program(4, (Op("malloc", 3, 1, 5000), Op("malloc", 2, 2, 3000)))

    def big_first(p: Program) -> bool:
        return bool(p.ops) and p.ops[0].op == "malloc"

    res = minimize_with(prog, big_first)
    assert res.program.threads == 1
    assert len(res.program.ops) == 1 and res.program.ops[0].size <= 16


@pytest.fixture(scope="module")
def overlap():
    return resolve_target("fixture:overlap", None)


def test_reproduce_and_minimize_a_fixture_bug(built, overlap):
    b = built("asan")
    prog = Program(1, tuple(Op("malloc", 0, i, 32) for i in range(12)))
    rep = reproduce(prog, b, overlap, runs=2)
    assert rep.signature == "overlap" and str(rep.reliability) == "2/2" and rep.mode == "lockstep"
    res = minimize(prog, b, overlap, "lockstep", "overlap",
                   fail_index=rep.outcome.verdict.op_index)
    assert len(res.program.ops) <= 5


def test_regression_file_round_trip_and_replay(built, overlap, tmp_path):
    b = built("asan")
    prog = Program(1, tuple(Op("malloc", 0, i, 32) for i in range(5)))
    rec = Regression.new(prog, signature="overlap", build="asan", inject=None,
                         target=overlap, mode="lockstep", repeats=1,
                         reliability=Reliability(3, 3), original_ops=40)
    path = rec.write(tmp_path)
    again = Regression.new(prog, signature="overlap", build="asan", inject=None,
                           target=overlap, mode="lockstep", repeats=1,
                           reliability=Reliability(3, 3), original_ops=40).write(tmp_path)
    assert path != again and path.name == "asan-fx-overlap-overlap.json"
    data = json.loads(path.read_text())
    back = Regression.read(path).program
    assert back == prog and data["minimized_ops"] == 5 and data["original_ops"] == 40
    assert len(data["revision"]) >= 7
    assert BugKey("overlap", None, "fx_overlap") in known_bugs(tmp_path)
    assert check_regression(path) == []  # passes on fx_good, fails with 'overlap' on fx_overlap
    # a reproducer that no longer reproduces its bug is a failure
    stale = dict(data, program=json.loads(Program(1, (Op("malloc", 0, 0, 8),)).to_text()))
    stale_path = tmp_path / "stale.json"
    stale_path.write_text(json.dumps(stale))
    problems = check_regression(stale_path)
    assert problems and "no longer reproduces" in problems[0]
    assert b.variant == "asan"


@pytest.mark.parametrize("text, msg", [
    ("not json", "not valid JSON"),
    ('{"format": "other"}', "format"),
    ('{"format": "hakmem-regression/1", "signature": "x", "build": "asan", "mode": "x",'
     ' "program": {}}', "mode"),
])
def test_malformed_regression_is_a_clear_error(tmp_path, text, msg):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(RegressionError, match=msg):
        Regression.read(p)
