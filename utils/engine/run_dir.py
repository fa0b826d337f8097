"""The run directory `runs/<name>/`: config.json, the log file, tensorboard events, final.json.

Only rank 0 writes; on other ranks a `RunDir` is inert so calling code needs no `if`s.
Create it only after the inputs are validated: creating it makes the folder.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm

from config import Config
from utils import logs
from utils.io.files import write_text

log = logs.get("run")


class RunDir:
    def __init__(self, path: str | Path, active: bool = True, log_name: str = "train.log",
                 purge_step: int | None = None, echo: bool = True):
        """`echo` is kept for callers of the old API: the console now follows --quiet/--verbose."""
        self.path = Path(path)
        self.active = active
        self._log = None
        self._tb = None
        if not active:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        # Every `hcn` log record goes to the file (the trainer's, the script's, warnings).
        self._log = logs.attach_file(self.path / log_name)
        # purge_step drops events a crashed run logged after the checkpoint we resume from.
        self._tb = SummaryWriter(logdir=str(self.path / "tb"), purge_step=purge_step)

    def save_config(self, cfg: Config) -> None:
        if self.active:
            cfg.save(self.path / "config.json")

    def log(self, message: str, level: int = logging.INFO) -> None:
        """A timestamped line in the log file, also on the console (above any tqdm bar)."""
        if self.active:
            log.log(level, message)

    def write_final(self, results: dict, name: str = "final.json") -> None:
        """The run's final results as JSON (what the script printed as a table)."""
        if self.active:
            write_text(self.path / name, json.dumps(results, indent=2) + "\n")

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
            logs.detach_file(self._log)
            self.active = False


def format_metrics(values: dict[str, float]) -> str:
    """'loss=-2.9312 lr=1.00e-05 ...' (learning rates in scientific notation)."""
    return " ".join(logs.format_value(k, v) for k, v in values.items())


def progress(total: int, initial: int = 0, desc: str = "", active: bool = True, leave: bool = True) -> tqdm:
    """A tqdm bar (rate and ETA built in); redrawn at most every 10 s when stderr is a file."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not (active and logs.bars_enabled()), leave=leave,
                dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0)
