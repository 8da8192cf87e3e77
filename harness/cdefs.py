"""The cffi declarations of libhakmem.so, read from the C headers themselves.

``src_c/include/hakmem.h`` (the public API), ``src_c/include/hakmem_debug.h`` (the
introspection API) and ``src_c/executor/hakx.h`` (the executor) are the one source of every
declaration, constant and enum the harness uses: they are handed to cffi with only what its
parser cannot read removed (comments, include guards, ``extern "C"`` blocks, the export
attribute), so a field added in C is a field in Python without a second copy to forget.

Everything here is derived once at import; :data:`ffi` is the one FFI instance of the
package (binding and allocator both open libraries with it).
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

from harness import PROJECT_ROOT

__all__ = ["HEADERS", "ffi", "constants", "enum_names", "header_source"]

HEADERS: tuple[Path, ...] = (
    PROJECT_ROOT / "src_c" / "include" / "hakmem.h",
    PROJECT_ROOT / "src_c" / "include" / "hakmem_debug.h",
    PROJECT_ROOT / "src_c" / "executor" / "hakx.h",
)

_CPLUSPLUS = re.compile(r"#ifdef __cplusplus.*?#endif", re.S)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
# An integer #define cffi can take: `#define NAME 64`, `1u`, `(-1)`.
_INT_DEFINE = re.compile(r"#\s*define\s+(\w+)\s+\(?(-?(?:0x[0-9a-fA-F]+|\d+))[uUlL]*\)?\s*$")


def header_source(text: str) -> str:
    """``text`` (a C header) as cffi cdef source: plain declarations and integer defines."""
    text = _COMMENT.sub("", _CPLUSPLUS.sub("", text))
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            m = _INT_DEFINE.match(stripped)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        out.append(line.replace("HAKX_API ", ""))
    return "\n".join(out)


ffi = FFI()
ffi.cdef("\n".join(header_source(p.read_text()) for p in HEADERS))
# In ABI mode constants are attributes of an opened library; the process itself will do.
_SELF = ffi.dlopen(None)

_NAMES = re.compile(r"\b(HAKX?_[A-Z0-9_]+)\b")
_ALL_NAMES = sorted({m.group(1) for p in HEADERS for m in _NAMES.finditer(p.read_text())})


def constants(prefix: str) -> dict[str, int]:
    """Integer constants (defines and enum members) named ``prefix*``, keyed by the rest of
    the name in lower case: ``constants("HAKX_HOOK_")["overrun"] == 32``."""
    out = {}
    for name in _ALL_NAMES:
        if name.startswith(prefix):
            value = getattr(_SELF, name, None)
            if isinstance(value, int):  # not a guard or a function-like macro
                out[name[len(prefix):].lower()] = value
    return out


def enum_names(prefix: str) -> tuple[str, ...]:
    """Names of an enum's members (prefix stripped, lower case) indexed by value; the enum's
    values must be 0..n-1 (hak_region, hak_block_state)."""
    by_value = {v: k for k, v in constants(prefix).items()}
    return tuple(by_value[i] for i in range(len(by_value)))
