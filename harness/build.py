"""Build hakmem variants: ``python -m harness.build VARIANT [--inject NAME] [--force] [--list]``.

Each variant is defined by ``sanitizer_builds/<variant>.toml`` (compiler, flags, defines,
the sanitizer runtime a loading process must preload, the instrumentation to expect).
A build lands in ``sanitizer_builds/<variant>/`` (``<variant>+<inject>/`` with a seeded
bug) and holds two libraries:

* ``libhakmem.so``: ``src_c/alloc/*.c`` + ``src_c/executor/*.c``, loaded by the harness (cffi);
* ``libhakmem_preload.so``: ``src_c/alloc/*.c`` + ``src_c/preload/*.c``, the LD_PRELOAD drop-in.

A build is redone exactly when something it depends on changed: any file under ``src_c/``,
the variant definition, the injected bug, the compiler (path and ``--version``) or the
command lines. A stamp (``build.stamp``, JSON) records the hash of all of it and the hashes
of the libraries it verified; a build whose stamp or libraries do not match is never reused.
Libraries are linked under temporary names, verified, then renamed: a failed build leaves
no library behind. Concurrent builds of one output directory (pytest-xdist workers)
serialise on an flock and the later ones find the build up to date.

Verification after linking: the exported API, the drop-in's exports and the absence of
libc malloc among its imports, the variant's instrumentation (and no instrumentation in an
unsanitized variant), and a child process that loads the library under its runtime and
checks that ``hak_build_variant()`` / ``hak_injected_bug()`` name this build.

Python API: :func:`build`, :class:`Build`, :data:`VARIANTS`, :func:`inject_catalogue`,
:func:`load_variant`, :func:`output_dir`, :func:`verify`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from harness import PROJECT_ROOT
from harness.errors import BuildError, HarnessError, UsageError
from harness.runtime import (
    INSTALL_HINT,
    INSTRUMENTATION_PREFIXES,
    SanitizerRuntime,
    resolve_compiler,
    resolve_runtime,
)

__all__ = [
    "VARIANTS",
    "Build",
    "VariantSpec",
    "build",
    "inject_catalogue",
    "inject_docs",
    "load_variant",
    "output_dir",
    "variant_names",
    "verify",
    "main",
]

#: Bumped when the way a build is made or verified changes (invalidates every stamp).
BUILD_LOGIC_VERSION = 1

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

#: Symbols libhakmem.so must export.
REQUIRED_API: tuple[str, ...] = (
    "hak_malloc",
    "hak_free",
    "hak_calloc",
    "hak_realloc",
    "hak_aligned_alloc",
    "hak_usable_size",
    "hak_block_info",
    "hak_counters_snapshot",
    "hak_heap_check",
    "hak_flush_thread",
    "hak_build_variant",
    "hak_injected_bug",
)
#: Symbols libhakmem_preload.so must export.
REQUIRED_DROPIN: tuple[str, ...] = (
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "malloc_usable_size",
)
#: libc allocation functions the drop-in must never import (it would call glibc's).
FORBIDDEN_IMPORTS: tuple[str, ...] = (*REQUIRED_DROPIN, "valloc", "pvalloc")

#: Where fuzzing-only variant definitions live (loadable by name, not in VARIANTS).
FUZZ_VARIANTS_DIR = "fuzz/variants"

_CANONICAL_ORDER = ("release", "debug", "asan", "tsan", "ubsan")
_INJECT_DEFINE = re.compile(r"^\s*#\s*define\s+HAK_INJECT_([A-Z0-9_]+)\s+0\b")

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# --------------------------------------------------------------------------- variants


def _defs_dir(root: Path) -> Path:
    return root / "sanitizer_builds"


def variant_names(root: Path | None = None) -> tuple[str, ...]:
    """Names of the variants defined in ``<root>/sanitizer_builds/*.toml``."""
    root = PROJECT_ROOT if root is None else Path(root)
    names = [p.stem for p in _defs_dir(root).glob("*.toml")]
    rank = {n: i for i, n in enumerate(_CANONICAL_ORDER)}
    return tuple(sorted(names, key=lambda n: (rank.get(n, len(rank)), n)))


#: The project's build variants: ("release", "debug", "asan", "tsan", "ubsan").
VARIANTS: tuple[str, ...] = variant_names()


@dataclasses.dataclass(frozen=True, eq=False)
class VariantSpec:
    """One parsed ``sanitizer_builds/<name>.toml``."""

    name: str
    description: str
    compiler: str  #: compiler named in the file (HAKMEM_CC overrides it at build time)
    cflags: tuple[str, ...]
    defines: tuple[str, ...]  #: each becomes ``-D<entry>``
    ldflags: tuple[str, ...]
    runtime_library: str  #: "" when nothing must be preloaded
    runtime_package: str  #: Debian package that provides runtime_library
    runtime_options: Mapping[str, str]  #: env var -> sanitizer options
    instrumentation_prefix: str  #: "" for an unsanitized variant
    path: Path
    text: str  #: the file's content (hashed into the stamp)

    @property
    def sanitized(self) -> bool:
        return bool(self.instrumentation_prefix)


def _str_list(data: Mapping[str, object], key: str, where: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def _str(data: Mapping[str, object], key: str, where: Path, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key!r} must be a string")
    return value


def load_variant(name: str, root: Path | None = None) -> VariantSpec:
    """Parses the definition of variant ``name``; UsageError (listing the valid ones) if unknown."""
    root = PROJECT_ROOT if root is None else Path(root)
    valid = variant_names(root)
    path = _defs_dir(root) / f"{name}.toml"
    if name not in valid:
        # Fuzzing-only variants (coverage builds, harness/fuzz.py) live in fuzz/variants/
        # and are not listed in VARIANTS.
        path = root / FUZZ_VARIANTS_DIR / f"{name}.toml"
        if not path.is_file():
            raise UsageError(
                f"unknown build variant {name!r}; valid variants: {', '.join(valid) or '(none)'}"
            )
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    runtime = data.get("runtime", {})
    verify_ = data.get("verify", {})
    if not isinstance(runtime, dict) or not isinstance(verify_, dict):
        raise UsageError(f"{path}: [runtime] and [verify] must be tables")
    options = runtime.get("options", {})
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise UsageError(f"{path}: runtime.options must map variable names to strings")
    prefix = _str(verify_, "instrumentation_prefix", path, "")
    if prefix and not prefix.startswith(INSTRUMENTATION_PREFIXES):
        raise UsageError(f"{path}: unknown instrumentation_prefix {prefix!r}")
    return VariantSpec(
        name=name,
        description=_str(data, "description", path, ""),
        compiler=_str(data, "compiler", path),
        cflags=_str_list(data, "cflags", path),
        defines=_str_list(data, "defines", path),
        ldflags=_str_list(data, "ldflags", path),
        runtime_library=_str(runtime, "library", path, ""),
        runtime_package=_str(runtime, "package", path, "") or "libclang-rt-19-dev",
        runtime_options=dict(options),
        instrumentation_prefix=prefix,
        path=path,
        text=text,
    )


# --------------------------------------------------------------------------- inject catalogue


def _clean_comment(lines: list[str]) -> str:
    out = []
    for line in lines:
        s = line.strip()
        for token in ("/*", "*/", "//"):
            s = s.replace(token, "")
        s = s.strip()
        if s.startswith("*"):
            s = s[1:].strip()
        out.append(s)
    return "\n".join(out).strip()


