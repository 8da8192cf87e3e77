"""Campaign folders, crash persistence, and regression files (regressions/<slug>.json).

Layout of a campaign (``campaigns/`` is git-ignored)::

    campaigns/<key>/corpus/            the libFuzzer corpus: persists, a later campaign resumes it
    campaigns/<key>/runs/<stamp>/      one campaign run
        crashes/                       every crash/timeout/oom input, written by libFuzzer
                                       (-artifact_prefix) before anything else touches it
        crashes/index.jsonl            one line per triaged input (file, signature, new/dup)
        fuzz.log, stats.csv, report.md, progress.png, regressions/ (copies of new reproducers)

``<key>`` is ``<build>[+<inject>][-<fixture or target name>]-<mode>``.

A regression file is JSON::

    {"format": "hakmem-regression/1", "slug": ..., "signature": "overlap" or
     "sanitizer:heap-buffer-overflow@hak_free>slab_push", "build": "asan", "inject": null,
     "target": null | {"fixture": "overlap"} | {"path": "/abs/lib.so"}, "prefix": null | "fx_",
     "mode": "lockstep", "repeats": 1, "reliability": "3/3", "original_ops": 64,
     "minimized_ops": 5, "revision": "<git sha>", "date": "...", "program": {text form}}

:func:`check_regression` replays one file and returns what is wrong (empty list: OK); it is
what regressions/conftest.py runs for each file.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT
from harness.errors import UsageError
from harness.program import Program, from_text, to_text

FORMAT = "hakmem-regression/1"
REGRESSIONS = PROJECT_ROOT / "regressions"
CAMPAIGNS = PROJECT_ROOT / "campaigns"
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")
#: the fixture that is the "clean" counterpart of every broken fixture
CLEAN_FIXTURE = "good"


class RegressionError(UsageError):
    """A malformed regression file (names the file and the field)."""


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                             capture_output=True, check=False, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def slugify(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "crash"


# --------------------------------------------------------------------------- targets


def fixture_lib(name: str, outdir: Path | None = None) -> Path:
    """Builds tests/fixtures/fx_<name>.c (cached) and returns the library."""
    src = FIXTURES / f"fx_{name}.c"
    if not src.is_file():
        known = sorted(p.stem[3:] for p in FIXTURES.glob("fx_*.c"))
        raise UsageError(f"unknown fixture {name!r}; fixtures: {', '.join(known)}")
    import importlib.util

    spec = importlib.util.spec_from_file_location("_hakmem_fxlib", FIXTURES / "fxlib.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    outdir = Path(outdir) if outdir else CAMPAIGNS / "fixtures"
    outdir.mkdir(parents=True, exist_ok=True)
    return Path(mod.build_fixture(name, outdir))


def fixture_of(path: str | os.PathLike[str]) -> str | None:
    """``overlap`` for .../libfx_overlap.so when tests/fixtures/fx_overlap.c exists."""
    m = re.fullmatch(r"libfx_(\w+)\.so", Path(path).name)
    if m and (FIXTURES / f"fx_{m.group(1)}.c").is_file():
        return m.group(1)
    return None


@dataclass(frozen=True)
class Target:
    """What a campaign runs programs against: hakmem itself (path None) or a foreign library."""

    path: Path | None = None
    prefix: str | None = None
    fixture: str | None = None

    @property
    def label(self) -> str:
        if self.path is None:
            return "hakmem"
        return f"fx_{self.fixture}" if self.fixture else self.path.name

    def to_json(self) -> dict[str, str] | None:
        if self.path is None:
            return None
        if self.fixture:
            return {"fixture": self.fixture}
        return {"path": str(self.path)}


def resolve_target(spec: str | None, prefix: str | None) -> Target:
    """``--target``: None, ``fixture:NAME`` or a library path."""
    if spec is None:
        if prefix is not None:
            raise UsageError("--prefix needs --target (e.g. --target fixture:overlap --prefix fx_)")
        return Target()
    if spec.startswith("fixture:"):
        name = spec.split(":", 1)[1]
        return Target(fixture_lib(name).resolve(), "fx_" if prefix is None else prefix, name)
    path = Path(spec)
    if not path.is_file() and "/" not in spec:
        return Target(Path(spec), prefix or "", None)  # a soname such as libc.so.6
    if not path.is_file():
        raise UsageError(f"--target {spec}: no such file")
    return Target(path.resolve(), prefix or "", fixture_of(path))


def target_from_json(data: Any, prefix: str | None, where: str,
                     clean: bool = False) -> Target:
    if data is None:
        return Target()
    if not isinstance(data, dict):
        raise RegressionError(f"{where}: field 'target' must be null or an object")
    if "fixture" in data:
        name = CLEAN_FIXTURE if clean else str(data["fixture"])
        return Target(fixture_lib(name, _fixture_cache()), prefix or "fx_", name)
    if "path" in data:
        return Target(Path(str(data["path"])), prefix or "", None)
    raise RegressionError(f"{where}: field 'target' needs 'fixture' or 'path'")


def _fixture_cache() -> Path:
    d = Path(tempfile.gettempdir()) / f"hakmem-fixtures-{os.getuid()}"
    d.mkdir(exist_ok=True)
    return d


# --------------------------------------------------------------------------- regressions


def regression_record(program: Program, *, signature: str, build: str, inject: str | None,
                      target: Target, mode: str, repeats: int, reliability: str,
                      original_ops: int, campaign: str = "", frames: list[str] | None = None,
                      ) -> dict[str, Any]:
    slug = slugify("-".join(x for x in (build + ("+" + inject if inject else ""),
                                         target.label if target.path else "", signature) if x))
    return {
        "format": FORMAT,
        "slug": slug,
        "signature": signature,
        "build": build,
        "inject": inject,
        "target": target.to_json(),
        "prefix": target.prefix,
        "mode": mode,
        "repeats": repeats,
        "reliability": reliability,
        "original_ops": original_ops,
        "minimized_ops": len(program.ops),
        "revision": git_revision(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "campaign": campaign,
        "frames": frames or [],
        "program": json.loads(to_text(program)),
    }


def write_regression(record: dict[str, Any], directory: Path | None = None) -> Path:
    """Writes ``<directory>/<slug>.json`` (atomically; a new name if the slug is taken)."""
    directory = Path(directory) if directory else REGRESSIONS
    directory.mkdir(parents=True, exist_ok=True)
    base = record["slug"]
    path = directory / f"{base}.json"
    n = 2
    while path.exists():
        path = directory / f"{base}-{n}.json"
        n += 1
    record = dict(record, slug=path.stem)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dump_regression(record))
    os.replace(tmp, path)
    return path


def dump_regression(record: dict[str, Any]) -> str:
    """JSON with the program in its text form (one op per line) as the last field."""
    rest = {k: v for k, v in record.items() if k != "program"}
    head = json.dumps(rest, indent=2)[:-2]  # drop the closing "\n}"
    prog = json.dumps(record["program"], separators=(", ", ": "))
    if "ops" in record["program"] and record["program"]["ops"]:
        ops = ",\n    ".join(json.dumps(o, separators=(", ", ": "))
                               for o in record["program"]["ops"])
        prog = (f'{{"version": {record["program"]["version"]}, '
                f'"threads": {record["program"]["threads"]}, "ops": [\n    {ops}\n  ]}}')
    return f'{head},\n  "program": {prog}\n}}\n'


def read_regression(path: Path) -> tuple[dict[str, Any], Program]:
    """Parses and validates a regression file; RegressionError says what is wrong."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise RegressionError(f"{where}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise RegressionError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RegressionError(f"{where}: expected a JSON object")
    if data.get("format") != FORMAT:
        raise RegressionError(f"{where}: field 'format' must be {FORMAT!r}")
    for key, typ in (("signature", str), ("build", str), ("mode", str), ("program", dict)):
        if not isinstance(data.get(key), typ):
            raise RegressionError(f"{where}: field {key!r} missing or not a {typ.__name__}")
    if data["mode"] not in ("lockstep", "concurrent"):
        raise RegressionError(f"{where}: field 'mode' must be lockstep or concurrent")
    program = from_text(json.dumps(data["program"]), where)
    return data, program


