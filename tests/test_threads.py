"""Thread counts (utils/threads.py): /proc parsing and the policy on injected texts, --threads
in every script, background threads on one torch thread, and the busy processes of
scripts/bench.py --load (utils/cpu_load.py) that must never outlive their run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import eval as eval_script
import real_train
import show
import train
from scripts import bench
from test_show import make_checkpoint
from test_train import tiny_args
from utils import cpu_load, threads
from utils.background import Background, single_threaded
from utils.cli import run_main
from utils.io.images import write_image

ROOT = Path(__file__).resolve().parents[1]


def stat_text(*cpus: tuple[int, int, int], iowait: int = 0, softirq: int = 0) -> str:
    """/proc/stat text from (user, system, idle) ticks per CPU; the aggregate line first."""
    def line(name, user, system, idle):
        return f"{name} {user} 0 {system} {idle} {iowait} 0 {softirq} 0 0 0"
    total = [sum(c[i] for c in cpus) for i in range(3)]
    return "\n".join([line("cpu", *total)] + [line(f"cpu{i}", *c) for i, c in enumerate(cpus)]
                     + ["intr 12345 0 0", "ctxt 999", "btime 1700000000"]) + "\n"


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    threads._applied = None


# ----------------------------------------------------------------------------- parsing
def test_parse_proc_stat_counts_idle_and_iowait_as_free():
    parsed = threads.parse_proc_stat(stat_text((100, 50, 1000), (10, 5, 2000), iowait=5, softirq=1))
    # busy = user + nice + system + irq + softirq + steal; total adds idle and iowait (5).
    assert parsed["cpu0"] == (151, 1156) and parsed["cpu1"] == (16, 2021)
    assert parsed["cpu"] == (166, 3171)  # the aggregate line as written (one iowait, one softirq)
    assert "intr" not in parsed and threads.parse_proc_stat("garbage\n") == {}


def test_busy_cpus_per_cpu_affinity_own_time_and_aggregate_fallback():
    before = threads.parse_proc_stat(stat_text((0, 0, 0), (0, 0, 0)))
    # Over 20 ticks per CPU: cpu0 busy all along, cpu1 idle.
    after = threads.parse_proc_stat(stat_text((15, 5, 0), (0, 0, 20)))
    assert threads.busy_cpus(before, after, {0, 1}) == pytest.approx(1.0)
    assert threads.busy_cpus(before, after, {1}) == pytest.approx(0.0)  # cpu0 is not ours
    # Half of cpu0's busy time was this process: others kept 0.5 CPU busy.
    assert threads.busy_cpus(before, after, {0, 1}, own_ticks=10) == pytest.approx(0.5)
    assert threads.busy_cpus(before, after, {0, 1}, own_ticks=100) == 0.0  # never negative
    only_total = {"cpu": before["cpu"]}, {"cpu": after["cpu"]}
    assert threads.busy_cpus(*only_total, {0, 1}) == pytest.approx(1.0)
    assert threads.busy_cpus(before, before, {0, 1}) == 0.0  # no time passed


def test_parse_own_ticks_cgroup_quota_and_counts():
    own = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 3 0 1 2 3"
    assert threads.parse_own_ticks(own) == 49  # utime 37 + stime 12
    assert threads.parse_cpu_max("max 100000\n") is None
    assert threads.parse_cpu_max("150000 100000\n") == 1.5
    assert threads.parse_cpu_max("") is None
    assert [threads.parse_count(v) for v in ("auto", "0", "3", " 4,2 ", None, 5)] == [0, 0, 3, 4, None, 5]
    for bad in ("-1", "x", ""):
        with pytest.raises(ValueError):
            threads.parse_count(bad)


def test_free_cpus_round_half_down_within_the_cap():
    assert [threads.threads_for(f, 8) for f in (0.0, 0.4, 1.0, 1.5, 1.6, 2.0, 7.9)] == [1, 1, 1, 1, 2, 2, 8]
    assert threads.threads_for(16.0, 4) == 4


# ----------------------------------------------------------------------------- policy
def test_policy_explicit_flag_then_environment_then_load():
    seen = []

    def load(busy=1.0, allowed=2, cap=2):
        seen.append(1)
        return threads.Load(allowed=allowed, busy=busy, cap=cap)

    choose = threads.choose_threads
    assert choose(3, {"OMP_NUM_THREADS": "1"}, load, 2) == threads.ThreadChoice(3, "--threads")
    assert choose(None, {"OMP_NUM_THREADS": "2"}, load, 2).count == 2
    assert choose(None, {"OMP_NUM_THREADS": "2"}, load, 2).source == "OMP_NUM_THREADS"
    assert not seen  # an explicit count never measures the load
    # --threads auto (0) measures even when the environment names a count.
    auto = choose(threads.AUTO, {"OMP_NUM_THREADS": "2"}, load, 2)
    assert auto.count == 1 and auto.source == "auto" and "1.0 busy" in auto.detail and seen
    assert choose(None, {}, lambda: load(busy=0.1), 2).count == 2
    assert choose(None, {}, lambda: load(busy=0.0, allowed=16, cap=8), 2).count == 8
    assert choose(None, {"OMP_NUM_THREADS": "lots"}, lambda: load(busy=0.0), 2).count == 2
    no_proc = choose(None, {}, lambda: None, 3)
    assert no_proc.count == 3 and "default" in no_proc.detail


def test_measure_load_from_injected_files(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cpus", lambda: {0, 1, 2, 3})
    idle = stat_text(*[(0, 0, 0)] * 4), stat_text((20, 0, 0), (20, 0, 0), (0, 0, 20), (0, 0, 20))
    files = {"/proc/self/stat": ["1 (py) R " + "0 " * 10 + "0 0", "1 (py) R " + "0 " * 10 + "0 0"],
             "/proc/stat": list(idle), "/sys/fs/cgroup/cpu.max": ["max 100000", "max 100000"]}

    def read(path):
        return files[path].pop(0) if path in files and files[path] else None

    load = threads.measure_load(default_cap=4, read=read, sleep=lambda s: None)
    assert load.allowed == 4 and load.cap == 4
    assert load.busy == pytest.approx(2.0, abs=0.2) and threads.threads_for(load.free, load.cap) == 2

    files.update({"/proc/self/stat": ["x (py) R " + "0 " * 10 + "0 0"] * 2, "/proc/stat": list(idle),
                  "/sys/fs/cgroup/cpu.max": ["100000 100000"]})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert threads.measure_load(default_cap=4, read=read, sleep=lambda s: None).cap == 1  # 1-CPU quota
    assert threads.measure_load(default_cap=4, read=lambda p: None, sleep=lambda s: None) is None


def test_apply_threads_sets_torch_and_is_recorded(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    choice = threads.apply_threads(2)
    assert torch.get_num_threads() == 2 and choice.source == "--threads"
    assert str(threads.in_use()) == "2 CPU threads (--threads)"
    monkeypatch.setattr(threads, "measure_load", lambda cap: threads.Load(allowed=2, busy=1.0, cap=2))
    assert threads.apply_threads("auto").count == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert threads.in_use().as_dict() == {"count": 2, "source": "set in-process", "detail": ""}


# ----------------------------------------------------------------------------- the scripts
@pytest.mark.parametrize("parse, argv", [
    (train.parse_args, []), (real_train.parse_args, []), (eval_script.parse_args, []),
    (show.parse_args, ["photo.png"])], ids=["train", "real_train", "eval", "show"])
def test_every_script_takes_threads(parse, argv, capsys):
    assert parse([*argv, "--threads", "3"]).threads == 3
    assert parse([*argv, "--threads", "auto"]).threads == threads.AUTO
    assert parse([*argv, "--threads", "0"]).threads == threads.AUTO
    assert parse(argv).threads is None  # $OMP_NUM_THREADS, else auto
    with pytest.raises(SystemExit) as exit_info:
        parse([*argv, "--threads", "many"])
    assert exit_info.value.code == 2 and "thread count" in capsys.readouterr().err


def test_bench_takes_threads(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--threads", "-2"])
    assert exit_info.value.code == 2 and "thread count" in capsys.readouterr().err


def test_show_records_the_threads_it_used(tmp_path, restore_threads):
    checkpoint = make_checkpoint(tmp_path / "tiny.pth")
    write_image(tmp_path / "in" / "a.png", torch.rand(24, 30, 3).numpy())
    assert run_main(show.main, [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--checkpoint",
                                str(checkpoint), "--device", "cpu", "--threads", "1", "-q"]) == 0
    record = json.loads((tmp_path / "out" / show.RUN_LOG_NAME).read_text().splitlines()[-1])
    assert record["threads"] == {"count": 1, "source": "--threads", "detail": ""}


def test_train_logs_its_threads_in_the_run_log(tmp_path, restore_threads):
    assert train.main(tiny_args(tmp_path, 1, "train.val_every=100") + ["--threads", "1", "-q"]) == 0
    assert "1 CPU thread (--threads)" in (tmp_path / "tiny" / "train.log").read_text()


class _ThreadCounts(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        import cv2
        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


def test_dataloader_workers_run_torch_on_one_thread():
    """DataLoader's own rule, relied on by train.py. OpenCV's pool is left alone in the
    workers: reconfiguring it (cv2.setNumThreads) in a forked child hung the test suite."""
    loader = torch.utils.data.DataLoader(_ThreadCounts(), batch_size=None, num_workers=1)
    assert [item.tolist()[0] for item in loader] == [1, 1]


# ----------------------------------------------------------------------------- background threads
def test_background_threads_run_torch_on_one_thread_and_leave_the_main_count(restore_threads):
    torch.set_num_threads(2)
    with Background(2) as pool:
        assert torch.get_num_threads() == 2
        seen = [pool.submit(torch.get_num_threads).result() for _ in range(4)]
        assert seen == [1] * 4 and torch.get_num_threads() == 2
    with Background(0) as inline:  # the sequential path: one thread too, then restored
        assert inline.submit(torch.get_num_threads).result() == 1 and torch.get_num_threads() == 2
        failed = inline.submit(lambda: 1 / 0)
        assert isinstance(failed.exception(), ZeroDivisionError)
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


# ----------------------------------------------------------------------------- busy processes
def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_until_gone(pids, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_busy_processes_stop_at_the_end_and_on_an_error(monkeypatch):
    monkeypatch.setattr(cpu_load, "START_SECONDS", 0.05)
    with cpu_load.busy_processes(2) as pids:
        assert len(pids) == 2 and not any(gone(p) for p in pids)
    assert all(gone(p) for p in pids)
    with pytest.raises(RuntimeError):
        with cpu_load.busy_processes(1) as pids:
            raise RuntimeError("measurement failed")
    assert all(gone(p) for p in pids)
    with cpu_load.busy_processes(0) as none:
        assert none == []


def test_busy_processes_exit_when_their_parent_is_killed():
    code = ("import sys, time; from utils import cpu_load\n"
            "with cpu_load.busy_processes(1) as pids:\n"
            "    print(pids[0], flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        spinner = int(parent.stdout.readline())
        assert not gone(spinner)
    finally:
        parent.send_signal(signal.SIGKILL)  # no finally block runs in the parent
        parent.wait()
    assert wait_until_gone([spinner])


@pytest.mark.parametrize("outcome", ["done", "error", "ctrl-c"])
def test_bench_measures_next_to_its_busy_processes_and_always_stops_them(monkeypatch, outcome, tmp_path):
    monkeypatch.setattr(cpu_load, "START_SECONDS", 0.05)
    alive = {}

    def measurement(cmd, **kwargs):  # stands in for the worker subprocess
        alive.update({pid: not gone(pid) for pid in spinners()})
        if outcome == "error":
            raise OSError("no such interpreter")
        if outcome == "ctrl-c":
            raise KeyboardInterrupt
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"kind": "forward"}) + "\n", stderr="")

    started = []
    original_start = cpu_load.start

    def spinners():
        return [p.pid for p in started]

    def start(count):
        started.extend(original_start(count))
        return started

    monkeypatch.setattr(cpu_load, "start", start)
    monkeypatch.setattr(bench.subprocess, "run", measurement)
    job = {"kind": "forward", "size": "24x24", "precision": "fp32", "mode": "flag", "env": {}, "load": 2,
           "label": "", "drop_env": []}
    if outcome == "done":
        result = bench.run_job([], job, tmp_path, compare=False)
        assert sorted(result["busy_pids"]) == sorted(spinners()) and result["load"] == 2
    else:
        with pytest.raises((OSError, KeyboardInterrupt)):
            bench.run_job([], job, tmp_path, compare=False)
    assert len(alive) == 2 and all(alive.values())  # running during the measurement
    assert all(gone(p) for p in spinners())  # and stopped after it, however it ended
