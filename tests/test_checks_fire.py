"""Every check is seen to fire, with exactly its name.

Black-box: small broken allocators (tests/fixtures/fx_*.c, built here with cc) run
through the foreign-target path (--target/--prefix fx_). White-box: the executor's test
hooks (lie about a pointer, miscount, forget a block, scribble a freed block) on the
release build, each in a fresh child process."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from harness.binding import Runner, load, run_program
from harness.checks import replay
from harness.program import Op, Program, encode
from harness.target import Target
from tests.fixtures.fxlib import build_fixture

# malloc x5, calloc, realloc (grow), write, free all: each fixture breaks one step.
PROGRAM = Program(1, (
    Op("malloc", 0, 0, 48),
    Op("malloc", 0, 1, 100),
    Op("malloc", 0, 2, 256),
    Op("malloc", 0, 3, 1000),
    Op("malloc", 0, 4, 64),
    Op("calloc", 0, 5, 40, count=2),
    Op("realloc", 0, 1, 500),
    Op("write", 0, 2),
    *(Op("free", 0, s) for s in range(6)),
))

# fixture -> (check, op index where it must fire)
BROKEN = {
    "misalign": ("align", 0),
    "overlap": ("overlap", 4),
    "corrupt": ("integrity", 8),
    "usable": ("usable_size", 0),
    "calloc": ("calloc_zero", 5),
    "realloc": ("realloc_preserve", 6),
    "null": ("null", 0),
}


@pytest.fixture(scope="module")
def fxdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fixtures")


@pytest.fixture(scope="module")
def release(built):
    return built("release")


def test_good_fixture_passes(release, fxdir) -> None:
    lib = build_fixture("good", fxdir)
    for mode in ("lockstep", "concurrent"):
        v = run_program(release.lib, PROGRAM, mode, target=Target(Path(lib), "fx_"))
        assert v.passed, v.describe()


@pytest.mark.parametrize("fixture", sorted(BROKEN))
def test_black_box_check_fires(release, fxdir, fixture) -> None:
    check, op = BROKEN[fixture]
    lib = build_fixture(fixture, fxdir)
    v = run_program(release.lib, PROGRAM, "lockstep", target=Target(Path(lib), "fx_"))
    assert v.status == "fail", v.describe()
    assert (v.check, v.op_index) == (check, op), v.describe()
    assert v.message


#: fixtures that fail the same way every run (no state kept across runs)
STATELESS = ("misalign", "usable", "calloc", "realloc", "null")


def test_runner_gives_run_programs_verdicts(release, fxdir) -> None:
    """The fuzz target's Runner (C structs reused across calls) gives what run_program
    gives (test_black_box_check_fires): None for a pass, each failure with its check, op
    and message, also right after a pass and before the next one, in both modes."""
    data = encode(PROGRAM)
    good = Runner(release.lib, Target(build_fixture("good", fxdir), "fx_"))
    for fixture in STATELESS:
        target = Target(build_fixture(fixture, fxdir), "fx_")
        run = Runner(release.lib, target)
        for mode in ("lockstep", "concurrent"):
            assert good.failure(data, mode) is None
            v, want = run.failure(data, mode), run_program(release.lib, data, mode, target)
            assert v is not None and v.status == "fail", fixture
            assert (v.check, v.op_index, v.program_op, v.thread, v.slot) == (
                want.check, want.op_index, want.program_op, want.thread, want.slot)
            assert v.message and re.sub(r"0x[0-9a-f]+", "0x", v.message) == re.sub(
                r"0x[0-9a-f]+", "0x", want.message)  # pointers aside: each run allocates anew
    assert good.failure(data, "lockstep") is None


def test_black_box_checks_fire_in_a_child_too(release, fxdir) -> None:
    out = replay(PROGRAM, release, target=Target(build_fixture("corrupt", fxdir), "fx_"),
                 timeout=60)
    assert out.name == "integrity", out.describe()


def test_integrity_sees_one_flipped_byte_anywhere(release, fxdir) -> None:
    """A single damaged bit in a block is reported at that byte, wherever it lies (the
    pattern check is vectorised: its head, body and tail must all be covered)."""
    path = build_fixture("flip", fxdir)
    fx = ctypes.CDLL(str(path))
    fx.fx_armed_block.restype = ctypes.c_void_p
    lib = load(release.lib)
    for size in (*range(1, 49), 255, 256, 257, 1000, 4095, 4096, 4097):
        p = Program(1, (Op("malloc", 0, 0, size), Op("malloc", 0, 1, 16), Op("free", 0, 0)))
        # every byte of small blocks; the head, middle and tail (a 32-byte vector and
        # its remainder on each side) of larger ones
        offsets = sorted({*range(min(size, 33)), size // 2, *range(max(0, size - 33), size)})
        for offset in offsets:
            fx.fx_arm(offset)
            v = run_program(lib, p, target=Target(Path(path), "fx_"))
            assert v.check == "integrity", f"size {size} offset {offset}: {v.describe()}"
            assert v.pointer - fx.fx_armed_block() == offset, v.describe()


def test_impossible_request_must_fail(release, fxdir) -> None:
    # fx_good serves up to 1 GiB; 2**47 is impossible -> NULL expected, and passes
    p = Program(1, (Op("malloc", 0, 0, 1 << 47), Op("calloc", 0, 1, 1 << 63, count=2),
                    Op("malloc", 0, 2, 0), Op("free", 0, 2)))
    v = run_program(release.lib, p, target=Target(build_fixture("good", fxdir), "fx_"))
    assert v.passed, v.describe()


LEAVES_BLOCKS = Program(2, (
    Op("malloc", 0, 0, 48), Op("malloc", 1, 1, 100000), Op("malloc", 0, 2, 300),
    Op("free", 1, 0), Op("barrier"), Op("malloc", 1, 3, 64),
))

# the heap hook needs a local free (a self-looping remote list is drained forever)
LOCAL_FREE = Program(1, (Op("malloc", 0, 0, 48), Op("malloc", 0, 1, 48), Op("free", 0, 0),
                         Op("barrier"), Op("free", 0, 1)))

WHITE = [
    ("boundary", "block_boundary", 0, LEAVES_BLOCKS),
    ("conversion", "double_conversion", 0, LEAVES_BLOCKS),
    ("counters", "counters", 4, LEAVES_BLOCKS),
    ("leak", "leak", -1, LEAVES_BLOCKS),
    ("heap", "heap_check", 3, LOCAL_FREE),
]


@pytest.mark.parametrize("hook,check,op,program", WHITE)
def test_white_box_check_fires(release, hook, check, op, program) -> None:
    out = replay(program, release, hooks=hook, timeout=60)
    assert out.name == check, out.describe()
    assert out.verdict.op_index == op, out.describe()


def test_white_box_clean_without_hooks(release) -> None:
    for mode in ("lockstep", "concurrent"):
        v = run_program(release.lib, LEAVES_BLOCKS, mode)
        assert v.passed, v.describe()


def test_white_box_checks_off_for_foreign_targets(release, fxdir) -> None:
    v = run_program(release.lib, LEAVES_BLOCKS, target=Target(build_fixture("good", fxdir), "fx_"),
                    hooks="counters")
    assert v.passed, v.describe()
