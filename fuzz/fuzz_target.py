#!/usr/bin/env python3
"""The atheris fuzz target: one libFuzzer input = one op program in binary form.

Started by ``python -m harness.fuzz`` (never by hand, though it can be: see below). It is
an executable file because libFuzzer's ``-fork``/``-minimize_crash`` re-execute argv[0].
Configuration comes from the environment (set by harness.fuzz), so that every re-executed
job sees the same target:

    HAKMEM_FUZZ_LIB      libhakmem.so holding the executor (a coverage build when possible)
    HAKMEM_FUZZ_MODE     lockstep | concurrent | mixed (mixed: bit 7 of byte 0 picks)
    HAKMEM_FUZZ_THREADS  at most this many program threads (byte 0 is folded), 0 = any
    HAKMEM_FUZZ_TARGET   optional foreign allocator (black-box), with HAKMEM_FUZZ_PREFIX
    HAKMEM_FUZZ_WHITEBOX 1 (default) or 0
    HAKMEM_FUZZ_LIFELINE a descriptor that reads EOF when the campaign driver is gone
    HAKMEM_FUZZ_EXECS    an 8-byte file counting the inputs run (in-process campaigns: the
                         driver's live count; libFuzzer prints one only at new coverage
                         and at powers of two)

A failed check raises :class:`CheckFailed` (libFuzzer records a crash input); sanitizer
reports and signals are caught by libFuzzer directly. The library is dlopen()ed before
``atheris.Setup`` so that its inline 8-bit counters register as native coverage. Half of
the mutations act on whole op records (fuzz/mutator.c, preloaded by harness.fuzz), half
are libFuzzer's own.
"""

import mmap
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import atheris  # noqa: E402

from harness.binding import Runner, load  # noqa: E402
from harness.libfuzzer import EXECS_ENV, LIFELINE_ENV  # noqa: E402
from harness.program import from_fuzz_input  # noqa: E402
from harness.target import Target  # noqa: E402


class CheckFailed(Exception):
    """A black-box or white-box check fired (the message is the verdict)."""


LIB = load(os.environ["HAKMEM_FUZZ_LIB"])
MODE = os.environ.get("HAKMEM_FUZZ_MODE", "lockstep")
THREADS = int(os.environ.get("HAKMEM_FUZZ_THREADS", "0") or 0)
_PATH = os.environ.get("HAKMEM_FUZZ_TARGET") or None
TARGET = Target(Path(_PATH), os.environ.get("HAKMEM_FUZZ_PREFIX", "")) if _PATH else Target()
WHITEBOX = os.environ.get("HAKMEM_FUZZ_WHITEBOX", "1") == "1"
#: a schedule-controlled build: every concurrent input runs under the scheduler
SCHEDULED = bool(LIB.lib.hakx_sched_supported()) and not _PATH
RUN = Runner(LIB, TARGET, whitebox=WHITEBOX)


def _exec_counter() -> memoryview:
    """The shared execution count (a private one when no driver reads it)."""
    path = os.environ.get(EXECS_ENV)
    if not path:
        return memoryview(bytearray(8)).cast("Q")
    with open(path, "r+b") as f:
        return memoryview(mmap.mmap(f.fileno(), 8)).cast("Q")


EXECS = _exec_counter()


def test_one_input(data: bytes) -> None:
    data, mode = from_fuzz_input(data, MODE, THREADS, SCHEDULED)
    v = RUN.failure(data, mode)
    EXECS[0] += 1
    if v is not None and v.status == "fail":
        raise CheckFailed(f"check {v.check}: {v.message}")


def _end_with_the_driver(fd: int) -> None:
    """Kills this process's session (libFuzzer and all its jobs) once the driver is gone:
    a driver killed by SIGKILL cannot stop them itself."""
    while os.read(fd, 1):
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> None:
    if LIFELINE_ENV in os.environ:
        threading.Thread(target=_end_with_the_driver, args=(int(os.environ[LIFELINE_ENV]),),
                         daemon=True).start()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
