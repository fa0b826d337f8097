"""The run directory `runs/<name>/`: config.json, a plain text log and tensorboard events.

Only rank 0 writes; on other ranks a `RunDir` is inert so calling code needs no `if`s.
"""
from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm

from config import Config


class RunDir:
    def __init__(self, path: str | Path, active: bool = True, log_name: str = "train.log",
                 purge_step: int | None = None, echo: bool = True):
        self.path = Path(path)
        self.active = active
        self.echo = echo
        self._log = None
        self._tb = None
        if not active:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path / log_name, "a", encoding="utf-8")
        # purge_step drops events a crashed run logged after the checkpoint we resume from.
        self._tb = SummaryWriter(logdir=str(self.path / "tb"), purge_step=purge_step)

    def save_config(self, cfg: Config) -> None:
        if self.active:
            cfg.save(self.path / "config.json")

    def log(self, message: str) -> None:
        """A timestamped line in the log file, also printed (above any tqdm bar)."""
        if not self.active:
            return
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"{stamp} {message}\n")
        self._log.flush()
        if self.echo:
            tqdm.write(message, file=sys.stdout)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.active:
            for key, value in values.items():
                self._tb.add_scalar(key, float(value), step)

    def image(self, tag: str, hwc: np.ndarray, step: int) -> None:
        """An RGB float HWC image in [0, 1] (e.g. a utils.io.panels.side_by_side panel)."""
        if self.active:
            self._tb.add_image(tag, np.clip(hwc, 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        if self.active:
            self._tb.close()
            self._log.close()
            self.active = False


def format_metrics(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, (float, np.floating)) else f"{k}={v}"
                    for k, v in values.items())


def progress(total: int, initial: int = 0, desc: str = "", active: bool = True, leave: bool = True) -> tqdm:
    """A tqdm bar (rate and ETA built in); redrawn at most every 10 s when stderr is a file."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not active, leave=leave,
                dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0)
