"""Detection statistics (harness.survival) and the scoreboard's use of them, on synthetic
trials: no campaign is run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.scoreboard import Entry, Trial, aggregate, compare_runs, markdown
from harness.survival import Detections, compare, plot_survival, wilson

FAST = [1.0, 1.5, 2.0, 2.5, 3.0, 1.2, 0.8, 2.2, 1.1, 1.9]
SLOW = [30.0, 40.0, None, 50.0, None, 45.0, 35.0, None, 55.0, 42.0]


@pytest.mark.parametrize("hits, n, lo, hi", [
    (10, 10, 0.7225, 1.0),  # 10/10 only proves a rate above 0.72
    (5, 10, 0.2366, 0.7634),
    (0, 10, 0.0, 0.2775),
    (8, 10, 0.4902, 0.9433),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_known_bounds(hits, n, lo, hi):
    got = wilson(hits, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_rejects_nonsense():
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_kaplan_meier_median_and_rmst_by_hand():
    # detected at 1, 2, 3, 5 s; one miss censored at the 10 s budget.
    # KM steps: S = 0.8 after 1, 0.6 after 2, 0.4 after 3, 0.2 after 5, then flat to 10.
    d = Detections.of("x", [1.0, 2.0, 3.0, None, 5.0], 10)
    durations, observed = d.censored()
    assert durations == [1.0, 2.0, 3.0, 10.0, 5.0]
    assert observed == [True, True, True, False, True]
    sf = d.km().survival_function_["x"]
    assert [round(float(sf.loc[t]), 6) for t in (1.0, 2.0, 3.0, 5.0, 10.0)] == [
        0.8, 0.6, 0.4, 0.2, 0.2]
    assert d.median() == 3.0
    assert d.rmst() == pytest.approx(1 + 0.8 + 0.6 + 0.4 * 2 + 0.2 * 5)
    s = d.stats()
    assert (s["hits"], s["trials"], s["rate"]) == (4, 5, 0.8)


def test_median_not_reached_and_late_detection_censored():
    d = Detections.of("x", [None, None, 4.0], 10)
    assert d.median() is None and d.rmst() == pytest.approx((10 + 10 + 4) / 3)
    late = Detections.of("y", [12.0, 3.0], 10)  # 12 s is past the budget: a miss
    assert late.censored() == ([10.0, 3.0], [False, True])


def test_compare_detects_a_clear_difference():
    c = compare(Detections.of("a", FAST, 60), Detections.of("b", SLOW, 60))
    assert c.differs() and c.logrank_p < 0.001 and c.mannwhitney_p < 0.01
    assert c.a["hits"] == 10 and c.b["hits"] == 7


def test_compare_finds_no_difference_between_equal_runs():
    same = compare(Detections.of("a", FAST, 60), Detections.of("b", list(reversed(FAST)), 60))
    assert not same.differs() and same.logrank_p > 0.5 and same.mannwhitney_p > 0.5
    # two runs that each missed everything: nothing to tell apart
    none = compare(Detections.of("a", [None] * 4, 60), Detections.of("b", [None] * 4, 60))
    assert none.logrank_p == 1.0 and none.mannwhitney_p == 1.0


def test_compare_censors_both_at_the_smaller_budget():
    c = compare(Detections.of("a", [5.0, 50.0], 60), Detections.of("b", [5.0, None], 30))
    assert c.a["budget"] == c.b["budget"] == 30 and c.a["hits"] == 1


def test_plot_writes_one_figure(tmp_path):
    out = plot_survival([Detections.of("a", FAST, 60), Detections.of("b", SLOW, 60)],
                        tmp_path / "s.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run_json(path, times, budget=60.0, seeds=True):
    trials = [Trial("x", k, 1 + k, t is not None, t) for k, t in enumerate(times)]
    meta = {"trials": len(times), "budget": budget, "revision": "abc", "seeds": seeds,
            "date": "2026-12-02", "host": "2 cores", "wall": 1.0}
    path.write_text(json.dumps({"meta": meta, "rows": [],
                                "trials": [dataclasses.asdict(t) for t in trials]}))
    return path


def test_scoreboard_rows_and_markdown_carry_the_statistics():
    trials = [Trial("x", k, 1 + k, t is not None, t, problem="" if t else "not detected")
              for k, t in enumerate(SLOW)]
    row = aggregate(Entry("x", "asan", "lockstep"), trials, 60)
    assert row["stat_rate"] == 0.7 and row["stat_rate_lo95"] == pytest.approx(0.3968, abs=1e-4)
    md = markdown([row], trials, {"trials": 10, "budget": 60, "host": "2 cores",
                                  "date": "2026-12-02", "revision": "abc", "wall": 1.0})
    assert "| `x` | 10 | 0.70 [0.40, 0.89] | 45.0 | 47.7 |" in md
    assert "trial 2 (seed 3): not detected (re-run it alone: `--rerun x:2 --seed 1`)" in md


def test_scoreboard_compare_two_runs(tmp_path):
    a = _run_json(tmp_path / "a.json", FAST)
    b = _run_json(tmp_path / "b.json", SLOW, seeds=False)
    md = compare_runs(a, b, tmp_path / "out")
    assert "| `x` | 10/10 | 7/10 |" in md and " * |" in md
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert data["entries"][0]["logrank_p"] < 0.001
    assert (tmp_path / "out" / "survival.png").is_file()
    md_null = compare_runs(a, _run_json(tmp_path / "c.json", FAST), tmp_path / "null")
    assert " * |" not in md_null


def test_rerun_needs_entry_and_index(capsys):
    from harness.scoreboard import main
    assert main(["--rerun", "drain_counter"]) == 2
    assert "ENTRY:INDEX" in capsys.readouterr().err
