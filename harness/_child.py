"""Child process of harness.executor: runs one program and prints the verdict.

Reads one JSON request on stdin: {"lib", "program" (hex of the binary form), "mode",
"repeats", "whitebox", "hooks", "target", "prefix"}; prints ``HAKX-VERDICT <json>``
on stdout. A sanitizer report or a signal kills this process: the parent classifies it.
"""

from __future__ import annotations

import json
import sys

MARKER = "HAKX-VERDICT "


def main() -> int:
    req = json.loads(sys.stdin.read())
    from harness.binding import load, run_program

    lib = load(req["lib"])
    sys.stdout.write("HAKX-STARTED\n")
    sys.stdout.flush()
    v = run_program(
        lib,
        bytes.fromhex(req["program"]),
        req.get("mode", "lockstep"),
        req.get("target"),
        req.get("prefix"),
        whitebox=req.get("whitebox", True),
        repeats=req.get("repeats", 1),
        hooks=req.get("hooks"),
    )
    sys.stdout.write(MARKER + json.dumps(v.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
