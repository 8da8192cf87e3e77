"""The executor in this process: cffi (ABI mode) over a build's libhakmem.so.

The executor (src_c/executor/, API in hakx.h) runs a whole program per call and never
calls back into Python. It targets either the library's own hak_* functions (black-box
and white-box checks) or a foreign shared library exporting the malloc family under a
symbol prefix (:class:`harness.target.Target`): black-box checks only.

    lib = load(build("release").lib)
    v = run_program(lib, program, mode="lockstep")      # -> harness.verdict.Verdict
    run = Runner(lib)                                   # the same, per input of a fuzzer
    v = run.failure(data, "lockstep")                   # -> None when it passed

A crash here kills the calling process: :mod:`harness.child` runs a program in a fresh
process instead. A library whose ``hakx_version()`` differs from the headers' HAKX_VERSION
is refused on load (a stale build would decode programs differently).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from harness.cdefs import constants, enum_names, ffi
from harness.errors import UsageError
from harness.program import Program, encode
from harness.target import Target
from harness.verdict import Verdict

__all__ = ["HOOKS", "MODES", "Library", "Runner", "load", "hook_mask", "run_program",
           "run_program_traced", "c_decode"]

MODES: tuple[str, ...] = enum_names("HAKX_MODE_")
#: Test hooks of the executor (make white-box checks fire on purpose).
HOOKS: dict[str, int] = constants("HAKX_HOOK_")
_STATUS: tuple[str, ...] = enum_names("HAKX_STATUS_")
HAKX_VERSION: int = constants("HAKX_")["version"]
_PASS = _STATUS.index("pass")

_cache: dict[str, Library] = {}
_cache_lock = threading.Lock()


class Library:
    """A loaded libhakmem.so (or any library holding the executor)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path).resolve())
        self.lib: Any = ffi.dlopen(self.path)
        version = self.lib.hakx_version()
        if version != HAKX_VERSION:
            raise UsageError(f"{self.path}: executor version {version}, but the headers say "
                             f"{HAKX_VERSION}: the library is stale, rebuild it")

    def class_sizes(self) -> list[int]:
        """Block sizes of hakmem's size classes."""
        out = []
        for c in range(constants("HAK_")["num_classes"]):
            n = self.lib.hak_class_block_size(c)
            if n == 0:
                break
            out.append(int(n))
        return out

    def variant(self) -> str:
        return ffi.string(self.lib.hak_build_variant()).decode()


def load(path: str | os.PathLike[str] | Library) -> Library:
    """The library at ``path``, opened once per process."""
    if isinstance(path, Library):
        return path
    key = str(Path(path).resolve())
    with _cache_lock:
        lib = _cache.get(key)
        if lib is None:
            lib = _cache[key] = Library(key)
        return lib


def hook_mask(hooks: int | str | None) -> int:
    """``"heap,overrun"`` (or a mask) as the executor's hook mask; UsageError names an
    unknown hook."""
    if hooks is None:
        return 0
    if isinstance(hooks, int):
        return hooks
    names = [h for h in hooks.split(",") if h]
    bad = [h for h in names if h not in HOOKS]
    if bad:
        raise UsageError(f"unknown hook {bad[0]!r}; one of {', '.join(HOOKS)}")
    return sum(HOOKS[h] for h in names)


def _options(target: Target, whitebox: bool, repeats: int,
             hooks: int | str | None) -> tuple[Any, list[Any]]:
    """A ``struct hakx_options`` (mode unset) and the C strings it points to (keep them)."""
    opt = ffi.new("struct hakx_options *")
    opt.whitebox = 1 if whitebox else 0
    opt.repeats = repeats
    opt.hooks = hook_mask(hooks)
    keep = []
    if target.path is not None:
        keep = [ffi.new("char[]", os.fsencode(str(target.path))),
                ffi.new("char[]", (target.prefix or "").encode())]
        opt.target_path, opt.prefix = keep
    return opt, keep