def inject_docs(root: Path | None = None) -> dict[str, str]:
    """The seeded-bug catalogue of ``src_c/alloc/inject.h``: name (lower case) -> its comment."""
    root = PROJECT_ROOT if root is None else Path(root)
    path = root / "src_c" / "alloc" / "inject.h"
    if not path.is_file():
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    in_block = False
    for line in path.read_text().splitlines():
        s = line.strip()
        if in_block:
            pending.append(line)
            in_block = "*/" not in s
            continue
        if s.startswith("/*"):
            pending = [line]
            in_block = "*/" not in s
            continue
        if s.startswith("//"):
            pending.append(line)
            continue
        m = _INJECT_DEFINE.match(line)
        if m and m.group(1) != "NAME":
            docs[m.group(1).lower()] = _clean_comment(pending)
            pending = []
            continue
        if s and not s.startswith(("#ifndef HAK_INJECT_", "#if !defined", "#endif")):
            pending = []
    return docs


def inject_catalogue(root: Path | None = None) -> list[str]:
    """Names accepted by ``--inject`` (lower case), in catalogue order."""
    return list(inject_docs(root))


def _canonical_inject(inject: str | None, root: Path) -> str | None:
    if inject is None:
        return None
    catalogue = inject_catalogue(root)
    name = inject.strip().lower().replace("-", "_")
    if name not in catalogue:
        where = root / "src_c" / "alloc" / "inject.h"
        listing = ", ".join(catalogue) if catalogue else "(empty)"
        raise UsageError(f"unknown injected bug {inject!r}; the catalogue ({where}) has: {listing}")
    return name


