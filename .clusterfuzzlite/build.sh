#!/bin/bash -eu
# Builds hakmem's fuzzers for OSS-Fuzz and ClusterFuzzLite (the same file serves both:
# OSS-Fuzz's projects/hakmem/build.sh is a copy of this one).
#
# The compile step of the base-builder image runs it with these variables set:
#   SRC OUT WORK            source root, output folder (what the fleet ships), scratch space
#   CC CFLAGS               the compiler and its flags: sanitizer (-fsanitize=address or the
#                           undefined set) plus -fsanitize=fuzzer-no-link for coverage
#   CXX                     the C++ driver of the same clang (links the ASan runtime below)
#   SANITIZER               address | undefined | coverage (Python targets support no other)
#   LIB_FUZZING_ENGINE      how a native target would link libFuzzer; atheris brings its own
#                           libFuzzer, so this is only checked to be set
#   FUZZING_LANGUAGE        python
# Natively (no Docker), set them by hand; tests/test_clusterfuzzlite.py does exactly that.
#
# Optional:
#   HAKMEM_INJECT=NAME      compile seeded bug NAME of src_c/alloc/inject.h into the allocator
#   HAKMEM_FUZZERS="lockstep concurrent"   which targets to build (default: all)
#   HAKMEM_SRC=DIR          the source tree (default: the current directory if it holds
#                           src_c/, else $SRC/hakmem)
#
# For each mode M it writes to $OUT, where the engines look for them:
#   hakmem_M_fuzzer                     the wrapper script the fleet runs (an executable whose
#                                       name ends in _fuzzer is how targets are found)
#   hakmem_M_fuzzer.pkg                 the PyInstaller bundle: Python, atheris, cffi, the
#                                       harness's binding and the instrumented libhakmem.so
#   hakmem_M_fuzzer_seed_corpus.zip     fuzz/seeds/*.bin
#   hakmem_M_fuzzer.dict                fuzz/hakmem.dict
#   hakmem_M_fuzzer.options             libFuzzer and sanitizer options
# and, shared by the targets: libhakmem_mutator.so (fuzz/mutator.c, the record-aware custom
# mutator the wrapper preloads), the sanitizer runtime with libFuzzer inside (address:
# hakmem_asan_with_fuzzer.so, merged here from $CXX's archives; undefined:
# sanitizer_with_fuzzer.so, put there by the compile step on the fleet, copied from atheris
# natively) and llvm-symbolizer (from PATH when the compile step has not put it there).
# The shebang's -eu is lost when the script is run as `bash build.sh` (the tests do; the
# compile step runs `bash -eux`): state it here so that both stop at the first failure.
set -euo pipefail

die() {
    echo "build.sh: error: $*" >&2
    exit 2
}

# --- the OSS-Fuzz environment: say which variable is missing rather than fail later on an
# empty path (an unset $OUT would make "$OUT/x" a file at the root).
for var in SRC OUT WORK CC CXX CFLAGS SANITIZER LIB_FUZZING_ENGINE FUZZING_LANGUAGE; do
    if [ -z "${!var+set}" ]; then
        die "\$$var is not set. The OSS-Fuzz compile step provides it; to run natively set" \
            "SRC, OUT, WORK, CC, CXX, CFLAGS, SANITIZER, LIB_FUZZING_ENGINE and FUZZING_LANGUAGE" \
            "yourself (see the README, \"ClusterFuzzLite and OSS-Fuzz\")."
    fi
done
[ "$FUZZING_LANGUAGE" = python ] || die "FUZZING_LANGUAGE=$FUZZING_LANGUAGE: hakmem's targets are atheris (python) targets"
if [ -n "${FUZZING_ENGINE:-}" ] && [ "$FUZZING_ENGINE" != libfuzzer ]; then
    die "FUZZING_ENGINE=$FUZZING_ENGINE: Python targets run on libFuzzer only"
fi
case "$SANITIZER" in
    address | undefined | coverage) ;;
    *) die "SANITIZER=$SANITIZER: Python targets support address, undefined and coverage" ;;
esac
for var in OUT WORK; do
    [ -d "${!var}" ] || die "\$$var=${!var} is not a directory"
done
command -v "${CC%% *}" >/dev/null || die "CC=$CC: compiler not found"

if [ -n "${HAKMEM_SRC:-}" ]; then
    root=$HAKMEM_SRC
elif [ -d src_c/alloc ]; then
    root=$PWD
else
    root=$SRC/hakmem
fi
[ -d "$root/src_c/alloc" ] || die "no hakmem source tree at $root (no src_c/alloc): set HAKMEM_SRC, or run from the source root"
root=$(cd "$root" && pwd)
here=$root/.clusterfuzzlite

