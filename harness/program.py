"""Op programs: the unit of testing, in binary form (what fuzzers mutate) and text form.

A program is a thread count (1..8) and a list of ops over a fixed table of 64 slots.
Ops (``OPCODES``): ``malloc``, ``calloc``, ``realloc``, ``aligned_alloc``, ``free``,
``write`` (verify, then refill the block's pattern), ``thread_exit`` (the OS thread ends
with its blocks live; a later op on that program thread runs on a fresh OS thread),
``barrier`` (a quiescent point for every thread; white-box counters are checked there),
``flush`` (``hak_flush_thread`` on that thread; a no-op on foreign targets), ``fork``
(that thread forks the process; the child checks what it inherited, src_c/executor/fork.c),
``collect`` (``hak_collect`` on that thread: its caches flushed, then everything that can go
back to the OS given back at once, as the purge thread would after its delay; a no-op on
foreign targets),
``loop`` (its ``body`` of 1..16 ops runs ``count`` times, 1..2**20, on the same OS threads;
loops do not nest; the expanded program is capped at ``MAX_OPS`` ops, ``MAX_BYTES``
bytes of blocks touched and ``MAX_HEAVY`` barriers, thread exits and collects by lowering
counts: see :func:`expand`).

A program may carry a :class:`Schedule` (PCT seed and depth): on a schedule-controlled build
(``asan-sched``) its concurrent mode then runs one thread at a time, switching only at the
allocator's synchronisation points as the seeded scheduler decides (src_c/executor/sched.c),
so it replays the same interleaving every time. Other builds and the lockstep mode ignore it.

Execution rules (the executor's plan, src_c/executor/plan.c):

* an op on an empty slot (free, write) or an allocation into an occupied slot is skipped;
  realloc on an empty slot is ``realloc(NULL, n)``; a free by a thread other than the
  allocating one is a remote free;
* sizes are either *reasonable* (total < 2**27, must succeed) or *impossible* (total >=
  2**47 or calloc overflow, must return NULL); the format cannot express anything between;
* ``aligned_alloc`` alignments are 1 B .. 1 MiB (powers of two); the executor raises
  alignments below ``sizeof(void *)`` to 8, so programs exercise alignment, never
  posix_memalign's EINVAL rule; the result must be aligned to max(alignment, 16);
* a zero-byte request may return NULL on a foreign target (C allows it); hakmem must
  return a pointer.

Binary form (decoded totally -- every byte string is a program; same layout as
src_c/executor/hakx.h, whose C decoder must agree with :func:`decode`)::

    byte 0          threads = 1 + b % 8         (empty input: 1 thread, no ops)
                    bit 3: the first record is the schedule
    schedule record [seed0, seed1, seed2, seed3, depth, h0, h1, h2]: seed little-endian,
                    depth = 1 + depth % 4, horizon = 1 + (h0 | h1 << 8 | h2 << 16)
    8-byte records  [opcode % 12, thread % threads, slot % 64, size selector, v0, v1, v2, aux]
                    (a trailing partial record is ignored)
    loop record     [9, -, body, -, e, w0, w1, w2]: the next 1 + body % 16 records,
                    count = 1 + w % 2**(e % 21); a loop record inside a body is ignored,
                    a loop with no body is dropped

    size selector % 8, v = v0 | v1 << 8 | v2 << 16:
      0 zero   0                     4 large  65537 + v % 8323072
      1 small  1 + v % 1024          5 raw    v
      2 edge   2**e * (1 + j/4) + d  6 huge   2**64 - 1 - v
               e = 4 + v0 % 21, j = v1 % 4, d = v2 % 3 - 1
      3 mid    1025 + v % 64512      7 pow2   2**(47 + v0 % 17)
    aux: calloc count = aux % 5; aligned_alloc alignment = 2**(aux % 21).

:func:`encode` writes the canonical bytes (unused fields zero, the first size selector
in the order above that can express the size), so ``decode(encode(p)) == p`` for every
program and ``encode(decode(b))`` is the canonical form of any ``b``.

Text form (the corpus format; one op per line)::

    {"version": 1, "threads": 2, "schedule": {"seed": 7, "depth": 2, "horizon": 64}, "ops": [
      {"op": "malloc", "thread": 0, "slot": 3, "size": 48},
      {"op": "calloc", "thread": 1, "slot": 4, "count": 2, "size": 24},
      {"op": "aligned_alloc", "thread": 0, "slot": 5, "size": 100, "align": 4096},
      {"op": "free", "thread": 1, "slot": 3},
      {"op": "barrier"},
      {"op": "loop", "count": 1000, "body": [{"op": "malloc", "thread": 0, "slot": 6,
       "size": 64}, {"op": "free", "thread": 1, "slot": 6}]},
      {"op": "fork", "thread": 0},
      {"op": "collect", "thread": 1},
      {"op": "thread_exit", "thread": 1}
    ]}

(``schedule`` is optional.) Malformed text raises :class:`ProgramError` naming the file,
the op index and the field.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import zlib
from collections.abc import Sequence
from pathlib import Path

from harness.cdefs import constants, enum_names
from harness.errors import UsageError

_C = constants("HAKX_")

__all__ = [
    "OPCODES",
    "SIZED_OPS",
    "MAX_OPS",
    "MAX_HEAVY",
    "expand",
    "SLOTTED_OPS",
    "THREADED_OPS",
    "SLOTS",
    "MAX_THREADS",
    "RECORD",
    "VERSION",
    "SIZE_MAX",
    "REASONABLE_MAX",
    "IMPOSSIBLE_MIN",
    "Op",
    "Program",
    "Schedule",
    "SCHED_MAX_DEPTH",
    "MAX_HORIZON",
    "HEADER_SCHEDULED",
    "horizon_estimate",
    "ProgramError",
    "decode",
    "encode",
    "decode_size",
    "encode_size",
    "representable",
    "to_text",
    "from_text",
    "load",
    "save",
    "random_program",
    "FUZZ_MODES",
    "from_fuzz_input",
]

VERSION = 1
#: The format's constants are hakx.h's (the C decoder's), read through harness.cdefs.
OPCODES: tuple[str, ...] = enum_names("HAKX_OP_")
SLOTS = _C["slots"]
MAX_THREADS = _C["max_threads"]
RECORD = _C["record"]
HEADER = _C["header"]
SIZE_MAX = (1 << 64) - 1
REASONABLE_MAX = 1 << 27
IMPOSSIBLE_MIN = 1 << 47
MAX_BODY = _C["max_body"]
MAX_COUNT = 1 << _C["max_count_log2"]
MAX_OPS = _C["max_ops"]
MAX_BYTES = _C["max_bytes"]
MAX_HEAVY = _C["max_heavy"]
#: ops that cost milliseconds under a sanitizer (a handover of every thread and a heap walk,
#: a thread's end, a full purge), at most MAX_HEAVY of them per expanded program
HEAVY_OPS = ("barrier", "thread_exit", "collect")
HEADER_SCHEDULED = _C["header_scheduled"]
SCHED_MAX_DEPTH = _C["sched_max_depth"]
MAX_HORIZON = 1 << 24
MAX_CALLOC_COUNT = 4
MAX_ALIGN_LOG2 = 20

#: ops that carry a size, ops that name a slot, ops that run on one program thread
SIZED_OPS = ("malloc", "calloc", "realloc", "aligned_alloc")
SLOTTED_OPS = SIZED_OPS + ("free", "write")
THREADED_OPS = SLOTTED_OPS + ("thread_exit", "flush", "fork", "collect")


class ProgramError(UsageError):
    """A malformed text program: names the file, the op index and the field."""

    def __init__(self, source: str, message: str, index: int | None = None,
                 field: str | None = None) -> None:
        self.source = source
        self.index = index
        self.field = field
        where = source
        if index is not None:
            where += f": op {index}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One op. ``size`` is the request (calloc: the element size); ``count`` is calloc's
    element count or a loop's count; ``align`` is aligned_alloc's alignment; ``body`` is a
    loop's ops. Unused fields are 0 (or empty)."""

    op: str
    thread: int = 0
    slot: int = 0
    size: int = 0
    count: int = 0
    align: int = 0
    body: tuple[Op, ...] = ()

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"op": self.op}
        if self.op in THREADED_OPS:
            d["thread"] = self.thread
        if self.op in SLOTTED_OPS:
            d["slot"] = self.slot
        if self.op in ("calloc", "loop"):
            d["count"] = self.count
        if self.op in SIZED_OPS:
            d["size"] = self.size
        if self.op == "aligned_alloc":
            d["align"] = self.align
        if self.op == "loop":
            d["body"] = [o.to_dict() for o in self.body]
        return d

    @property
    def records(self) -> int:
        """Records of the binary form: a loop is one plus its body."""
        return 1 + len(self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """The PCT scheduler's seed (32 bits), depth (1..SCHED_MAX_DEPTH: depth - 1 priority
    change points) and horizon (1..2**24: a change point is one of a thread's first
    ``horizon`` synchronisation points; PCT's k is threads * horizon)."""

    seed: int
    depth: int
    horizon: int

    def to_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "depth": self.depth, "horizon": self.horizon}

    @classmethod
    def derived(cls, data: bytes, program: Program) -> Schedule:
        """The schedule a fuzz input without one runs under on a schedule-controlled build:
        seed and depth from a hash of the input (every mutation is a new schedule; depths
        1..3, PCT's useful range), horizon :func:`horizon_estimate`."""
        h = zlib.crc32(data)
        return cls(h, 1 + (h >> 5) % 3, horizon_estimate(program))


