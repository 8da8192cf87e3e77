"""The ClusterFuzzLite / OSS-Fuzz build (.clusterfuzzlite/build.sh), run natively.

Docker and the base-builder images are not available on these machines, so the tests do
what the image's compile step does: set the OSS-Fuzz variables by hand, run build.sh into
a temporary $OUT, then run the fuzzers there the way the fleet does (the wrapper script,
with the options and seed corpus it finds next to it). build.sh runs once per test
session per configuration (clean, seeded bug), shared by the xdist workers through a lock.

Measured on a 2-core VM: the library compiles in about 7 s, each PyInstaller bundle takes
35-50 s, so the clean build (two targets) takes about 100 s and the seeded-bug build (one
target) about 40 s.
"""

from __future__ import annotations

import configparser
import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness import PROJECT_ROOT
from tests.runtime.probe import build_probe, fork_amid_malloc

BUILD_SH = PROJECT_ROOT / ".clusterfuzzlite" / "build.sh"
MODES = ("lockstep", "concurrent")
FUZZERS = tuple(f"hakmem_{m}_fuzzer" for m in MODES)
#: The seeded bug of the detection test: a counter the batch refill forgets; the fuzzer
#: finds it from an empty corpus within 60-120 executions (measured three times with
#: -seed=1: the custom mutator keeps the count from being exactly repeatable).
#: The test grants it FIND_RUNS executions, not seconds, so a loaded machine only slows it.
SEEDED_BUG = "missing_used_add"
FIND_RUNS = 20_000

#: What the base-builder image's compile step hands build.sh for SANITIZER=address,
#: FUZZING_ENGINE=libfuzzer, FUZZING_LANGUAGE=python: the base CFLAGS, then
#: SANITIZER_FLAGS_address, COVERAGE_FLAGS, and the python-only -fno-sanitize list
#: (oss-fuzz infra/base-images/base-builder/{Dockerfile,compile}).
OSS_FUZZ_CFLAGS = (
    "-O1 -fno-omit-frame-pointer -gline-tables-only "
    "-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION "
    "-fsanitize=address -fsanitize-address-use-after-scope "
    "-fsanitize=fuzzer-no-link "
    "-fno-sanitize=function,leak,vptr,"
)
OSS_FUZZ_VARS = ("SRC", "OUT", "WORK", "CC", "CXX", "CFLAGS", "SANITIZER",
                 "LIB_FUZZING_ENGINE", "FUZZING_LANGUAGE")


def oss_fuzz_env(base: Path, **extra: str) -> dict[str, str]:
    """The environment of the compile step, with $OUT and $WORK under ``base``."""
    env = {k: v for k, v in os.environ.items()
           if k not in OSS_FUZZ_VARS and not k.startswith("HAKMEM_")}
    (base / "out").mkdir(parents=True, exist_ok=True)
    (base / "work").mkdir(parents=True, exist_ok=True)
    env.update(
        SRC=str(base),
        OUT=str(base / "out"),
        WORK=str(base / "work"),
        CC="clang-19",
        CXX="clang++-19",
        CFLAGS=OSS_FUZZ_CFLAGS,
        SANITIZER="address",
        LIB_FUZZING_ENGINE="-fsanitize=fuzzer",
        FUZZING_LANGUAGE="python",
        FUZZING_ENGINE="libfuzzer",
    )
    env.update(extra)
    return env


def run_build(base: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BUILD_SH)], cwd=PROJECT_ROOT,
                          env=oss_fuzz_env(base, **extra), capture_output=True, text=True,
                          timeout=900)


