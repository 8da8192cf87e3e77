"""The code rules of .ci/lint fire: each is run on a copy of the tree with one violation
planted (a rule never seen to fail is not a rule), and the unmodified copy passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import PROJECT_ROOT

#: what .ci/lint reads, relative to the project root
LINTED = ("harness", "tests", "bench", "fuzz/fuzz_target.py", "regressions/conftest.py",
          ".clusterfuzzlite", ".ci", "pyproject.toml")


def lint_copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel in LINTED:
        src, dst = PROJECT_ROOT / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pkg"))
        else:
            shutil.copy2(src, dst)
    return root


def run_lint(root: Path) -> subprocess.CompletedProcess[str]:
    # The copy's package comes first on the path, so import-linter analyses the copy.
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHON": sys.executable}
    return subprocess.run([str(root / ".ci" / "lint")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def plant(root: Path, rel: str, code: str) -> None:
    with open(root / rel, "a") as f:
        f.write(code)


def test_the_tree_as_it_is_passes(tmp_path: Path) -> None:
    proc = run_lint(lint_copy(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rel, code, expected", [
    # program is the bottom of the lifecycle: it must not know the campaign driver
    ("harness/program.py", "\nfrom harness import fuzz  # noqa: E402,F401\n", "BROKEN"),
    ("harness/triage.py", "\n\ndef late():\n    import json\n    return json\n", "PLC0415"),
    ("harness/verdict.py", "\n\ndef never_called_anywhere():\n    return 1\n",
     "never_called_anywhere"),
], ids=["upward-import", "function-level-import", "dead-code"])
def test_a_planted_violation_fails_the_lint(tmp_path: Path, rel: str, code: str,
                                            expected: str) -> None:
    root = lint_copy(tmp_path)
    plant(root, rel, code)
    proc = run_lint(root)
    assert proc.returncode != 0 and expected in proc.stdout + proc.stderr, \
        proc.stdout + proc.stderr
