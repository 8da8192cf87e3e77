"""Every ``regressions/*.json`` reproducer is one pytest item (``pytest -n auto regressions``).

Each item replays its program in a fresh process on the build it names and expects a pass
on the clean build (and, for a fixture target, on the clean fixture ``fx_good``). A
reproducer recorded against a seeded bug (``inject``) or a broken fixture must also still
fail with the same signature there: one that no longer reproduces is a failure, not a pass.
A malformed file is a clear failure of its own item, never a collection error. The work is
done by :func:`harness.regression_check.check_regression`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.regression_check import check_regression
from harness.regressions import RegressionError as Malformed

HERE = Path(__file__).resolve().parent


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".json" and file_path.resolve().parent == HERE:
        return RegressionFile.from_parent(parent, path=file_path)
    return None


class RegressionFile(pytest.File):
    def collect(self):
        yield RegressionItem.from_parent(self, name=self.path.stem)


class RegressionError(Exception):
    pass


class RegressionItem(pytest.Item):
    def runtest(self) -> None:
        try:
            problems = check_regression(self.path)
        except Malformed as e:
            raise RegressionError(f"malformed reproducer: {e}") from None
        if problems:
            raise RegressionError("\n".join(problems))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, RegressionError):
            return f"{self.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"regression {self.path.stem}"
