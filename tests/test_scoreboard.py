"""The seeded-bug scoreboard (harness.scoreboard): configuration, scoring, one real trial."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from harness import PROJECT_ROOT
from harness.inject import inject_catalogue
from harness.program import Op, Program
from harness.regression_check import check_regression
from harness.regressions import Regression
from harness.target import Target
from harness.triage import Reliability
from harness.errors import UsageError
from harness.campaign_options import parse
from harness.scoreboard import (CONFIG, INTERRUPTED_EXIT, Entry, Hunt, Trial, aggregate,
                                 campaign_options, load_config, markdown)
from tests.fixtures import procfs


def test_config_covers_the_whole_catalogue():
    names = [e.name for e in load_config()]
    assert names == inject_catalogue() and len(names) >= 8


def test_config_missing_an_entry_is_an_error(tmp_path):
    text = CONFIG.read_text().replace("[entry.drain_counter]", "[entry.nosuch_bug]")
    bad = tmp_path / "scoreboard.toml"
    bad.write_text(text)
    with pytest.raises(UsageError, match="drain_counter.*nosuch_bug"):
        load_config(bad)
    with pytest.raises(UsageError, match="unknown seeded bug"):
        load_config(CONFIG, ["drain_counter", "typo"])


def test_aggregate_counts_misses_and_medians():
    e = Entry("x", "asan", "lockstep")
    trials = [Trial("x", 0, 1, True, 4.0, "counters", 3, found_by="fuzzer"),
              Trial("x", 1, 2, True, 10.0, "counters", 5, found_by="seed"),
              Trial("x", 2, 3, problem="not detected")]
    row = aggregate(e, trials, 300)
    assert row["detected"] == "2/3" and row["median_s"] == 7.0
    assert row["worst"] == "> 300 (missed)" and row["ops"] == "3-5"
    md = markdown([row], trials, {"trials": 3, "budget": 300, "host": "2 cores",
                                  "date": "2026-12-01", "revision": "abc", "wall": 1.0})
    assert ("| `x` | asan | 2/3 | 7.0 | > 300 (missed) | 3-5 | `counters` | fuzzer 1, seed 1 |"
            in md)
    assert "trial 2 (seed 3): not detected" in md


def test_a_trial_campaign_is_given_every_setting_of_the_hunt(tmp_path):
    """The trial's campaign command parses back to the same options, libFuzzer flags
    (whose values begin with "-") included."""
    hunt = Hunt(60, 10, seeds=False, libfuzzer_args=("-entropic_scale_per_exec_time=1",
                                                     "-use_value_profile=1"))
    opts = campaign_options(Entry("eager_release", "asan", "lockstep"), tmp_path, 7, hunt)
    assert parse(opts.to_argv()) == opts
    assert opts.libfuzzer_arg == hunt.libfuzzer_args and opts.no_seeds


# Lockstep entries: a lockstep trial replays the same way every time. The race entry
# (remote_plain_push) is hunted on asan-sched, where its reproducers replay identically, but
# a campaign's time to find it still depends on the machine's load; its deterministic trial
# (schedules searched by seed, minimized, replayed 100/100) is tests/test_sched.py.
@pytest.mark.parametrize("entry, build", [("drain_counter", "asan"),
                                          ("missing_used_add", "asan")])
def test_one_trial_detects_minimizes_and_saves(tmp_path, entry, build):
    out, regs = tmp_path / "out", tmp_path / "regs"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.scoreboard", "--entries", entry, "--trials",
         "1", "--budget", "90", "--out", str(out), "--save", "--regressions", str(regs),
         "--libfuzzer-arg=-use_value_profile=0", "--no-progress"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "scoreboard.json").read_text())
    assert data["meta"]["libfuzzer_args"] == ["-use_value_profile=0"]
    (fuzzer_cmd,) = out.glob("*/trial0/campaigns/*/runs/*/command.txt")
    assert "-use_value_profile=0" in fuzzer_cmd.read_text().split()
    (t,) = data["trials"]
    assert t["detected"] and 0 <= t["seconds"] <= 90 and t["minimized_ops"] <= 12
    assert f"| `{entry}` | {build} | 1/1 |" in (out / "scoreboard.md").read_text()
    (saved,) = regs.glob("*.json")
    record = Regression.read(saved)
    assert record.inject == entry and check_regression(saved) == []
    assert record.mode == "lockstep" and record.reliability.full


def test_save_best_keeps_one_reproducer_per_bug(tmp_path):
    from harness.scoreboard import save_best

    def reg(path, sig, ops):
        program = Program(1, tuple(Op("malloc", 0, i, 16) for i in range(ops)))
        path.write_text(Regression.new(program, signature=sig, build="asan", inject="x",
                                       target=Target(), mode="lockstep", repeats=1,
                                       reliability=Reliability(3, 3), original_ops=ops).dumps())
        return path

    regs, runs = tmp_path / "regs", tmp_path / "runs"
    regs.mkdir()
    runs.mkdir()
    old = reg(regs / "old.json", "heap_check", 5)
    e = Entry("x", "asan", "lockstep")
    big = Trial("x", 0, 1, True, 2.0, "counters", 7, reliability="3/3",
                regression=str(reg(runs / "big.json", "counters", 7)))
    assert save_best(e, [big], regs) is None and old.exists()  # larger: the old one stays
    small = Trial("x", 1, 2, True, 3.0, "counters", 2, reliability="3/3",
                  regression=str(reg(runs / "small.json", "counters", 2)))
    flaky = Trial("x", 2, 3, True, 1.0, "counters", 1, reliability="2/3",
                  regression=str(reg(runs / "flaky.json", "counters", 1)))
    assert save_best(e, [big, small, flaky], regs) == regs / "small.json"
    assert sorted(p.name for p in regs.iterdir()) == ["small.json"]


def test_a_reproducer_that_does_not_hold_is_not_a_detection(tmp_path):
    """score_trial counts a crash only when check_regression holds for its reproducer."""
    from harness.scoreboard import score_trial

    data = json.loads((PROJECT_ROOT / "regressions" / "asan-drain-counter-counters.json")
                      .read_text())
    run = tmp_path / "campaigns" / "k" / "runs" / "r"
    run.mkdir(parents=True)

    def trial_with(signature: str) -> Trial:
        reg = tmp_path / f"{signature}.json"
        reg.write_text(json.dumps(dict(data, signature=signature)))
        (run / "summary.json").write_text(json.dumps({"entries": [
            {"regression": str(reg), "signature": signature, "detected_s": 1.5,
             "file": str(run / "crashes" / "crash-abc"), "minimized_ops": 3,
             "original_ops": 9, "reliability": "3/3"}]}))
        return score_trial(Entry("drain_counter", "asan", "lockstep"),
                           Trial("drain_counter", 0, 1), tmp_path, 1)

    good = trial_with("counters")
    assert good.detected and good.seconds == 1.5 and good.found_by == "fuzzer"
    bad = trial_with("overlap")  # the injected build gives `counters`, not `overlap`
    assert not bad.detected and "expected overlap, got counters" in bad.problem


def test_an_interrupted_board_keeps_the_trials_that_finished(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM in trial 1 of the first entry: trial 0 is written (trials.jsonl as
    it ended, then the board's outputs, marked interrupted) and no other entry runs."""
    from harness import scoreboard

    started = []

    def run_trial(entry, index, seed, root, hunt):
        started.append((entry.name, index))
        if index == 1:
            raise KeyboardInterrupt
        return Trial(entry.name, index, seed, True, 3.0, "counters", 4)
    monkeypatch.setattr(scoreboard, "run_trial", run_trial)
    monkeypatch.setattr(scoreboard, "build", lambda *a: None)
    out = tmp_path / "out"
    rc = scoreboard.main(["--entries", "drain_counter,missing_used_add", "--trials", "3",
                          "--out", str(out), "--no-progress"])
    assert rc == INTERRUPTED_EXIT
    assert started == [("drain_counter", 0), ("drain_counter", 1)]
    data = json.loads((out / "scoreboard.json").read_text())
    assert data["meta"]["interrupted"] is True
    assert [(t["entry"], t["index"]) for t in data["trials"]] == [("drain_counter", 0)]
    assert [r["entry"] for r in data["rows"]] == ["drain_counter"]
    (line,) = (out / "trials.jsonl").read_text().splitlines()
    assert json.loads(line) == data["trials"][0]
    md = (out / "scoreboard.md").read_text()
    assert "**Interrupted** after 1 finished trials" in md and (out / "survival.png").exists()


