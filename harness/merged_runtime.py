"""clang's runtime archives merged into one shared object a fuzzing process preloads.

ASan's runtime with libFuzzer linked in is what a Python fuzz target needs: atheris finds
libFuzzer already loaded, and the allocator under test (compiled ``fuzzer-no-link``) finds
its coverage callbacks. atheris ships such an object (``asan_with_fuzzer.so``), but the
copy in atheris 3.0.0 registers no fork handler: a fork made while another thread held
one of ASan's allocator locks hands the child that lock, and the child hangs in its first
allocation (the executor's fork op then reports ``fork:hang`` for an input that does not
replay). clang's own runtime takes those locks around every fork, so the merge is made
here from the archives of the clang that compiled the target.

Standard library only: .clusterfuzzlite/build.sh runs this file as a script on the
OSS-Fuzz builder, where the harness's dependencies are not installed; harness.fuzzlibs
imports it for local campaigns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: the archives of ASan's runtime with libFuzzer, and the object left out of them: a
#: shared object cannot carry ASan's ``.preinit_array``, and a preloaded runtime is
#: initialised first anyway
ASAN_FUZZER = ("fuzzer_no_main", "asan", "asan_cxx")
ASAN_PREINIT = ("asan", "asan_preinit.cpp.o")


class MergeError(Exception):
    """An archive is missing or a tool failed (the message says which and why)."""


def runtime_archive(cxx: str, name: str) -> Path | None:
    """``libclang_rt.<name>-x86_64.a`` of the clang ``cxx``, or None when either is
    missing."""
    if shutil.which(cxx) is None:
        return None
    res = subprocess.run([cxx, "-print-resource-dir"], capture_output=True, text=True)
    archive = Path(res.stdout.strip()) / "lib" / "linux" / f"libclang_rt.{name}-x86_64.a"
    return archive if not res.returncode and archive.is_file() else None


def archives(cxx: str, names: tuple[str, ...]) -> list[Path]:
    """The archives ``names`` of ``cxx``; MergeError naming the first one missing."""
    found = []
    for name in names:
        archive = runtime_archive(cxx, name)
        if archive is None:
            raise MergeError(f"{cxx}: libclang_rt.{name}-x86_64.a not found (is {cxx} "
                             f"installed, with its compiler-rt runtimes?)")
        found.append(archive)
    return found


def merge(cxx: str, parts: list[Path], out: Path, strip: tuple[Path, str] | None = None
          ) -> Path:
    """Links ``parts``, whole, into the shared object ``out`` (written atomically).
    ``strip``: (one of the parts, an object of it left out)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        parts = list(parts)
        if strip is not None:
            copy = Path(tmp) / strip[0].name
            shutil.copyfile(strip[0], copy)
            proc = subprocess.run(["ar", "d", str(copy), strip[1]], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise MergeError(f"removing {strip[1]} from {strip[0]} failed: "
                                 f"{proc.stderr.strip()}")
            parts[parts.index(strip[0])] = copy
        linked = Path(tmp) / out.name
        cmd = [cxx, "-shared", "-Wl,--whole-archive", *map(str, parts),
               "-Wl,--no-whole-archive", "-lpthread", "-ldl", "-o", str(linked)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise MergeError(f"linking {out.name} failed: {' '.join(cmd)}\n"
                             f"{proc.stderr[-2000:]}")
        os.replace(linked, out)
    return out


def merge_asan_fuzzer(cxx: str, out: Path) -> Path:
    """ASan's runtime and libFuzzer of clang ``cxx`` as the one shared object ``out``."""
    parts = archives(cxx, ASAN_FUZZER)
    return merge(cxx, parts, out, strip=(parts[ASAN_FUZZER.index(ASAN_PREINIT[0])],
                                         ASAN_PREINIT[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="merged_runtime.py",
        description="Merge clang's ASan runtime and libFuzzer (fuzzer_no_main) into one "
                    "shared object to preload into an atheris fuzz target.")
    parser.add_argument("--cxx", required=True, help="the clang++ whose archives to merge")
    parser.add_argument("out", type=Path, help="the shared object to write")
    args = parser.parse_args(argv)
    try:
        merge_asan_fuzzer(args.cxx, args.out)
    except MergeError as exc:
        print(f"merged_runtime.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
