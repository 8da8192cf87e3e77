"""bench/run.py's command line: --help runs and is true; the README's commands parse."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.benchmarks import BENCHES
from bench.peers import ALL_NAMES
from bench.run import main, parser

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--reps", "--bench", "--allocators", "--quick", "--out", "--hakmem", "--require-hakmem",
         "--param", "--strace", "--strace-n", "--timeout", "--cc", "--build-only"]
README_COMMANDS = re.findall(r"^ +python bench/run\.py(.*?)(?: +#.*)?$",
                             (ROOT / "bench" / "README.md").read_text(), re.M)


def test_help_runs_as_a_script_and_names_every_flag_bench_and_allocator() -> None:
    r = subprocess.run([sys.executable, "bench/run.py", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for word in FLAGS + [b.name for b in BENCHES] + ALL_NAMES:
        assert word in r.stdout


def test_every_flag_parses() -> None:
    flags = {opt for action in parser()._actions for opt in action.option_strings}
    assert flags == set(FLAGS) | {"-h", "--help"}


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command_parses(command: str) -> None:
    parser().parse_args(shlex.split(command))


@pytest.mark.parametrize("argv", [["--bench", "nosuch"], ["--reps", "0"]])
def test_usage_errors_exit_2_before_building(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
