"""Campaign throughput: ``python bench/campaign_bench.py [--seconds S] [--runs N] [--only K]``.

Prints, for the targets of issue 12 (2-core machine; each figure says what it measured):

* ``campaign``: the README's main command, ``python -m harness.fuzz --build asan`` (native
  coverage through the asan-cov build, default mode mixed, any thread count, 64-op
  programs as the fuzzer makes them: loops, forks and sizes to 28 MiB included) for S
  seconds; then with ``--threads 1`` and ``--threads 4``; then black-box against a
  foreign allocator (mimalloc, ``--prefix mi_``, when installed; glibc otherwise).
  Each: execs/s over the whole campaign, the longest stretch of the progress plot
  (stats.csv, a sample every 0.5 s) in which not one execution finished, and how many
  times libFuzzer was started (in-process campaigns restart it after each crash). The
  coverage figure is libFuzzer's own and not comparable across modes: fork mode's
  status line counts more than the module's PCs;
* ``target``: the atheris target's ``test_one_input`` in one process under the campaign's
  environment (asan-cov, ASan runtime preloaded), over generated 64-op programs of tiny
  and mid sizes (1 B - 64 KiB, every op kind but fork and loop: about 5 barriers and 5
  thread exits per program): 1 thread, and 1-4 threads in mixed modes; then the same
  without thread_exit ops (each is a real OS thread ending and a fresh one starting, a
  cost no pool can remove); medians of N runs of S/6 seconds;
* ``release``: ``harness.binding.run_program`` in-process on the release build, 64-op
  1-thread programs of tiny and mid sizes, with and without thread_exit ops; median of N
  runs of S/6 seconds;
* ``crash``: time from a crash input being written to its minimized regression file
  (fixture ``overlap``, whose bug every campaign finds in seconds);
* ``scheduling``: the README command in lockstep mode with libFuzzer's default entropic
  scheduling (the campaigns') and with each input's energy scaled by its run time as well
  (``-entropic_scale_per_exec_time=1``), the two run side by side so both see the same
  machine: N pairs of S seconds, seeds 1..N; execs and coverage of each, the medians and
  the ratio.

Nothing is written to the real regressions/ or campaigns/. Works on any revision that has
``harness.binding.run_program`` and ``fuzz/fuzz_target.py`` (so "before" figures come from
the same script run in an older checkout).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("campaign", "target", "release", "crash", "scheduling")
#: the programs of the target and release figures: every op kind but fork and loop
OPS = ("malloc", "malloc", "calloc", "realloc", "aligned_alloc", "free", "free", "free",
       "write", "flush", "barrier", "thread_exit")


def _campaign_cmd(d: Path, seconds: float, seed: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness.fuzz", "--build", "asan", "--max-ops", "64",
            "--max-time", str(seconds), "--seed", str(seed), "--no-progress",
            "--campaigns", str(d / "campaigns"), "--regressions", str(d / "regs"),
            "--corpus", str(d / "corpus"), *args]


def _summary(d: Path) -> dict:
    run = next((d / "campaigns").glob("*/runs/*/summary.json"))
    s = json.loads(run.read_text())
    s["longest_gap_s"] = longest_gap(run.parent / "stats.csv")
    return s


def campaign(tmp: Path, name: str, seconds: float, *args: str) -> dict:
    d = tmp / name
    subprocess.run(_campaign_cmd(d, seconds, 1, *args), cwd=ROOT, capture_output=True,
                   text=True, timeout=seconds + 900)
    return _summary(d)


def scheduling(tmp: Path, seconds: float, runs: int) -> None:
    """Default entropic scheduling against energy scaled by run time, side by side."""
    scaled = "--libfuzzer-arg=-entropic_scale_per_exec_time=1"
    got: dict[str, list[dict]] = {"default": [], "scaled": []}
    for seed in range(1, runs + 1):
        arms = {"default": [], "scaled": [scaled]}
        procs = {arm: subprocess.Popen(
            _campaign_cmd(tmp / f"sched-{arm}-{seed}", seconds, seed, "--mode", "lockstep",
                          *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for arm, extra in arms.items()}
        for arm, proc in procs.items():
            proc.wait(timeout=seconds + 900)
            s = _summary(tmp / f"sched-{arm}-{seed}")
            got[arm].append(s)
            print(f"seed {seed}, {arm:8} scheduling: {s['execs']:8,} execs, coverage "
                  f"{s['coverage']}, corpus {s['corpus']}", flush=True)
    med = {arm: statistics.median(s["execs"] for s in ss) for arm, ss in got.items()}
    cov = {arm: statistics.median(s["coverage"] for s in ss) for arm, ss in got.items()}
    print(f"scheduling, {runs} pairs of {seconds:.0f} s side by side: median execs "
          f"{med['default']:,.0f} default, {med['scaled']:,.0f} scaled by run time "
          f"({med['scaled'] / max(med['default'], 1):.2f}x); median coverage "
          f"{cov['default']:.0f} and {cov['scaled']:.0f}", flush=True)


def longest_gap(stats_csv: Path) -> float:
    """The longest stretch between two samples with the same execution count."""
    rows = [(float(r["elapsed"]), int(r["execs"])) for r in csv.DictReader(stats_csv.open())]
    gap, since = 0.0, None
    for (t0, e0), (t1, e1) in zip(rows, rows[1:]):
        if e1 == e0 and e1 > 0:
            since = t0 if since is None else since
            gap = max(gap, t1 - since)
        else:
            since = None
    return round(gap, 1)


def programs(threads: int, n: int, seed: int, exits: bool = True) -> list[bytes]:
    """Fuzz inputs of 64-op programs, tiny and mid sizes, 1..threads threads (thread_exit
    ops unless not ``exits``); byte 0's bit 7 (mixed mode: concurrent) random when
    threads > 1."""
    from harness.program import encode, random_program

    rng = random.Random(seed)
    sizes = [rng.randint(1, 1024) for _ in range(300)] + \
        [rng.randint(1025, 65536) for _ in range(100)]
    out = []
    for _ in range(n):
        t = rng.randint(1, threads)
        ops = OPS if exits else tuple(o for o in OPS if o != "thread_exit")
        data = bytearray(encode(random_program(rng, 64, t, sizes=sizes, ops=ops)))
        if threads > 1 and rng.random() < 0.5:
            data[0] |= 0x80
        out.append(bytes(data))
    return out


def rate(fn, inputs: list[bytes], seconds: float) -> float:
    for data in inputs[:20]:  # warm up: the pool's threads, the allocator's heaps
        fn(data)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(inputs[n % len(inputs)])
        n += 1
    return n / (time.perf_counter() - t0)


def child(kind: str, threads: int, seconds: float, runs: int, exits: bool) -> list[float]:
    """In a child process: execs/s of one figure, ``runs`` times."""
    inputs = programs(threads, 500, 1234 + threads, exits)
    if kind == "target":
        import runpy

        t = runpy.run_path(str(ROOT / "fuzz" / "fuzz_target.py"), run_name="bench")
        fn = t["test_one_input"]
    else:
        from harness.binding import load, run_program

        lib = load(os.environ["HAKMEM_BENCH_LIB"])

        def fn(data: bytes) -> None:
            v = run_program(lib, data, "lockstep")
            if v.status != "pass":
                raise SystemExit(v.describe())
    return [rate(fn, inputs, seconds) for _ in range(runs)]


def in_child(env: dict[str, str], kind: str, threads: int, seconds: float,
             runs: int, exits: bool = True) -> list[float]:
    env = {**env, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, __file__, "--child", kind, "--threads", str(threads),
                        "--seconds", str(seconds), "--runs", str(runs)]
                       + ([] if exits else ["--no-exits"]), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=seconds * runs + 600)
    if r.returncode:
        raise SystemExit(f"{kind} child failed:\n{r.stdout}{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def fuzz_env(tmp: Path, threads: int) -> dict[str, str]:
    """The environment the campaign gives its fuzz target (asan-cov, runtimes preloaded)."""
    from harness.campaign_options import parse
    from harness.fuzz import setup

    c = setup(parse(["--build", "asan", "--threads", str(threads),
                     "--campaigns", str(tmp / "env"), "--regressions", str(tmp / "env")]))
    return dict(c.env)


def foreign() -> list[str]:
    for path in ("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",):
        if Path(path).exists():
            return ["--target", path, "--prefix", "mi_"]
    return ["--target", "libc.so.6", "--prefix", ""]


def show(label: str, rates: list[float], goal: int) -> None:
    med = statistics.median(rates)
    print(f"{label:76} {med:9,.0f} execs/s (median of {len(rates)}: "
          f"{min(rates):,.0f}-{max(rates):,.0f}; target {goal:,})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="fuzzing time per campaign")
    p.add_argument("--runs", type=int, default=5, help="repeats of each in-process figure")
    p.add_argument("--only", default=",".join(KINDS), help=f"some of {','.join(KINDS)}")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--no-exits", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.seconds, args.runs,
                               not args.no_exits)))
        return 0
    kinds = args.only.split(",")
    short = max(1.0, args.seconds / 6)
    print(f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    with tempfile.TemporaryDirectory(prefix="campaign-bench-") as t:
        tmp = Path(t)
        if "release" in kinds:
            from harness.build import build

            b = build("release")
            env = {**b.env(), "HAKMEM_BENCH_LIB": str(b.lib)}
            for exits, note in ((True, ""), (False, ", no thread_exit")):
                show(f"release run_program in-process, 64 ops, 1 thread, tiny+mid{note}",
                     in_child(env, "release", 1, short, args.runs, exits), 50_000)
        if "target" in kinds:
            for exits, note in ((True, ""), (False, ", no thread_exit")):
                for threads, goal in ((1, 20_000), (4, 5_000)):
                    label = "1 thread" if threads == 1 else "1-4 threads, mixed modes"
                    show(f"asan target in-process, 64 ops, {label}, tiny+mid{note}",
                         in_child(fuzz_env(tmp, threads), "target", threads, short,
                                  args.runs, exits), goal)
        if "campaign" in kinds:
            for label, extra, goal in (("README command", [], 10_000),
                                       ("--threads 1", ["--threads", "1"], 20_000),
                                       ("--threads 4", ["--threads", "4"], 5_000),
                                       ("black-box " + foreign()[1].rsplit("/", 1)[-1],
                                        foreign(), 10_000)):
                s = campaign(tmp, label.replace(" ", "_").replace("/", "_"), args.seconds,
                             *extra)
                print(f"asan campaign, {label:30} {s['execs_per_s']:9,} execs/s "
                      f"(target {goal:,}; {s['execs']} execs in {s['elapsed']} s; longest "
                      f"gap with no execution {s['longest_gap_s']} s; coverage "
                      f"{s['coverage']}, corpus {s['corpus']}, native coverage "
                      f"{s['native_coverage']}, {s['crash_files']} crash files, "
                      f"{s.get('fuzzer_starts', 1)} libFuzzer starts"
                      + (f", then fork mode: {s['fork_fallback']}" if s.get("fork_fallback")
                         else "") + ")", flush=True)
        if "scheduling" in kinds:
            scheduling(tmp, args.seconds, args.runs)
        if "crash" in kinds:
            s = campaign(tmp, "overlap", min(args.seconds, 30), "--target", "fixture:overlap")
            times = s["crash_to_regression_s"]
            if times:
                reg = json.loads(Path(s["regressions"][0]).read_text())
                print(f"crash -> regression written (fixture overlap): {min(times):.1f} s "
                      f"(minimized {reg['original_ops']} -> {reg['minimized_ops']} ops)")
            else:
                print("crash -> regression: no crash found in the time given")
    return 0


if __name__ == "__main__":
    sys.exit(main())