def horizon_estimate(program: Program) -> int:
    """The points the busiest thread of ``program`` passes in a scheduled run, roughly:
    0-3 an op (none for a cache hit, a free's owner test, a remote push's load and publish,
    a refill's locks; a barrier is every thread's), and about 8 for its start and exit.
    Measured on remote frees into one slab from two threads: a horizon twice the points
    of a thread hits the race in 2.3% of depth-2 schedules, one near them in 7.8%."""
    ops = collections.Counter(o.thread for o in expand(program) if o.op != "barrier")
    barriers = sum(o.op == "barrier" for o in expand(program))
    busiest = max(ops.values(), default=0) + barriers
    return max(1, min(MAX_HORIZON, 8 + 2 * busiest))


@dataclasses.dataclass(frozen=True, slots=True)
class Program:
    threads: int
    ops: tuple[Op, ...]
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))

    def to_text(self) -> str:
        return to_text(self)

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def records(self) -> int:
        """Records of the binary form (a loop counts as one plus its body)."""
        return sum(o.records for o in self.ops)


# --------------------------------------------------------------------------- sizes


def decode_size(sel: int, v0: int, v1: int, v2: int) -> int:
    v = v0 | v1 << 8 | v2 << 16
    sel %= 8
    if sel == 0:
        return 0
    if sel == 1:
        return 1 + v % 1024
    if sel == 2:
        p = 1 << (4 + v0 % 21)
        return p + (v1 % 4) * (p // 4) + (v2 % 3) - 1
    if sel == 3:
        return 1025 + v % 64512
    if sel == 4:
        return 65537 + v % 8323072
    if sel == 5:
        return v
    if sel == 6:
        return SIZE_MAX - v
    return 1 << (47 + v0 % 17)


def _v(v: int) -> tuple[int, int, int]:
    return v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF


def encode_size(size: int) -> tuple[int, int, int, int]:
    """Canonical (selector, v0, v1, v2) for ``size``; ValueError if not representable."""
    if size == 0:
        return (0, 0, 0, 0)
    if 1 <= size <= 1024:
        return (1, *_v(size - 1))
    for e in range(4, 25):
        p = 1 << e
        for j in range(4):
            d = size - (p + j * (p // 4))
            if -1 <= d <= 1:
                return (2, e - 4, j, d + 1)
    if 1025 <= size <= 65536:
        return (3, *_v(size - 1025))
    if 65537 <= size < 65537 + 8323072:
        return (4, *_v(size - 65537))
    if 0 <= size < 1 << 24:
        return (5, *_v(size))
    if SIZE_MAX - (1 << 24) < size <= SIZE_MAX:
        return (6, *_v(SIZE_MAX - size))
    if size > 0 and size & (size - 1) == 0 and 47 <= size.bit_length() - 1 <= 63:
        return (7, size.bit_length() - 1 - 47, 0, 0)
    raise ValueError(
        f"size {size} is not representable: use 0 .. 2**24-1, a class edge 2**e*(1+j/4)+-1 "
        "(e <= 24), 2**64-1-v (v < 2**24) or 2**k (47 <= k <= 63)"
    )


def representable(size: int) -> bool:
    try:
        encode_size(size)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- binary


def _decode_record(b: bytes, threads: int) -> Op:
    name = OPCODES[b[0] % len(OPCODES)]
    thread = b[1] % threads
    slot = b[2] % SLOTS
    if name in SIZED_OPS:
        size = decode_size(b[3], b[4], b[5], b[6])
        count = b[7] % (MAX_CALLOC_COUNT + 1) if name == "calloc" else 0
        align = 1 << (b[7] % (MAX_ALIGN_LOG2 + 1)) if name == "aligned_alloc" else 0
        return Op(name, thread, slot, size, count, align)
    if name in ("free", "write"):
        return Op(name, thread, slot)
    if name == "barrier":
        return Op(name)
    return Op(name, thread)


def _loop_count(b: bytes) -> int:
    w = b[5] | b[6] << 8 | b[7] << 16
    return 1 + w % (1 << (b[4] % (_C["max_count_log2"] + 1)))


def decode(data: bytes) -> Program:
    """The total decoder (twin of hakx_decode in src_c/executor/decode.c, before expansion)."""
    threads = 1 + data[0] % MAX_THREADS if data else 1
    n = (len(data) - HEADER) // RECORD if len(data) > HEADER else 0
    recs = [data[HEADER + i * RECORD: HEADER + (i + 1) * RECORD] for i in range(n)]
    ops = []
    k = 0
    schedule = None
    if n and data[0] & HEADER_SCHEDULED:
        b = recs[0]
        schedule = Schedule(int.from_bytes(b[:4], "little"), 1 + b[4] % SCHED_MAX_DEPTH,
                            1 + int.from_bytes(b[5:8], "little"))
        k = 1
    while k < n:
        b = recs[k]
        if OPCODES[b[0] % len(OPCODES)] != "loop":
            ops.append(_decode_record(b, threads))
            k += 1
            continue
        m = min(1 + b[2] % MAX_BODY, n - k - 1)
        body = tuple(_decode_record(r, threads) for r in recs[k + 1: k + 1 + m]
                     if OPCODES[r[0] % len(OPCODES)] != "loop")
        if body:  # a loop without a body does nothing: dropped
            ops.append(Op("loop", count=_loop_count(b), body=body))
        k += 1 + m
    return Program(threads, tuple(ops), schedule)


def _alloc_bytes(op: Op) -> int:
    """Bytes an op's block may span (filled, later verified): 0 for an impossible request;
    an aligned block is charged size + alignment, the most its usable size exceeds the
    request by (hakx_decode's alloc_bytes)."""
    if op.op not in SIZED_OPS or op.size >= REASONABLE_MAX:
        return 0
    if op.op == "calloc":
        return op.size * op.count
    return op.size + op.align if op.op == "aligned_alloc" else op.size


def _cost(op: Op, slot_max: dict[int, int]) -> int:
    on_block = op.op in ("free", "write", "realloc")
    return _alloc_bytes(op) + (slot_max.get(op.slot, 0) if on_block else 0)


def expand(program: Program) -> list[Op]:
    """The ops the executor runs: every loop unrolled in place, counts lowered so that the
    whole stays within MAX_OPS ops, MAX_BYTES bytes of blocks touched (each op charged
    what it allocates plus, for free, write and realloc, the largest block the program
    ever puts in its slot) and MAX_HEAVY heavy ops (as hakx_decode does)."""
    slot_max: dict[int, int] = {}
    for o in program.ops:
        for b in o.body if o.op == "loop" else (o,):
            if b.op in SLOTTED_OPS:
                slot_max[b.slot] = max(slot_max.get(b.slot, 0), _alloc_bytes(b))
    out: list[Op] = []
    spent = heavy_spent = 0
    for o in program.ops:
        body = o.body if o.op == "loop" else (o,)
        count = o.count if o.op == "loop" else 1
        count = min(count, (MAX_OPS - len(out)) // len(body))
        cost = sum(_cost(b, slot_max) for b in body)
        if cost:
            count = min(count, (MAX_BYTES - spent) // cost)
        heavy = sum(b.op in HEAVY_OPS for b in body)
        if heavy:
            count = min(count, (MAX_HEAVY - heavy_spent) // heavy)
        spent += cost * count
        heavy_spent += heavy * count
        out.extend(body * count)
    return out


def _encode_op(op: Op) -> bytes:
    sel = v0 = v1 = v2 = aux = 0
    if op.op in SIZED_OPS:
        sel, v0, v1, v2 = encode_size(op.size)
    if op.op == "calloc":
        aux = op.count
    elif op.op == "aligned_alloc":
        aux = op.align.bit_length() - 1
    if op.op == "loop":
        w = op.count - 1
        return bytes([OPCODES.index("loop"), 0, len(op.body) - 1, 0, w.bit_length(), *_v(w)])
    slot = op.slot if op.op in SLOTTED_OPS else 0
    thread = op.thread if op.op in THREADED_OPS else 0
    return bytes([OPCODES.index(op.op), thread, slot, sel, v0, v1, v2, aux])


def encode(program: Program) -> bytes:
    """Canonical binary form. Raises ValueError for a program the format cannot hold."""
    _validate(program, "<program>")
    out = bytearray([program.threads - 1])
    if program.schedule is not None:
        out[0] |= HEADER_SCHEDULED
        out += program.schedule.seed.to_bytes(4, "little")
        out += bytes([program.schedule.depth - 1])
        out += (program.schedule.horizon - 1).to_bytes(3, "little")
    for op in program.ops:
        out += _encode_op(op)
        for inner in op.body:
            out += _encode_op(inner)
    return bytes(out)


# --------------------------------------------------------------------------- text


def _validate(program: Program, source: str) -> None:
    if not isinstance(program.threads, int) or not 1 <= program.threads <= MAX_THREADS:
        raise ProgramError(source, f"threads must be 1..{MAX_THREADS}, got {program.threads!r}",
                           field="threads")
    _validate_schedule(program.schedule, source)
    for i, op in enumerate(program.ops):
        _validate_op(op, i, program.threads, source)


def _validate_schedule(schedule: Schedule | None, source: str) -> None:
    if schedule is None:
        return
    if type(schedule.seed) is not int or not 0 <= schedule.seed < 1 << 32:
        raise ProgramError(source, f"seed must be 0..2**32-1, got {schedule.seed!r}",
                           field="schedule")
    if type(schedule.depth) is not int or not 1 <= schedule.depth <= SCHED_MAX_DEPTH:
        raise ProgramError(source, f"depth must be 1..{SCHED_MAX_DEPTH}, got "
                           f"{schedule.depth!r}", field="schedule")
    if type(schedule.horizon) is not int or not 1 <= schedule.horizon <= MAX_HORIZON:
        raise ProgramError(source, f"horizon must be 1..2**24, got {schedule.horizon!r}",
                           field="schedule")


def _validate_op(op: Op, i: int, threads: int, source: str) -> None:
    def bad(field: str, msg: str) -> ProgramError:
        return ProgramError(source, msg, i, field)

    if op.op not in OPCODES:
        raise bad("op", f"unknown op {op.op!r}; one of {', '.join(OPCODES)}")
    if op.op == "loop":
        _validate_loop(op, i, threads, source)
        return
    if op.body:
        raise bad("body", f"{op.op} takes no body")
    if op.op in THREADED_OPS and not 0 <= op.thread < threads:
        raise bad("thread", f"thread {op.thread} not in 0..{threads - 1}")
    if op.op not in THREADED_OPS and op.thread != 0:
        raise bad("thread", f"{op.op} takes no thread")
    if op.op in SLOTTED_OPS and not 0 <= op.slot < SLOTS:
        raise bad("slot", f"slot {op.slot} not in 0..{SLOTS - 1}")
    if op.op not in SLOTTED_OPS and op.slot != 0:
        raise bad("slot", f"{op.op} takes no slot")
    if op.op in SIZED_OPS:
        if not representable(op.size):
            raise bad("size", _size_message(op.size))
    elif op.size:
        raise bad("size", f"{op.op} takes no size")
    if op.op == "calloc":
        if not 0 <= op.count <= MAX_CALLOC_COUNT:
            raise bad("count", f"calloc count {op.count} not in 0..{MAX_CALLOC_COUNT}")
    elif op.count:
        raise bad("count", f"{op.op} takes no count")
    if op.op == "aligned_alloc":
        a = op.align
        if a <= 0 or a & (a - 1) or a > 1 << MAX_ALIGN_LOG2:
            raise bad("align", f"alignment {a} is not a power of two in 1..{1 << MAX_ALIGN_LOG2}")
    elif op.align:
        raise bad("align", f"{op.op} takes no align")


def _validate_loop(op: Op, i: int, threads: int, source: str) -> None:
    if not 1 <= op.count <= MAX_COUNT:
        raise ProgramError(source, f"loop count {op.count} not in 1..{MAX_COUNT}", i, "count")
    if not 1 <= len(op.body) <= MAX_BODY:
        raise ProgramError(source, f"a loop body holds 1..{MAX_BODY} ops, not {len(op.body)}",
                           i, "body")
    if op.thread or op.slot or op.size or op.align:
        raise ProgramError(source, "a loop takes only count and body", i, "op")
    for j, inner in enumerate(op.body):
        if inner.op == "loop":
            raise ProgramError(source, f"body op {j}: loops do not nest", i, "body")
        try:
            _validate_op(inner, j, threads, source)
        except ProgramError as e:
            raise ProgramError(source, f"body: {e.args[0]}", i, "body") from None


def _size_message(size: int) -> str:
    try:
        encode_size(size)
    except ValueError as e:
        return str(e)
    return "ok"


_FIELDS = {"op", "thread", "slot", "size", "count", "align", "body"}


def _required(name: str) -> list[str]:
    required = []
    if name in THREADED_OPS:
        required.append("thread")
    if name in SLOTTED_OPS:
        required.append("slot")
    if name in SIZED_OPS:
        required.append("size")
    if name in ("calloc", "loop"):
        required.append("count")
    if name == "aligned_alloc":
        required.append("align")
    if name == "loop":
        required.append("body")
    return required


def _op_from_json(d: object, i: int, source: str) -> Op:
    """One op of the text form (a loop's body parsed recursively); ProgramError names the
    op index and the field."""
    if not isinstance(d, dict):
        raise ProgramError(source, "an op must be an object", i)
    extra = set(d) - _FIELDS
    if extra:
        f = sorted(extra)[0]
        raise ProgramError(source, f"unknown field (fields: {', '.join(sorted(_FIELDS))})", i, f)
    if "op" not in d:
        raise ProgramError(source, "missing", i, "op")
    if not isinstance(d["op"], str) or d["op"] not in OPCODES:
        raise ProgramError(source, f"unknown op {d['op']!r}; one of {', '.join(OPCODES)}",
                           i, "op")
    name = d["op"]
    required = _required(name)
    for f in required:
        if f not in d:
            raise ProgramError(source, f"missing (an {name} op needs {', '.join(required)})",
                               i, f)
    vals = {}
    for f in ("thread", "slot", "size", "count", "align"):
        v = d.get(f, 0)
        if type(v) is not int or v < 0:
            raise ProgramError(source, f"must be a non-negative integer, got {v!r}", i, f)
        vals[f] = v
    raw_body = d.get("body", [])
    if not isinstance(raw_body, list):
        raise ProgramError(source, "must be a list of ops", i, "body")
    body = []
    for j, inner in enumerate(raw_body):
        try:
            body.append(_op_from_json(inner, j, source))
        except ProgramError as e:
            raise ProgramError(source, f"body: {e.args[0]}", i, "body") from None
    return Op(name, **vals, body=tuple(body))


def _schedule_from_json(d: object, source: str) -> Schedule | None:
    if d is None:
        return None
    if not isinstance(d, dict) or set(d) != {"seed", "depth", "horizon"}:
        raise ProgramError(source, 'must be {"seed": S, "depth": D, "horizon": H}',
                           field="schedule")
    return Schedule(d["seed"], d["depth"], d["horizon"])


def from_text(text: str, source: str = "<string>") -> Program:
    """Parses the versioned JSON text form; ProgramError names file, op index and field."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProgramError(source, f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProgramError(source, "expected a JSON object with version, threads, ops")
    if doc.get("version") != VERSION:
        raise ProgramError(source, f"version must be {VERSION}, got {doc.get('version')!r}",
                           field="version")
    threads = doc.get("threads", 1)
    if type(threads) is not int:
        raise ProgramError(source, f"threads must be an integer, got {threads!r}",
                           field="threads")
    raw_ops = doc.get("ops")
    if not isinstance(raw_ops, list):
        raise ProgramError(source, "ops must be a list", field="ops")
    program = Program(threads, tuple(_op_from_json(d, i, source) for i, d in enumerate(raw_ops)),
                      _schedule_from_json(doc.get("schedule"), source))
    if not 1 <= threads <= MAX_THREADS:
        raise ProgramError(source, f"threads must be 1..{MAX_THREADS}, got {threads}",
                           field="threads")
    _validate_schedule(program.schedule, source)
    for i, op in enumerate(program.ops):
        _validate_op(op, i, threads, source)
    return program


def to_text(program: Program, indent: str = "") -> str:
    """The JSON text form, one op per line (stable: text -> program -> text is identity).

    ``indent`` prefixes every line after the first, for a program nested in another JSON
    document (a regression file); the top-level form ends with a newline."""
    _validate(program, "<program>")
    lines = [json.dumps(op.to_dict(), separators=(", ", ": ")) for op in program.ops]
    body = f",\n{indent}  ".join(lines)
    ops = f"[\n{indent}  {body}\n{indent}]" if lines else "[]"
    sched = ("" if program.schedule is None
             else f', "schedule": {json.dumps(program.schedule.to_dict())}')
    text = f'{{"version": {VERSION}, "threads": {program.threads}{sched}, "ops": {ops}}}'
    return text if indent else text + "\n"


def load(path: str | Path) -> Program:
    """Reads a text (.json) program; other files are read as binary programs."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ProgramError(str(p), f"cannot read: {e.strerror}") from None
    if p.suffix == ".json" or data[:1] == b"{":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProgramError(str(p), "not UTF-8 text") from None
        return from_text(text, str(p))
    return decode(data)


def save(program: Program, path: str | Path) -> None:
    p = Path(path)
    if p.suffix == ".json":
        p.write_text(to_text(program))
    else:
        p.write_bytes(encode(program))


# --------------------------------------------------------------------------- generation


def random_program(
    rng: random.Random | int,
    n_ops: int = 100,
    threads: int = 1,
    *,
    sizes: Sequence[int] | None = None,
    ops: Sequence[str] = ("malloc", "malloc", "calloc", "realloc", "aligned_alloc", "free",
                          "free", "free", "write", "flush", "barrier", "thread_exit"),
    slots: int = SLOTS,
    max_size: int = 1 << 20,
) -> Program:
    """A random (valid, representable) program; ``sizes`` defaults to a region mix."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)

    def size() -> int:
        if sizes is not None:
            return rng.choice(sizes)
        k = rng.random()
        if k < 0.45:
            s = rng.randint(0, 1024)
        elif k < 0.75:
            e = rng.randint(4, 16)
            s = (1 << e) + rng.randrange(4) * (1 << e) // 4 + rng.randint(-1, 1)
        elif k < 0.9:
            s = rng.randint(1025, 65536)
        elif k < 0.98:
            s = rng.randint(65537, max_size)
        else:
            s = rng.choice((SIZE_MAX, SIZE_MAX - rng.randrange(64), 1 << rng.randint(47, 63)))
        return s if representable(s) else 48

    out = []
    for _ in range(n_ops):
        name = rng.choice(ops)
        t = rng.randrange(threads)
        s = rng.randrange(slots)
        if name in ("malloc", "realloc"):
            out.append(Op(name, t, s, size()))
        elif name == "calloc":
            out.append(Op(name, t, s, size() if rng.random() < 0.5 else rng.randint(0, 256),
                          rng.randint(0, MAX_CALLOC_COUNT)))
        elif name == "aligned_alloc":
            out.append(Op(name, t, s, size(), align=1 << rng.randint(0, MAX_ALIGN_LOG2)))
        elif name in ("free", "write"):
            out.append(Op(name, t, s))
        elif name == "barrier":
            out.append(Op(name))
        else:
            out.append(Op(name, t))
    return Program(threads, tuple(out))


# --------------------------------------------------------------------------- fuzz inputs

#: How a campaign runs its inputs: one mode for all, or ``mixed`` (the input picks).
FUZZ_MODES = ("lockstep", "concurrent", "mixed")


def from_fuzz_input(data: bytes, mode: str = "lockstep", threads: int = 0,
                    scheduled: bool = False) -> tuple[bytes, str]:
    """The program a fuzz input stands for (binary form) and the mode it runs in: the one
    mapping shared by the fuzz target and triage, so a crash replays as it was fuzzed.

    ``threads`` > 0 folds the thread bits of byte 0 so the program has at most that many
    threads; in ``mixed`` mode bit 7 of byte 0 selects concurrent (set) or lockstep. On a
    schedule-controlled build (``scheduled``) every concurrent input runs scheduled: one
    without a schedule gets :meth:`Schedule.derived` (so a campaign never runs free there,
    and a crash replays deterministically)."""
    run_mode = mode
    if mode == "mixed":
        run_mode = "concurrent" if data[:1] and data[0] & 0x80 else "lockstep"
    if threads and data:
        head = data[0] & ~7 | (data[0] & 7) % threads
        if head != data[0]:  # else the input is already the program: no copy
            data = bytes((head,)) + data[1:]
    if scheduled and run_mode == "concurrent":
        program = decode(data)
        if program.schedule is None:
            sched = Schedule.derived(data, program)
            head = bytes([data[0] | HEADER_SCHEDULED]) if data else bytes([HEADER_SCHEDULED])
            whole = data[HEADER:HEADER + (len(data) - HEADER) // RECORD * RECORD]
            data = (head + sched.seed.to_bytes(4, "little") + bytes([sched.depth - 1])
                    + (sched.horizon - 1).to_bytes(3, "little") + whole)
    return data, run_mode
