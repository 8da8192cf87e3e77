"""End-to-end fuzz campaigns (short: seconds each) against the fixture allocators.

Every campaign writes into tmp_path (campaign folders and the regressions dir): never into
the real regressions/."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import PROJECT_ROOT
from harness.campaign_options import parse
from harness.fuzz import _Exit, _Run
from harness.libfuzzer import SCHED_SEEDS, SEEDS, CampaignDirs, Stats, command, seed_dirs
from harness.program import Op, Program, encode
from harness.regression_check import check_regression
from harness.regressions import Regression
from tests.fixtures import procfs


def fuzz(tmp_path: Path, *args: str, timeout: float = 1200) -> tuple[int, str, dict]:
    """Run a campaign; ``timeout`` only catches a hung driver (--max-time bounds the
    fuzzing, but triage and minimization run 4x slower on a loaded 2-core machine)."""
    cmd = [sys.executable, "-m", "harness.fuzz", "--campaigns", str(tmp_path / "campaigns"),
           "--regressions", str(tmp_path / "regs"), "--no-progress", "--seed", "1", *args]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    summaries = sorted((tmp_path / "campaigns").glob("*/runs/*/summary.json"))
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    return proc.returncode, proc.stdout + proc.stderr, summary


def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, "-m", "harness.fuzz", "--help"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--build", "--inject", "--target", "--prefix", "--mode", "--threads",
                 "--max-time", "--jobs", "--seed", "--corpus", "--regressions",
                 "--no-neighbours"):
        assert out.count(flag) >= 2, flag  # in usage and in the documented list
    assert "examples:" in out and "python -m harness.fuzz --build asan" in out


@pytest.mark.parametrize("args, msg", [
    (["--build", "nosuch"], "unknown build variant"),
    (["--target", "fixture:nosuch"], "unknown fixture"),
    (["--prefix", "mi_"], "--prefix needs --target"),
    (["--libfuzzer-arg", "corpusdir"], "-name=value"),
])
def test_usage_errors_exit_2(tmp_path, args, msg):
    rc, out, _ = fuzz(tmp_path, *args, "--max-time", "1")
    assert rc == 2 and msg in out


def test_campaign_finds_minimizes_and_records_fixture_bug(tmp_path):
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", "fixture:overlap",
                      "--max-time", "25")
    assert rc == 1, out
    run = Path(s["run_dir"])
    crashes = [p for p in (run / "crashes").iterdir() if p.name.startswith("crash-")]
    assert crashes, "the crash input is persisted"
    assert s["new_distinct"] >= 1 and s["native_coverage"] == "yes"
    regs = sorted((tmp_path / "regs").glob("*.json"))
    assert regs, out
    reg = Regression.read(regs[0])
    prog = reg.program
    assert reg.signature == "overlap" and reg.target == {"fixture": "overlap"}
    assert len(prog.ops) <= 8 < reg.original_ops or len(prog.ops) <= 8
    assert check_regression(regs[0]) == []  # clean fx_good passes, fx_overlap still fails
    report = (run / "report.md").read_text()
    assert "overlap" in report and "python -m harness.run" in report
    assert (run / "progress.png").is_file()
    # a second campaign resumes the corpus and knows the bug (dedupe against regressions)
    rc2, out2, s2 = fuzz(tmp_path, "--build", "asan", "--target", "fixture:overlap",
                         "--max-time", "8")
    assert s2["corpus_dir"] == s["corpus_dir"] and s2["new_distinct"] == 0
    assert rc2 == 0, out2


def test_clean_target_finds_nothing(tmp_path):
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", "fixture:good",
                      "--max-time", "10")
    assert rc == 0, out
    assert s["crash_files"] == 0 and s["execs"] > 0


@pytest.mark.parametrize("fixture, sig", [("segv", "signal:SIGSEGV"), ("hang", "timeout")])
def test_crashing_or_hanging_target_does_not_end_the_campaign(tmp_path, fixture, sig):
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", f"fixture:{fixture}",
                      "--max-time", "12", "--timeout", "2", "--triage-runs", "1",
                      "--minimize-time", "20")
    assert rc == 1, out
    run = Path(s["run_dir"])
    assert any((run / "crashes").iterdir()), "the input is on disk"
    assert s["elapsed"] >= 10, "the campaign kept fuzzing after the first crash"
    reg = Regression.read(sorted((tmp_path / "regs").glob("*.json"))[0])
    assert reg.signature.startswith(sig)


def _runs(run_dir: Path) -> tuple[list[str], list[str]]:
    """The libFuzzer command lines of a campaign run and each run's part of fuzz.log."""
    cmds = (run_dir / "command.txt").read_text().splitlines()
    log = (run_dir / "fuzz.log").read_text(errors="replace")
    return cmds, log.split("INFO: Seed: ")[1:]


