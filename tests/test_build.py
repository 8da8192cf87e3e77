"""Tests of the build system (harness.build, harness.runtime, sanitizer_builds/*.toml).

The rebuild machinery is exercised on a scratch tree (a fake allocator of two files),
so these tests never touch the project's sources or its build outputs, except the
last group, which builds the real allocator once per variant.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from harness import PROJECT_ROOT
from harness import build as hb
from harness import inject, toolchain, variants, verify
from harness.errors import BuildError, UsageError
from harness.runtime import SanitizerRuntime, parse_options, resolve_runtime

CC = os.environ.get("HAKMEM_CC", "clang-19")

# --------------------------------------------------------------------------- scratch tree

FAKE_ALLOC = r"""
#include <stddef.h>
#include <string.h>
#include "inject.h"
#define API __attribute__((visibility("default")))
#ifndef HAK_VARIANT_NAME
#define HAK_VARIANT_NAME "unknown"
#endif
static _Alignas(16) char arena[1 << 16];
static size_t top;
API void *hak_malloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (top + n > sizeof arena) return NULL;
    void *p = arena + top; top += n; return p;
}
API void hak_free(void *p) { (void)p; }
API void *hak_calloc(size_t a, size_t b) {
    void *p = hak_malloc(a * b);
    if (p) memset(p, 0, a * b);
    return p;
}
API void *hak_realloc(void *p, size_t n) { (void)p; return hak_malloc(n); }
API void *hak_aligned_alloc(size_t a, size_t n) { (void)a; return hak_malloc(n); }
API size_t hak_usable_size(const void *p) { return p ? 16 : 0; }
API int hak_block_info(const void *p, void *out, unsigned f) {
    (void)p; (void)f; memset(out, 0, 8); return 0;
}
API void hak_counters_snapshot(void *out) { *(volatile long *)out = 0; }
API int hak_heap_check(void *r) { *(volatile int *)r = 1; return 1; }
API int hak_heap_check_collected(void *r) { *(volatile int *)r = 1; return 1; }
API void hak_flush_thread(void) {}
API void hak_fail_os_maps(unsigned long a, unsigned long c) { (void)a; (void)c; }
API unsigned long hak_os_refusals(void) { return 0; }
API const char *hak_build_variant(void) { return HAK_VARIANT_NAME; }
API const char *hak_injected_bug(void) { return HAK_INJECT_NAME; }
"""

FAKE_PRELOAD = r"""
#include <stddef.h>
#define API __attribute__((visibility("default")))
void *hak_malloc(size_t); void hak_free(void *); void *hak_calloc(size_t, size_t);
void *hak_realloc(void *, size_t); void *hak_aligned_alloc(size_t, size_t);
size_t hak_usable_size(const void *);
API void *malloc(size_t n) { return hak_malloc(n); }
API void free(void *p) { hak_free(p); }
API void *calloc(size_t a, size_t b) { return hak_calloc(a, b); }
API void *realloc(void *p, size_t n) { return hak_realloc(p, n); }
API int posix_memalign(void **o, size_t a, size_t n) { *o = hak_aligned_alloc(a, n); return 0; }
API void *aligned_alloc(size_t a, size_t n) { return hak_aligned_alloc(a, n); }
API void *memalign(size_t a, size_t n) { return hak_aligned_alloc(a, n); }
API size_t malloc_usable_size(void *p) { return hak_usable_size(p); }
"""

FAKE_INJECT = """\
/* Catalogue of the scratch tree. */
#ifndef FAKE_INJECT_H
#define FAKE_INJECT_H

/* demo_bug: a seeded bug that does nothing.
 * Second line of its documentation. */
#ifndef HAK_INJECT_DEMO_BUG
#define HAK_INJECT_DEMO_BUG 0
#endif

// other_bug: documented with line comments.
#define HAK_INJECT_OTHER_BUG 0

#ifndef HAK_INJECT_NAME
#define HAK_INJECT_NAME ""
#endif
#endif
"""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A project tree with the real variant definitions and a fake two-file allocator."""
    root = tmp_path / "tree"
    (root / "sanitizer_builds").mkdir(parents=True)
    for toml in (PROJECT_ROOT / "sanitizer_builds").glob("*.toml"):
        shutil.copy(toml, root / "sanitizer_builds" / toml.name)
    for sub in ("include", "alloc", "preload"):
        (root / "src_c" / sub).mkdir(parents=True)
    (root / "src_c" / "include" / "hakmem.h").write_text("/* fake */\n")
    (root / "src_c" / "alloc" / "fake.c").write_text(FAKE_ALLOC)
    (root / "src_c" / "alloc" / "inject.h").write_text(FAKE_INJECT)
    (root / "src_c" / "preload" / "preload.c").write_text(FAKE_PRELOAD)
    return root


