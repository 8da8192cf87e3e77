"""The seeded-bug catalogue: ``src_c/alloc/inject.h``.

Each entry is a ``#define HAK_INJECT_<NAME> 0`` guarded by ``#ifndef`` with its comment
above it; ``--inject NAME`` compiles the build with ``-DHAK_INJECT_<NAME>=1``. The comment is
the entry's documentation (what the bug breaks and which check should see it).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import PROJECT_ROOT
from harness.errors import UsageError

__all__ = ["canonical_inject", "inject_catalogue", "inject_docs", "inject_header"]

_INJECT_DEFINE = re.compile(r"^\s*#\s*define\s+HAK_INJECT_([A-Z0-9_]+)\s+0\b")


def inject_header(root: Path | None = None) -> Path:
    return (PROJECT_ROOT if root is None else Path(root)) / "src_c" / "alloc" / "inject.h"


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
    """The catalogue: name (lower case) -> its comment, in the header's order."""
    path = inject_header(root)
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


def canonical_inject(inject: str | None, root: Path | None = None) -> str | None:
    """``inject`` as the catalogue spells it (``Stale-Refill`` -> ``stale_refill``);
    UsageError listing the catalogue when it is not there."""
    if inject is None:
        return None
    catalogue = inject_catalogue(root)
    name = inject.strip().lower().replace("-", "_")
    if name not in catalogue:
        listing = ", ".join(catalogue) if catalogue else "(empty)"
        raise UsageError(f"unknown injected bug {inject!r}; the catalogue "
                         f"({inject_header(root)}) has: {listing}")
    return name
