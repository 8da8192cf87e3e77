"""./hakmem, the README's two commands: their first-run set-up, its stamp, bad input.

The script runs from a copy in a temporary directory with stand-ins for dpkg-query,
apt-get, id and the Python interpreter on PATH, so that the tests see exactly what it
would install and run on a fresh machine, without touching this one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "hakmem"
PEERS = ("libmimalloc2.0", "libjemalloc2", "libtcmalloc-minimal4")

STUBS = {
    # Installed packages are the lines of $STUBS/installed.
    "dpkg-query": """#!/bin/sh
pkg=$(eval echo \\${$#})
grep -qx "$pkg" "$STUBS/installed" 2>/dev/null && printf 'install ok installed'
exit 0
""",
    "apt-get": """#!/bin/sh
echo "apt-get $*" >>"$STUBS/log"
[ "$1" = install ] || exit 0
shift
for p in "$@"; do [ "$p" = -y ] || echo "$p" >>"$STUBS/installed"; done
""",
    "id": """#!/bin/sh
echo "${STUB_UID:-0}"
""",
    # The interpreter: logs what it is asked to run; not a virtualenv (exit 1 to the check).
    "python": """#!/bin/sh
case "$1" in
    --version) echo "Python 3.11.2" ;;
    -c) exit 1 ;;
    *) echo "python $*" >>"$STUBS/log" ;;
esac
""",
}


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy2(SCRIPT, root / "hakmem")
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", STUBS=str(stubs),
               PYTHON=str(stubs / "python"))
    return root, env


def run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(root / "hakmem"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def log(env: dict[str, str]) -> list[str]:
    path = Path(env["STUBS"]) / "log"
    return path.read_text().splitlines() if path.exists() else []


def test_first_run_as_root_installs_everything_then_later_runs_do_nothing(sandbox) -> None:
    root, env = sandbox
    proc = run(root, env, "test")
    assert proc.returncode == 0, proc.stderr
    lines = log(env)
    assert lines[0] == "apt-get update"
    installed = lines[1].split()
    assert installed[:2] == ["apt-get", "install"]
    for pkg in ("clang-19", "libclang-rt-19-dev", *PEERS):  # peers: no black-box test skips
        assert pkg in installed
    assert "python -m pip install -e .[dev]" in lines
    assert "python -m harness.build release debug asan tsan ubsan" in lines
    # The README's test command, as written there.
    assert lines[-1] == "python -m pytest -n auto tests regressions"
    assert (root / ".hakmem-setup").is_file()

    (Path(env["STUBS"]) / "log").unlink()
    proc = run(root, env, "fuzz")
    assert proc.returncode == 0, proc.stderr
    assert log(env) == ["python -m harness.fuzz --build asan --max-time 60"]


def test_a_changed_install_step_or_a_removed_package_redoes_the_setup(sandbox) -> None:
    root, env = sandbox
    assert run(root, env, "setup").returncode == 0
    stubs = Path(env["STUBS"])
    (stubs / "log").unlink()
    with open(root / "pyproject.toml", "a") as f:
        f.write("\n# a new dependency would change this file\n")
    assert run(root, env, "setup").returncode == 0
    assert any("pip install" in line for line in log(env))
    assert not any(line.startswith("apt-get") for line in log(env))  # nothing missing

    (stubs / "log").unlink()
    installed = stubs / "installed"
    installed.write_text("".join(f"{p}\n" for p in installed.read_text().split()
                                 if p != "libjemalloc2"))
    assert run(root, env, "setup").returncode == 0
    assert "apt-get install -y libjemalloc2" in log(env)


def test_not_root_names_the_one_install_line_and_stops(sandbox) -> None:
    root, env = sandbox
    env["STUB_UID"] = "1000"
    proc = run(root, env, "test")
    assert proc.returncode == 2
    m = re.search(r"run: sudo apt-get install -y (.+)", proc.stderr)
    assert m, proc.stderr
    assert set(PEERS) <= set(m.group(1).split())
    assert log(env) == []  # nothing installed, nothing run
    assert not (root / ".hakmem-setup").exists()


def test_arguments_replace_the_defaults_and_bad_verbs_are_refused(sandbox) -> None:
    root, env = sandbox
    assert run(root, env, "test", "-n", "2", "tests/test_api.py").returncode == 0
    assert log(env)[-1] == "python -m pytest -n 2 tests/test_api.py"
    proc = run(root, env, "frobnicate")
    assert proc.returncode == 2
    assert "unknown command 'frobnicate'" in proc.stderr and "./hakmem test" in proc.stdout
    assert run(root, env, "--help").returncode == 0