def output_dir(variant: str, inject: str | None = None, root: Path | None = None) -> Path:
    """Where ``build(variant, inject)`` puts its output (no validation, no build)."""
    root = PROJECT_ROOT if root is None else Path(root)
    name = variant if inject is None else f"{variant}+{inject.lower().replace('-', '_')}"
    return _defs_dir(root) / name


# --------------------------------------------------------------------------- the Build


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

    @property
    def name(self) -> str:
        """``variant`` or ``variant+inject``: the output folder's name."""
        return self.dir.name

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child Python process that will dlopen :attr:`lib`.

        A copy of ``base`` (default os.environ) with the sanitizer runtime first in
        LD_PRELOAD and the variant's options (ASAN_OPTIONS, ...) set; unchanged
        variables for release/debug.
        """
        return self.runtime.env(base)


# --------------------------------------------------------------------------- tools


def _which_or_usage(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise UsageError(f"{tool!r} not found on PATH: apt-get install {package}")
    return found


@functools.cache
def _compiler_version(compiler: str) -> str:
    proc = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UsageError(f"{compiler} --version failed: {proc.stderr.strip()}; {INSTALL_HINT}")
    return proc.stdout


def _nm(path: Path, *flags: str) -> set[str]:
    nm = _which_or_usage("nm", "binutils")
    proc = subprocess.run(
        [nm, "-D", *flags, str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(f"nm -D {' '.join(flags)} {path} failed: {proc.stderr.strip()}")
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts:
            names.add(parts[-1].split("@", 1)[0])
    return names


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_digests(src: Path) -> dict[str, str]:
    out = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = _sha256_file(p)
    return out


# --------------------------------------------------------------------------- verification

_IDENTITY_SCRIPT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
for name in ("hak_build_variant", "hak_injected_bug"):
    fn = getattr(lib, name)
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    value = fn()
    print(value.decode() if value is not None else "<NULL>")
"""


def _label(path: Path) -> str:
    return path.name.removesuffix(".tmp")