def _verdict(v: Any) -> Verdict:
    """A ``struct hakx_verdict`` as a Verdict."""
    return Verdict(
        status=_STATUS[v.status] if 0 <= v.status < len(_STATUS) else "error",
        check=ffi.string(v.check).decode(errors="replace"),
        op_index=v.op_index,
        program_op=v.program_op,
        thread=v.thread,
        slot=v.slot,
        pointer=v.pointer,
        expected=v.expected,
        observed=v.observed,
        message=ffi.string(v.message).decode(errors="replace"),
        ops_executed=v.ops_executed,
        ops_skipped=v.ops_skipped,
        sched_steps=v.sched_steps,
        sched_trace=v.sched_trace,
        peak_mapped=v.peak_mapped,
        collect_mapped=v.collect_mapped,
        os_maps=v.os_maps,
    )


def _mode(mode: str) -> int:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    return MODES.index(mode)


def _run(lib: Library | str | os.PathLike[str], program: Program | bytes, mode: str,
         target: Target, whitebox: bool, repeats: int, hooks: int | str | None,
         trace_cap: int) -> tuple[Verdict, list[int]]:
    lib = load(lib)
    data = encode(program) if isinstance(program, Program) else bytes(program)
    opt, _keep = _options(target, whitebox, repeats, hooks)
    opt.mode = _mode(mode)
    trace = None
    if trace_cap:
        trace = ffi.new("uint64_t[]", trace_cap)
        opt.trace = trace
        opt.trace_cap = trace_cap
    v = ffi.new("struct hakx_verdict *")
    lib.lib.hakx_run(data, len(data), opt, v)
    addrs = [int(trace[i]) for i in range(min(opt.trace_len, trace_cap))] if trace else []
    return _verdict(v), addrs


class Runner:
    """:func:`run_program` for one library and target, called once per input by a fuzzer:
    its C structs are allocated once (hakx_run resets the verdict itself), and a Verdict
    is built only for a program that did not pass. One per thread (the structs are
    shared by its calls)."""

    def __init__(self, lib: Library | str | os.PathLike[str], target: Target = Target(), *,
                 whitebox: bool = True) -> None:
        self._run = load(lib).lib.hakx_run
        self._opt, self._keep = _options(target, whitebox, 1, None)
        self._v = ffi.new("struct hakx_verdict *")

    def failure(self, data: bytes, mode: str) -> Verdict | None:
        """Runs ``data`` (a program in binary form) in ``mode``: None if it passed, else
        its verdict (status fail or error), as :func:`run_program` gives it."""
        self._opt.mode = _mode(mode)
        if self._run(data, len(data), self._opt, self._v) == _PASS:
            return None
        return _verdict(self._v)


def run_program(lib: Library | str | os.PathLike[str], program: Program | bytes,
                mode: str = "lockstep", target: Target = Target(), *, whitebox: bool = True,
                repeats: int = 1, hooks: int | str | None = None) -> Verdict:
    """Runs ``program`` (Program or binary form) in this process against ``target``
    (default: the library's own allocator, white-box checks unless ``whitebox=False``)."""
    return _run(lib, program, mode, target, whitebox, repeats, hooks, 0)[0]


def run_program_traced(lib: Library | str | os.PathLike[str], program: Program | bytes,
                       mode: str = "lockstep", target: Target = Target(), *,
                       whitebox: bool = True,
                       trace_cap: int = 1 << 16) -> tuple[Verdict, list[int]]:
    """Like run_program, also returning the user pointer of every successful allocation."""
    return _run(lib, program, mode, target, whitebox, 1, None, trace_cap)


def c_decode(lib: Library | str | os.PathLike[str], data: bytes) -> tuple[int, list[tuple]]:
    """The C decoder's view of ``data``: (threads, [(op, thread, slot, size, aux), ...])."""
    lib = load(lib)
    threads = ffi.new("uint32_t *")
    n = lib.lib.hakx_decode(data, len(data), ffi.NULL, 0, threads)
    ops = ffi.new("struct hakx_op[]", max(n, 1))
    lib.lib.hakx_decode(data, len(data), ops, n, threads)
    return int(threads[0]), [(o.op, o.thread, o.slot, o.size, o.aux) for o in ops[0:n]]
