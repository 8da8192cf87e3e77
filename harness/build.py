"""Build hakmem variants: ``python -m harness.build VARIANT [--inject NAME] [--force] [--list]``.

A variant (harness.variants) lands in ``sanitizer_builds/<variant>/`` (``<variant>+<inject>/``
with a seeded bug, harness.inject) and holds two libraries:

* ``libhakmem.so``: ``src_c/alloc/*.c`` + ``src_c/executor/*.c``, loaded by the harness (cffi);
* ``libhakmem_preload.so``: ``src_c/alloc/*.c`` + ``src_c/preload/*.c``, the LD_PRELOAD drop-in.

A build is redone exactly when something it depends on changed: any file under ``src_c/``,
the variant definition, the injected bug, the compiler (path and ``--version``) or the
command lines. A stamp (``build.stamp``, JSON) records the hash of all of it and the hashes
of the libraries it verified (harness.verify); a build whose stamp or libraries do not match
is never reused. Libraries are linked under temporary names, verified, then renamed: a
failed build leaves no library behind. Concurrent builds of one output directory
(pytest-xdist workers) serialise on an flock and the later ones find the build up to date.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from harness import PROJECT_ROOT, cli
from harness.errors import BuildError, UsageError
from harness.inject import canonical_inject, inject_docs
from harness.runtime import SanitizerRuntime, resolve_runtime
from harness.toolchain import (
    compiler_name,
    compiler_version,
    resolve_compiler,
    runtime_package_for,
)
from harness.variants import VARIANTS, VariantSpec, defs_dir, load_variant
from harness.verify import verify

__all__ = ["Build", "LIB_NAME", "PRELOAD_NAME", "STAMP_NAME", "build", "compile_flags",
           "output_dir", "main"]

#: Bumped when the way a build is made or verified changes (invalidates every stamp).
BUILD_LOGIC_VERSION = 2

#: Flags every variant gets, before the variant's own.
BASE_CFLAGS: tuple[str, ...] = (
    "-std=c11",
    "-D_GNU_SOURCE",
    "-fPIC",
    "-pthread",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
    # An unguarded `#define HAK_INJECT_X 0` in inject.h would silently undo -DHAK_INJECT_X=1.
    "-Werror=macro-redefined",
)
#: -Bsymbolic-functions binds the library's own calls (malloc -> hak_malloc, executor ->
#: hak_*) directly instead of through the PLT: the hak_* names are exported, so without it
#: every drop-in malloc() paid an extra indirect jump.
BASE_LDFLAGS: tuple[str, ...] = ("-shared", "-fPIC", "-pthread", "-Wl,-Bsymbolic-functions")

LIB_NAME = "libhakmem.so"
PRELOAD_NAME = "libhakmem_preload.so"
STAMP_NAME = "build.stamp"
LOCK_NAME = ".lock"

Log = Callable[[str], None]


def output_dir(variant: str, inject: str | None = None, root: Path | None = None) -> Path:
    """Where ``build(variant, inject)`` puts its output (no validation, no build); also the
    home of other build products named like a variant (fixtures, fuzzing libraries)."""
    root = PROJECT_ROOT if root is None else Path(root)
    name = variant if inject is None else f"{variant}+{inject.lower().replace('-', '_')}"
    return defs_dir(root) / name


@dataclasses.dataclass(frozen=True, eq=False)
class Build:
    """A built, verified variant. ``lib`` is for cffi, ``preload_lib`` for LD_PRELOAD."""

    variant: str
    inject: str | None
    dir: Path
    lib: Path
    preload_lib: Path
    spec: VariantSpec
    runtime: SanitizerRuntime
    stamp: str  #: hash of everything the build depends on
    compiler: Path
    compiler_version: str  #: first line of ``<compiler> --version``
    rebuilt: bool  #: True if this call compiled it, False if it was up to date
    source: Path | None = None  #: the substituted source tree (``build(source=...)``), if any

    @property
    def name(self) -> str:
        """``variant`` or ``variant+inject``: the output folder's name."""
        return self.dir.name

    @property
    def scheduled(self) -> bool:
        """A schedule-controlled build: a program with a schedule runs its concurrent mode
        under the deterministic scheduler (src_c/executor/sched.c)."""
        return self.spec.scheduled

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child Python process that will dlopen :attr:`lib`: a copy of
        ``base`` (default os.environ) with the sanitizer runtime first in LD_PRELOAD and the
        variant's options (ASAN_OPTIONS, ...) set."""
        return self.runtime.env(base)


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class _Object:
    source: str  # relative to root
    obj: str  # relative to root
    group: str  # alloc | executor | preload


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Every command of one build and the stamp that hashes them with their inputs."""

    root: Path
    out: Path
    objects: list[_Object]
    cflags: list[str]
    compile: dict[_Object, list[str]]
    link: list[tuple[str, Path, list[str]]]  #: (final name, temporary path, command)
    manifest: dict[str, object]
    stamp: str

    @property
    def tag(self) -> str:
        return self.out.name


def _plan_objects(root: Path, out_rel: str) -> list[_Object]:
    objs = []
    for group in ("alloc", "executor", "preload"):
        for src in sorted((root / "src_c" / group).glob("*.c")):
            rel = src.relative_to(root).as_posix()
            objs.append(_Object(rel, f"{out_rel}/obj/{group}/{src.stem}.o", group))
    for group, what in (("alloc", "allocator"), ("preload", "drop-in")):
        if not any(o.group == group for o in objs):
            raise BuildError(f"no {what} sources: {root / 'src_c' / group}/*.c matches nothing")
    return objs


def compile_flags(spec: VariantSpec, inject: str | None) -> list[str]:
    """The compile flags of one variant (and seeded bug)."""
    flags = [*BASE_CFLAGS, *spec.cflags, *(f"-D{d}" for d in spec.defines)]
    flags.append(f'-DHAK_VARIANT_NAME="{spec.name}"')
    if inject is not None:
        flags += [f"-DHAK_INJECT_{inject.upper()}=1", f'-DHAK_INJECT_NAME="{inject}"']
    flags += ["-Isrc_c/include", "-Isrc_c/alloc"]
    return flags


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: folders of src_c/ that no library is built from (the C scenarios, compiled on their own
#: against a build): a change there rebuilds nothing
NOT_LIBRARY = ("scenarios",)


def _source_digests(src: Path) -> dict[str, str]:
    out = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) \
                and rel.parts[0] not in NOT_LIBRARY:
            out[str(rel)] = _sha256_file(p)
    return out


def _plan(root: Path, out: Path, spec: VariantSpec, inject: str | None, compiler: Path,
          runtime: SanitizerRuntime) -> _Plan:
    """``root`` holds the ``src_c/`` compiled (commands run there), ``out`` lies under it."""
    out_rel = out.relative_to(root).as_posix()
    objects = _plan_objects(root, out_rel)
    cflags = compile_flags(spec, inject)
    compile_cmds = {o: [str(compiler), *cflags, "-c", o.source, "-o", o.obj] for o in objects}
    ldflags = [*BASE_LDFLAGS, *spec.cflags, *spec.ldflags]
    link = []
    for name, groups in ((LIB_NAME, ("alloc", "executor")), (PRELOAD_NAME, ("alloc", "preload"))):
        tmp = out / f"{name}.tmp"
        objs = [o.obj for o in objects if o.group in groups]
        link.append((name, tmp, [str(compiler), *ldflags, f"-Wl,-soname,{name}", "-o",
                                 f"{out_rel}/{tmp.name}", *objs]))
    manifest = {
        "logic": BUILD_LOGIC_VERSION,
        "sources": _source_digests(root / "src_c"),
        "variant": spec.text,
        "inject": inject,
        "compiler": str(compiler),
        "compiler_version": compiler_version(str(compiler)),
        "runtime": str(runtime.library) if runtime.library else None,
        "compile": [compile_cmds[o] for o in objects],
        "link": [cmd for _, _, cmd in link],
    }
    stamp = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return _Plan(root, out, objects, cflags, compile_cmds, link, manifest, stamp)


# --------------------------------------------------------------------------- doing it


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _up_to_date(out: Path, stamp: str) -> bool:
    try:
        data = json.loads((out / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("stamp") != stamp:
        return False
    libs = data.get("libs")
    if not isinstance(libs, dict) or set(libs) != {LIB_NAME, PRELOAD_NAME}:
        return False
    return all((out / n).is_file() and _sha256_file(out / n) == d for n, d in libs.items())


def _jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)


def _compile(plan: _Plan, say: Log) -> None:
    """Compiles every object in parallel; BuildError shows the first failure's command."""
    for stale in (STAMP_NAME, LIB_NAME, PRELOAD_NAME, *(tmp.name for _, tmp, _ in plan.link)):
        (plan.out / stale).unlink(missing_ok=True)
    shutil.rmtree(plan.out / "obj", ignore_errors=True)
    for group in {o.group for o in plan.objects}:
        (plan.out / "obj" / group).mkdir(parents=True, exist_ok=True)
    jobs = min(_jobs(), len(plan.objects))
    say(f"{plan.tag}: compiling {len(plan.objects)} files with {plan.compile[plan.objects[0]][0]}"
        f" ({jobs} jobs)")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {o: pool.submit(_run, plan.compile[o], plan.root) for o in plan.objects}
        results = {o: f.result() for o, f in futures.items()}
    for o in plan.objects:
        if results[o].returncode == 0 and results[o].stderr.strip():
            say(f"{plan.tag}: warnings in {o.source}:\n{results[o].stderr.rstrip()}")
    failed = [o for o in plan.objects if results[o].returncode != 0]
    if failed:
        first = failed[0]
        also = ", ".join(o.source for o in failed[1:])
        others = f" (also failed: {also})" if also else ""
        raise BuildError(
            f"{plan.tag}: compiling {first.source} failed{others}\n"
            f"$ {' '.join(plan.compile[first])}\n{results[first].stderr.rstrip()}"
        )


