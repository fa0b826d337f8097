"""The run folder on a cluster: one run per folder across machines and DDP ranks, and a disk
that fills during a run (checkpoint, log file, tensorboard events) ends it with one error
line naming the file, latest.pth intact. CPU, tiny models."""
from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from test_train import tiny_args
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import RecordWriter
from utils import logs
from utils.cli import run_main
from utils.engine import run_lock
from utils.engine.events import EventFile
from utils.engine.run_lock import RunLock, RunLocked
from utils.engine.trainer import Trainer
from utils.io import files
from utils.io.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FULL = OSError(errno.ENOSPC, "No space left on device")


# ----------------------------------------------------------------------------- the lock
def _holder(folder: Path, pid: int, host: str, age: float = 0.0) -> Path:
    path = folder / run_lock.LOCK_NAME
    path.write_text(f"{pid} {host}\n")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_lock_of_another_host_holds_until_it_is_no_longer_refreshed(tmp_path):
    _holder(tmp_path, 4242, "node17")
    with pytest.raises(RunLocked, match=r"in use by process 4242 on node17 .*refreshed \d+ s ago"):
        RunLock(tmp_path).acquire()
    _holder(tmp_path, 4242, "node17", age=run_lock.STALE_SECONDS + 60)
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.taken_over == "process 4242 on node17"
        assert (tmp_path / "run.lock").read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    finally:
        lock.release()
    assert not (tmp_path / "run.lock").exists()


def test_the_holder_refreshes_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    lock = RunLock(tmp_path).acquire()
    try:
        os.utime(lock.path, (0, 0))
        time.sleep(0.5)
        assert time.time() - lock.path.stat().st_mtime < 5
    finally:
        lock.release()


def test_without_flock_a_live_process_of_this_host_holds_the_lock(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, operation):  # Lustre without the flock mount option
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    _holder(tmp_path, os.getppid(), socket.gethostname())
    with pytest.raises(RunLocked, match=f"in use by process {os.getppid()} "):
        RunLock(tmp_path).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _holder(tmp_path, dead.pid, socket.gethostname())
    lock = RunLock(tmp_path).acquire()
    assert lock.taken_over == f"process {dead.pid}"
    lock.release()


def test_every_ddp_rank_stops_on_a_locked_folder(tmp_path):
    (tmp_path / "tiny").mkdir()
    lock = RunLock(tmp_path / "tiny").acquire()  # another run holds the folder
    try:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "train.py", *tiny_args(tmp_path, 3)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        lock.release()
    output = done.stdout + done.stderr
    assert done.returncode != 0
    # rank 0 and rank 1 (their lines may interleave), neither waiting for the other
    assert output.count(f"is in use by process {os.getpid()} ") == 2, output[-3000:]
    assert output.count("error: ") >= 2
    assert not (tmp_path / "tiny" / "config.json").exists()


# ----------------------------------------------------------------------------- a full disk
def _fill_the_disk_after(monkeypatch, step: int, fill) -> None:
    """Call `fill()` (which makes writes fail) once optimisation step `step` is done."""
    original = Trainer.train_step

    def patched(self, compute_loss):
        result = original(self, compute_loss)
        if self.step == step:
            fill()
        return result

    monkeypatch.setattr(Trainer, "train_step", patched)


def _ends_with_one_error(capsys, needle: str, run: Path, before: int) -> None:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and "No space left on device" in errors[0], err[-3000:]
    assert "Traceback" not in err and "Logging error" not in err and "Exception in thread" not in err
    assert load_checkpoint(run / "latest.pth")["step"] <= before  # the last good one, loadable
    assert not list(run.rglob(".*.tmp"))


class _FullFile:
    """A file whose writes fail once `full[0]` is set (what a full disk does to a write)."""

    def __init__(self, handle, full):
        self._handle, self._full = handle, full

    def write(self, data):
        if self._full[0]:
            raise OSError(FULL.errno, FULL.strerror)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_disk_full_while_writing_a_checkpoint(tmp_path, monkeypatch, capsys):
    full = [False]
    fdopen = os.fdopen
    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: _FullFile(fdopen(*a, **k), full))
    _fill_the_disk_after(monkeypatch, 4, lambda: full.__setitem__(0, True))
    assert run_main(train.main, tiny_args(tmp_path, 8, "train.ckpt_every=1", "train.val_every=100")) == 2
    _ends_with_one_error(capsys, f"cannot write {tmp_path / 'tiny' / 'latest.pth'}", tmp_path / "tiny", 4)


def test_disk_full_while_writing_the_log(tmp_path, monkeypatch, capsys):
    def fill():
        handler = next(h for h in logging.getLogger(logs.ROOT).handlers if isinstance(h, logs.LogFile)
                       and Path(h.baseFilename) == tmp_path / "tiny" / "train.log")
        handler.stream = _FullFile(handler.stream, [True])

    _fill_the_disk_after(monkeypatch, 4, fill)
    assert run_main(train.main, tiny_args(tmp_path, 8, "train.ckpt_every=1")) == 2
    _ends_with_one_error(capsys, f"cannot write {tmp_path / 'tiny' / 'train.log'}", tmp_path / "tiny", 4)


def test_disk_full_while_writing_tensorboard_events(tmp_path, monkeypatch, capsys):
    def fill():
        def write(self, data):
            raise OSError(FULL.errno, FULL.strerror)
        monkeypatch.setattr(RecordWriter, "write", write)

    _fill_the_disk_after(monkeypatch, 4, fill)
    assert run_main(train.main, tiny_args(tmp_path, 8, "train.ckpt_every=1")) == 2
    _ends_with_one_error(capsys, f"cannot write {tmp_path / 'tiny' / 'tb'}/events.out.tfevents.",
                         tmp_path / "tiny", 4)


# ----------------------------------------------------------------------------- events
def _read_events(path: Path) -> list[Event]:
    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("Q", data[at:at + 8])
        events.append(Event.FromString(data[at + 12:at + 12 + length]))
        at += 12 + length + 4
    return events


def test_event_file_holds_the_values_and_tells_tensorboard_what_to_purge(tmp_path):
    events = EventFile(tmp_path / "tb", purge_step=5)
    assert not (tmp_path / "tb").exists()  # created at the first value
    events.scalar("train/loss", torch.tensor(-2.5), 6)
    events.image("val/panel", np.full((4, 6, 3), 0.5), 6)
    events.close()
    (path,) = (tmp_path / "tb").iterdir()
    read = _read_events(path)
    assert read[0].file_version == "brain.Event:2"
    assert read[1].step == 5 and read[1].session_log.status == SessionLog.START
    assert read[2].step == 6 and read[2].summary.value[0].tag == "train/loss"
    assert read[2].summary.value[0].simple_value == -2.5
    assert read[3].summary.value[0].image.height == 4 and read[3].summary.value[0].image.width == 6