def _shared_build(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str,
                  **extra: str) -> Path:
    """$OUT of one build.sh run, built by the first xdist worker that needs it and reused
    by the others (their basetemps share a parent); a failed build fails every user with
    its log, and is not retried by each worker."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent
    base = root / f"cfl-{name}"
    marker = root / f"cfl-{name}.json"
    with open(root / f"cfl-{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            shutil.rmtree(base, ignore_errors=True)
            proc = run_build(base, **extra)
            marker.write_text(json.dumps({"rc": proc.returncode,
                                          "log": proc.stdout + proc.stderr}))
    result = json.loads(marker.read_text())
    if result["rc"] != 0:
        pytest.fail(f"build.sh ({name}) failed with exit {result['rc']}:\n{result['log'][-4000:]}")
    return base / "out"


@pytest.fixture(scope="session")
def out_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    return _shared_build(tmp_path_factory, worker_id, "address")


@pytest.fixture(scope="session")
def injected_out_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    # One target is enough to prove the seeded bug reaches the bundle; it halves the cost.
    return _shared_build(tmp_path_factory, worker_id, SEEDED_BUG, HAKMEM_INJECT=SEEDED_BUG,
                         HAKMEM_FUZZERS="lockstep")


def libfuzzer_flags(out: Path, fuzzer: str) -> list[str]:
    """The [libfuzzer] section of <fuzzer>.options as flags, as ClusterFuzz passes them
    (dict resolved relative to $OUT)."""
    cp = configparser.ConfigParser()
    cp.read(out / f"{fuzzer}.options")
    flags = []
    for key, value in cp["libfuzzer"].items():
        if key == "dict":
            value = str(out / value)
        flags.append(f"-{key}={value}")
    return flags


def run_fuzzer(out: Path, fuzzer: str, *args: str, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run([str(out / fuzzer), *libfuzzer_flags(out, fuzzer), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- bad input


def test_each_missing_oss_fuzz_variable_is_named(tmp_path: Path) -> None:
    for var in OSS_FUZZ_VARS:
        env = oss_fuzz_env(tmp_path)
        del env[var]
        proc = subprocess.run(["bash", str(BUILD_SH)], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (var, proc.stderr)
        assert f"${var} is not set" in proc.stderr, proc.stderr
    assert not any((tmp_path / "out").iterdir()), "a refused build wrote to $OUT"


@pytest.mark.parametrize("extra, message", [
    ({"HAKMEM_INJECT": "no_such_bug"}, "the catalogue has: "),
    ({"SANITIZER": "thread"}, "Python targets support address, undefined and coverage"),
    ({"FUZZING_LANGUAGE": "c++"}, "atheris (python) targets"),
    ({"HAKMEM_FUZZERS": "scheduled"}, "no target for mode 'scheduled'"),
])
def test_bad_configuration_is_refused_before_building(tmp_path: Path, extra: dict[str, str],
                                                      message: str) -> None:
    proc = run_build(tmp_path, **extra)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    if "HAKMEM_INJECT" in extra:  # the message lists the real catalogue
        assert SEEDED_BUG in proc.stderr


def test_a_library_without_coverage_instrumentation_is_refused(tmp_path: Path) -> None:
    # Without fuzzer-no-link the fuzzer would run blind on the fleet and nobody would see it.
    cflags = OSS_FUZZ_CFLAGS.replace("-fsanitize=fuzzer-no-link", "")
    proc = run_build(tmp_path, CFLAGS=cflags, HAKMEM_FUZZERS="lockstep")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no coverage counters" in proc.stderr
    assert not list((tmp_path / "out").glob("hakmem_*")), "a refused build shipped a target"


def test_a_compile_error_stops_the_build(tmp_path: Path) -> None:
    proc = run_build(tmp_path, CFLAGS=OSS_FUZZ_CFLAGS + " -include /nonexistent/hakmem.h",
                     HAKMEM_FUZZERS="lockstep")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "compiling the allocator and executor failed" in proc.stderr, proc.stderr
    assert not list((tmp_path / "out").iterdir()), "a failed build went on"


# --------------------------------------------------------------------------- the build


def _fuzz_targets(out: Path) -> set[str]:
    """Files of $OUT that ClusterFuzz takes for fuzz targets (oss-fuzz infra/utils.py,
    is_fuzz_target_local): executable regular files with no extension (or .exe) whose
    name ends in _fuzzer or which contain LLVMFuzzerTestOneInput."""
    found = set()
    for p in out.iterdir():
        stem, ext = os.path.splitext(p.name)
        if ext not in ("", ".exe") or not p.is_file() or not os.access(p, os.X_OK):
            continue
        if stem.endswith("_fuzzer") or b"LLVMFuzzerTestOneInput" in p.read_bytes():
            found.add(p.name)
    return found


def test_out_holds_what_the_engines_expect(out_dir: Path) -> None:
    assert _fuzz_targets(out_dir) == set(FUZZERS)
    # The wrapper preloads these from its own directory.
    assert (out_dir / "hakmem_asan_with_fuzzer.so").is_file()
    assert (out_dir / "libhakmem_mutator.so").is_file()
    seeds = sorted(p.name for p in (PROJECT_ROOT / "fuzz" / "seeds").glob("*.bin"))
    assert seeds, "fuzz/seeds is empty"
    for fuzzer in FUZZERS:
        pkg = out_dir / f"{fuzzer}.pkg"
        assert pkg.is_file()
        # Executable bit off, as compile_python_fuzzer leaves it: the wrapper is the target.
        assert not pkg.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        with zipfile.ZipFile(out_dir / f"{fuzzer}_seed_corpus.zip") as zf:
            assert sorted(zf.namelist()) == seeds  # at the top level, where ClusterFuzz unpacks
            for name in seeds:
                assert zf.read(name) == (PROJECT_ROOT / "fuzz" / "seeds" / name).read_bytes()
        assert (out_dir / f"{fuzzer}.dict").read_bytes() == \
            (PROJECT_ROOT / "fuzz" / "hakmem.dict").read_bytes()
        cp = configparser.ConfigParser()
        cp.read(out_dir / f"{fuzzer}.options")
        assert cp["libfuzzer"]["dict"] == f"{fuzzer}.dict"
        assert int(cp["libfuzzer"]["max_len"]) == 1 + 8 * 64
        assert int(cp["libfuzzer"]["rss_limit_mb"]) >= 4096  # as harness.fuzz runs it
        assert cp["asan"]["detect_leaks"] == "0"


@pytest.mark.parametrize("fuzzer", FUZZERS)
def test_fuzzer_runs_with_native_coverage_of_the_allocator(out_dir: Path, fuzzer: str,
                                                           tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    with zipfile.ZipFile(out_dir / f"{fuzzer}_seed_corpus.zip") as zf:
        zf.extractall(corpus)
    seeds = len(list(corpus.iterdir()))
    # a count of runs, not a time budget: the seed corpus's loop and fork programs take
    # a loaded machine seconds to replay, and a test must not depend on the machine's speed
    proc = run_fuzzer(out_dir, fuzzer, "-runs=300", "-seed=1", "-print_final_stats=1",
                      f"-artifact_prefix={tmp_path}/", str(corpus))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    # libFuzzer from the preloaded hakmem_asan_with_fuzzer.so, not atheris's second copy.
    assert "Using preloaded libfuzzer" in log, log[-4000:]
    m = re.search(r"Loaded 1 modules\s+\((\d+) inline 8-bit counters\)", log)
    assert m and int(m.group(1)) > 0, f"no native coverage of libhakmem.so:\n{log[-4000:]}"
    assert "found LLVMFuzzerCustomMutator" in log, "the custom mutator was not loaded"
    assert re.search(rf"INFO:\s+{seeds} files found", log), "the seed corpus was not read"
    execs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", log).group(1))
    added = int(re.search(r"stat::new_units_added:\s+(\d+)", log).group(1))
    assert execs >= 300 and added > 0, log[-2000:]
    # The one instrumented module is the bundled libhakmem.so: libFuzzer counts exactly the
    # counters its __sancov_cntrs section holds (one byte each).
    assert int(m.group(1)) == sancov_counters(out_dir.parent / "work" / "hakmem-lib" /
                                              "libhakmem.so")


def test_the_packaged_asan_runtime_keeps_fork_children_able_to_allocate(
        out_dir: Path, tmp_path: Path) -> None:
    # the fork op's child must not inherit an ASan allocator lock (tests/test_fuzz_runtime.py
    # shows the probe firing on atheris's runtime, which build.sh no longer ships)
    probe = build_probe(tmp_path)
    runtime = out_dir / "hakmem_asan_with_fuzzer.so"
    assert fork_amid_malloc(probe, runtime, 200, 5000) == "no child hung in 200 forks"


def sancov_counters(lib: Path) -> int:
    out = subprocess.run(["objdump", "-h", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"__sancov_cntrs\s+([0-9a-f]+)", out)
    assert m, f"{lib} has no __sancov_cntrs section"
    return int(m.group(1), 16)


def test_fuzzer_finds_a_seeded_bug_and_the_clean_build_passes_its_input(
        injected_out_dir: Path, out_dir: Path, tmp_path: Path) -> None:
    fuzzer = "hakmem_lockstep_fuzzer"
    assert _fuzz_targets(injected_out_dir) == {fuzzer}
    corpus = tmp_path / "corpus"  # empty: the fuzzer, not a seed, has to find it
    corpus.mkdir()
    proc = run_fuzzer(injected_out_dir, fuzzer, f"-runs={FIND_RUNS}", "-seed=1",
                      f"-artifact_prefix={tmp_path}/", str(corpus), timeout=1800)
    log = proc.stdout + proc.stderr
    crashes = list(tmp_path.glob("crash-*"))
    assert proc.returncode != 0 and crashes, \
        f"{SEEDED_BUG} not found in {FIND_RUNS} runs:\n{log[-4000:]}"
    # the bug (a batch's blocks never counted used) breaks the counters at a barrier, or
    # the heap walk's identities right after a collect op: whichever the fuzzer reaches first
    found = re.search(r"CheckFailed: check (\w+):", log)
    assert found and found.group(1) in ("counters", "heap_check"), log[-4000:]
    # The crash is the seeded bug's, not the target's: the clean build passes the same input.
    replay = run_fuzzer(out_dir, fuzzer, str(crashes[0]))
    assert replay.returncode == 0, (replay.stdout + replay.stderr)[-4000:]
    # A crash file from the fleet is an op program as it is (fixed mode, no normalisation):
    # the local harness replays it on the same seeded build with the same verdict.
    local = subprocess.run([sys.executable, "-m", "harness.run", str(crashes[0]), "--build",
                            "asan", "--inject", SEEDED_BUG, "--mode", "lockstep"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert local.returncode == 1 and f"outcome: {found.group(1)}" in local.stdout, \
        local.stdout + local.stderr
