"""Op programs: binary/text round trips, decoder totality, C and Python decoders agree,
every size region and class edge is reachable, malformed text is named precisely."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import program as prog
from harness.binding import c_decode, load
from harness.program import Op, Program, ProgramError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _as_tuples(p: Program) -> list[tuple]:
    out = []
    for o in prog.expand(p):
        aux = o.count if o.op == "calloc" else o.align
        out.append((prog.OPCODES.index(o.op), o.thread, o.slot, o.size, aux))
    return out


@given(st.binary(max_size=400))
@SETTINGS
def test_decoder_total_and_canonical(data: bytes) -> None:
    p = prog.decode(data)
    assert 1 <= p.threads <= prog.MAX_THREADS
    records = max(0, len(data) - 1) // prog.RECORD
    loops = [o for o in p.ops if o.op == "loop"]
    # the first record is the schedule when header bit 3 says so; every other record is
    # an op, or in a loop's body (a loop record in a body, or a loop left without a body,
    # is dropped); with no loop record at all, one op per record
    sched = 1 if records and data[0] & prog.HEADER_SCHEDULED else 0
    assert (p.schedule is not None) == bool(sched)
    assert p.records <= records - sched
    if not any(data[1 + 8 * i] % len(prog.OPCODES) == prog.OPCODES.index("loop")
               for i in range(sched, records)):
        assert len(p) == records - sched and not loops
    assert len(prog.expand(p)) <= prog.MAX_OPS
    canon = prog.encode(p)
    assert prog.decode(canon) == p
    assert prog.encode(prog.decode(canon)) == canon
    text = prog.to_text(p)
    assert prog.from_text(text) == p
    assert prog.to_text(prog.from_text(text)) == text


@given(st.integers(0, 10**6))
@settings(max_examples=50, deadline=None)
def test_random_programs_round_trip(seed: int) -> None:
    p = prog.random_program(seed, 60, threads=1 + seed % 8)
    assert prog.decode(prog.encode(p)) == p
    assert prog.from_text(prog.to_text(p)) == p
    assert prog.encode(prog.from_text(prog.to_text(p))) == prog.encode(p)


def test_empty_and_partial_inputs() -> None:
    assert prog.decode(b"") == Program(1, ())
    assert prog.decode(b"\x03") == Program(4, ())
    assert len(prog.decode(b"\x00" + bytes(8 * 3 + 7))) == 3  # trailing partial record ignored
    assert prog.encode(Program(1, ())) == b"\x00"


def test_deleting_any_op_keeps_a_valid_program() -> None:
    p = prog.random_program(5, 30, threads=3)
    data = prog.encode(p)
    for i in range(len(p)):
        cut = data[:1 + 8 * i] + data[1 + 8 * (i + 1):]
        q = prog.decode(cut)
        assert q.ops == p.ops[:i] + p.ops[i + 1:]


@pytest.fixture(scope="module")
def release_lib(built):
    return load(built("release").lib)


@given(data=st.binary(max_size=300))
@SETTINGS
def test_c_and_python_decoders_agree(release_lib, data: bytes) -> None:
    """The C decoder expands loops; the Python one keeps them and expand() unrolls them."""
    threads, ops = c_decode(release_lib, data)
    p = prog.decode(data)
    assert threads == p.threads
    assert ops == _as_tuples(p)


def test_sizes_reach_every_region_and_class_edge(release_lib) -> None:
    classes = release_lib.class_sizes()
    assert classes, "hak_class_block_size reports no classes"
    for c in classes:
        for s in (c - 1, c, c + 1):
            sel, v0, v1, v2 = prog.encode_size(s)
            assert prog.decode_size(sel, v0, v1, v2) == s
    # the edge selector alone (what fuzzers hit) covers every class edge +-1
    edge = {prog.decode_size(2, v0, v1, v2) for v0 in range(21) for v1 in range(4)
            for v2 in range(3)}
    for c in classes:
        assert {c - 1, c, c + 1} <= edge, c
    regions = {0: 0, 1: 0, 3: 0, 4: 0, 6: 0, 7: 0}
    for sel in regions:
        sizes = [prog.decode_size(sel, b, b * 7 % 256, b * 13 % 256) for b in range(256)]
        regions[sel] = max(sizes)
    assert regions[0] == 0 and regions[1] <= 1024 and regions[3] <= 65536
    assert regions[4] > 4 << 20
    assert min(prog.decode_size(6, b, 0, 0) for b in range(256)) >= prog.IMPOSSIBLE_MIN
    assert min(prog.decode_size(7, b, 0, 0) for b in range(256)) >= prog.IMPOSSIBLE_MIN
    aligns = {prog.decode(bytes([0, 3, 0, 0, 1, 0, 0, 0, a])).ops[0].align for a in range(256)}
    assert aligns == {1 << k for k in range(21)}


def test_text_form_is_readable() -> None:
    p = Program(2, (Op("malloc", 0, 3, 48), Op("calloc", 1, 4, 24, count=2),
                    Op("aligned_alloc", 0, 5, 100, align=4096), Op("free", 1, 3),
                    Op("barrier"), Op("thread_exit", 1), Op("flush", 0),
                    Op("realloc", 0, 5, prog.SIZE_MAX)))
    text = prog.to_text(p)
    doc = json.loads(text)
    assert doc["version"] == 1 and doc["threads"] == 2
    assert doc["ops"][0] == {"op": "malloc", "thread": 0, "slot": 3, "size": 48}
    assert doc["ops"][4] == {"op": "barrier"}
    assert len(text.splitlines()) == len(p) + 2  # one op per line
    assert prog.from_text(text) == p


BAD = [
    ('{"version": 2, "threads": 1, "ops": []}', None, "version"),
    ('{"version": 1, "threads": 9, "ops": []}', None, "threads"),
    ('{"version": 1, "threads": 1, "ops": {}}', None, "ops"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "malloc", "thread": 0, "slot": 1, "size": 8},'
     ' {"op": "mallok", "thread": 0}]}', 1, "op"),
    ('{"version": 1, "threads": 2, "ops": [{"op": "free", "thread": 2, "slot": 1}]}', 0, "thread"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "free", "thread": 0, "slot": 64}]}', 0, "slot"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "malloc", "thread": 0, "slot": 1}]}', 0, "size"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "malloc", "thread": 0, "slot": 1, '
     '"size": 1073741824}]}', 0, "size"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "malloc", "thread": 0, "slot": 1, '
     '"size": "8"}]}', 0, "size"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "aligned_alloc", "thread": 0, "slot": 1, '
     '"size": 8, "align": 24}]}', 0, "align"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "calloc", "thread": 0, "slot": 1, '
     '"size": 8, "count": 9}]}', 0, "count"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "free", "thread": 0, "slot": 1, "sz": 1}]}',
     0, "sz"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "barrier"}, {"op": "loop", "count": 0, '
     '"body": [{"op": "free", "thread": 0, "slot": 1}]}]}', 1, "count"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "loop", "count": 2, "body": []}]}',
     0, "body"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "loop", "count": 2}]}', 0, "body"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "loop", "count": 2, "body": [{"op": "loop",'
     ' "count": 2, "body": [{"op": "barrier"}]}]}]}', 0, "body"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "loop", "count": 2, "body": [{"op": "free",'
     ' "thread": 3, "slot": 1}]}]}', 0, "body"),
    ('{"version": 1, "threads": 1, "ops": [{"op": "fork"}]}', 0, "thread"),
]


@pytest.mark.parametrize("text,index,field", BAD)
def test_malformed_text_names_file_op_and_field(tmp_path, text, index, field) -> None:
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(ProgramError) as e:
        prog.load(f)
    assert e.value.index == index
    assert e.value.field == field
    assert str(f) in str(e.value)
    if index is not None:
        assert f"op {index}" in str(e.value)
    assert e.value.exit_code == 2


def test_not_json(tmp_path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{nope")
    with pytest.raises(ProgramError, match="not JSON"):
        prog.load(f)


def test_save_load_both_forms(tmp_path) -> None:
    p = prog.random_program(11, 40, threads=3)
    prog.save(p, tmp_path / "p.json")
    prog.save(p, tmp_path / "p.bin")
    assert prog.load(tmp_path / "p.json") == p
    assert prog.load(tmp_path / "p.bin") == p


def test_loops_and_forks_round_trip_and_expand() -> None:
    body = (Op("malloc", 0, 6, 64), Op("free", 1, 6))
    p = Program(2, (Op("loop", count=1000, body=body), Op("fork", 1),
                    Op("loop", count=prog.MAX_COUNT, body=(Op("write", 0, 6),) * 16)))
    assert prog.decode(prog.encode(p)) == p
    assert prog.from_text(prog.to_text(p)) == p
    assert p.records == 1 + 2 + 1 + 1 + 16
    ops = prog.expand(p)
    assert ops[:4] == list(body) * 2 and ops[2000] == Op("fork", 1)
    # the last loop is lowered so that the expanded program stays within MAX_OPS
    assert len(ops) == 2001 + (prog.MAX_OPS - 2001) // 16 * 16 <= prog.MAX_OPS


def test_expansion_stays_within_the_byte_budget(release_lib) -> None:
    # Found by a 10-minute campaign against glibc: 534k same-size reallocs of a 2 MiB block
    # (each verifies and refills the whole block) ran for minutes and was kept as a hang.
    big = 2_006_173
    realloc = Op("realloc", 0, 28, big)
    p = Program(2, (Op("malloc", 0, 4, 0), Op("loop", count=267_285, body=(realloc,) * 2),
                    Op("free", 1, 28), Op("malloc", 0, 5, 100)))
    ops = prog.expand(p)
    per_round = 2 * (big + big)  # each realloc: the new block and the slot's largest block
    rounds = prog.MAX_BYTES // per_round
    assert ops == [p.ops[0], *[realloc] * (2 * rounds), p.ops[2], p.ops[3]]
    threads, c_ops = c_decode(release_lib, prog.encode(p))
    assert threads == 2 and c_ops == [
        (prog.OPCODES.index(o.op), o.thread, o.slot, o.size, 0) for o in ops]


def test_an_aligned_block_is_charged_its_alignment(release_lib) -> None:
    # Found by a no-seeds scoreboard trial: 298 B at 1 MiB alignment is 440 KiB usable on
    # hakmem, and a loop of nine writes (each verifies and refills the whole usable block)
    # per aligned_alloc, charged 298 B an op, ran the op cap for 30 s: a libFuzzer timeout.
    size, align = 298, 1 << 20
    body = (Op("aligned_alloc", 2, 41, size, align=align),) + (Op("write", 2, 41),) * 9
    p = Program(3, (Op("collect", 0), Op("loop", count=600_362, body=body)))
    ops = prog.expand(p)
    rounds = prog.MAX_BYTES // (len(body) * (size + align))
    assert ops == [p.ops[0], *body * rounds]
    threads, c_ops = c_decode(release_lib, prog.encode(p))
    assert threads == 3 and c_ops == [
        (prog.OPCODES.index(o.op), o.thread, o.slot, o.size, o.align) for o in ops]


def test_expansion_stays_within_the_heavy_op_budget(release_lib) -> None:
    # Found by a 10-minute campaign on asan: 104k rounds of four barriers on 8 threads
    # (3 ms each, concurrent, under load) ran for many minutes and was kept as a hang.
    body = (Op("barrier"),) * 4 + (Op("free", 7, 0), Op("malloc", 0, 0, 0))
    p = Program(8, (Op("loop", count=104_344, body=body), Op("thread_exit", 3),
                    Op("collect", 1), Op("malloc", 6, 54, 0)))
    ops = prog.expand(p)
    rounds = prog.MAX_HEAVY // 4
    # the loop is lowered to the budget; the heavy ops after it no longer fit and are dropped
    assert ops == [*body * rounds, p.ops[3]]
    assert sum(o.op in ("barrier", "thread_exit", "collect") for o in ops) == prog.MAX_HEAVY
    threads, c_ops = c_decode(release_lib, prog.encode(p))
    assert threads == 8 and c_ops == [
        (prog.OPCODES.index(o.op), o.thread if o.op != "barrier" else 0, o.slot, o.size, 0)
        for o in ops]


def test_loop_records_inside_bodies_and_without_bodies_are_dropped() -> None:
    loop = prog.encode(Program(1, (Op("loop", count=3, body=(Op("free", 0, 1),)),)))[1:9]
    malloc = prog.encode(Program(1, (Op("malloc", 0, 1, 8),)))[1:]
    # a loop whose body holds another loop record: the inner one is ignored
    outer = bytes([loop[0], 0, 1]) + loop[3:]  # body: the next 2 records
    assert prog.decode(b"\x00" + outer + loop + malloc) == Program(
        1, (Op("loop", count=3, body=(Op("malloc", 0, 1, 8),)),))
    # a body of nothing but a loop record, or a loop at the very end: no loop at all
    assert prog.decode(b"\x00" + loop + loop + malloc) == Program(1, (Op("malloc", 0, 1, 8),))
    assert prog.decode(b"\x00" + malloc + loop) == Program(1, (Op("malloc", 0, 1, 8),))