def _last_count(log: str) -> int:
    return max((int(m) for m in re.findall(r"^#(\d+)", log, re.M)), default=0)


def test_in_process_campaign_restarts_after_a_crash(tmp_path):
    # fx_segv crashes on every free (seeds included: they are replayed, persisted and left
    # out of what libFuzzer loads). Each crash ends the in-process libFuzzer, which is
    # started again on the corpus, with the next seed, and counts on.
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", "fixture:segv",
                      "--max-time", "20", "--timeout", "2", "--triage-runs", "1",
                      "--minimize-time", "10")
    assert rc == 1, out
    cmds, runs = _runs(Path(s["run_dir"]))
    assert len(cmds) >= 2 and s["fuzzer_starts"] == len(cmds), out
    assert not any("-fork" in c for c in cmds[:2]), cmds
    assert "-seed=1 " in cmds[0] and "-seed=2 " in cmds[1]
    assert "Test unit written to" in runs[0] and "/crashes/crash-" in runs[0]
    assert "INITED" in runs[1], "the restart loaded the corpus (no seed crashed it)"
    assert s["execs"] > _last_count(runs[0]), "executions went on after the crash"
    assert any(p.name.startswith("crash-seed-") for p in (Path(s["run_dir"]) / "crashes")
               .iterdir()), "the failing seeds are still persisted"
    counted = int.from_bytes((Path(s["run_dir"]) / "execs").read_bytes(), "little")
    assert counted > 0, "the in-process target counts its executions for the driver"


def test_stats_add_up_runs_and_the_targets_count():
    st = Stats()
    st.line("#64\tpulse  cov: 10 ft: 12 corp: 3/30b lim: 4 exec/s: 32 rss: 90Mb\n")
    assert (st.execs, st.execs_per_s, st.inited_at) == (64, 32, None)
    st.executed(100, 0.0)  # the target's own count is ahead of libFuzzer's log
    st.line("#64\tREDUCE cov: 11 ft: 13 corp: 3/29b lim: 4 exec/s: 32 rss: 90Mb\n")
    assert (st.execs, st.cov) == (100, 11), "a late log line never lowers the count"
    st.line("stat::number_of_executed_units: 120\n")  # the crashed run's last count
    assert st.execs == 120
    st.new_run()  # a restart counts on from there
    st.line("#2\tINITED cov: 10 ft: 12 corp: 3/30b exec/s: 0 rss: 90Mb\n")
    assert st.execs == 122 and st.inited_at is not None
    st.executed(50, 10.0)
    st.executed(70, 12.5)
    assert (st.execs, st.execs_per_s) == (190, 28)  # (190 - 120) / 2.5 s


def test_crash_loop_turns_to_fork_mode(tmp_path):
    # A corpus input that crashes when loaded: every in-process start would die on it.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "crasher").write_bytes(encode(Program(1, (Op("malloc", 0, 0, 16),
                                                        Op("free", 0, 0)))))
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", "fixture:segv", "--no-seeds",
                      "--corpus", str(corpus), "--mode", "lockstep", "--max-time", "15",
                      "--timeout", "2", "--triage-runs", "1", "--minimize-time", "10")
    assert rc == 1, out
    cmds, runs = _runs(Path(s["run_dir"]))
    assert len(cmds) == 3, cmds
    assert not any("-fork" in c for c in cmds[:2]) and "-fork=1" in cmds[2], cmds
    assert not any("INITED" in r for r in runs[:2])
    assert "crash loop" in s["fork_fallback"] and "fork mode" in out, out


def _drive(exits: list[_Exit], *argv: str,
           interrupt: bool = False) -> tuple[tuple[int, bool], list[bool], _Run]:
    """drive() over libFuzzer runs (stubbed) that end as ``exits`` say, none of whose
    crashes reproduces in a fresh process: its result, and whether each run it started was
    in fork mode; ``interrupt``: a SIGTERM (as the driver
    raises it) arrives between the first two runs."""
    def say(text: str) -> None:
        if interrupt and "starting it again" in text:
            raise KeyboardInterrupt

    c = SimpleNamespace(opts=parse(["--max-time", "600", *argv]))
    run = _Run(c, Stats(), None, SimpleNamespace(say=say), time.monotonic(), [])
    ends, forks = iter(exits), []

    def one_libfuzzer(_seconds: float, fork: bool) -> _Exit:
        forks.append(fork)
        return next(ends)
    run.one_libfuzzer = one_libfuzzer
    run.reproduced = lambda: False  # --stop-on-find: no crash reproduces alone
    return run.drive(), forks, run


CRASH, QUICK, DEAD, DONE = (_Exit(77, False, 60.0), _Exit(77, False, 1.0),
                            _Exit(1, False, None), _Exit(0, False, 60.0))