modes=${HAKMEM_FUZZERS:-lockstep concurrent}
for m in $modes; do
    [ -f "$here/hakmem_${m}_fuzzer.py" ] || die "HAKMEM_FUZZERS: no target for mode '$m' (have: lockstep concurrent)"
done

# --- the seeded bug, if any: validated against the catalogue so a typo is an error, not a
# clean build that silently finds nothing.
inject_flags=()
if [ -n "${HAKMEM_INJECT:-}" ]; then
    inject=$(printf '%s' "$HAKMEM_INJECT" | tr 'A-Z-' 'a-z_')
    upper=$(printf '%s' "$inject" | tr 'a-z' 'A-Z')
    if ! grep -Eq "^[[:space:]]*#[[:space:]]*define[[:space:]]+HAK_INJECT_${upper}[[:space:]]+0\b" \
        "$root/src_c/alloc/inject.h"; then
        known=$(sed -nE 's/^[[:space:]]*#[[:space:]]*define[[:space:]]+HAK_INJECT_([A-Z0-9_]+)[[:space:]]+0\b.*/\1/p' \
            "$root/src_c/alloc/inject.h" | grep -v '^NAME$' | tr 'A-Z' 'a-z' | tr '\n' ' ')
        die "HAKMEM_INJECT=$HAKMEM_INJECT: not in src_c/alloc/inject.h; the catalogue has: $known"
    fi
    inject_flags=("-DHAK_INJECT_${upper}=1" "-DHAK_INJECT_NAME=\"$inject\"")
fi

# --- the allocator and its executor, as one shared library, compiled with exactly the
# flags the compile step gives (CFLAGS is a word list by the compile step's convention).
# The fixed flags are harness/build.py's BASE_CFLAGS: the same code as every local variant.
started=$SECONDS
build=$WORK/hakmem-lib
rm -rf "$build"
mkdir -p "$build/obj"
# shellcheck disable=SC2086
read -r -a cflags <<<"$CFLAGS"
# OSS-Fuzz's undefined set includes unsigned-integer-overflow, recoverable and silenced at
# run time; the executor's pattern hash and the allocator's colouring wrap on purpose, so
# every op would still call the silenced handler (96 execs/s instead of hundreds). Off.
cflags+=(-fno-sanitize=unsigned-integer-overflow)
base=(-std=c11 -D_GNU_SOURCE -fPIC -pthread -fvisibility=hidden
      -I"$root/src_c/include" -I"$root/src_c/alloc"
      "-DHAK_VARIANT_NAME=\"oss-fuzz-$SANITIZER\"" "${inject_flags[@]}")
