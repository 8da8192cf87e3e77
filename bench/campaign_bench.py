"""Campaign throughput: ``python bench/campaign_bench.py [--seconds S]``.

Runs short ``python -m harness.fuzz --build asan`` campaigns (64-op programs, native
coverage through the asan-cov build) in a scratch folder and prints:

* execs/s with 1-thread programs (``--threads 1``) and with up to 4 threads (``--threads 4``),
  hakmem as the target;
* time from a crash input being written to its minimized regression file being written
  (fixture ``overlap``, whose bug every campaign finds in seconds).

Nothing is written to the real regressions/ or campaigns/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def campaign(tmp: Path, name: str, seconds: float, *args: str) -> dict:
    d = tmp / name
    cmd = [sys.executable, "-m", "harness.fuzz", "--build", "asan", "--max-ops", "64",
           "--max-time", str(seconds), "--seed", "1", "--no-progress",
           "--campaigns", str(d / "campaigns"), "--regressions", str(d / "regs"), *args]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 600)
    return json.loads(next((d / "campaigns").glob("*/runs/*/summary.json")).read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="fuzzing time per campaign")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="campaign-bench-") as t:
        tmp = Path(t)
        rows = []
        for label, extra in (("1 thread", ["--threads", "1"]), ("4 threads", ["--threads", "4"])):
            s = campaign(tmp, label.replace(" ", ""), args.seconds, *extra)
            rows.append((label, s))
            print(f"asan campaign, 64-op programs, {label:9}: {s['execs_per_s']:6} execs/s "
                  f"({s['execs']} execs in {s['elapsed']} s, coverage {s['coverage']}, "
                  f"corpus {s['corpus']}, native coverage {s['native_coverage']}, "
                  f"{s['crash_files']} crash files, {s['distinct']} distinct)", flush=True)
        s = campaign(tmp, "overlap", args.seconds, "--target", "fixture:overlap")
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
