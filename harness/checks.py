"""Check names and the verdict type.

Every finding carries one stable name (DESIGN.md, "Checks"):

* black-box (any target): ``align``, ``overlap``, ``integrity``, ``usable_size``,
  ``realloc_preserve``, ``calloc_zero``, ``null``;
* white-box (hakmem only, through hakmem_debug.h): ``block_boundary``,
  ``double_conversion``, ``counters``, ``heap_check``, ``leak``;
* from the process (harness.executor): ``sanitizer:<kind>`` (e.g.
  ``sanitizer:heap-use-after-free``, ``sanitizer:data-race``,
  ``sanitizer:undefined-behavior``), ``signal:<NAME>`` (``signal:SIGSEGV``), ``timeout``.

``executor`` is not a finding: the executor itself could not run (bad target path,
missing symbols, out of threads).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "BLACK_BOX",
    "WHITE_BOX",
    "ALL_CHECKS",
    "PASS",
    "Verdict",
    "is_check_name",
]

BLACK_BOX: tuple[str, ...] = (
    "align",
    "overlap",
    "integrity",
    "usable_size",
    "realloc_preserve",
    "calloc_zero",
    "null",
)
WHITE_BOX: tuple[str, ...] = (
    "block_boundary",
    "double_conversion",
    "counters",
    "heap_check",
    "leak",
)
ALL_CHECKS: tuple[str, ...] = BLACK_BOX + WHITE_BOX
PROCESS_PREFIXES: tuple[str, ...] = ("sanitizer:", "signal:")
PASS = "pass"


def is_check_name(name: str) -> bool:
    return name in ALL_CHECKS or name == "timeout" or name.startswith(PROCESS_PREFIXES)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one run of a program concluded.

    ``status`` is ``"pass"``, ``"fail"`` (a check fired: ``check`` names it) or
    ``"error"`` (the executor could not run; ``message`` says why). ``op_index`` is the
    op that failed (-1: a check after the last op, or none); ``thread``/``slot`` -1 when
    not applicable; ``expected``/``observed`` are the check's two sides (an alignment,
    a byte of the pattern, a counter...)."""

    status: str
    check: str = ""
    op_index: int = -1
    thread: int = -1
    slot: int = -1
    pointer: int = 0
    expected: int = 0
    observed: int = 0
    message: str = ""
    ops_executed: int = 0
    ops_skipped: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def name(self) -> str:
        """``pass``, the check name, or ``executor`` for an executor error."""
        return PASS if self.passed else (self.check or "executor")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def describe(self) -> str:
        if self.passed:
            return f"pass ({self.ops_executed} ops executed, {self.ops_skipped} skipped)"
        if self.status == "error":
            return f"executor error: {self.message}"
        where = "after the last op" if self.op_index < 0 else f"at op {self.op_index}"
        parts = [f"FAIL {self.check} {where}"]
        if self.thread >= 0:
            parts.append(f"thread {self.thread}")
        if self.slot >= 0:
            parts.append(f"slot {self.slot}")
        lines = [", ".join(parts), f"  {self.message}"]
        if self.pointer:
            lines.append(f"  pointer  {self.pointer:#x}")
        lines.append(f"  expected {self.expected:#x} ({self.expected})")
        lines.append(f"  observed {self.observed:#x} ({self.observed})")
        return "\n".join(lines)
