"""`<run folder>/run.lock`: one training process per run folder, on one machine or several
sharing the folder (a cluster's network file system).

The lock is an exclusive flock on the file, which holds `<pid> <host>` for messages. The
kernel releases a flock when its holder dies, so a killed run's lock is stale by
construction. Network file systems do not all carry flocks across machines (Lustre mounted
without `flock`, NFS with `local_lock`; some refuse flock outright), so the holder also
refreshes the file's time every `HEARTBEAT_SECONDS`: a lock naming another host is in use
while it was refreshed within `STALE_SECONDS`, and stale after. Where flock is missing, a
lock naming this host is in use while its PID is alive.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

from utils.errors import UserError

LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0
_HELD = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
_NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class RunLocked(UserError, RuntimeError):
    """Another live process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _flock(fd: int) -> bool:
    """Take the flock; False where the platform or file system has none; RunLocked-worthy
    OSError (EAGAIN...) when another process holds it."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            return False
        raise
    return True


class RunLock:
    def __init__(self, folder: Path, host: str | None = None):
        self.path = Path(folder) / LOCK_NAME
        self.host = host or socket.gethostname()
        self._fd: int | None = None
        self._stop = threading.Event()
        self.taken_over: str | None = None  # 'process P' of a dead holder whose lock was taken over

    def _holder(self) -> tuple[int | None, str | None, float]:
        """(pid, host, seconds since the last refresh) written by the previous holder."""
        try:
            fields = self.path.read_text().split()
            age = time.time() - self.path.stat().st_mtime
            return int(fields[0]), (fields[1] if len(fields) > 1 else None), age
        except (OSError, ValueError, IndexError):
            return None, None, 0.0

    def _refuse(self, pid, host, age: float | None = None) -> RunLocked:
        where = f" on {host}" if host and host != self.host else ""
        fresh = (f", refreshed {age:.0f} s ago; a lock not refreshed for {STALE_SECONDS:.0f} s "
                 f"is stale" if age is not None else "")
        return RunLocked(f"{self.path.parent} is in use by process {pid or '?'}{where} (lock file "
                         f"{self.path}{fresh}); wait for it to finish, stop it, or choose another "
                         f"run name")

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                flocked = _flock(fd)
            except OSError as exc:
                if exc.errno not in _HELD:
                    raise
                pid, host, _ = self._holder()
                raise self._refuse(pid, host) from None
            pid, host, age = self._holder()
            mine = pid == os.getpid() and host in (None, self.host)
            if pid is not None and not mine:
                if host not in (None, self.host) and age < STALE_SECONDS:
                    raise self._refuse(pid, host, age)
                if host in (None, self.host) and not flocked and _pid_alive(pid):
                    raise self._refuse(pid, host)
                self.taken_over = f"process {pid}" + (f" on {host}" if host not in (None, self.host) else "")
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.host}\n".encode())
        self._fd = fd
        threading.Thread(target=self._heartbeat, name="run-lock", daemon=True).start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the folder went away or is read-only now: the run reports its own errors

    def release(self) -> None:
        if self._fd is not None:
            self._stop.set()
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)  # closing releases the flock
                self._fd = None

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)