NEIGHBOUR = _Exit(1, False, None, by_neighbour=True)  #: died loading a seed neighbour


@pytest.mark.parametrize("exits, forks, why", [
    ([CRASH, CRASH, CRASH, CRASH, DONE], [False] * 5, ""),
    ([QUICK, QUICK, CRASH, QUICK, QUICK, DONE], [False] * 6, ""),  # a good run resets
    ([QUICK, QUICK, QUICK, DONE], [False, False, False, True], "3 runs in a row"),
    ([DEAD, DEAD, DONE], [False, False, True], "loading its corpus 2 times"),
    ([DEAD, QUICK, QUICK, DONE], [False, False, False, True], "3 runs in a row"),
    # a load a seed neighbour crashed is no crash loop: that neighbour is taken out
    ([NEIGHBOUR, NEIGHBOUR, DEAD, DONE], [False] * 4, ""),
])
def test_in_process_restarts_until_a_crash_loop(exits, forks, why):
    result, started, run = _drive(exits)
    assert result == (0, False) and started == forks
    assert why in run.fork_fallback if why else not run.fork_fallback


def test_a_seed_neighbour_that_crashes_is_labelled_and_the_rest_still_run(tmp_path):
    # double_conversion fires on a neighbour of mixed.bin (its aligned_alloc repeated):
    # the first libFuzzer run dies loading it; the next loads the other neighbours.
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--inject", "double_conversion",
                      "--mode", "lockstep", "--ignore-known", "--max-time", "20",
                      "--triage-runs", "1", "--minimize-time", "5")
    assert rc == 1, out
    run = Path(s["run_dir"])
    made_by = {(e["origin"], e["step"]) for e in s["entries"] if e["distinct"]}
    assert any(o == "neighbour" and step.startswith("mixed.bin: record ")
               for o, step in made_by), made_by
    cmds, runs = _runs(run)
    assert str(run / "neighbours") in cmds[0] and "INITED" not in runs[0], runs[0][-2000:]
    crashed = next(p for p in (run / "crashes").iterdir() if p.name.startswith("crash-"))
    assert not (run / "neighbours" / crashed.name.removeprefix("crash-")).exists()
    assert str(run / "neighbours") in cmds[1] and not s["fork_fallback"]
    assert "made by: neighbour (mixed.bin" in (run / "report.md").read_text()
    # --no-neighbours: none written, none loaded
    rc, out, s = fuzz(tmp_path / "none", "--build", "asan", "--no-neighbours",
                      "--max-time", "2")
    assert not (Path(s["run_dir"]) / "neighbours").exists()
    assert "/neighbours" not in (Path(s["run_dir"]) / "command.txt").read_text()


def test_a_one_time_crasher_under_stop_on_find_restarts_in_process():
    # Its crash did not reproduce in a fresh process (the stub's triage never reproduces):
    # fuzzing goes on in-process (fork mode ran 14-34 execs/s where in-process ran 45-80),
    # and only a crash loop turns to fork mode.
    result, started, run = _drive([CRASH, QUICK, QUICK, QUICK, DONE], "--stop-on-find")
    assert result == (0, False) and started == [False, False, False, False, True]
    assert "3 runs in a row" in run.fork_fallback


def test_jobs_fork_from_the_start_and_an_interrupt_between_runs_ends_fuzzing():
    assert _drive([DONE], "--jobs", "2")[:2] == ((0, False), [True])
    assert _drive([CRASH, DONE], interrupt=True)[:2] == ((77, True), [False])


def test_a_slow_program_is_not_kept_as_a_hang(tmp_path):
    # The fixture's free of a 4000-byte block takes 6 s: libFuzzer (3 s timeout) records a
    # timeout on the corpus input below, and its replay (hang_timeout: 12 s) finishes, so
    # nothing is a finding. (Replayed within the fuzzer's timeout + 2 s, it was kept.)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    slow = Program(1, (Op("malloc", 0, 0, 4000), Op("free", 0, 0)))
    (corpus / "slow").write_bytes(encode(slow))
    rc, out, s = fuzz(tmp_path, "--build", "asan", "--target", "fixture:slow", "--no-seeds",
                      "--corpus", str(corpus), "--mode", "lockstep", "--max-time", "10",
                      "--timeout", "3", "--triage-runs", "1")
    assert s["crash_files"] >= 1, out
    assert rc == 0 and s["new_distinct"] == 0, out
    assert not list((tmp_path / "regs").glob("*.json"))


