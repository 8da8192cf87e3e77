"""Minimize a crashing program while its signature holds.

Choice of minimizer: a delta-debugging reduction (ddmin, Zeller & Hildebrandt 2002) over the
*op list* of the decoded program, with a fresh-process replay
(:func:`harness.triage.run_signature`) as the oracle. Why not the alternatives:

* libFuzzer ``-minimize_crash=1`` shrinks raw bytes in-process and stops when the
  sanitizer's dedup token changes: it knows nothing of our check failures (a check is a
  Python exception, the same "crash" for every check), cannot keep our signature
  (check name + allocator frames), and bytes are the wrong unit (deleting a byte shifts
  every following 8-byte record; deleting a whole op is what keeps a program meaningful);
* hypothesis's shrinker is excellent but internal (no public API shrinks a given value
  under an arbitrary predicate; ``hypothesis.find`` generates from scratch), and its
  choice sequences are tied to a strategy and version (RECIPES.md);
* every op program decodes totally and an op on an empty/full slot is skipped, so any
  subsequence of ops is a valid program: ddmin's only requirement. Each candidate runs in a
  fresh process, so a candidate that segfaults or hangs costs one child, never the campaign.

Passes, each kept only while the signature is unchanged, in the order DESIGN.md asks:

1. cut the tail: after the failing op (the verdict's op index) or, for a crash, the shortest
   reproducing prefix (binary search);
2. ddmin over slots (all ops of a slot at once), then over ops (chunks of n/2, n/4, ...
   down to single ops), repeated until no change;
3. loops: each loop's count (the smallest that still reproduces, by bisection), then its
   body (ddmin), and a loop left with one iteration is unrolled into its body;
4. threads: fewest threads (ops folded onto thread ``t % k``, loop bodies included);
5. size classes: every op of one request size moved together to a bigger mid size (64, 32,
   16, 8 KiB), whose slabs hold fewer blocks, so that a bug at a slab boundary needs fewer
   allocations; then ddmin again;
6. sizes and alignments: each op's size tried at 16, 1, 0 and halved; alignment at 16, 8;
7. the schedule (a scheduled program): the lowest depth that reproduces, i.e. the fewest
   priority change points; its seed and horizon stay, so the change points left keep
   their places (every pass above keeps the schedule as it is).

Budget: ``max_runs`` replays and ``max_seconds``; the best program so far is returned.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from harness.build import Build
from harness.program import SIZED_OPS, SLOTTED_OPS, Op, Program, representable
from harness.target import Target
from harness.triage import run_signature

__all__ = ["MinimizeResult", "minimize", "minimize_with"]


@dataclasses.dataclass
class MinimizeResult:
    program: Program
    original_ops: int
    runs: int
    seconds: float
    exhausted: bool  #: stopped by the budget, not by convergence


class _Budget(Exception):
    pass


class _Oracle:
    def __init__(self, test: Callable[[Program], bool], max_runs: int, max_seconds: float):
        self.test = test
        self.runs = 0
        self.max_runs = max_runs
        self.deadline = time.monotonic() + max_seconds
        self.cache: dict[Program, bool] = {}

    def __call__(self, p: Program) -> bool:
        if p in self.cache:
            return self.cache[p]
        if self.runs >= self.max_runs or time.monotonic() > self.deadline:
            raise _Budget
        self.runs += 1
        ok = self.test(p)
        self.cache[p] = ok
        return ok


def _with_ops(p: Program, ops: list[Op] | tuple[Op, ...]) -> Program:
    return dataclasses.replace(p, ops=tuple(ops))


def _tail(p: Program, ok: _Oracle, fail_index: int | None) -> Program:
    if fail_index is not None and 0 <= fail_index < len(p.ops) - 1:
        cand = _with_ops(p, p.ops[: fail_index + 1])
        if ok(cand):
            return cand
    lo, hi = 0, len(p.ops)  # ops[:hi] reproduces
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(_with_ops(p, p.ops[:mid])):
            hi = mid
        else:
            lo = mid + 1
    return _with_ops(p, p.ops[:hi])


def _ddmin_units(units: list, build: Callable[[list], Program], ok: _Oracle,
                 least: int = 1) -> list:
    """ddmin over ``units``: removes chunks of n/2, n/4, ... down to single units while
    ``build(kept)`` still reproduces; returns the units kept."""
    n = 2
    while len(units) >= least:
        chunk = max(1, len(units) // n)
        removed = False
        i = 0
        while i < len(units):
            cand = units[:i] + units[i + chunk:]
            if cand != units and ok(build(cand)):
                units = cand
                removed = True
            else:
                i += chunk
        if removed:
            n = max(n - 1, 2)
            continue
        if chunk == 1:
            break
        n = min(len(units), n * 2)
    return units


def _ddmin(p: Program, ok: _Oracle) -> Program:
    return _with_ops(p, _ddmin_units(list(p.ops), lambda ops: _with_ops(p, ops), ok))


def _all_ops(p: Program) -> list[Op]:
    """Every op, loop bodies included."""
    return [inner for o in p.ops for inner in (o.body if o.op == "loop" else (o,))]


def _map(p: Program, f: Callable[[Op], Op | None], threads: int | None = None) -> Program:
    """``p`` with ``f`` applied to every op, loop bodies included (None drops the op; a loop
    whose body is left empty goes too)."""
    ops = []
    for o in p.ops:
        if o.op != "loop":
            o2 = f(o)
            if o2 is not None:
                ops.append(o2)
            continue
        body = tuple(x for x in (f(inner) for inner in o.body) if x is not None)
        if body:
            ops.append(dataclasses.replace(o, body=body))
    return Program(p.threads if threads is None else threads, tuple(ops), p.schedule)


def _slots(p: Program, ok: _Oracle) -> Program:
    """ddmin over slots: every op on a slot goes or stays together (an allocation without
    its free, or a free without its allocation, is skipped, so op-wise ddmin must find
    both halves of a pair in one chunk)."""

    def without(kept: list[int]) -> Program:
        keep = set(kept)
        return _map(p, lambda o: o if o.op not in SLOTTED_OPS or o.slot in keep else None)

    slots = sorted({o.slot for o in _all_ops(p) if o.op in SLOTTED_OPS})
    return without(_ddmin_units(slots, without, ok, least=2))


def _with_loop(p: Program, i: int, loop: Op | None) -> Program:
    """``p`` with its op ``i`` (a loop) replaced, unrolled into its body when None, or
    dropped when the replacement's body is empty."""
    if loop is None:
        replacement = p.ops[i].body
    else:
        replacement = (loop,) if loop.body else ()
    return _with_ops(p, p.ops[:i] + replacement + p.ops[i + 1:])


