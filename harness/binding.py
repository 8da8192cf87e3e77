"""cffi (ABI mode) binding of the C executor in a build's libhakmem.so.

The executor (src_c/executor/, API in hakx.h) runs a whole program per call and never
calls back into Python. It targets either the library's own hak_* functions (black-box
and white-box checks) or a foreign shared library exporting the malloc family under a
symbol prefix (``target=PATH, prefix="mi_"``; ``prefix=""`` with libc.so.6 is glibc):
black-box checks only.

    lib = load(build("release").lib)
    v = run_program(lib, program, mode="lockstep")      # -> harness.checks.Verdict

This runs in the calling process: a crash kills it. harness.executor.replay runs a
program in a fresh child process instead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cffi import FFI

from harness.checks import Verdict
from harness.program import Program, encode

__all__ = [
    "CDEF",
    "HOOKS",
    "MODES",
    "Library",
    "load",
    "run_program",
    "run_program_traced",
    "c_decode",
]

CDEF = """
struct hakx_op {
    uint8_t op; uint8_t thread; uint8_t slot; uint8_t pad;
    uint32_t aux;
    uint64_t size;
};
struct hakx_options {
    int32_t mode;
    int32_t whitebox;
    uint32_t repeats;
    uint32_t hooks;
    const char *target_path;
    const char *prefix;
    uint64_t *trace;
    uint64_t trace_cap;
    uint64_t trace_len;
};
struct hakx_verdict {
    int32_t status;
    char check[32];
    int64_t op_index;
    int32_t thread;
    int32_t slot;
    uint64_t pointer;
    uint64_t expected;
    uint64_t observed;
    uint64_t ops_executed;
    uint64_t ops_skipped;
    char message[512];
};
size_t hakx_decode(const uint8_t *data, size_t len, struct hakx_op *ops, size_t cap,
                   uint32_t *threads);
int hakx_run(const uint8_t *data, size_t len, struct hakx_options *opt,
             struct hakx_verdict *verdict);
int hakx_version(void);

int hak_size_class(size_t size);
size_t hak_class_block_size(int size_class);
const char *hak_injected_bug(void);
const char *hak_build_variant(void);
"""

MODES = {"lockstep": 0, "concurrent": 1}
#: Test hooks of the executor (make white-box checks fire on purpose).
HOOKS = {"boundary": 1, "conversion": 2, "counters": 4, "leak": 8, "heap": 16, "overrun": 32}
_STATUS = {0: "pass", 1: "fail", 2: "error"}

ffi = FFI()
ffi.cdef(CDEF)

_cache: dict[str, Library] = {}
_cache_lock = threading.Lock()


class Library:
    """A loaded libhakmem.so (or any library holding the executor)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path).resolve())
        self.lib = ffi.dlopen(self.path)

    def has(self, symbol: str) -> bool:
        try:
            getattr(self.lib, symbol)
        except AttributeError:
            return False
        return True

    def class_sizes(self) -> list[int]:
        """Block sizes of hakmem's size classes (empty if the allocator is absent)."""
        if not self.has("hak_class_block_size"):
            return []
        out = []
        for c in range(64):
            n = self.lib.hak_class_block_size(c)
            if n == 0:
                break
            out.append(int(n))
        return out

    def variant(self) -> str:
        return ffi.string(self.lib.hak_build_variant()).decode()


def load(path: str | os.PathLike[str] | Library) -> Library:
    if isinstance(path, Library):
        return path
    key = str(Path(path).resolve())
    with _cache_lock:
        lib = _cache.get(key)
        if lib is None:
            lib = _cache[key] = Library(key)
        return lib


def _bytes(program: Program | bytes) -> bytes:
    return encode(program) if isinstance(program, Program) else bytes(program)


def _hooks(hooks: int | str | tuple[str, ...] | list[str] | None) -> int:
    if hooks is None:
        return 0
    if isinstance(hooks, int):
        return hooks
    if isinstance(hooks, str):
        hooks = [h for h in hooks.split(",") if h]
    try:
        return sum(HOOKS[h] for h in hooks)
    except KeyError as e:
        raise ValueError(f"unknown hook {e.args[0]!r}; one of {', '.join(HOOKS)}") from None


def _run(lib: Library | str | os.PathLike[str], program: Program | bytes, mode: str,
         target: str | os.PathLike[str] | None, prefix: str | None, whitebox: bool,
         repeats: int, hooks: int | str | None, trace_cap: int) -> tuple[Verdict, list[int]]:
    lib = load(lib)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    data = _bytes(program)
    opt = ffi.new("struct hakx_options *")
    opt.mode = MODES[mode]
    opt.whitebox = 1 if whitebox else 0
    opt.repeats = repeats
    opt.hooks = _hooks(hooks)
    keep = []
    if target is not None:
        tp = ffi.new("char[]", os.fsencode(str(target)))
        pp = ffi.new("char[]", (prefix or "").encode())
        keep += [tp, pp]
        opt.target_path = tp
        opt.prefix = pp
    trace = None
    if trace_cap:
        trace = ffi.new("uint64_t[]", trace_cap)
        opt.trace = trace
        opt.trace_cap = trace_cap
    v = ffi.new("struct hakx_verdict *")
    lib.lib.hakx_run(data, len(data), opt, v)
    verdict = Verdict(
        status=_STATUS.get(v.status, "error"),
        check=ffi.string(v.check).decode(errors="replace"),
        op_index=v.op_index,
        thread=v.thread,
        slot=v.slot,
        pointer=v.pointer,
        expected=v.expected,
        observed=v.observed,
        message=ffi.string(v.message).decode(errors="replace"),
        ops_executed=v.ops_executed,
        ops_skipped=v.ops_skipped,
    )
    addrs = [int(trace[i]) for i in range(min(opt.trace_len, trace_cap))] if trace_cap else []
    return verdict, addrs


def run_program(lib: Library | str | os.PathLike[str], program: Program | bytes,
                mode: str = "lockstep", target: str | os.PathLike[str] | None = None,
                prefix: str | None = None, *, whitebox: bool = True, repeats: int = 1,
                hooks: int | str | None = None) -> Verdict:
    """Runs ``program`` (Program or binary form) in this process. ``target=None``: the
    library's own allocator (white-box checks unless ``whitebox=False``)."""
    return _run(lib, program, mode, target, prefix, whitebox, repeats, hooks, 0)[0]


def run_program_traced(lib: Library | str | os.PathLike[str], program: Program | bytes,
                       mode: str = "lockstep", target: str | os.PathLike[str] | None = None,
                       prefix: str | None = None, *, whitebox: bool = True,
                       trace_cap: int = 1 << 16) -> tuple[Verdict, list[int]]:
    """Like run_program, also returning the user pointer of every successful allocation."""
    return _run(lib, program, mode, target, prefix, whitebox, 1, None, trace_cap)


def c_decode(lib: Library | str | os.PathLike[str], data: bytes) -> tuple[int, list[tuple]]:
    """The C decoder's view of ``data``: (threads, [(op, thread, slot, size, aux), ...])."""
    lib = load(lib)
    threads = ffi.new("uint32_t *")
    n = lib.lib.hakx_decode(data, len(data), ffi.NULL, 0, threads)
    ops = ffi.new("struct hakx_op[]", max(n, 1))
    lib.lib.hakx_decode(data, len(data), ops, n, threads)
    return int(threads[0]), [(o.op, o.thread, o.slot, o.size, o.aux) for o in ops[0:n]]
