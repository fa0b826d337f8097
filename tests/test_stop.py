"""Stopping a run cleanly: stop signals to the whole process group (DataLoader workers
included), a second signal while saving, the time limit, and what the first minute says
(the pace and projected time of the run). CPU, tiny models."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import real_train
import train
from test_real_train import make_init, online_args
from test_train import tiny_args
from utils.cli import run_main
from utils.engine.interrupt import StopRequest
from utils.engine.pace import Pace
from utils.engine.time_limit import TIME_LIMIT_EXIT, TimeLimit, format_duration, parse_duration
from utils.io.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _default_stop_signals():
    """As in a terminal: a test suite started in the background by a non-interactive shell
    inherits SIGINT ignored, and an ignored signal rightly stays ignored by the run."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


# ----------------------------------------------------------------------------- group signals
def test_group_signals_with_workers_save_and_resume_bit_identically(tmp_path):
    """TERM during a step, halfway through a checkpoint write and during validation; two
    SIGINTs (the second halfway through the save the first asked for); SIGHUP. Each is sent
    by another process to the run's process group, DataLoader workers (2) included."""
    points = "during_step:3@TERM,during_latest:3@TERM,during_val:4@TERM,during_step:5@INT+INT,during_step:5@HUP"
    done = subprocess.run([sys.executable, "scripts/kill_trials.py", "--points", points, "--workers", "2",
                           "--json", "--workdir", str(tmp_path)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=1200, preexec_fn=_default_stop_signals)
    trials = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")][:-1]
    assert done.returncode == 0 and len(trials) == 5, done.stdout[-3000:] + done.stderr[-3000:]
    expected = [128 + signal.SIGTERM] * 3 + [128 + signal.SIGINT, 128 + signal.SIGHUP]
    assert [t["codes"] for t in trials] == [[code] for code in expected], trials
    for trial in trials:
        assert trial["resume_exit"] == 0 and trial["identical"], trial
        assert not trial["corrupt"] and not trial["stale"] and trial["temps"] == 0, trial
    logs = [(tmp_path / f"trial_{i:02d}" / "trial.log").read_text() for i in range(5)]
    stopped_at = [int(log.split("at step ")[1].split(";")[0]) for log in logs]
    assert stopped_at == [3, 3, 4, 5, 5]  # the step under way when the signal came: finished, saved
    assert not any("Traceback" in log or "DataLoader worker" in log for log in logs)


def test_external_sigterm_to_the_group_with_workers_exits_143_in_one_line(tmp_path):
    """As `timeout` or SLURM do it: the signal comes from outside at a random moment."""
    argv = tiny_args(tmp_path, 100_000, "data.num_workers=2", "train.ckpt_every=100000", "train.log_every=1")
    err = tmp_path / "stderr.txt"
    with open(err, "w") as handle:
        proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=ROOT, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True)
    log = tmp_path / "tiny" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "step 3 " in log.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, err.read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, err.read_text()[-3000:]
    text = err.read_text()
    assert "Traceback" not in text and "DataLoader worker" not in text
    stop_lines = [line for line in text.splitlines() if "stopped by SIGTERM" in line]
    assert len(stop_lines) == 1 and "Continue with: python train.py --resume" in stop_lines[0]
    step = load_checkpoint(tmp_path / "tiny" / "latest.pth")["step"]
    assert step >= 3
    resumed = tiny_args(tmp_path, step + 1, "data.num_workers=2") + ["--resume", "auto"]
    assert train.main(resumed) == 0
    assert load_checkpoint(tmp_path / "tiny" / "latest.pth")["step"] == step + 1