def test_sigterm_stops_the_trial_in_progress_and_leaves_no_campaign_running(tmp_path):
    """The board's SIGTERM reaches its campaign, which stops its fuzzer and writes its
    summary; nothing of the board outlives it. (A campaign fed 1-byte inputs, programs
    without ops, cannot find its bug, so the trial is surely in progress.)"""
    out = tmp_path / "out"
    board = subprocess.Popen(
        [sys.executable, "-m", "harness.scoreboard", "--entries", "drain_counter", "--trials",
         "2", "--budget", "600", "--out", str(out), "--no-seeds", "--no-neighbours",
         "--libfuzzer-arg=-max_len=1", "--no-progress"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def fuzzing() -> bool:
        assert board.poll() is None, board.communicate()[1]
        return any("INITED" in p.read_text(errors="replace")
                   for p in out.glob("drain_counter/trial0/campaigns/*/runs/*/fuzz.log"))
    procfs.wait_for(fuzzing, "trial 0's fuzzer did not start")
    board.send_signal(signal.SIGTERM)
    _, err = board.communicate(timeout=300)
    assert board.returncode == INTERRUPTED_EXIT, err
    (summary,) = out.glob("drain_counter/trial0/campaigns/*/runs/*/summary.json")
    assert json.loads(summary.read_text())["interrupted"] is True
    data = json.loads((out / "scoreboard.json").read_text())
    assert data["meta"]["interrupted"] is True and data["trials"] == []
    assert not (out / "drain_counter" / "trial1").exists()

    def running() -> list[int]:
        return [p for p in procfs.pids() if str(out).encode() in procfs.cmdline(p)]
    procfs.wait_for(lambda: not running(), "a process of the board outlived it", 60)
