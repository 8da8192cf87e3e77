"""What a program runs against: hakmem itself, or a foreign allocator library.

A foreign target is a shared library exporting the malloc family under a symbol prefix
(``mi_``, ``tc_``, ``""`` for libc) and gets black-box checks only. ``fixture:NAME`` names a
deliberately broken allocator of tests/fixtures/ (``fx_NAME.c``, prefix ``fx_``), built on
demand: the suite's proof that each check fires on a target it has never seen. Every broken
fixture has a clean counterpart, ``fx_good``, that a reproducer must pass on.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT
from harness.build import output_dir
from harness.errors import UsageError

__all__ = ["CLEAN_FIXTURE", "FIXTURES", "Target", "fixture_lib", "resolve_target"]

FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
#: the fixture that is the "clean" counterpart of every broken fixture
CLEAN_FIXTURE = "good"


@dataclass(frozen=True)
class Target:
    """hakmem itself (``path`` None) or a foreign library (``prefix`` its symbol prefix;
    ``fixture`` the name of a tests/fixtures allocator)."""

    path: Path | None = None
    prefix: str | None = None
    fixture: str | None = None

    @property
    def foreign(self) -> bool:
        return self.path is not None

    @property
    def label(self) -> str:
        if self.path is None:
            return "hakmem"
        return f"fx_{self.fixture}" if self.fixture else self.path.name

    def to_json(self) -> dict[str, str] | None:
        """The ``target`` field of a regression file (null for hakmem)."""
        if self.path is None:
            return None
        if self.fixture:
            return {"fixture": self.fixture}
        return {"path": str(self.path)}

    @classmethod
    def from_json(cls, data: Any, prefix: str | None, clean: bool = False) -> Target:
        """Inverse of :meth:`to_json`; ``clean`` gives a fixture's clean counterpart.
        ValueError says what is malformed."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("field 'target' must be null or an object")
        if "fixture" in data:
            name = CLEAN_FIXTURE if clean else str(data["fixture"])
            return cls(fixture_lib(name, _fixture_cache()), prefix or "fx_", name)
        if "path" in data:
            return cls(Path(str(data["path"])), prefix or "", None)
        raise ValueError("field 'target' needs 'fixture' or 'path'")


def fixture_lib(name: str, outdir: Path | None = None) -> Path:
    """Builds tests/fixtures/fx_<name>.c (cached) and returns the library."""
    src = FIXTURES / f"fx_{name}.c"
    if not src.is_file():
        known = sorted(p.stem[3:] for p in FIXTURES.glob("fx_*.c"))
        raise UsageError(f"unknown fixture {name!r}; fixtures: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location("_hakmem_fxlib", FIXTURES / "fxlib.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    outdir = Path(outdir) if outdir else output_dir("fixtures")
    outdir.mkdir(parents=True, exist_ok=True)
    return Path(mod.build_fixture(name, outdir))


def _fixture_of(path: Path) -> str | None:
    """``overlap`` for .../libfx_overlap.so when tests/fixtures/fx_overlap.c exists."""
    m = re.fullmatch(r"libfx_(\w+)\.so", path.name)
    if m and (FIXTURES / f"fx_{m.group(1)}.c").is_file():
        return m.group(1)
    return None


def _fixture_cache() -> Path:
    d = Path(tempfile.gettempdir()) / f"hakmem-fixtures-{os.getuid()}"
    d.mkdir(exist_ok=True)
    return d


def resolve_target(spec: str | None, prefix: str | None) -> Target:
    """``--target``: None (hakmem), ``fixture:NAME``, a library path or a soname."""
    if spec is None:
        if prefix is not None:
            raise UsageError("--prefix needs --target (e.g. --target fixture:overlap --prefix fx_)")
        return Target()
    if spec.startswith("fixture:"):
        name = spec.split(":", 1)[1]
        return Target(fixture_lib(name).resolve(), "fx_" if prefix is None else prefix, name)
    path = Path(spec)
    if not path.is_file() and "/" not in spec:
        return Target(Path(spec), prefix or "", None)  # a soname such as libc.so.6
    if not path.is_file():
        raise UsageError(f"--target {spec}: no such file")
    return Target(path.resolve(), prefix or "", _fixture_of(path))
