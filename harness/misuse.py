"""Misuse reports: the debug build names each misuse of the API (a double free, a foreign
or interior pointer, a never-allocated block, a remote-free list that loops) with its
address and aborts; the other builds absorb it.

Each case is a few calls through the cffi binding, run in a child process (an abort ends
it), with the report the debug build must print for it. The control case is valid, so a
child that survives it shows the reports come from the misuse. The suite's tests and the
mutation tool's fast tests (on a debug build of each mutant) both run them.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from harness.build import Build

__all__ = ["CASES", "MisuseRun", "run_case"]

_PRELUDE = """
import sys, threading
from harness.allocator import Allocator
a = Allocator.open(sys.argv[1]); lib, ffi = a.lib, a.ffi
"""

#: name -> (code, the report the debug build must print; None: a valid control)
CASES: dict[str, tuple[str, str | None]] = {
    "double_free": ("p = lib.hak_malloc(64); lib.hak_free(p); lib.hak_free(p)", "double free"),
    "foreign_pointer": ("buf = ffi.new('char[64]'); lib.hak_free(buf)",
                        "free of a pointer hakmem does not own"),
    "foreign_realloc": ("buf = ffi.new('char[64]'); lib.hak_realloc(buf, 100)",
                        "realloc of a pointer hakmem does not own"),
    "interior_pointer": ("p = lib.hak_malloc(64); lib.hak_free(ffi.cast('char *', p) + 16)",
                         "free of a pointer inside a block"),
    # a block of the slab beyond what its refills carved (a slab of 64 B blocks holds
    # 1,024; the first refill carves a cache's worth)
    "never_allocated": ("p = lib.hak_malloc(64); lib.hak_free(ffi.cast('char *', p) + 64 * 900)",
                        "free of a never-allocated block"),
    # a block freed twice by a thread that does not own it: its remote list loops, which
    # the owner's drain (its flush) finds
    "remote_double_free": (
        "p = lib.hak_malloc(64); done = threading.Event()\n"
        "def other():\n    lib.hak_free(p); lib.hak_free(p); done.set()\n"
        "threading.Thread(target=other).start(); done.wait(); lib.hak_flush_thread()",
        "remote-free list longer than its slab (double free)"),
    "control": ("p = lib.hak_malloc(64); q = lib.hak_realloc(p, 100); lib.hak_free(q)", None),
}


@dataclasses.dataclass(frozen=True)
class MisuseRun:
    """One case's child process, and the report it was to print."""

    proc: subprocess.CompletedProcess[str]
    report: str | None

    @property
    def reported(self) -> bool:
        """The child printed the case's report with an address and did not survive it."""
        return (self.report is not None and "survived" not in self.proc.stdout
                and f"hakmem: {self.report} at 0x" in self.proc.stderr)

    @property
    def survived(self) -> bool:
        return self.proc.returncode == 0 and "survived" in self.proc.stdout


def run_case(build: Build, case: str, timeout: float = 120.0) -> MisuseRun:
    """Runs ``case`` of :data:`CASES` against ``build`` in a child process."""
    code, report = CASES[case]
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code + "\nprint('survived')",
                           str(build.lib)], env=build.env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return MisuseRun(proc, report)
