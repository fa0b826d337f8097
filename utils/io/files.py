"""Atomic file writes: a reader (or a crash) never sees a half-written file."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from utils.errors import UserError


FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; a user's quota exceeded (clusters)


class DiskFull(UserError, OSError):
    """A write failed for lack of space: one line naming the file (what was there before is
    untouched)."""

    def __init__(self, path: str | Path, error: OSError):
        super().__init__(error.errno, error.strerror)
        self.path = Path(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


def disk_full(error: BaseException | None) -> OSError | None:
    """The OSError of a full disk behind `error` (itself, or what it was raised from:
    torch.save turns its file's OSError into a RuntimeError), else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to `path` (folders are created); on a clean exit it is flushed,
    fsynced and renamed over `path`, on an error it is removed and `path` is untouched (a
    full disk: DiskFull naming `path`).

    The file gets the usual permissions (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in FULL:
            raise DiskFull(path, exc) from None
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = disk_full(exc)
        if full is not None and not isinstance(exc, DiskFull):
            raise DiskFull(path, full) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    """`path.write_text(text)`, atomically (reports, JSON)."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def copy_file(source: str | Path, path: str | Path) -> None:
    """`shutil.copyfile(source, path)`, atomically (a checkpoint copied as a run's result)."""
    with open(source, "rb") as src, atomic_write(path) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def is_temp_name(name: str) -> bool:
    """A temp file name of `atomic_write` (`.<name>.<random>.tmp`)."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Delete `atomic_write` temp files a killed writer left under `folder` (recursively).

    Call it only while holding the folder's run lock: a live writer's temp file looks the same.
    """
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp")):
        if path.is_file() and is_temp_name(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class OutputInsideInput(UserError, ValueError):
    """An output folder that is (or is inside, or contains) an input folder."""


def check_outside(out: str | Path, input_folder: str | Path, what: str = "--out",
                  both_ways: bool = False) -> None:
    """Refuse writing under `out` when it is `input_folder` or inside it (and, with
    `both_ways`, when the input lies inside `out`, where outputs could overwrite it)."""
    out, folder = Path(out).resolve(), Path(input_folder).resolve()
    if out == folder or folder in out.parents:
        raise OutputInsideInput(f"{what} {out} is inside the input folder {folder}: outputs must not "
                                f"be mixed with the inputs; choose another output folder")
    if both_ways and out in folder.parents:
        raise OutputInsideInput(f"the input folder {folder} is inside the output folder {out} ({what}); "
                                f"outputs could overwrite inputs: choose another output folder")
