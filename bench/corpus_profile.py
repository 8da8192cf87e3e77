"""Where a campaign's executions go: ``python bench/corpus_profile.py [--corpus D | --seconds S]``.

A campaign's execs/s is one over the mean cost of the inputs it runs, and libFuzzer runs
mutations of its corpus: so the corpus's cost profile is the campaign's. This replays every
input of a corpus (by default, the corpus a fresh ``python -m harness.fuzz --build asan``
campaign of S seconds grows) through the fuzz target's ``test_one_input``, in one process
under the campaign's own environment (asan-cov, ASan runtime preloaded), twice (the first
pass warms up), and splits the second pass's time by what the inputs hold, each input in
the first class it matches:

* ``fork``: a fork op (the fork itself, a child that checks its heap and allocates);
* ``exit loop``: 20 or more thread exits once loops are expanded (each a real thread ending);
* ``large``: a block of 1 MiB or more (fill and verify at memory bandwidth, fresh pages);
* ``long loop``: 1000 or more ops once loops are expanded;
* ``threads``: a few thread exits;
* ``plain``: the rest.

Prints per class: inputs, share of the replay time, mean ms per input; and the replay rate.
Nothing is written to the real campaigns/ or regressions/.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.campaign_bench import fuzz_env  # noqa: E402
from harness.program import Op, decode, from_fuzz_input  # noqa: E402

CLASSES = ("fork", "exit loop", "large", "long loop", "threads", "plain")
LARGE = 1 << 20


def _expanded(ops: Iterable[Op], times: int = 1) -> Iterable[tuple[Op, int]]:
    """Each op with how many times it runs once loops are expanded."""
    for op in ops:
        if op.op == "loop":
            yield from _expanded(op.body, times * op.count)
        else:
            yield op, times


def _bytes(op: Op) -> int:
    if op.op in ("malloc", "realloc", "aligned_alloc"):
        return op.size
    return op.size * op.count if op.op == "calloc" else 0


def classify(data: bytes) -> str:
    """The first of CLASSES that a fuzz input matches (in mixed mode, any thread count)."""
    program, _ = from_fuzz_input(data, "mixed", 0, False)
    ops = list(_expanded(decode(program).ops))
    exits = sum(n for op, n in ops if op.op == "thread_exit")
    if any(op.op == "fork" for op, _ in ops):
        return "fork"
    if exits >= 20:
        return "exit loop"
    if any(LARGE <= _bytes(op) < 1 << 27 for op, _ in ops):
        return "large"
    if sum(n for _, n in ops) >= 1000:
        return "long loop"
    return "threads" if exits else "plain"


def replay(corpus: Path) -> dict[str, list[float]]:
    """In the child: per class, [inputs, seconds] of the second replay pass."""
    target = runpy.run_path(str(ROOT / "fuzz" / "fuzz_target.py"), run_name="bench")
    run = target["test_one_input"]
    data = [p.read_bytes() for p in sorted(corpus.iterdir())]
    inputs = [(d, classify(d)) for d in data]
    out = {c: [0, 0.0] for c in CLASSES}
    for timed in (False, True):
        for data, cls in inputs:
            t0 = time.perf_counter()
            try:
                run(data)
            except Exception:  # noqa: BLE001 - a failing input still costs its time
                pass
            if timed:
                out[cls][0] += 1
                out[cls][1] += time.perf_counter() - t0
    return out


def grow_corpus(tmp: Path, seconds: float) -> Path:
    cmd = [sys.executable, "-m", "harness.fuzz", "--build", "asan", "--max-time", str(seconds),
           "--seed", "1", "--no-progress", "--campaigns", str(tmp / "campaigns"),
           "--regressions", str(tmp / "regs")]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 900,
                   check=True)
    return next((tmp / "campaigns").glob("*/corpus"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, help="a corpus folder (default: grow one)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="campaign time to grow the corpus (default 60)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(replay(args.child)))
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="corpus-profile-") as t:
        tmp = Path(t)
        corpus = args.corpus or grow_corpus(tmp, args.seconds)
        env = {**fuzz_env(tmp, 0), "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, __file__, "--child", str(corpus)], env=env,
                           cwd=ROOT, capture_output=True, text=True, check=False)
    if r.returncode:
        print(f"replay failed:\n{r.stdout}{r.stderr[-3000:]}")
        return 1
    out = json.loads(r.stdout.strip().splitlines()[-1])
    total = sum(s for _, s in out.values()) or 1.0
    count = sum(n for n, _ in out.values())
    print(f"{count} inputs of {corpus}: {total:.2f} s, {count / total:.0f} inputs/s")
    for cls in CLASSES:
        n, s = out[cls]
        if n:
            print(f"  {cls:10} {n:5} inputs {s / total:6.1%} of the time, "
                  f"{s / n * 1e3:8.2f} ms each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
