"""Shared fixtures for the harness's own tests (keep this file minimal)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import PROJECT_ROOT
from harness.build import Build, build
from harness.errors import HarnessError


@pytest.fixture(scope="session")
def built() -> Callable[..., Build]:
    """``built(variant, inject=None) -> Build``: builds (or reuses) a variant once per session.

    Safe under pytest-xdist (builds serialise on a file lock; later workers find the
    build up to date). A build failure fails the calling test with the build's message.
    """
    cache: dict[tuple[str, str | None], Build | HarnessError] = {}

    def get(variant: str, inject: str | None = None) -> Build:
        key = (variant, inject)
        if key not in cache:
            try:
                cache[key] = build(variant, inject)
            except HarnessError as exc:
                cache[key] = exc
        result = cache[key]
        if isinstance(result, HarnessError):
            pytest.fail(
                f"build {variant}{'+' + inject if inject else ''} failed: {result}", pytrace=False
            )
        return result

    return get


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str, str], Build]:
    """``edited(file, old, new) -> Build``: the release build of hakmem with one edit of
    src_c/alloc/``file`` (``old``, which must occur there once, becomes ``new``), built
    from a copy beside the test as harness.mutants builds its mutants: an allocator broken
    by hand, for a check to be seen to fire on."""
    cache: dict[tuple[str, str, str], Build] = {}

    def get(file: str, old: str, new: str) -> Build:
        key = (file, old, new)
        if key not in cache:
            tree = tmp_path_factory.mktemp(Path(file).stem)
            shutil.copytree(PROJECT_ROOT / "src_c", tree / "src_c")
            src = tree / "src_c" / "alloc" / file
            text = src.read_text()
            assert text.count(old) == 1, (file, old)
            src.write_text(text.replace(old, new))
            cache[key] = build("release", source=tree / "src_c")
        return cache[key]

    return get
