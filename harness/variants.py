"""Build variant definitions: ``sanitizer_builds/<name>.toml``, and their coverage twins.

A definition gives the flags, defines, the sanitizer runtime a loading process must preload
(and its options) and the instrumentation verification expects. The compiler is the
project's (harness.toolchain). ``<name>-cov`` is derived, never written: the same
definition plus libFuzzer's coverage instrumentation (``-fsanitize=fuzzer-no-link``: inline
8-bit counters and comparison tracing), built for fuzzing only.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path

from harness import PROJECT_ROOT
from harness.errors import UsageError
from harness.runtime import INSTRUMENTATION_PREFIXES

__all__ = ["COVERAGE_SUFFIX", "VARIANTS", "VariantSpec", "defs_dir", "load_variant",
           "variant_names"]

_CANONICAL_ORDER = ("release", "debug", "asan", "tsan", "ubsan", "asan-sched")
COVERAGE_SUFFIX = "-cov"
_COVERAGE_FLAG = "-fsanitize=fuzzer-no-link"
#: sources the coverage instrumentation leaves out (checkers, not code under test)
COVERAGE_IGNORE = PROJECT_ROOT / "fuzz" / "coverage_ignore.txt"


def defs_dir(root: Path) -> Path:
    """Where definitions live and builds land."""
    return root / "sanitizer_builds"


def variant_names(root: Path | None = None) -> tuple[str, ...]:
    """Names of the variants defined in ``<root>/sanitizer_builds/*.toml``."""
    root = PROJECT_ROOT if root is None else Path(root)
    names = [p.stem for p in defs_dir(root).glob("*.toml")]
    rank = {n: i for i, n in enumerate(_CANONICAL_ORDER)}
    return tuple(sorted(names, key=lambda n: (rank.get(n, len(rank)), n)))


#: The project's build variants: ("release", "debug", "asan", "tsan", "ubsan", "asan-sched").
VARIANTS: tuple[str, ...] = variant_names()


@dataclasses.dataclass(frozen=True, eq=False)
class VariantSpec:
    """One parsed definition."""

    name: str
    description: str
    cflags: tuple[str, ...]
    defines: tuple[str, ...]  #: each becomes ``-D<entry>``
    ldflags: tuple[str, ...]
    runtime_library: str  #: "" when nothing must be preloaded
    runtime_options: Mapping[str, str]  #: env var -> sanitizer options
    instrumentation_prefix: str  #: "" for an unsanitized variant
    path: Path
    text: str  #: what the build stamp hashes (the file, plus the coverage marker)

    @property
    def scheduled(self) -> bool:
        """Built with the scheduler's yield points (``HAK_SCHED=1``, src_c/alloc/syncpoint.h)."""
        return "HAK_SCHED=1" in self.defines

    def with_coverage(self) -> VariantSpec:
        """The ``-cov`` twin: the same build plus libFuzzer's coverage instrumentation, except
        in the sources ``COVERAGE_IGNORE`` names."""
        ignore = f"-fsanitize-coverage-ignorelist={COVERAGE_IGNORE}"
        return dataclasses.replace(
            self, name=self.name + COVERAGE_SUFFIX,
            description=self.description + " + libFuzzer coverage (fuzzing only)",
            cflags=(*self.cflags, _COVERAGE_FLAG, ignore),
            ldflags=(*self.ldflags, _COVERAGE_FLAG),
            text=self.text + f"\n# derived: {_COVERAGE_FLAG}\n{COVERAGE_IGNORE.read_text()}")


def _str_list(data: Mapping[str, object], key: str, where: Path) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def _str(data: Mapping[str, object], key: str, where: Path, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key!r} must be a string")
    return value


def _parse(name: str, path: Path) -> VariantSpec:
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    runtime = data.get("runtime", {})
    verify = data.get("verify", {})
    if not isinstance(runtime, dict) or not isinstance(verify, dict):
        raise UsageError(f"{path}: [runtime] and [verify] must be tables")
    options = runtime.get("options", {})
    if not isinstance(options, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.items()
    ):
        raise UsageError(f"{path}: runtime.options must map variable names to strings")
    prefix = _str(verify, "instrumentation_prefix", path)
    if prefix and not prefix.startswith(INSTRUMENTATION_PREFIXES):
        raise UsageError(f"{path}: unknown instrumentation_prefix {prefix!r}")
    return VariantSpec(
        name=name,
        description=_str(data, "description", path),
        cflags=_str_list(data, "cflags", path),
        defines=_str_list(data, "defines", path),
        ldflags=_str_list(data, "ldflags", path),
        runtime_library=_str(runtime, "library", path),
        runtime_options=dict(options),
        instrumentation_prefix=prefix,
        path=path,
        text=text,
    )


def load_variant(name: str, root: Path | None = None) -> VariantSpec:
    """Parses variant ``name`` (or derives ``<variant>-cov``); UsageError listing the valid
    names if unknown."""
    root = PROJECT_ROOT if root is None else Path(root)
    valid = variant_names(root)
    base = name.removesuffix(COVERAGE_SUFFIX)
    if base not in valid:
        raise UsageError(
            f"unknown build variant {name!r}; valid variants: {', '.join(valid) or '(none)'}"
        )
    spec = _parse(base, defs_dir(root) / f"{base}.toml")
    return spec.with_coverage() if base != name else spec
