"""hakmem's atheris fuzz target as OSS-Fuzz and ClusterFuzzLite run it.

fuzz/fuzz_target.py is configured by environment variables that ``python -m harness.fuzz``
sets; on the fleet nothing sets them: the infrastructure runs ``$OUT/<fuzzer>`` (the
wrapper script written by build.sh) with libFuzzer flags only. So each fuzzer here has its
mode fixed by its entry script (hakmem_<mode>_fuzzer.py) and finds the instrumented
allocator inside its own PyInstaller bundle. Everything else is the same as a local
campaign: one input = one op program in binary form, the C executor runs it
(harness.binding.Runner, as fuzz/fuzz_target.py does), and a failed black-box or
white-box check raises, which libFuzzer records as a crash; sanitizer reports and signals
are caught by libFuzzer directly.

The input is passed through unchanged: with a fixed mode and no thread limit,
harness.program.from_fuzz_input is the identity, so a crash file from the fleet replays as it is
with ``python -m harness.run CRASH --mode <mode>``.
"""

import os
import sys

import atheris

from harness.binding import Runner, load

#: The library build.sh bundles (``--add-binary``): found next to the unpacked bundle.
LIB_NAME = "libhakmem.so"


class CheckFailed(Exception):
    """A black-box or white-box check fired (the message is the verdict)."""


def library_path() -> str:
    """libhakmem.so inside the PyInstaller bundle, or $HAKMEM_FUZZ_LIB outside one (a
    developer running an entry script straight from the source tree)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return os.path.join(bundle, LIB_NAME)
    path = os.environ.get("HAKMEM_FUZZ_LIB")
    if not path:
        sys.exit("hakmem fuzzer: not a PyInstaller bundle and HAKMEM_FUZZ_LIB is not set "
                 "(build with .clusterfuzzlite/build.sh, or point it at a libhakmem.so)")
    return path


def main(mode: str) -> None:
    # dlopen before atheris.Setup: libFuzzer registers the library's inline 8-bit counters
    # (native coverage of the allocator) only for modules loaded by then.
    run = Runner(load(library_path()))

    def test_one_input(data: bytes) -> None:
        v = run.failure(data, mode)
        if v is not None and v.status == "fail":
            # Same message as fuzz/fuzz_target.py: triage reads the check name from it.
            raise CheckFailed(f"check {v.check}: {v.message}")

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
