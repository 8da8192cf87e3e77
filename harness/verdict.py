"""The executor's verdict: what one run of a program concluded (``struct hakx_verdict``).

``status`` is ``"pass"``, ``"fail"`` (a check fired: ``check`` names it) or ``"error"``
(the executor could not run: ``message`` says why). It travels from a replay child to its
parent as one line, ``HAKX-VERDICT <json>`` (:data:`MARKER`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["MARKER", "PASS", "Verdict"]

#: Prefix of the line on which a replay child reports its verdict.
MARKER = "HAKX-VERDICT "
PASS = "pass"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``op_index`` is the op that failed in the expanded program (every loop unrolled;
    -1: a check after the last op, or none) and ``program_op`` the same op in the program as
    written, where a loop and its body count as one op;
    ``thread``/``slot`` are -1 when not applicable; ``expected``/``observed`` are the
    check's two sides (an alignment, a byte of the pattern, a counter...)."""

    status: str
    check: str = ""
    op_index: int = -1
    program_op: int = -1
    thread: int = -1
    slot: int = -1
    pointer: int = 0
    expected: int = 0
    observed: int = 0
    message: str = ""
    ops_executed: int = 0
    ops_skipped: int = 0
    #: a scheduled run: synchronisation points passed, and a hash of their sequence
    #: (thread, kind); 0 when the run was not scheduled
    sched_steps: int = 0
    sched_trace: int = 0
    #: the allocator's footprint (white-box runs): the most bytes mapped at a check point,
    #: the sum of bytes kept mapped after each collect op, and mmap calls made
    peak_mapped: int = 0
    collect_mapped: int = 0
    os_maps: int = 0

    @property
    def passed(self) -> bool:
        return self.status == PASS

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

    def to_line(self) -> str:
        """The marker line a replay child prints."""
        return MARKER + json.dumps(self.to_dict())

    @classmethod
    def from_output(cls, stdout: str) -> Verdict | None:
        """The last verdict a child printed on ``stdout``, or None."""
        found = None
        for line in stdout.splitlines():
            if line.startswith(MARKER):
                found = cls.from_dict(json.loads(line[len(MARKER):]))
        return found

    def describe(self) -> str:
        sched = (f", scheduled: {self.sched_steps} points, trace {self.sched_trace:016x}"
                 if self.sched_steps else "")
        if self.passed:
            return f"pass ({self.ops_executed} ops executed, {self.ops_skipped} skipped{sched})"
        if self.status == "error":
            return f"executor error: {self.message}"
        where = "after the last op" if self.op_index < 0 else (
            f"at op {self.program_op}" if self.program_op == self.op_index
            else f"at op {self.program_op} (op {self.op_index} of the expanded program)")
        parts = [f"FAIL {self.check} {where}"]
        if self.thread >= 0:
            parts.append(f"thread {self.thread}")
        if self.slot >= 0:
            parts.append(f"slot {self.slot}")
        lines = [", ".join(parts) + sched, f"  {self.message}"]
        if self.pointer:
            lines.append(f"  pointer  {self.pointer:#x}")
        lines.append(f"  expected {self.expected:#x} ({self.expected})")
        lines.append(f"  observed {self.observed:#x} ({self.observed})")
        return "\n".join(lines)