def _loops(p: Program, ok: _Oracle) -> Program:
    """Each loop: the smallest count that reproduces (bisection), a smaller body (ddmin),
    and unrolled when one iteration is enough."""
    i = 0
    while i < len(p.ops):
        loop = p.ops[i]
        if loop.op != "loop":
            i += 1
            continue
        lo, hi = 1, loop.count
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(_with_loop(p, i, dataclasses.replace(loop, count=mid))):
                hi = mid
            else:
                lo = mid + 1
        loop = dataclasses.replace(loop, count=hi)
        p = _with_loop(p, i, loop)
        body = _ddmin_units(list(loop.body), lambda b: _with_loop(
            p, i, dataclasses.replace(loop, body=tuple(b))), ok)
        p = _with_loop(p, i, dataclasses.replace(loop, body=tuple(body)))
        if not body:  # the bug needs none of it: the loop is gone
            continue
        if hi == 1 and ok(_with_loop(p, i, None)):
            p = _with_loop(p, i, None)
            i += len(body)
            continue
        i += 1
    return p


def _fold(p: Program, k: int) -> Program:
    return _map(p, lambda o: dataclasses.replace(o, thread=o.thread % k)
                if o.op != "barrier" else o, threads=k)


def _threads(p: Program, ok: _Oracle) -> Program:
    for k in range(1, p.threads):
        cand = _fold(p, k)
        if ok(cand):
            return cand
    return p


