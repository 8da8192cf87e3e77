"""What a fuzzing process preloads: libFuzzer where native coverage needs its own copy, and
the record-aware custom mutator (fuzz/mutator.c).

Native coverage means a coverage build (``<build>-cov``, harness.variants, compiled with
``fuzzer-no-link``) and a libFuzzer that is loaded before the sanitizer runtime resolves
coverage symbols (RECIPES.md):

* asan: ASan's runtime with libFuzzer linked in, one shared object that replaces the plain
  ASan runtime, merged from clang's archives by harness.merged_runtime (which says why
  atheris's own copy will not do);
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

from harness import PROJECT_ROOT, merged_runtime
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


def _shared_from_archives(name: str, names: tuple[str, ...],
                          strip: tuple[str, str] | None = None) -> Path | None:
    """clang's archives ``names``, whole, linked into one shared object, built once per
    their content; None when clang++ or one of the archives is missing. ``strip``: (one
    of ``names``, an object of it left out)."""
    try:
        parts = merged_runtime.archives(CLANGXX, names)
    except merged_runtime.MergeError:
        return None
    digest = hashlib.sha256(b"".join(a.read_bytes() for a in parts)).hexdigest()
    out = _output(name, digest)
    if out.is_file():
        return out
    stripped = None if strip is None else (parts[names.index(strip[0])], strip[1])
    try:
        return merged_runtime.merge(CLANGXX, parts, out, stripped)
    except merged_runtime.MergeError as exc:
        raise BuildError(str(exc)) from exc


def libfuzzer_lib() -> Path | None:
    """libFuzzer as a shared object (from clang's fuzzer_no_main archive), or None when
    clang++ or the archive is missing."""
    return _shared_from_archives("libfuzzer_no_main", ("fuzzer_no_main",))


def asan_fuzzer_lib() -> Path | None:
    """ASan's runtime and libFuzzer in one shared object (harness.merged_runtime), or
    None when clang++ or one of the archives is missing."""
    return _shared_from_archives("libasan_fuzzer", merged_runtime.ASAN_FUZZER,
                                 merged_runtime.ASAN_PREINIT)


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
