"""Function names and source lines for the frames of a fork child's hang report.

A fork child still running after its wait reports where it hangs (src_c/executor/fork.c).
It writes that report inside a signal handler, where only ``dladdr`` can name a frame, so
a frame in a hidden function (every executor and allocator internal is hidden) comes as
``(libhakmem.so+0xb817)``, or as the nearest exported symbol before it, with the frame's
offset in its object after it. ``addr2line`` turns each such offset into the function and
its source line, for the objects the harness knows by path: the build's library, its
sanitizer runtime and the target.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["hang_stack"]

#: one frame of the report: ``[symbol+0xOFF ](object+0xOFF)``
_FRAME = re.compile(r"(?:(\S+)\+0x[0-9a-f]+ )?\(([^()\s+]+)\+0x([0-9a-f]+)\)")


def _addr2line(obj: Path, offsets: list[int]) -> list[str]:
    """``function (file:line)`` per offset; "" where addr2line knows nothing."""
    exe = shutil.which("addr2line")
    if exe is None or not offsets:
        return [""] * len(offsets)
    proc = subprocess.run([exe, "-f", "-C", "-e", str(obj), *(hex(o) for o in offsets)],
                          capture_output=True, text=True, timeout=60, check=False)
    lines = proc.stdout.splitlines()
    if proc.returncode or len(lines) != 2 * len(offsets):
        return [""] * len(offsets)
    out = []
    for fn, where in zip(lines[::2], lines[1::2]):
        where = where.split(" (discriminator")[0]
        if fn == "??":
            out.append("")
        else:
            out.append(fn if where.startswith("??") else f"{fn} ({Path(where).name})")
    return out


def hang_stack(message: str, objects: Iterable[Path | None]) -> str:
    """The hang report's frames in ``message``, innermost first, joined by `` <- ``: each
    named by addr2line when its object is one of ``objects``, else as reported. "" when
    the message has no frames."""
    known = {p.name: p for p in objects if p is not None}
    frames = [(m.group(1), m.group(2), int(m.group(3), 16)) for m in _FRAME.finditer(message)]
    names = [sym or f"{obj}+{off:#x}" for sym, obj, off in frames]
    for name, path in known.items():
        at = [i for i, (_, obj, _) in enumerate(frames) if obj == name]
        # Past the first frame each address is a return address: the call is before it.
        found = _addr2line(path, [frames[i][2] - (i > 0) for i in at])
        for i, fn in zip(at, found):
            names[i] = fn or names[i]
    return " <- ".join(names)