def _mtimes(b: hb.Build) -> dict[str, int]:
    files = [b.lib, b.preload_lib, b.dir / hb.STAMP_NAME, *sorted((b.dir / "obj").rglob("*.o"))]
    return {str(p): p.stat().st_mtime_ns for p in files}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.build", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _cc_shared(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"{name}.so"
    subprocess.run([CC, "-shared", "-fPIC", *flags, "-o", str(out), str(src)], check=True)
    return out


# --------------------------------------------------------------------------- CLI


def test_cli_unknown_variant_exits_2_and_lists_valid_ones():
    proc = _cli("nosuchvariant")
    assert proc.returncode == 2, proc.stderr
    assert "unknown build variant 'nosuchvariant'" in proc.stderr
    for name in ("release", "debug", "asan", "tsan", "ubsan"):
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_inject_exits_2_and_shows_catalogue():
    proc = _cli("release", "--inject", "no_such_bug_xyz")
    assert proc.returncode == 2, proc.stderr
    assert "unknown injected bug 'no_such_bug_xyz'" in proc.stderr
    assert "inject.h" in proc.stderr
    for name in inject.inject_catalogue():
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_without_variant_exits_2():
    proc = _cli()
    assert proc.returncode == 2
    assert "no variant given" in proc.stderr


def test_cli_missing_compiler_exits_2_with_install_hint():
    env = dict(os.environ, HAKMEM_CC="/nonexistent/clang-nope")
    proc = _cli("release", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "apt-get install clang-19 libclang-rt-19-dev" in proc.stderr


def test_cli_help_and_list():
    proc = _cli("--help")
    assert proc.returncode == 0
    for word in ("--inject", "--force", "--list", "VARIANT"):
        assert word in proc.stdout
    proc = _cli("--list")
    assert proc.returncode == 0, proc.stderr
    for name in variants.VARIANTS:
        assert name in proc.stdout


# --------------------------------------------------------------------------- definitions


def test_variant_definitions():
    assert variants.VARIANTS == ("release", "debug", "asan", "tsan", "ubsan", "asan-sched")
    assert [n for n in variants.VARIANTS if variants.load_variant(n).scheduled] == ["asan-sched"]
    expected = {
        "release": ("", None, ["-O2", "-DNDEBUG"]),
        "debug": ("", None, ["-O1", "-g", "-DHAK_DEBUG=1"]),
        "asan": ("__asan_", "ASAN_OPTIONS", ["-fsanitize=address", "-fno-omit-frame-pointer"]),
        "tsan": ("__tsan_", "TSAN_OPTIONS", ["-fsanitize=thread"]),
        "ubsan": ("__ubsan_", "UBSAN_OPTIONS", ["-fno-sanitize-recover=undefined"]),
        "asan-sched": ("__asan_", "ASAN_OPTIONS", ["-fsanitize=address", "-DHAK_SCHED=1"]),
    }
    for name, (prefix, opt_var, flags) in expected.items():
        spec = variants.load_variant(name)
        assert spec.instrumentation_prefix == prefix
        cmd = hb.compile_flags(spec, None)
        for flag in flags:
            assert flag in cmd, (name, flag)
        for flag in ("-std=c11", "-D_GNU_SOURCE", "-fPIC", "-pthread", "-fvisibility=hidden"):
            assert flag in cmd
        assert f'-DHAK_VARIANT_NAME="{name}"' in cmd
        if opt_var is None:
            assert not spec.runtime_library and not spec.runtime_options
        else:
            assert list(spec.runtime_options) == [opt_var]
            runtime = resolve_runtime(CC, spec.runtime_library, spec.runtime_options)
            assert runtime.library is not None and runtime.library.is_file()
    asan = parse_options(variants.load_variant("asan").runtime_options["ASAN_OPTIONS"])
    assert asan["detect_leaks"] == "0" and asan["halt_on_error"] == "1"
    tsan = parse_options(variants.load_variant("tsan").runtime_options["TSAN_OPTIONS"])
    assert tsan["exitcode"] == "66" and tsan["report_signal_unsafe"] == "0"


def test_missing_runtime_names_the_package():
    with pytest.raises(UsageError, match="apt-get install libclang-rt-19-dev"):
        resolve_runtime(CC, "libclang_rt.nosuch-x86_64.so", {})


def test_runtime_env_puts_runtime_first_and_keeps_user_options():
    rt = SanitizerRuntime(Path("/rt/asan.so"), {"ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1"})
    env = rt.env({"LD_PRELOAD": "/x/other.so", "ASAN_OPTIONS": "detect_leaks=1:verbosity=1"})
    assert env["LD_PRELOAD"].split() == ["/rt/asan.so", "/x/other.so"]
    opts = parse_options(env["ASAN_OPTIONS"])
    assert opts == {"detect_leaks": "0", "verbosity": "1", "halt_on_error": "1"}
    assert SanitizerRuntime().env({"A": "b"}) == {"A": "b"}


def test_inject_catalogue_parses_names_and_docs(scratch: Path):
    docs = inject.inject_docs(scratch)
    assert list(docs) == ["demo_bug", "other_bug"]
    assert docs["demo_bug"].startswith("demo_bug: a seeded bug that does nothing.")
    assert "Second line" in docs["demo_bug"]
    assert docs["other_bug"] == "other_bug: documented with line comments."
    (scratch / "src_c" / "alloc" / "inject.h").unlink()
    assert inject.inject_catalogue(scratch) == []
    with pytest.raises(UsageError, match=r"catalogue .* has: \(empty\)"):
        hb.build("release", "demo_bug", root=scratch)


# --------------------------------------------------------------------------- rebuild logic


def test_build_reused_when_nothing_changed(scratch: Path):
    first = hb.build("release", root=scratch)
    assert first.rebuilt
    assert first.dir == scratch / "sanitizer_builds" / "release"
    assert first.lib.name == "libhakmem.so" and first.lib.is_file()
    assert first.preload_lib.name == "libhakmem_preload.so" and first.preload_lib.is_file()
    stamp = json.loads((first.dir / hb.STAMP_NAME).read_text())
    assert stamp["stamp"] == first.stamp
    before = _mtimes(first)
    second = hb.build("release", root=scratch)
    assert not second.rebuilt
    assert second.stamp == first.stamp
    assert _mtimes(second) == before


def test_rebuilt_when_a_source_or_header_changes(scratch: Path):
    first = hb.build("release", root=scratch)
    before = _mtimes(first)
    (scratch / "src_c" / "include" / "hakmem.h").write_text("/* fake, edited */\n")
    second = hb.build("release", root=scratch)
    assert second.rebuilt and second.stamp != first.stamp
    after = _mtimes(second)
    assert all(after[p] != before[p] for p in before if p.endswith(".o"))


def test_rebuilt_when_a_flag_changes(scratch: Path):
    first = hb.build("release", root=scratch)
    toml = scratch / "sanitizer_builds" / "release.toml"
    toml.write_text(toml.read_text().replace('cflags = ["-O2", "-g"]', 'cflags = ["-O1", "-g"]'))
    second = hb.build("release", root=scratch)
    assert second.rebuilt and second.stamp != first.stamp
    assert "-O1" in json.loads((second.dir / hb.STAMP_NAME).read_text())["cflags"]


def test_rebuilt_when_the_compiler_version_changes(scratch: Path, monkeypatch):
    first = hb.build("release", root=scratch)
    real = toolchain.compiler_version
    monkeypatch.setattr(hb, "compiler_version", lambda cc: real(cc) + "patched\n")
    second = hb.build("release", root=scratch)
    assert second.rebuilt and second.stamp != first.stamp


def test_rebuilt_when_the_library_was_tampered_with(scratch: Path):
    first = hb.build("release", root=scratch)
    with first.lib.open("ab") as f:
        f.write(b"\0")
    assert hb.build("release", root=scratch).rebuilt
    assert hb.build("release", force=True, root=scratch).rebuilt


def test_inject_builds_into_its_own_dir_and_reports_itself(scratch: Path):
    clean = hb.build("release", root=scratch)
    bugged = hb.build("release", "DEMO-BUG", root=scratch)
    assert bugged.inject == "demo_bug"
    assert bugged.dir == scratch / "sanitizer_builds" / "release+demo_bug"
    assert bugged.stamp != clean.stamp
    cflags = json.loads((bugged.dir / hb.STAMP_NAME).read_text())["cflags"]
    assert "-DHAK_INJECT_DEMO_BUG=1" in cflags and '-DHAK_INJECT_NAME="demo_bug"' in cflags
    assert not hb.build("release", root=scratch).rebuilt  # the clean build is untouched
    with pytest.raises(UsageError, match="demo_bug, other_bug"):
        hb.build("release", "nope", root=scratch)


def test_unguarded_catalogue_entry_fails_instead_of_building_a_clean_library(scratch: Path):
    # inject.h defines HAK_INJECT_OTHER_BUG without #ifndef: -D...=1 would be overridden.
    with pytest.raises(BuildError, match="HAK_INJECT_OTHER_BUG.*redefined|redefined.*OTHER_BUG"):
        hb.build("release", "other_bug", root=scratch)
    assert not (scratch / "sanitizer_builds" / "release+other_bug" / "libhakmem.so").exists()


def test_compile_error_names_the_file_and_leaves_no_library(scratch: Path):
    hb.build("release", root=scratch)
    (scratch / "src_c" / "alloc" / "broken.c").write_text("int f(void) { return undeclared; }\n")
    with pytest.raises(BuildError) as info:
        hb.build("release", root=scratch)
    msg = str(info.value)
    assert "src_c/alloc/broken.c" in msg and "undeclared" in msg
    out = scratch / "sanitizer_builds" / "release"
    assert not (out / "libhakmem.so").exists()
    assert not (out / "libhakmem_preload.so").exists()
    assert not (out / hb.STAMP_NAME).exists()


def test_failed_verification_leaves_no_library(scratch: Path):
    src = scratch / "src_c" / "alloc" / "fake.c"
    src.write_text(src.read_text().replace("API void hak_flush_thread", "void hak_flush_thread"))
    with pytest.raises(BuildError, match="does not export: hak_flush_thread"):
        hb.build("release", root=scratch)
    out = scratch / "sanitizer_builds" / "release"
    assert sorted(p.name for p in out.glob("*.so*")) == []
    assert not (out / hb.STAMP_NAME).exists()


def test_concurrent_builds_compile_once(scratch: Path):
    results: list[hb.Build] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(hb.build("release", root=scratch))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(b.rebuilt for b in results) == [False, False, True]
    assert len({b.stamp for b in results}) == 1


def test_sanitized_scratch_build_and_env(scratch: Path):
    b = hb.build("asan", root=scratch)
    env = b.env({"PATH": "/usr/bin"})
    assert env["LD_PRELOAD"].split()[0].endswith("libclang_rt.asan-x86_64.so")
    assert "detect_leaks=0" in env["ASAN_OPTIONS"]
    assert env["PATH"] == "/usr/bin"
    release = hb.build("release", root=scratch)
    assert release.env({"X": "1"}) == {"X": "1"}


# --------------------------------------------------------------------------- verifier


def _release() -> tuple[variants.VariantSpec, SanitizerRuntime]:
    return variants.load_variant("release"), SanitizerRuntime()


def test_verifier_rejects_a_library_that_exports_nothing(tmp_path: Path):
    lib = _cc_shared(tmp_path, "empty", "static int x;\n")
    spec, rt = _release()
    with pytest.raises(BuildError, match="does not export: hak_malloc, hak_free"):
        verify.verify(lib, None, spec, None, rt)


def test_verifier_rejects_a_dropin_that_calls_libc_malloc(tmp_path: Path, scratch: Path):
    lib = hb.build("release", root=scratch).lib
    spec, rt = _release()
    # A "drop-in" that forwards to glibc: it imports malloc instead of defining it.
    glibc = _cc_shared(
        tmp_path,
        "glibc_dropin",
        "#include <stdlib.h>\n"
        + FAKE_PRELOAD.replace("API void *malloc(size_t n) { return hak_malloc(n); }", "").replace(
            "hak_malloc(", "malloc("
        ),
    )
    with pytest.raises(BuildError, match="does not export: malloc"):
        verify.verify(lib, glibc, spec, None, rt)
    # Exports the whole family but still reaches libc's allocator through valloc.
    leaky = _cc_shared(
        tmp_path,
        "leaky_dropin",
        "void *valloc(unsigned long);\n"
        + FAKE_PRELOAD
        + "API void *page(size_t n) { return valloc(n); }\n",
    )
    with pytest.raises(BuildError, match="imports valloc: the drop-in would call libc"):
        verify.verify(lib, leaky, spec, None, rt)


def test_verifier_checks_instrumentation(tmp_path: Path):
    plain = _cc_shared(tmp_path, "plain", FAKE_ALLOC, f"-I{_inject_dir(tmp_path)}")
    asan = variants.load_variant("asan")
    rt = resolve_runtime(CC, asan.runtime_library, asan.runtime_options)
    with pytest.raises(BuildError, match="no undefined __asan_"):
        verify.verify(plain, None, asan, None, rt)
    instrumented = _cc_shared(
        tmp_path, "inst", FAKE_ALLOC, "-fsanitize=address", f"-I{_inject_dir(tmp_path)}"
    )
    spec, rt0 = _release()
    with pytest.raises(BuildError, match="imports sanitizer symbols: __asan_"):
        verify.verify(instrumented, None, spec, None, rt0)


def test_verifier_checks_identity(tmp_path: Path):
    inc = _inject_dir(tmp_path)
    wrong = _cc_shared(tmp_path, "wrong", FAKE_ALLOC, f"-I{inc}", '-DHAK_VARIANT_NAME="asan"')
    spec, rt = _release()
    with pytest.raises(
        BuildError, match=r"hak_build_variant\(\) returned 'asan', expected 'release'"
    ):
        verify.verify(wrong, None, spec, None, rt)
    right = _cc_shared(tmp_path, "right", FAKE_ALLOC, f"-I{inc}", '-DHAK_VARIANT_NAME="release"')
    with pytest.raises(BuildError, match=r"hak_injected_bug\(\) returned '', expected 'demo_bug'"):
        verify.verify(right, None, spec, "demo_bug", rt)
    assert verify.verify(right, None, spec, None, rt)


def _inject_dir(tmp_path: Path) -> Path:
    inc = tmp_path / "inc"
    inc.mkdir(exist_ok=True)
    (inc / "inject.h").write_text(FAKE_INJECT)
    return inc


# --------------------------------------------------------------------------- the real allocator

HAVE_ALLOCATOR = any((PROJECT_ROOT / "src_c" / "alloc").glob("*.c"))

_SMOKE = textwrap.dedent(
    """
    import ctypes, sys
    lib = ctypes.CDLL(sys.argv[1])
    lib.hak_build_variant.restype = ctypes.c_char_p
    lib.hak_malloc.restype = ctypes.c_void_p
    lib.hak_malloc.argtypes = [ctypes.c_size_t]
    lib.hak_free.argtypes = [ctypes.c_void_p]
    p = lib.hak_malloc(100)
    assert p and p % 16 == 0, p
    ctypes.memset(p, 0xAB, 100)
    lib.hak_free(p)
    print(lib.hak_build_variant().decode())
    """
)


@pytest.mark.skipif(not HAVE_ALLOCATOR, reason="src_c/alloc has no .c files yet")
@pytest.mark.parametrize("variant", variants.VARIANTS)
def test_real_variant_builds_verifies_and_loads(built, variant: str):
    b = built(variant)
    assert b.variant == variant and b.inject is None
    assert b.dir == PROJECT_ROOT / "sanitizer_builds" / variant
    assert b.lib.is_file() and b.preload_lib.is_file()
    again = hb.build(variant)
    assert not again.rebuilt and again.stamp == b.stamp
    proc = subprocess.run(
        [sys.executable, "-c", _SMOKE, str(b.lib)],
        env=b.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == variant


def _calls_coverage(disassembly: str, function: str) -> bool:
    body = disassembly.split(f"<{function}>:\n", 1)[1].split("\n\n", 1)[0]
    return "__sanitizer_cov" in body


def test_coverage_twin_leaves_the_checkers_uninstrumented(built):
    """fuzz/coverage_ignore.txt: the heap walk and the executor's handoffs carry no coverage
    callbacks in a -cov build; the allocator's paths do."""
    lib = built("asan-cov").lib
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    for checker in ("walk_chain", "hak_heap_check", "hx_wb_quiescent", "hx_turn_wait"):
        assert not _calls_coverage(dis, checker), f"{checker} is coverage-instrumented"
    for target in ("hak_malloc", "hak_free", "hak_remote_drain"):
        assert _calls_coverage(dis, target), f"{target} lost its coverage instrumentation"
