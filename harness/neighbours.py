"""The seed neighbours: every program one structural step away from a seed.

Allocator bugs sit next to the programs written to reach them: a free moved to another
thread becomes remote, a record repeated once crosses a class's refill, a record erased
leaves a block to outlive its thread. The custom mutator (fuzz/mutator.c) makes these
steps too, but at random: it has to pick that seed among hundreds of corpus inputs, then
that step, then that record, so a campaign either stumbles on the neighbour in its first
seconds or runs for minutes without it. Here each seed's neighbours are enumerated once,
in the mutator's own terms, and given to the campaign's first libFuzzer run
(harness.fuzz), which executes every one of them while it loads its corpus and keeps those
that add coverage. A few hundred inputs: seconds of a campaign.

The steps, for every op record of a seed (its schedule record is not an op):

* ``erased``: the record removed;
* ``repeated``: the record copied once after itself, on the next slot (the mutator's
  ``repeat`` with one copy);
* ``moved to thread T``: the record given to each other thread of the program, for ops
  that run on a thread (the mutator's ``thread``).

:func:`write` persists them as ``<sha1>`` files, libFuzzer's own naming, so a crash file
``crash-<sha1>`` names the neighbour it came from, and an index that says which seed and
step each one is (:func:`origin`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.program import (
    HEADER,
    HEADER_SCHEDULED,
    OPCODES,
    RECORD,
    SLOTS,
    THREADED_OPS,
    decode,
    from_fuzz_input,
)

__all__ = ["INDEX", "Neighbour", "named", "neighbours", "origin", "write"]

#: the index of a neighbours folder: one JSON line per file
INDEX = "index.jsonl"


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """One program a step from a seed."""

    data: bytes
    seed: str  #: the seed's file name
    step: str  #: e.g. "record 7 (free) moved to thread 2"

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.data).hexdigest()


def _steps(data: bytes, threads: int) -> Iterator[tuple[str, bytes]]:
    """(step, program) for each one-step neighbour of ``data``, duplicates included."""
    n = (len(data) - HEADER) // RECORD if len(data) > HEADER else 0
    first = 1 if n and data[0] & HEADER_SCHEDULED else 0
    body = data[:HEADER + n * RECORD]
    for i in range(first, n):
        at = HEADER + i * RECORD
        rec = body[at:at + RECORD]
        name = OPCODES[rec[0] % len(OPCODES)]
        what = f"record {i} ({name})"
        yield f"{what} erased", body[:at] + body[at + RECORD:]
        copy = rec[:2] + bytes([(rec[2] + 1) % SLOTS]) + rec[3:]
        yield f"{what} repeated", body[:at + RECORD] + copy + body[at + RECORD:]
        if name not in THREADED_OPS:
            continue
        for t in range(threads):
            if t != rec[1] % threads:
                moved = rec[:1] + bytes([t]) + rec[2:]
                yield f"{what} moved to thread {t}", body[:at] + moved + body[at + RECORD:]


def neighbours(seeds: Iterable[tuple[str, bytes]], fold: int, max_len: int) -> list[Neighbour]:
    """The distinct one-step neighbours of ``seeds`` ((name, bytes) pairs) that are
    neither a seed nor longer than ``max_len``; the first step to reach a program names
    it. ``fold``: the campaign's ``--threads`` (0: any), which bounds the threads a record
    can move to as the target folds them (:func:`harness.program.from_fuzz_input`)."""
    pairs = list(seeds)
    seen = {data for _, data in pairs}
    out = []
    for name, data in pairs:
        threads = decode(from_fuzz_input(data, "lockstep", fold)[0]).threads
        for step, program in _steps(data, threads):
            if len(program) <= max_len and program not in seen:
                seen.add(program)
                out.append(Neighbour(program, name, step))
    return out


def write(found: Iterable[Neighbour], folder: Path) -> int:
    """Writes each neighbour as ``folder/<sha1>`` and the index; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(folder / INDEX, "w") as index:
        for nb in found:
            (folder / nb.sha1).write_bytes(nb.data)
            index.write(json.dumps({"sha1": nb.sha1, "seed": nb.seed, "step": nb.step}) + "\n")
            count += 1
    return count


def named(crash_file: Path, folder: Path) -> Path:
    """The file in ``folder`` that a crash file (libFuzzer's ``<kind>-<sha1>``) would be,
    were it a neighbour (it need not exist)."""
    return folder / crash_file.name.rsplit("-", 1)[-1]


def origin(crash_file: Path, folder: Path) -> str | None:
    """``"<seed>: <step>"`` when ``crash_file`` is one of the neighbours indexed in
    ``folder`` (taken out of the folder since, or not); None otherwise."""
    sha1 = named(crash_file, folder).name
    index = folder / INDEX
    if not index.is_file():
        return None
    for line in index.read_text().splitlines():
        entry = json.loads(line)
        if entry["sha1"] == sha1:
            return f"{entry['seed']}: {entry['step']}"
    return None
