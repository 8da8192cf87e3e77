"""hakmem harness: build, bind, fuzz, check, triage and replay the hakmem allocator.

Submodules are imported on demand (``from harness import build``); importing the
package itself is cheap and has no side effects.
"""

from __future__ import annotations

from pathlib import Path

#: Root of the source tree (the directory holding pyproject.toml, src_c/, sanitizer_builds/).
PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent

__all__ = ["PROJECT_ROOT"]