def known_signatures(directory: Path | None = None) -> dict[tuple[str, str | None, str], Path]:
    """(signature, inject, target label) -> file, for dedupe against existing reproducers."""
    directory = Path(directory) if directory else REGRESSIONS
    out = {}
    for p in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(p.read_text())
            t = data.get("target") or {}
            label = ("fx_" + t["fixture"]) if "fixture" in t else (
                Path(t["path"]).name if "path" in t else "hakmem")
            out[(data["signature"], data.get("inject"), label)] = p
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def check_regression(path: Path, timeout: float = 120.0) -> list[str]:
    """Replays a reproducer: must pass on the clean build/target; a seeded-bug or fixture
    reproducer must also still fail with its signature on its own build/target.
    Returns the problems (empty: fine). Raises RegressionError for a malformed file."""
    from harness.build import build as do_build
    from harness.triage import run_signature

    data, program = read_regression(path)
    where = str(path)
    inject = data.get("inject")
    variant = data["build"]
    repeats = int(data.get("repeats") or 1)
    problems = []
    clean_target = target_from_json(data.get("target"), data.get("prefix"), where, clean=True)
    clean = do_build(variant)
    sig, out = run_signature(program, clean, data["mode"], clean_target, repeats, timeout)
    if not out.passed:
        problems.append(f"clean build {variant}" + (
            f" / target {clean_target.label}" if clean_target.path else "") +
            f": expected pass, got {sig}\n{out.describe()}")
    seeded = inject or (data.get("target") or {}).get("fixture")
    if seeded:
        bad_target = target_from_json(data.get("target"), data.get("prefix"), where)
        bad = do_build(variant, inject)
        sig, out = run_signature(program, bad, data["mode"], bad_target, repeats, timeout)
        if sig != data["signature"]:
            problems.append(
                f"on {bad.name} / target {bad_target.label}: expected {data['signature']}, got "
                f"{sig} (a reproducer that no longer reproduces is a failure)\n{out.describe()}")
    return problems
