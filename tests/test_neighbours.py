"""The seed neighbours (harness.neighbours): every one-step program, each named, none a
seed or a duplicate, none longer than libFuzzer's -max_len; and the index that names the
neighbour behind a crash file."""

from __future__ import annotations

from harness.libfuzzer import SEEDS
from harness.neighbours import INDEX, neighbours, origin, write
from harness.program import RECORD, Op, Program, Schedule, decode, encode

SEED = Program(3, (Op("malloc", 0, 1, 48), Op("barrier"), Op("free", 2, 1)))


def _by_step(found):
    return {nb.step: decode(nb.data) for nb in found}


def test_each_record_is_erased_repeated_and_moved_to_every_other_thread():
    got = _by_step(neighbours([("s.bin", encode(SEED))], 0, 4096))
    malloc, barrier, free = SEED.ops
    assert got == {
        "record 0 (malloc) erased": Program(3, (barrier, free)),
        "record 0 (malloc) repeated": Program(3, (malloc, Op("malloc", 0, 2, 48), barrier,
                                                  free)),
        "record 0 (malloc) moved to thread 1": Program(3, (Op("malloc", 1, 1, 48), barrier,
                                                           free)),
        "record 0 (malloc) moved to thread 2": Program(3, (Op("malloc", 2, 1, 48), barrier,
                                                           free)),
        "record 1 (barrier) erased": Program(3, (malloc, free)),
        "record 1 (barrier) repeated": Program(3, (malloc, barrier, barrier, free)),
        "record 2 (free) erased": Program(3, (malloc, barrier)),
        "record 2 (free) repeated": Program(3, (malloc, barrier, free, Op("free", 2, 2))),
        "record 2 (free) moved to thread 0": Program(3, (malloc, barrier, Op("free", 0, 1))),
        "record 2 (free) moved to thread 1": Program(3, (malloc, barrier, Op("free", 1, 1))),
    }


def test_the_schedule_record_is_kept_and_threads_fold_as_the_campaign_folds_them():
    seed = Program(4, SEED.ops, Schedule(7, 2, 64))
    got = _by_step(neighbours([("s.bin", encode(seed))], 2, 4096))
    assert all(p.schedule == seed.schedule for p in got.values())
    assert "record 1 (malloc) erased" in got  # record 0 is the schedule
    # two threads once folded: the free's thread 2 is thread 0 there
    moves = [s for s in got if "moved" in s]
    assert moves == ["record 1 (malloc) moved to thread 1", "record 3 (free) moved to thread 1"]


def test_no_seed_no_duplicate_and_nothing_past_max_len():
    twin = Program(1, (Op("malloc", 0, 1, 48), Op("malloc", 0, 1, 48)))
    data = encode(twin)
    found = neighbours([("a", data), ("b", encode(SEED))], 0, len(data))
    programs = [nb.data for nb in found]
    assert len(programs) == len(set(programs))
    assert data not in programs and encode(SEED) not in programs
    assert all(len(p) <= len(data) for p in programs)
    # erasing either record of the twin gives one program, named by the first step to it
    assert [nb.step for nb in found if nb.seed == "a"] == ["record 0 (malloc) erased"]


def test_the_shipped_seeds_have_a_few_hundred_neighbours():
    seeds = [(p.name, p.read_bytes()) for p in sorted(SEEDS.glob("*"))]
    found = neighbours(seeds, 0, 1 + RECORD * 64)
    assert 100 <= len(found) <= 2000
    assert {nb.seed for nb in found} == {name for name, _ in seeds}


def test_a_crash_file_names_its_neighbour(tmp_path):
    found = neighbours([("s.bin", encode(SEED))], 0, 4096)
    folder = tmp_path / "neighbours"
    assert write(found, folder) == len(found)
    assert len(list(folder.iterdir())) == len(found) + 1  # and the index
    nb = found[3]
    assert (folder / nb.sha1).read_bytes() == nb.data
    assert origin(tmp_path / f"crash-{nb.sha1}", folder) == f"s.bin: {nb.step}"
    assert origin(tmp_path / f"timeout-{nb.sha1}", folder) == f"s.bin: {nb.step}"
    assert origin(tmp_path / ("crash-" + "0" * 40), folder) is None
    assert origin(tmp_path / f"crash-{nb.sha1}", tmp_path / "none") is None
    assert (folder / INDEX).read_text().count("\n") == len(found)
