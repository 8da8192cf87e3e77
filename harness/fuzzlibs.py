"""What a fuzzing process preloads: libFuzzer where native coverage needs its own copy, and
the record-aware custom mutator (fuzz/mutator.c).

Native coverage means a coverage build (``<build>-cov``, harness.variants, compiled with
``fuzzer-no-link``) and a libFuzzer that is loaded before the sanitizer runtime resolves
coverage symbols (RECIPES.md):

* asan: ASan's runtime with libFuzzer linked in, one shared object that replaces the plain
  ASan runtime. It is merged here from clang's archives, the way atheris builds the
  ``asan_with_fuzzer.so`` it ships, because that copy (atheris 3.0.0) registers no fork
  handler: a fork made while another thread held one of ASan's allocator locks left the
  child that lock, and the child hung in its first allocation (``fork:hang`` crashes that
  did not replay). clang's runtime takes those locks around every fork;
* tsan: no merged runtime can be linked (the tsan archive uses static TLS), so libFuzzer is
  built as a shared object of its own from clang's ``libclang_rt.fuzzer_no_main`` archive
  and preloaded ahead of the TSan runtime. With the TSan runtime alone, libFuzzer runs
  blind: TSan provides the coverage callbacks and atheris warns that Python coverage is
  broken (a campaign then mutates one empty input for its whole budget).

The custom mutator goes last: libFuzzer binds its weak reference to
``LLVMFuzzerCustomMutator`` when it is loaded, which must find the symbol already there.
Every library here is built once per source version into ``sanitizer_builds/<name>/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from harness import PROJECT_ROOT
from harness.build import Build, output_dir
from harness.errors import BuildError, UsageError
from harness.toolchain import CLANG, CLANGXX, INSTALL_HINT
from harness.variants import COVERAGE_SUFFIX

MUTATOR_SRC = PROJECT_ROOT / "fuzz" / "mutator.c"
#: the executor's header, which holds the format's constants the mutator uses
HAKX_H = PROJECT_ROOT / "src_c" / "executor" / "hakx.h"
#: builds whose coverage twin (harness.variants) campaigns fuzz with native coverage, and
#: their sanitizer
NATIVE_COVERAGE = {"asan": "asan", "tsan": "tsan", "asan-sched": "asan"}


def _compiler(*names: str) -> str | None:
    return next((c for c in (os.environ.get("HAKMEM_CC"), *names) if c and shutil.which(c)),
                None)


def _output(name: str, digest: str) -> Path:
    """Where a library built once per content lives: sanitizer_builds/<name>/<name>-<digest>.so."""
    return output_dir(name) / f"{name}-{digest[:12]}.so"


def _link_once(name: str, digest: str, cmd: list[str]) -> Path:
    """Runs ``cmd + [-o, tmp]`` unless :func:`_output` exists."""
    out = _output(name, digest)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode:
        raise BuildError(f"building {out.name} failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


def mutator_lib() -> Path:
    """The custom mutator library (fuzz/mutator.c), built for its current source."""
    cc = _compiler(CLANG, "cc", "gcc")
    if cc is None:
        raise UsageError(f"no C compiler for fuzz/mutator.c: {INSTALL_HINT}")
    digest = hashlib.sha256(MUTATOR_SRC.read_bytes() + HAKX_H.read_bytes()).hexdigest()
    return _link_once("libhakmem_mutator", digest,
                      [cc, "-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Werror",
                       f"-I{HAKX_H.parent}", str(MUTATOR_SRC)])


def _runtime_archive(name: str) -> Path | None:
    """clang's ``libclang_rt.<name>-x86_64.a``, or None when clang++ or the archive is
    missing."""
    cxx = shutil.which(CLANGXX)
    if cxx is None:
        return None
    res = subprocess.run([cxx, "-print-resource-dir"], capture_output=True, text=True)
    archive = Path(res.stdout.strip()) / "lib" / "linux" / f"libclang_rt.{name}-x86_64.a"
    return archive if not res.returncode and archive.is_file() else None


def _shared_from_archives(name: str, archives: list[Path],
                          strip: tuple[Path, str] | None = None) -> Path:
    """The archives, whole, linked into one shared object, built once per their content.
    ``strip``: (one of the archives, an object of it left out)."""
    digest = hashlib.sha256(b"".join(a.read_bytes() for a in archives)).hexdigest()
    out = _output(name, digest)
    if out.is_file():  # before the copy stripping would make
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    copy = out.with_suffix(f".{os.getpid()}.a")
    parts = list(archives)
    try:
        if strip is not None:
            shutil.copyfile(strip[0], copy)
            proc = subprocess.run(["ar", "d", str(copy), strip[1]], capture_output=True,
                                  text=True)
            if proc.returncode:
                raise BuildError(f"removing {strip[1]} from {strip[0]} failed: "
                                 f"{proc.stderr.strip()}")
            parts[parts.index(strip[0])] = copy
        whole = ["-Wl,--whole-archive", *map(str, parts), "-Wl,--no-whole-archive"]
        return _link_once(name, digest, [CLANGXX, "-shared", *whole, "-lpthread", "-ldl"])
    finally:
        copy.unlink(missing_ok=True)


def libfuzzer_lib() -> Path | None:
    """libFuzzer as a shared object (from clang's fuzzer_no_main archive), or None when
    clang++ or the archive is missing."""
    archive = _runtime_archive("fuzzer_no_main")
    return None if archive is None else _shared_from_archives("libfuzzer_no_main", [archive])


def asan_fuzzer_lib() -> Path | None:
    """ASan's runtime and libFuzzer in one shared object, or None when clang++ or one of
    the archives is missing. ASan's preinit object is left out: a shared object cannot
    carry ``.preinit_array``, and a preloaded runtime is initialised first anyway."""
    fuzzer, asan, asan_cxx = (_runtime_archive(n)
                              for n in ("fuzzer_no_main", "asan", "asan_cxx"))
    if fuzzer is None or asan is None or asan_cxx is None:
        return None
    return _shared_from_archives("libasan_fuzzer", [fuzzer, asan, asan_cxx],
                                 strip=(asan, "asan_preinit.cpp.o"))


def native_runtime(build: str) -> tuple[str | None, Path | None, str]:
    """(coverage build, libFuzzer to preload, why not) for a build variant."""
    if build not in NATIVE_COVERAGE:
        return None, None, f"native coverage only for {', '.join(NATIVE_COVERAGE)}"
    cov = build + COVERAGE_SUFFIX
    asan = NATIVE_COVERAGE[build] == "asan"
    lf = asan_fuzzer_lib() if asan else libfuzzer_lib()
    if lf is None:
        what = "asan, asan_cxx and fuzzer_no_main" if asan else "fuzzer_no_main"
        return None, None, f"{CLANGXX} or clang's {what} archives not found ({INSTALL_HINT})"
    return cov, lf, ""


def fuzz_env(fuzz_build: Build, libfuzzer: Path | None) -> dict[str, str]:
    """The fuzzing process's environment: libFuzzer (replacing the plain ASan runtime, or
    ahead of the TSan one), the build's runtime and options, then the custom mutator."""
    env = fuzz_build.env()
    preload = [x for x in re.split(r"[:\s]+", env.get("LD_PRELOAD", "")) if x]
    if libfuzzer is not None:
        if fuzz_build.spec.instrumentation_prefix == "__asan_":
            preload = [x for x in preload if x != str(fuzz_build.runtime.library)]
        preload.insert(0, str(libfuzzer))
    env["LD_PRELOAD"] = " ".join([*preload, str(mutator_lib())])
    return env
