"""What a fuzzing process preloads: libFuzzer where native coverage needs its own copy, and
the record-aware custom mutator (fuzz/mutator.c).

Native coverage means a coverage build (``<build>-cov``, harness.variants, compiled with
``fuzzer-no-link``) and a libFuzzer that is loaded before the sanitizer runtime resolves
coverage symbols (RECIPES.md):

* asan: atheris ships ``asan_with_fuzzer.so``, ASan's runtime with libFuzzer linked in; it
  replaces the plain ASan runtime;
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

import atheris

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


def atheris_runtime(name: str) -> Path | None:
    """A runtime atheris ships at the top of site-packages (RECIPES.md), or None."""
    p = Path(atheris.path()) / name
    return p if p.is_file() else None


def _compiler(*names: str) -> str | None:
    return next((c for c in (os.environ.get("HAKMEM_CC"), *names) if c and shutil.which(c)),
                None)


def _link_once(name: str, digest: str, cmd: list[str]) -> Path:
    """Runs ``cmd + [-o, tmp]`` unless sanitizer_builds/<name>/<name>-<digest>.so exists."""
    out = output_dir(name) / f"{name}-{digest[:12]}.so"
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


def libfuzzer_lib() -> Path | None:
    """libFuzzer as a shared object (from clang's fuzzer_no_main archive), or None when
    clang++ or the archive is missing."""
    cxx = shutil.which(CLANGXX)
    if cxx is None:
        return None
    res = subprocess.run([cxx, "-print-resource-dir"], capture_output=True, text=True)
    archive = Path(res.stdout.strip()) / "lib" / "linux" / "libclang_rt.fuzzer_no_main-x86_64.a"
    if res.returncode or not archive.is_file():
        return None
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return _link_once("libfuzzer_no_main", digest,
                      [cxx, "-shared", "-Wl,--whole-archive", str(archive),
                       "-Wl,--no-whole-archive", "-lpthread", "-ldl"])


def native_runtime(build: str) -> tuple[str | None, Path | None, str]:
    """(coverage build, libFuzzer to preload, why not) for a build variant."""
    if build not in NATIVE_COVERAGE:
        return None, None, f"native coverage only for {', '.join(NATIVE_COVERAGE)}"
    cov = build + COVERAGE_SUFFIX
    asan = NATIVE_COVERAGE[build] == "asan"
    lf = atheris_runtime("asan_with_fuzzer.so") if asan else libfuzzer_lib()
    if lf is None:
        what = ("atheris's asan_with_fuzzer.so" if asan
                else f"{CLANGXX} and libclang_rt.fuzzer_no_main ({INSTALL_HINT})")
        return None, None, f"{what} not found"
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