objs=()
pids=()
for src in "$root"/src_c/alloc/*.c "$root"/src_c/executor/*.c; do
    obj=$build/obj/$(basename "$(dirname "$src")")-$(basename "$src" .c).o
    objs+=("$obj")
    $CC "${cflags[@]}" "${base[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    # Two compiles at a time: these machines (and CI runners) have two cores.
    if [ ${#pids[@]} -ge 2 ]; then
        wait "${pids[0]}" || die "compiling the allocator and executor failed (the compiler said why above)"
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || die "compiling the allocator and executor failed (the compiler said why above)"
done
lib=$build/libhakmem.so
$CC "${cflags[@]}" -shared -fPIC -pthread -Wl,-Bsymbolic-functions \
    -Wl,-soname,libhakmem.so -o "$lib" "${objs[@]}"

# Verify before packaging: a library without the executor, or without the coverage
# instrumentation, would still "fuzz" (blind), and nobody would notice on the fleet.
# (Outputs are captured first: `cmd | grep -q` fails under pipefail when grep exits early.)
exports=$(nm -D --defined-only "$lib" | awk '{print $NF}')
for sym in hakx_run hak_malloc hak_free hak_heap_check hak_build_variant hak_injected_bug; do
    grep -qx "$sym" <<<"$exports" || die "$lib does not export $sym"
done
if [ "$SANITIZER" != coverage ]; then
    # -fsanitize=fuzzer-no-link puts the inline 8-bit counters in this section; atheris's
    # libFuzzer reports them at start-up as "Loaded 1 modules (N inline 8-bit counters)".
    sections=$(objdump -h "$lib")
    grep -q __sancov_cntrs <<<"$sections" ||
        die "$lib has no coverage counters: CFLAGS lacks -fsanitize=fuzzer-no-link (the compile step adds it for FUZZING_ENGINE=libfuzzer)"
fi
case "$SANITIZER" in
    address) prefix=__asan_ ;;
    undefined) prefix=__ubsan_ ;;
    *) prefix= ;;
esac
if [ -n "$prefix" ]; then
    imports=$(nm -D --undefined-only "$lib" | awk '{print $NF}')
    grep -q "^$prefix" <<<"$imports" ||
        die "$lib has no $prefix* imports: CFLAGS lacks the $SANITIZER sanitizer's flags"
fi
echo "build.sh: libhakmem.so ($SANITIZER${inject:+, injected $inject}) built and verified in $((SECONDS - started)) s"

# --- runtimes the wrapper preloads. ASan's is merged from the archives of the clang that
# compiled the library, not taken from atheris: atheris's asan_with_fuzzer.so (3.0.0)
# registers no fork handler, and a fork op's child then inherits an ASan allocator lock
# another thread held and hangs (a fork:hang that does not replay; see
# harness/merged_runtime.py). UBSan has no allocator, so atheris's copy serves: on the fleet
# the compile step has put it in $OUT as sanitizer_with_fuzzer.so; natively take it from
# atheris.
case "$SANITIZER" in
    address)
        runtime=hakmem_asan_with_fuzzer.so
        python3 "$root/harness/merged_runtime.py" --cxx "$CXX" "$OUT/$runtime" ||
            die "merging ASan's runtime with libFuzzer from $CXX's archives failed (said why above)"
        chmod -x "$OUT/$runtime" # not a fuzz target: OSS-Fuzz takes executables in $OUT for those
        ;;
    undefined)
        runtime=sanitizer_with_fuzzer.so
        if [ ! -f "$OUT/$runtime" ]; then
            site=$(python3 -c 'import atheris; print(atheris.path())') ||
                die "atheris is not installed for python3 (pip install atheris)"
            cp "$site/ubsan_with_fuzzer.so" "$OUT/$runtime"
        fi
        ;;
    *) runtime= ;;
esac
# (Debian's clang-19 brings it as llvm-symbolizer-19; the wrapper names llvm-symbolizer.)
if [ ! -e "$OUT/llvm-symbolizer" ]; then
    for s in llvm-symbolizer llvm-symbolizer-19; do
        if command -v "$s" >/dev/null; then
            cp "$(command -v "$s")" "$OUT/llvm-symbolizer"
            break
        fi
    done
fi

# The custom mutator is part of the engine, not code under test: built without $CFLAGS, so
# its own branches add no coverage counters (they would reward mutations, not inputs).
# Not executable: OSS-Fuzz takes executables in $OUT for fuzz targets.
${CC} -std=c11 -O2 -fPIC -shared -Wall -I"$root/src_c/executor" -o "$OUT/libhakmem_mutator.so" \
    "$root/fuzz/mutator.c" || die "compiling the custom mutator (fuzz/mutator.c) failed"
chmod -x "$OUT/libhakmem_mutator.so"

# --- one PyInstaller bundle and wrapper per target, as OSS-Fuzz's compile_python_fuzzer
# packages Python fuzzers (the bundle, its executable bit off, and a /bin/sh wrapper that
# preloads the sanitizer runtime); ours also preloads the custom mutator, which must be
# loaded when libFuzzer starts to be used.
python3 -c 'import PyInstaller' 2>/dev/null || die "PyInstaller is not installed for python3 (pip install pyinstaller)"
# PyInstaller refuses to start when the obsolete `typing` backport is installed (some
# machines carry it as another tool's dependency), although on Python 3 the standard
# library's typing comes first on sys.path and the backport is never imported: hide it
# from that one check, and only when the stdlib module is the one Python imports.
pyinstaller() {
    python3 - "$@" <<'PY'
import importlib.metadata as md
import os
import sys
import sysconfig
import typing

if os.path.dirname(typing.__file__) == sysconfig.get_paths()["stdlib"]:
    real = md.distribution

    def distribution(name):
        if name == "typing":
            raise md.PackageNotFoundError(name)
        return real(name)

    md.distribution = distribution
from PyInstaller.__main__ import run

sys.argv[0] = "pyinstaller"
run()
PY
}
max_len=$((1 + 8 * 64)) # harness.fuzz's default: at most 64 ops of 8 bytes after a header byte
# One function per target, run for all targets at once: PyInstaller is single-threaded
# and takes most of the build (30-50 s a bundle), and these machines have two cores.
package() {
    local m=$1 name=hakmem_${1}_fuzzer t0=$SECONDS work=$WORK/pyfuzz/hakmem_${1}_fuzzer
    rm -rf "$work"
    mkdir -p "$work"
    cp "$here/$name.py" "$work/$name.py"
    if [ "$SANITIZER" = coverage ]; then
        # Coverage builds measure the Python side the way compile_python_fuzzer does: the
        # entry script starts coverage and saves .coverage at exit.
        {
            echo 'import atexit, coverage'
            echo '_cov = coverage.Coverage(data_file=".coverage", cover_pylib=True)'
            echo '_cov.start()'
            echo 'atexit.register(lambda: (_cov.stop(), _cov.save()))'
            cat "$here/$name.py"
        } >"$work/$name.py"
    fi
    # --add-data: harness.cdefs reads the cffi declarations from the C headers at import.
    # --exclude-module: the harness's other modules import these lazily, and cffi's
    # out-of-line compiler pulls in setuptools; the target needs none of them (cffi's ABI
    # mode only dlopens). Leaving them out keeps the bundle, its build and every start-up
    # small.
    pyinstaller --noconfirm --log-level WARN --onefile --name "$name.pkg" \
        --distpath "$OUT" --workpath "$work/build" --specpath "$work" \
        --paths "$root" --paths "$here" \
        --hidden-import _cffi_backend \
        --exclude-module matplotlib --exclude-module numpy --exclude-module hypothesis \
        --exclude-module pytest --exclude-module tkinter \
        --exclude-module setuptools --exclude-module pkg_resources --exclude-module distutils \
        --exclude-module _distutils_hack --exclude-module jinja2 --exclude-module unittest \
        --exclude-module pydoc --exclude-module asyncio \
        --add-binary "$lib:." \
        --add-data "$root/src_c/include/hakmem.h:src_c/include" \
        --add-data "$root/src_c/include/hakmem_debug.h:src_c/include" \
        --add-data "$root/src_c/executor/hakx.h:src_c/executor" \
        "$work/$name.py"
    chmod -x "$OUT/$name.pkg"
    if [ "$SANITIZER" = coverage ] && [ -f /usr/local/bin/python_coverage_helper.py ]; then
        # The source files inside the bundle, for the coverage report (base-runner reads
        # <name>.pkg.deps.zip).
        rm -rf "$work/medio"
        python3 /usr/local/bin/python_coverage_helper.py "$work/build" "$work/medio"
        (cd "$work" && zip -qr "$OUT/$name.pkg.deps.zip" medio)
    fi

    # "LLVMFuzzerTestOneInput" below is how ClusterFuzz recognises a fuzz target it cannot
    # tell by name; the _fuzzer suffix already does here.
    cat >"$OUT/$name" <<EOF
#!/bin/sh
# LLVMFuzzerTestOneInput: hakmem $m-mode target (atheris, PyInstaller bundle $name.pkg).
this_dir=\$(dirname "\$0")
chmod +x "\$this_dir/$name.pkg"
LD_PRELOAD="${runtime:+\$this_dir/$runtime }\$this_dir/libhakmem_mutator.so" \\
ASAN_OPTIONS="\$ASAN_OPTIONS:symbolize=1:external_symbolizer_path=\$this_dir/llvm-symbolizer:detect_leaks=0" \\
UBSAN_OPTIONS="\$UBSAN_OPTIONS:symbolize=1:external_symbolizer_path=\$this_dir/llvm-symbolizer" \\
exec "\$this_dir/$name.pkg" "\$@"
EOF
    chmod +x "$OUT/$name"

    # Seeds at the top level of the zip, as ClusterFuzz unpacks them into the corpus.
    rm -f "$OUT/${name}_seed_corpus.zip"
    (cd "$root/fuzz/seeds" && python3 -m zipfile -c "$OUT/${name}_seed_corpus.zip" ./*.bin)
    cp "$root/fuzz/hakmem.dict" "$OUT/$name.dict"
    # rss_limit_mb as harness.fuzz sets it: the process grows with the corpus (784 MB after
    # 15k execs in 60 s natively), past libFuzzer's 2048 MB default in long runs.
    # detect_leaks=0: Python "leaks" at exit (RECIPES.md). allocator_may_return_null: the
    # executor asks for impossible sizes on purpose and expects NULL. Unsigned overflow is
    # how the allocator hashes and colours, never a bug: keep UBSan to real UB.
    cat >"$OUT/$name.options" <<EOF
[libfuzzer]
dict = $name.dict
max_len = $max_len
timeout = 25
rss_limit_mb = 4096

[asan]
detect_leaks = 0
allocator_may_return_null = 1
handle_abort = 1
dedup_token_length = 3

[ubsan]
silence_unsigned_overflow = 1
print_stacktrace = 1
EOF
    echo "build.sh: $name packaged in $((SECONDS - t0)) s"
}
pids=()
for m in $modes; do
    mkdir -p "$WORK/pyfuzz"
    package "$m" >"$WORK/pyfuzz/$m.log" 2>&1 &
    pids+=("$m:$!")
done
for entry in "${pids[@]}"; do
    m=${entry%%:*}
    if wait "${entry#*:}"; then
        grep "^build.sh:" "$WORK/pyfuzz/$m.log" || true
    else
        cat "$WORK/pyfuzz/$m.log" >&2
        die "packaging hakmem_${m}_fuzzer failed (log above)"
    fi
done
echo "build.sh: done in $((SECONDS - started)) s -> $OUT"
