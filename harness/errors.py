"""The project's exception types.

Every command-line tool (``python -m harness.<tool>``) runs through :func:`harness.cli.run`,
which catches :class:`HarnessError`, prints its message on stderr and exits with its
``exit_code``, except that the tools whose exit status 1 means "found something" (the fuzz
campaign: a new crash; the scoreboard: a missed bug) exit 2 for every error, so that an
error is never read as a finding:

* :class:`UsageError` (exit 2): a bad command line or a missing tool/package;
  the message says what is valid or what to install.
* :class:`BuildError` (exit 1, or 2 in the tools above): a compile, link or post-link
  verification failure.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness reports to a person (not a bug in the harness)."""

    exit_code: int = 1


class UsageError(HarnessError):
    """Bad arguments or an unusable environment (unknown name, missing compiler, ...)."""

    exit_code = 2


class BuildError(HarnessError):
    """A build failed: compile or link error, or the result failed verification."""

    exit_code = 1
