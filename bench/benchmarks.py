"""The benchmark programs in bench/src: what each measures and how its work is scaled."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bench:
    name: str
    what: str
    scale: str  # the parameter that sets the amount of timed work
    quick: dict[str, int]  # parameters for --quick (small sizes)
    strace_n: int  # base value of `scale` for --strace (runs N and 4N)


BENCHES = [
    Bench("mixed", "ring of 4096, free random slot + malloc 16-1024 B", "steps",
          {"steps": 200_000}, 1_000_000),
    Bench("batch16", "100 x malloc(16) then 100 x free", "rounds",
          {"rounds": 10_000}, 50_000),
    Bench("fixed256", "malloc(256)/free pairs, one live block", "pairs",
          {"pairs": 500_000}, 2_000_000),
    Bench("mid", "ring of 1024, 8-32 KiB", "steps", {"steps": 50_000}, 200_000),
    Bench("large", "64 KiB-32 MiB log-uniform, 4 live", "steps", {"steps": 5_000}, 20_000),
    Bench("prodcons", "alloc on one thread, remote free on another (SPSC ring)", "blocks",
          {"blocks": 100_000}, 500_000),
    Bench("larson", "4 threads x 1024 slots, 8 generations hand arrays over", "steps",
          {"steps": 400_000}, 2_000_000),
]
BENCH_BY_NAME = {b.name: b for b in BENCHES}
STRACE_DEFAULT_BENCHES = ["mixed", "fixed256"]
