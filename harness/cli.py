"""What every ``python -m harness.<tool>`` shares: exit codes for errors, and progress.

A tool's ``main`` hands its body to :func:`run`; long work reports through a
:class:`Progress` (a tqdm bar on a terminal, plain lines otherwise) whose :meth:`say`
never tears the bar.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from harness.errors import HarnessError

__all__ = ["ERROR_EXIT_WHEN_FINDINGS", "Progress", "interrupt_on_sigterm", "run"]

#: Exit status of every error in a tool whose status 1 means "found something".
ERROR_EXIT_WHEN_FINDINGS = 2


def run(body: Callable[[], int], *, findings: bool = False) -> int:
    """Runs a tool's body and returns its exit status. A HarnessError is printed as
    ``error: <message>`` and exits with its ``exit_code``, or with
    :data:`ERROR_EXIT_WHEN_FINDINGS` when ``findings`` (the tool's 1 means a finding)."""
    try:
        return body()
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return ERROR_EXIT_WHEN_FINDINGS if findings else e.exit_code


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """Makes SIGTERM (a CI job's cancel, a test's kill) end a tool as Ctrl-C does: a
    KeyboardInterrupt in the main thread, which stops the work in progress and keeps
    what was done."""
    signal.signal(signal.SIGTERM, _interrupt)


class Progress:
    """A progress bar of ``total`` ``unit``s, or plain lines when ``enabled`` is false."""

    def __init__(self, total: float, unit: str, enabled: bool = True, **bar: Any) -> None:
        self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, **bar) if enabled else None

    def say(self, msg: str) -> None:
        """One line on stderr, above the bar."""
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def show(self, n: float | None = None, postfix: str | None = None) -> None:
        """Moves the bar to ``n`` and/or sets its status text."""
        if self.bar is None:
            return
        if n is not None:
            self.bar.n = n
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def advance(self, n: float = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
