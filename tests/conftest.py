"""Shared fixtures for the harness's own tests (keep this file minimal)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