def test_real_train_stops_on_a_group_signal(tmp_path):
    init = make_init(tmp_path / "init.pth")
    argv = online_args(tmp_path, init, "online.rounds=50", "online.nr_score=false")
    proc = subprocess.Popen([sys.executable, "real_train.py", *argv], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = tmp_path / "runs" / "rt" / "real_train.log"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "round 1 step 2 " in log.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP and "Traceback" not in err, err[-3000:]
    assert "stopped by SIGHUP" in err
    assert load_checkpoint(tmp_path / "runs" / "rt" / "latest.pth")["step"] >= 2


# ----------------------------------------------------------------------------- StopRequest
def test_a_second_sigint_waits_for_the_write_and_ignored_signals_stay_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    # As in a terminal, even when the suite runs in the background (SIGINT ignored there).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    try:
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested and stop.exit_code == 130
            with pytest.raises(KeyboardInterrupt):
                with stop.writing():
                    os.kill(os.getpid(), signal.SIGINT)
                    written = True  # the write went on after the second SIGINT
            assert written
            with stop.writing(final=True):  # the stop's own save: no KeyboardInterrupt at all
                os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # outside a write: at once
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGHUP, previous)
        signal.signal(signal.SIGINT, inherited)


def test_workers_ignore_and_unblock_the_stop_signals():
    code = ("import os, signal, sys; sys.path.insert(0, '.');"
            "from utils.engine.interrupt import ignore_stop_signals, stop_signals;"
            "signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals());"
            "ignore_stop_signals(0); os.kill(os.getpid(), signal.SIGTERM);"
            "print(signal.pthread_sigmask(signal.SIG_BLOCK, []) & set(stop_signals()), 'alive')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "set() alive", done.stderr


# ----------------------------------------------------------------------------- time limit
@pytest.mark.parametrize("text, seconds", [("3h30m", 12600), ("90m", 5400), ("5400", 5400),
                                           ("1.5h", 5400), ("2d", 172800), ("45s", 45),
                                           ("23:30:00", 84600), ("1-02:00:00", 93600), ("1h 5m", 3900)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "3x", "h", "3h30", "inf", "1:2", "nan"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_time_limit_keeps_room_for_the_longest_step_and_a_margin():
    now = [1000.0]
    limit = TimeLimit(600, start=1000.0, clock=lambda: now[0])  # margin min(60, 5%) = 30 s
    assert format_duration(600) == "10m00s" and "train.max_hours=0.166667" in limit.describe()
    for t in (10, 20, 30):  # 10 s steps: stop once less than 2 x 10 + 30 s is left
        now[0] = 1000.0 + t
        assert not limit.expired()
    now[0] = 1000.0 + 90  # a 60 s step (a validation): the reserve grows to 150 s
    assert not limit.expired() and limit.reserve() == 150
    now[0] = 1000.0 + 451
    assert limit.expired()
    assert TimeLimit.from_hours(0, 1.0) is None and TimeLimit.from_hours(1, None) is None


def test_the_limit_counts_from_the_start_of_the_process():
    code = ("import sys, time; time.sleep(1.0); sys.path.insert(0, '.');"
            "from utils.engine.time_limit import process_start; print(time.monotonic() - process_start())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and 1.0 <= float(done.stdout) < 30, done.stdout + done.stderr


def test_train_stops_at_the_time_limit_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    extra = ("train.ema_decay=0.9", "train.ckpt_every=100")
    assert train.main(tiny_args(tmp_path / "a", 7, *extra)) == 0
    reference = load_checkpoint(tmp_path / "a" / "tiny" / "latest.pth")
    calls = []

    def expired(self):
        calls.append(self.seconds)
        return len(calls) >= 4

    with monkeypatch.context() as patch:
        patch.setattr(TimeLimit, "expired", expired)
        code = run_main(train.main, tiny_args(tmp_path / "b", 7, *extra) + ["--time-limit", "2h"])
    assert code == TIME_LIMIT_EXIT and calls[0] == 7200
    err = capsys.readouterr().err
    assert "time limit 2h00m" in err and "stopped by the time limit (2h00m, train.max_hours=2) at step 4" in err
    run = tmp_path / "b" / "tiny"
    assert load_checkpoint(run / "latest.pth")["step"] == 4
    assert json.loads((run / "config.json").read_text())["train"]["max_hours"] == 2
    # The same command (a requeued job) goes on; the limit is not hit again.
    assert train.main(tiny_args(tmp_path / "b", 7, *extra) + ["--resume", "auto", "--time-limit", "2h"]) == 0
    resumed = load_checkpoint(run / "latest.pth")
    for key in ("model", "ema"):
        assert all(torch.equal(t, resumed[key][k]) for k, t in reference[key].items()), key


def test_time_limit_flag_errors_and_real_train(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(train.main, tiny_args(tmp_path, 2) + ["--time-limit", "soon"])
    assert exit_info.value.code == 2
    assert "argument --time-limit: expected a duration" in capsys.readouterr().err
    init = make_init(tmp_path / "init.pth")
    monkeypatch.setattr(TimeLimit, "expired", lambda self: True)
    argv = online_args(tmp_path, init, "online.nr_score=false") + ["--time-limit", "30m"]
    assert real_train.main(argv) == TIME_LIMIT_EXIT
    assert "stopped by the time limit (30m00s" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "runs" / "rt" / "latest.pth")["step"] == 1


# ----------------------------------------------------------------------------- pace
def _pace(now, device="cpu", total=100_000, early=1000.0):
    said = []
    pace = Pace(total, 0, device, lambda m, level: said.append((level, m)), "use a GPU",
                clock=lambda: now[0], early_seconds=early)
    return pace, said


def test_pace_is_measured_after_the_first_step_and_warns_beyond_a_day_on_a_cpu():
    now = [0.0]
    pace, said = _pace(now)
    with pace:
        now[0] = 100.0  # the first step: warm-up, not measured
        pace.step_done(1)
        for step in range(2, 7):  # 5 steps of 5 s
            now[0] += 5.0
            pace.step_done(step)
    assert len(said) == 2
    assert said[0][0] == logging.INFO and said[0][1].startswith("pace: 5 s per step (steps 2-6)")
    assert "the 99,994 steps left take 5d18h" in said[0][1]
    assert said[1][0] == logging.WARNING and "more than a day on a CPU (5d18h): use a GPU" in said[1][1]
    pace.step_done(7)
    assert len(said) == 2  # said once
    now = [0.0]
    pace, said = _pace(now, device="cuda")
    for step in range(1, 8):  # 20 s steps: measured once 30 s have passed
        now[0] += 20.0
        pace.step_done(step)
    assert [level for level, _ in said] == [logging.INFO]  # a GPU run of days: no CPU advice
    assert said[0][1].startswith("pace: 20 s per step (steps 2-3)")


def test_a_slow_first_step_is_bounded_from_below_while_it_runs():
    said = []
    with Pace(10**8, 0, "cpu", lambda m, level: said.append((level, m)), "use a GPU",
              early_seconds=0.05) as pace:
        time.sleep(1.0)
        pace.step_done(1)
    assert said and said[0][1].startswith("step 1 is still running after 0.05 s: the 100,000,000 steps")
    assert "more than 57d" in said[0][1] and said[1] == (logging.WARNING, said[1][1])
    assert len(said) == 2
    fast = []
    with Pace(10**8, 0, "cpu", lambda m, level: fast.append(m), "", early_seconds=0.5) as pace:
        pace.step_done(1)  # the first step ended in time: the timer never fires
        time.sleep(1.0)
    assert fast == []


def test_the_paper_preset_without_data_says_it_is_a_smoke_test(tmp_path, capsys):
    argv = tiny_args(tmp_path, 7, "train.log_every=100")
    argv[1] = "paper"
    assert run_main(train.main, argv) == 0
    err = capsys.readouterr().err
    assert "--preset paper without --data" in err and "a smoke test of the recipe" in err
    assert "pace: " in (tmp_path / "tiny" / "train.log").read_text()