def verify(
    lib: Path,
    preload_lib: Path | None,
    spec: VariantSpec,
    inject: str | None,
    runtime: SanitizerRuntime,
) -> list[str]:
    """Checks that ``lib`` (and ``preload_lib``) really are this build of hakmem.

    Raises BuildError saying precisely what is wrong; returns one-line notes on success.
    """
    notes: list[str] = []
    lib = Path(lib)
    exported = _nm(lib, "--defined-only")
    missing = [s for s in REQUIRED_API if s not in exported]
    if missing:
        raise BuildError(f"{_label(lib)} ({lib}) does not export: {', '.join(missing)}")
    leaked = sorted({"malloc", "free", "calloc", "realloc"} & exported)
    if leaked:
        raise BuildError(
            f"{_label(lib)} ({lib}) exports {', '.join(leaked)}: only the drop-in may define "
            "the standard names"
        )
    notes.append(f"{_label(lib)} exports the {len(REQUIRED_API)} API symbols")
    libs = [lib]

    if preload_lib is not None:
        preload_lib = Path(preload_lib)
        exported = _nm(preload_lib, "--defined-only")
        missing = [s for s in REQUIRED_DROPIN if s not in exported]
        if missing:
            raise BuildError(
                f"{_label(preload_lib)} ({preload_lib}) does not export: {', '.join(missing)}"
            )
        imported = _nm(preload_lib, "--undefined-only")
        bad = [s for s in FORBIDDEN_IMPORTS if s in imported]
        if bad:
            raise BuildError(
                f"{_label(preload_lib)} ({preload_lib}) imports {', '.join(bad)}: the drop-in "
                "would call libc's allocator (it must never call libc malloc)"
            )
        notes.append(f"{_label(preload_lib)} exports the malloc family and imports none of it")
        libs.append(preload_lib)

    for path in libs:
        imported = _nm(path, "--undefined-only")
        if spec.instrumentation_prefix:
            hits = [s for s in imported if s.startswith(spec.instrumentation_prefix)]
            if not hits:
                raise BuildError(
                    f"{_label(path)} ({path}) has no undefined {spec.instrumentation_prefix}* "
                    f"symbol: variant {spec.name!r} is not instrumented"
                )
            notes.append(f"{_label(path)}: {len(hits)} {spec.instrumentation_prefix}* imports")
        else:
            hits = sorted(s for s in imported if s.startswith(INSTRUMENTATION_PREFIXES))
            if hits:
                raise BuildError(
                    f"{_label(path)} ({path}) of unsanitized variant {spec.name!r} imports "
                    f"sanitizer symbols: {', '.join(hits[:5])}"
                )

    env = runtime.env()
    proc = subprocess.run(
        [sys.executable, "-c", _IDENTITY_SCRIPT, str(lib.resolve())],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(
            f"loading {lib} in a child process (LD_PRELOAD={env.get('LD_PRELOAD', '')!r}) "
            f"failed with exit {proc.returncode}:\n{proc.stderr.strip()[-4000:]}"
        )
    lines = proc.stdout.splitlines()
    got_variant = lines[0] if lines else ""
    got_inject = lines[1] if len(lines) > 1 else ""
    if got_variant != spec.name:
        raise BuildError(
            f"{lib}: hak_build_variant() returned {got_variant!r}, expected {spec.name!r}"
        )
    if got_inject != (inject or ""):
        raise BuildError(
            f"{lib}: hak_injected_bug() returned {got_inject!r}, expected {inject or ''!r}"
        )
    notes.append(f'hak_build_variant() == "{got_variant}", hak_injected_bug() == "{got_inject}"')
    return notes


# --------------------------------------------------------------------------- building


@dataclasses.dataclass(frozen=True)
class _Object:
    source: str  # relative to root
    obj: str  # relative to root
    group: str  # alloc | executor | preload


def _plan_objects(root: Path, out_rel: str) -> list[_Object]:
    objs = []
    for group in ("alloc", "executor", "preload"):
        for src in sorted((root / "src_c" / group).glob("*.c")):
            rel = src.relative_to(root).as_posix()
            objs.append(_Object(rel, f"{out_rel}/obj/{group}/{src.stem}.o", group))
    if not any(o.group == "alloc" for o in objs):
        raise BuildError(f"no allocator sources: {root / 'src_c' / 'alloc'}/*.c matches nothing")
    if not any(o.group == "preload" for o in objs):
        raise BuildError(f"no drop-in sources: {root / 'src_c' / 'preload'}/*.c matches nothing")
    return objs


def _compile_flags(spec: VariantSpec, inject: str | None) -> list[str]:
    flags = [*BASE_CFLAGS, *spec.cflags, *(f"-D{d}" for d in spec.defines)]
    flags.append(f'-DHAK_VARIANT_NAME="{spec.name}"')
    if inject is not None:
        flags += [f"-DHAK_INJECT_{inject.upper()}=1", f'-DHAK_INJECT_NAME="{inject}"']
    flags += ["-Isrc_c/include", "-Isrc_c/alloc"]
    return flags


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_stamp(out: Path) -> dict[str, object] | None:
    try:
        data = json.loads((out / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _up_to_date(out: Path, stamp: str) -> bool:
    data = _read_stamp(out)
    if data is None or data.get("stamp") != stamp:
        return False
    libs = data.get("libs")
    if not isinstance(libs, dict) or set(libs) != {LIB_NAME, PRELOAD_NAME}:
        return False
    for name, digest in libs.items():
        path = out / name
        if not path.is_file() or _sha256_file(path) != digest:
            return False
    return True


def _jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 2


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)


def build(
    variant: str,
    inject: str | None = None,
    force: bool = False,
    *,
    root: Path | None = None,
    log: Log | None = None,
) -> Build:
    """Builds (or reuses) variant ``variant``, optionally with seeded bug ``inject``.

    Idempotent and cheap when up to date (hashes src_c/ and the two libraries);
    ``force`` rebuilds regardless. ``root`` is the source tree (default: this
    project; tests point it at a scratch tree). ``log`` receives one line per step
    (default: silent). Raises UsageError (unknown variant/inject, missing tools)
    or BuildError (compile, link or verification failure).
    """
    root = (PROJECT_ROOT if root is None else Path(root)).resolve()
    say = log or _quiet
    spec = load_variant(variant, root)
    inject = _canonical_inject(inject, root)
    compiler_name = os.environ.get("HAKMEM_CC") or spec.compiler
    compiler = resolve_compiler(compiler_name)
    version = _compiler_version(str(compiler))
    _which_or_usage("nm", "binutils")
    package = spec.runtime_package
    m = re.fullmatch(r"clang-(\d+)", compiler.name)
    if m:  # HAKMEM_CC=clang-16 needs libclang-rt-16-dev, whatever the file says
        package = re.sub(r"libclang-rt-\d+-dev", f"libclang-rt-{m.group(1)}-dev", package)
    runtime = resolve_runtime(compiler, spec.runtime_library or None, spec.runtime_options, package)
    out = output_dir(variant, inject, root)
    out_rel = out.relative_to(root).as_posix()
    tag = out.name

    with _locked(out):
        objects = _plan_objects(root, out_rel)
        cflags = _compile_flags(spec, inject)
        compile_cmds = {o: [str(compiler), *cflags, "-c", o.source, "-o", o.obj] for o in objects}
        api_objs = [o.obj for o in objects if o.group in ("alloc", "executor")]
        drop_objs = [o.obj for o in objects if o.group in ("alloc", "preload")]
        ldflags = [*BASE_LDFLAGS, *spec.cflags, *spec.ldflags]
        tmp_lib, tmp_pre = out / f"{LIB_NAME}.tmp", out / f"{PRELOAD_NAME}.tmp"
        link_cmds = [
            [
                str(compiler),
                *ldflags,
                f"-Wl,-soname,{LIB_NAME}",
                "-o",
                f"{out_rel}/{tmp_lib.name}",
                *api_objs,
            ],
            [
                str(compiler),
                *ldflags,
                f"-Wl,-soname,{PRELOAD_NAME}",
                "-o",
                f"{out_rel}/{tmp_pre.name}",
                *drop_objs,
            ],
        ]
        manifest = {
            "logic": BUILD_LOGIC_VERSION,
            "sources": _source_digests(root / "src_c"),
            "variant": spec.text,
            "inject": inject,
            "compiler": str(compiler),
            "compiler_version": version,
            "runtime": str(runtime.library) if runtime.library else None,
            "compile": [compile_cmds[o] for o in objects],
            "link": link_cmds,
        }
        stamp = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        version_line = version.splitlines()[0] if version else compiler_name

        def result(rebuilt: bool) -> Build:
            return Build(
                variant=variant,
                inject=inject,
                dir=out,
                lib=out / LIB_NAME,
                preload_lib=out / PRELOAD_NAME,
                spec=spec,
                runtime=runtime,
                stamp=stamp,
                compiler=compiler,
                compiler_version=version_line,
                rebuilt=rebuilt,
            )

        if not force and _up_to_date(out, stamp):
            say(f"{tag}: up to date -> {out}")
            return result(False)

        started = time.monotonic()
        # From here on nothing in `out` may look valid until verification passed.
        for stale in (STAMP_NAME, LIB_NAME, PRELOAD_NAME, tmp_lib.name, tmp_pre.name):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / "obj", ignore_errors=True)
        for group in {o.group for o in objects}:
            (out / "obj" / group).mkdir(parents=True, exist_ok=True)

        jobs = min(_jobs(), len(objects))
        say(f"{tag}: compiling {len(objects)} files with {compiler_name} ({jobs} jobs)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {o: pool.submit(_run, compile_cmds[o], root) for o in objects}
            results = {o: f.result() for o, f in futures.items()}
        failed = [o for o in objects if results[o].returncode != 0]
        for o in objects:
            if results[o].returncode == 0 and results[o].stderr.strip():
                say(f"{tag}: warnings in {o.source}:\n{results[o].stderr.rstrip()}")
        if failed:
            first = failed[0]
            also = ", ".join(o.source for o in failed[1:])
            others = f" (also failed: {also})" if also else ""
            raise BuildError(
                f"{tag}: compiling {first.source} failed{others}\n"
                f"$ {' '.join(compile_cmds[first])}\n{results[first].stderr.rstrip()}"
            )

        try:
            for cmd, target in zip(link_cmds, (LIB_NAME, PRELOAD_NAME), strict=True):
                proc = _run(cmd, root)
                if proc.returncode != 0:
                    raise BuildError(
                        f"{tag}: linking {target} failed\n$ {' '.join(cmd)}\n{proc.stderr.rstrip()}"
                    )
            say(
                f"{tag}: linked {LIB_NAME} ({len(api_objs)} objects), "
                f"{PRELOAD_NAME} ({len(drop_objs)} objects)"
            )
            notes = verify(tmp_lib, tmp_pre, spec, inject, runtime)
            say(f"{tag}: verified: " + "; ".join(notes))
            libs = {LIB_NAME: _sha256_file(tmp_lib), PRELOAD_NAME: _sha256_file(tmp_pre)}
            os.replace(tmp_lib, out / LIB_NAME)
            os.replace(tmp_pre, out / PRELOAD_NAME)
        finally:
            tmp_lib.unlink(missing_ok=True)
            tmp_pre.unlink(missing_ok=True)

        record = {
            "stamp": stamp,
            "variant": variant,
            "inject": inject,
            "compiler": str(compiler),
            "compiler_version": version_line,
            "cflags": cflags,
            "runtime": manifest["runtime"],
            "runtime_options": dict(spec.runtime_options),
            "libs": libs,
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        tmp_stamp = out / f"{STAMP_NAME}.tmp"
        tmp_stamp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp_stamp, out / STAMP_NAME)
        say(f"{tag}: ok -> {out} ({time.monotonic() - started:.1f} s)")
        return result(True)


# --------------------------------------------------------------------------- CLI


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
    p.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        help=f"variant(s) to build: {', '.join(VARIANTS)}",
    )
    p.add_argument(
        "--inject",
        metavar="NAME",
        help="compile in seeded bug NAME from src_c/alloc/inject.h (see --list)",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument(
        "--list",
        action="store_true",
        help="list the variants and the seeded-bug catalogue, then exit",
    )
    p.add_argument(
        "--print-env",
        action="store_true",
        help="after building, print the shell assignments (LD_PRELOAD, *SAN_OPTIONS) a "
        "process loading the library needs",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.list:
            _list()
            return 0
        if not args.variants:
            raise UsageError(f"no variant given; valid variants: {', '.join(VARIANTS)}")
        for variant in args.variants:  # validate everything before building anything
            load_variant(variant)
        _canonical_inject(args.inject, PROJECT_ROOT)
        for variant in args.variants:
            b = build(variant, args.inject, args.force, log=lambda m: print(m, flush=True))
            if args.print_env:
                env = b.env({})
                for key in sorted(env):
                    print(f"{key}={shlex.quote(env[key])}")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