def test_libfuzzer_command_modes(tmp_path):
    dirs = CampaignDirs("key", tmp_path / "corpus", tmp_path / "run")

    def cmd(*argv, fork=True, seconds=None, scheduled=False, seeds=None, start=0):
        opts = parse(list(argv))
        return command(opts, dirs, opts.max_time if seconds is None else seconds, fork,
                       seed_dirs(scheduled) if seeds is None else seeds, start)

    forked = cmd("--max-time", "30", "--jobs", "2")
    assert "-fork=2" in forked and "-ignore_crashes=1" in forked and str(SEEDS) in forked
    assert "-max_total_time=30" in forked
    assert str(tmp_path / "s") in cmd(seeds=[tmp_path / "s"]) and str(SEEDS) not in cmd(
        seeds=[tmp_path / "s"])
    assert "-seed=7" in cmd("--seed", "5", start=2)
    inproc = cmd("--stop-on-find", fork=False, seconds=12.5)
    assert not any(a.startswith(("-fork", "-ignore_")) for a in inproc)
    assert "-max_total_time=12" in inproc
    assert str(SEEDS) not in cmd("--no-seeds")
    assert str(SCHED_SEEDS) not in forked  # fork seeds only where a schedule times them
    assert {str(SEEDS), str(SCHED_SEEDS)} <= set(cmd(scheduled=True))
    assert str(SCHED_SEEDS) not in cmd("--no-seeds", scheduled=True)
    assert inproc[-1] == str(tmp_path / "corpus") or inproc[-2] == str(tmp_path / "corpus")


def _start_campaign(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """A campaign on the clean fixture, once libFuzzer fuzzes (in-process: it loaded its
    corpus; ``--jobs N``: fork mode runs a job); returns the driver and libFuzzer's
    session id."""
    cmd = [sys.executable, "-m", "harness.fuzz", "--campaigns", str(tmp_path / "campaigns"),
           "--regressions", str(tmp_path / "regs"), "--no-progress", "--build", "asan",
           "--target", "fixture:good", "--max-time", "600", *args]
    driver = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    sid: list[int] = []

    def inited() -> bool:
        return any("INITED" in p.read_text(errors="replace")
                   for p in (tmp_path / "campaigns").glob("*/runs/*/fuzz.log"))

    def fuzzing() -> bool:
        assert driver.poll() is None, driver.communicate()[1]
        sid[:] = [k for k, pids in procfs.sessions().items()
                  if k != os.getsid(0) and any(procfs.ppid(p) == driver.pid for p in pids)]
        if not sid:
            return False
        return len(procfs.sessions().get(sid[0], [])) >= 2 if "--jobs" in args else inited()
    procfs.wait_for(fuzzing, "libFuzzer did not start fuzzing")
    return driver, sid[0]


@pytest.mark.parametrize("args", [(), ("--jobs", "2")], ids=["in-process", "fork"])
def test_no_fuzzer_process_outlives_a_killed_driver(tmp_path, args):
    driver, sid = _start_campaign(tmp_path, *args)
    driver.kill()
    driver.wait()
    procfs.wait_for(lambda: sid not in procfs.sessions(),
                    "libFuzzer or a job outlived the driver", 60)


def test_no_fork_child_outlives_its_libfuzzer(tmp_path):
    """libFuzzer ends on its own timeout in the middle of a fork op whose child hangs and
    cannot say so (fixture forkhang, FX_DEAF): the child is left behind, and the driver
    ends what is left of libFuzzer's process group."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fork").write_bytes(encode(Program(2, (Op("malloc", 0, 1, 48), Op("fork", 1)))))
    cmd = [sys.executable, "-m", "harness.fuzz", "--campaigns", str(tmp_path / "campaigns"),
           "--regressions", str(tmp_path / "regs"), "--no-progress", "--build", "asan",
           "--target", "fixture:forkhang", "--no-seeds", "--corpus", str(corpus),
           "--mode", "lockstep", "--timeout", "2", "--max-time", "3", "--triage-runs", "1",
           "--minimize-time", "1"]
    env = {**os.environ, "FX_DEAF": "1", "HAKX_FORK_TIMEOUT_MS": "600000"}
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 1 and "new crash timeout" in done.stderr, done.stderr

    def fuzz_targets() -> list[int]:
        return [p for p in procfs.pids() if str(tmp_path).encode() in procfs.cmdline(p)]
    procfs.wait_for(lambda: not fuzz_targets(), "a fork child outlived its libFuzzer", 30)


def test_sigterm_stops_the_campaign_and_writes_its_summary(tmp_path):
    driver, sid = _start_campaign(tmp_path)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    s = json.loads(next((tmp_path / "campaigns").glob("*/runs/*/summary.json")).read_text())
    assert s["interrupted"] is True and s["elapsed"] < 600
    procfs.wait_for(lambda: sid not in procfs.sessions(),
                    "libFuzzer or a job outlived the campaign", 60)