def _link_and_verify(plan: _Plan, spec: VariantSpec, inject: str | None,
                     runtime: SanitizerRuntime, say: Log) -> dict[str, str]:
    """Links under temporary names, verifies, then renames; returns the libraries' hashes."""
    (lib_name, tmp_lib, _), (pre_name, tmp_pre, _) = plan.link
    try:
        for name, _, cmd in plan.link:
            proc = _run(cmd, plan.root)
            if proc.returncode != 0:
                raise BuildError(
                    f"{plan.tag}: linking {name} failed\n$ {' '.join(cmd)}\n{proc.stderr.rstrip()}"
                )
        say(f"{plan.tag}: linked {lib_name}, {pre_name}")
        notes = verify(tmp_lib, tmp_pre, spec, inject, runtime)
        say(f"{plan.tag}: verified: " + "; ".join(notes))
        libs = {lib_name: _sha256_file(tmp_lib), pre_name: _sha256_file(tmp_pre)}
        os.replace(tmp_lib, plan.out / lib_name)
        os.replace(tmp_pre, plan.out / pre_name)
        return libs
    finally:
        tmp_lib.unlink(missing_ok=True)
        tmp_pre.unlink(missing_ok=True)


def _write_stamp(plan: _Plan, spec: VariantSpec, inject: str | None, version_line: str,
                 libs: dict[str, str]) -> None:
    record = {
        "stamp": plan.stamp,
        "variant": spec.name,
        "inject": inject,
        "compiler": plan.manifest["compiler"],
        "compiler_version": version_line,
        "cflags": plan.cflags,
        "runtime": plan.manifest["runtime"],
        "runtime_options": dict(spec.runtime_options),
        "libs": libs,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    tmp = plan.out / f"{STAMP_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, plan.out / STAMP_NAME)


def build(
    variant: str,
    inject: str | None = None,
    force: bool = False,
    *,
    root: Path | None = None,
    log: Log | None = None,
    source: Path | None = None,
) -> Build:
    """Builds (or reuses) variant ``variant``, optionally with seeded bug ``inject``.

    Idempotent and cheap when up to date (hashes src_c/ and the two libraries);
    ``force`` rebuilds regardless. ``root`` is the source tree (default: this
    project; tests point it at a scratch tree). ``log`` receives one line per step
    (default: silent). ``source`` substitutes another source tree for ``<root>/src_c``
    (a folder named ``src_c``, e.g. a copy with one file mutated): the variant definitions
    still come from ``root``, and the build lands beside the tree, in
    ``<source>/../<variant>[+<inject>]/``, so the clean build is never touched.
    Raises UsageError (unknown variant/inject, missing tools)
    or BuildError (compile, link or verification failure).
    """
    root = (PROJECT_ROOT if root is None else Path(root)).resolve()
    say = log or (lambda _msg: None)
    spec = load_variant(variant, root)
    inject = canonical_inject(inject, root)
    compiler = resolve_compiler(compiler_name())
    version_line = compiler_version(str(compiler)).splitlines()[0]
    runtime = resolve_runtime(compiler, spec.runtime_library or None, spec.runtime_options,
                              runtime_package_for(compiler))
    if source is None:
        tree, out = root, output_dir(variant, inject, root)
    else:
        source = Path(source).resolve()
        if source.name != "src_c" or not (source / "alloc").is_dir():
            raise UsageError(f"build source {source}: expected a src_c/ tree (with alloc/)")
        tree = source.parent
        out = tree / output_dir(variant, inject, root).name
    with _locked(out):
        plan = _plan(tree, out, spec, inject, compiler, runtime)
        result = Build(variant=variant, inject=inject, dir=out, lib=out / LIB_NAME,
                       preload_lib=out / PRELOAD_NAME, spec=spec, runtime=runtime,
                       stamp=plan.stamp, compiler=compiler, compiler_version=version_line,
                       rebuilt=False, source=source)
        if not force and _up_to_date(out, plan.stamp):
            say(f"{plan.tag}: up to date -> {out}")
            return result
        started = time.monotonic()
        _compile(plan, say)
        libs = _link_and_verify(plan, spec, inject, runtime, say)
        _write_stamp(plan, spec, inject, version_line, libs)
        say(f"{plan.tag}: ok -> {out} ({time.monotonic() - started:.1f} s)")
        return dataclasses.replace(result, rebuilt=True)


# --------------------------------------------------------------------------- CLI


def compile_program(build: Build, source: Path, exe: Path, *extra: str,
                    link: bool = True) -> Path:
    """Compiles the C program ``source`` into ``exe`` with ``build``'s compiler and flags
    (and ``extra`` ones), linked to ``build.lib`` when ``link`` (programs that load the
    allocator themselves are not); raises BuildError with the compiler's message."""
    cmd = [str(build.compiler), "-std=c11", "-D_GNU_SOURCE", "-pthread", *build.spec.cflags,
           f"-I{PROJECT_ROOT / 'src_c' / 'include'}", *extra, str(source)]
    if link:
        cmd += [str(build.lib), f"-Wl,-rpath,{build.dir}"]
    cmd += [*build.spec.ldflags, "-ldl", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"compiling {source.name} against {build.name} failed:\n{proc.stderr}")
    return exe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.build",
        description=(
            "Build hakmem variants into sanitizer_builds/<variant>[+<inject>]/ "
            f"({LIB_NAME} for the harness, {PRELOAD_NAME} for LD_PRELOAD). "
            "Rebuilds only when src_c/, the variant definition, the injected bug or the "
            "compiler changed; verifies every build. Exit 0 ok, 1 build/verify failure, "
            "2 usage or environment error."
        ),
    )
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help=f"variant(s) to build: {', '.join(VARIANTS)} (or NAME-cov, the "
                   "coverage twin campaigns fuzz)")
    p.add_argument("--inject", metavar="NAME",
                   help="compile in seeded bug NAME from src_c/alloc/inject.h (see --list)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--list", action="store_true",
                   help="list the variants and the seeded-bug catalogue, then exit")
    p.add_argument("--print-env", action="store_true",
                   help="after building, print the shell assignments (LD_PRELOAD, "
                   "*SAN_OPTIONS) a process loading the library needs")
    return p


def _list() -> None:
    print("variants:")
    for name in VARIANTS:
        print(f"  {name:8} {load_variant(name).description}")
    docs = inject_docs()
    print("seeded bugs (--inject):" + ("" if docs else " (none: src_c/alloc/inject.h is empty)"))
    for name, doc in docs.items():
        first = doc.splitlines()[0] if doc else ""
        print(f"  {name:28} {first}")


def _main(args: argparse.Namespace) -> int:
    if args.list:
        _list()
        return 0
    if not args.variants:
        raise UsageError(f"no variant given; valid variants: {', '.join(VARIANTS)}")
    for variant in args.variants:  # validate everything before building anything
        load_variant(variant)
    canonical_inject(args.inject)
    for variant in args.variants:
        b = build(variant, args.inject, args.force, log=lambda m: print(m, flush=True))
        if args.print_env:
            env = b.env({})
            for key in sorted(env):
                print(f"{key}={shlex.quote(env[key])}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    return cli.run(lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
