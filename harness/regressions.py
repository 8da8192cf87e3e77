"""Regression files: ``regressions/<slug>.json``, one minimized reproducer per distinct bug.

A regression file is JSON, the program in its text form (one op per line) last::

    {"format": "hakmem-regression/1", "slug": ..., "signature": "overlap" or
     "sanitizer:heap-buffer-overflow@hak_free>slab_push", "build": "asan", "inject": null,
     "target": null | {"fixture": "overlap"} | {"path": "/abs/lib.so"}, "prefix": null | "fx_",
     "mode": "lockstep", "repeats": 1, "reliability": "3/3", "original_ops": 64,
     "minimized_ops": 5, "revision": "<git sha>", "date": "...", "campaign": "...",
     "frames": [...], "program": {text form}}

:class:`Regression` reads and writes it; harness.regression_check replays one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT
from harness.errors import UsageError
from harness.program import Program, from_text, to_text
from harness.target import Target
from harness.triage import BugKey, Reliability

__all__ = ["FORMAT", "REGRESSIONS", "Regression", "RegressionError", "git_revision",
           "known_bugs", "slugify"]

FORMAT = "hakmem-regression/1"
REGRESSIONS = PROJECT_ROOT / "regressions"


class RegressionError(UsageError):
    """A malformed regression file (names the file and the field)."""


def git_revision() -> str:
    """The checked-out commit (recorded with every reproducer and report)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                             capture_output=True, check=False, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def slugify(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "crash"


@dataclasses.dataclass
class Regression:
    """One reproducer and how it was found. ``target``/``prefix`` are the target's JSON
    form (harness.target.Target.to_json)."""

    program: Program
    signature: str
    build: str
    inject: str | None
    target: dict[str, str] | None
    prefix: str | None
    mode: str
    repeats: int
    reliability: Reliability
    original_ops: int
    slug: str = ""
    revision: str = ""
    date: str = ""
    campaign: str = ""
    frames: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def new(cls, program: Program, *, signature: str, build: str, inject: str | None,
            target: Target, mode: str, repeats: int, reliability: Reliability,
            original_ops: int, campaign: str = "", frames: list[str] | None = None,
            ) -> Regression:
        """A record for a fresh finding, slug, revision and date filled in."""
        slug = slugify("-".join(x for x in (build + ("+" + inject if inject else ""),
                                             target.label if target.foreign else "",
                                             signature) if x))
        return cls(program, signature, build, inject, target.to_json(), target.prefix, mode,
                   repeats, reliability, original_ops, slug, git_revision(),
                   datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   campaign, list(frames or []))

    @property
    def key(self) -> BugKey:
        t = self.target or {}
        label = ("fx_" + t["fixture"]) if "fixture" in t else (
            Path(t["path"]).name if "path" in t else "hakmem")
        return BugKey(self.signature, self.inject, label)

    def target_obj(self, clean: bool = False) -> Target:
        """The target it runs against (``clean``: a broken fixture's clean counterpart)."""
        try:
            return Target.from_json(self.target, self.prefix, clean)
        except ValueError as e:
            raise RegressionError(f"{self.slug}: {e}") from None

    def dumps(self) -> str:
        """The file's text: JSON, the program last in its one-op-per-line form."""
        head = {"format": FORMAT, "slug": self.slug, "signature": self.signature,
                "build": self.build, "inject": self.inject, "target": self.target,
                "prefix": self.prefix, "mode": self.mode, "repeats": self.repeats,
                "reliability": str(self.reliability), "original_ops": self.original_ops,
                "minimized_ops": len(self.program.ops), "revision": self.revision,
                "date": self.date, "campaign": self.campaign, "frames": self.frames}
        text = json.dumps(head, indent=2)[:-2]  # drop the closing "\n}"
        return f'{text},\n  "program": {to_text(self.program, indent="  ")}\n}}\n'

    def write(self, directory: Path | None = None) -> Path:
        """Writes ``<directory>/<slug>.json`` atomically (a new name if the slug is taken)."""
        directory = Path(directory) if directory else REGRESSIONS
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.slug}.json"
        n = 2
        while path.exists():
            path = directory / f"{self.slug}-{n}.json"
            n += 1
        self.slug = path.stem
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.dumps())
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path) -> Regression:
        """Parses and validates a regression file; RegressionError says what is wrong."""
        where = str(path)
        data = _load_json(path)
        if data.get("format") != FORMAT:
            raise RegressionError(f"{where}: field 'format' must be {FORMAT!r}")
        for key, typ in (("signature", str), ("build", str), ("mode", str), ("program", dict)):
            if not isinstance(data.get(key), typ):
                raise RegressionError(f"{where}: field {key!r} missing or not a {typ.__name__}")
        if data["mode"] not in ("lockstep", "concurrent"):
            raise RegressionError(f"{where}: field 'mode' must be lockstep or concurrent")
        if data.get("target") is not None and not isinstance(data["target"], dict):
            raise RegressionError(f"{where}: field 'target' must be null or an object")
        try:
            reliability = Reliability.parse(str(data.get("reliability") or "0/0"))
            repeats, original = int(data.get("repeats") or 1), int(data.get("original_ops") or 0)
        except ValueError as e:
            raise RegressionError(f"{where}: {e}") from None
        program = from_text(json.dumps(data["program"]), where)
        return cls(program, data["signature"], data["build"], data.get("inject"),
                   data.get("target"), data.get("prefix"), data["mode"], repeats, reliability,
                   original, path.stem, str(data.get("revision", "")), str(data.get("date", "")),
                   str(data.get("campaign", "")), list(data.get("frames") or []))


def _load_json(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise RegressionError(f"{where}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise RegressionError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RegressionError(f"{where}: expected a JSON object")
    return data


def is_regression_file(path: Path) -> bool:
    """Does ``path`` claim to be a regression file (whether or not it is well formed)?"""
    try:
        return _load_json(path).get("format") == FORMAT
    except RegressionError:
        return False


def known_bugs(directory: Path | None = None) -> dict[BugKey, Path]:
    """The bugs ``directory`` keeps a reproducer of, for dedupe (malformed files skipped:
    the regression test reports them)."""
    directory = Path(directory) if directory else REGRESSIONS
    out = {}
    for p in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            out[Regression.read(p).key] = p
        except UsageError:
            continue
    return out