#: mid sizes with the fewest blocks per slab (7-8): a slab boundary is reached soonest
BIG_SIZES = (65536, 32768, 16384, 8192)


def _classes(p: Program, ok: _Oracle) -> Program:
    every = _all_ops(p)
    sizes = {o.size for o in every if o.op in SIZED_OPS and 0 < o.size < BIG_SIZES[0]}
    for size in sorted(sizes, key=lambda s: -sum(o.size == s for o in every)):
        for big in BIG_SIZES:
            if big <= size:
                break
            cand = _map(p, lambda o, size=size, big=big: dataclasses.replace(o, size=big)
                        if o.size == size and o.op in SIZED_OPS else o)
            if ok(cand):
                p = cand
                break
    return p


def _simplify(p: Program, ok: _Oracle) -> Program:
    ops = list(p.ops)
    for i, o in enumerate(ops):
        if o.op in SIZED_OPS:
            for size in (16, 1, 0, o.size // 2):
                if size >= o.size or not representable(size):
                    continue
                cand = ops[:i] + [dataclasses.replace(o, size=size)] + ops[i + 1:]
                if ok(_with_ops(p, cand)):
                    ops = cand
                    o = ops[i]
                    break
        if o.op == "aligned_alloc":
            for align in (16, 8):
                if align < o.align:
                    cand = ops[:i] + [dataclasses.replace(o, align=align)] + ops[i + 1:]
                    if ok(_with_ops(p, cand)):
                        ops = cand
                        o = ops[i]
                        break
        if o.op == "calloc" and o.count > 1:
            cand = ops[:i] + [dataclasses.replace(o, count=1)] + ops[i + 1:]
            if ok(_with_ops(p, cand)):
                ops = cand
    return _with_ops(p, ops)


def _schedule(p: Program, ok: _Oracle) -> Program:
    """Fewer priority change points: the lowest depth that still reproduces (the seed and
    horizon stay, so the change points that remain do not move)."""
    if p.schedule is None:
        return p
    for depth in range(1, p.schedule.depth):
        cand = dataclasses.replace(p, schedule=dataclasses.replace(p.schedule, depth=depth))
        if ok(cand):
            return cand
    return p


def minimize_with(program: Program, test: Callable[[Program], bool], *,
                  fail_index: int | None = None, max_runs: int = 400,
                  max_seconds: float = 300.0) -> MinimizeResult:
    """Minimizes ``program`` under predicate ``test`` (True: still the same bug)."""
    start = time.monotonic()
    ok = _Oracle(test, max_runs, max_seconds)
    best = program
    exhausted = False
    try:
        best = _tail(best, ok, fail_index)
        prev = None
        while prev != best:
            prev = best
            best = _ddmin(_slots(best, ok), ok)
        best = _loops(best, ok)
        best = _threads(best, ok)
        resized = _classes(best, ok)
        while resized != best:
            best = resized
            resized = _ddmin(best, ok)
        best = _simplify(best, ok)
        best = _ddmin(best, ok)
        best = _schedule(best, ok)
    except _Budget:
        exhausted = True
    return MinimizeResult(best, len(program.ops), ok.runs, time.monotonic() - start, exhausted)


def minimize(program: Program, build: Build, target: Target, mode: str, signature: str, *,
             repeats: int = 1, fail_index: int | None = None, timeout: float = 20.0,
             max_runs: int = 400, max_seconds: float = 300.0,
             confirm: int | None = None) -> MinimizeResult:
    """Minimizes ``program`` while replaying it (fresh process) gives ``signature``.

    A reduction is kept only when ``confirm`` fresh replays in a row give the signature:
    by default 1 in lockstep mode and for a scheduled program (each replays identically)
    and 3 in concurrent mode, where a reduction can hit a race once by timing alone and
    never again."""
    deterministic = mode == "lockstep" or (program.schedule is not None and build.scheduled)
    need = confirm or (1 if deterministic else 3)

    def test(p: Program) -> bool:
        return all(run_signature(p, build, mode, target, repeats, timeout)[0] == signature
                   for _ in range(need))

    return minimize_with(program, test, fail_index=fail_index, max_runs=max_runs,
                         max_seconds=max_seconds)
