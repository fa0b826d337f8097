"""Which config a run uses: preset + overrides, or, on --resume, the checkpoint's own config.

Shared by train.py and real_train.py so both resume the same way (the flag itself is in
utils.cli.add_run_args).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from config import Config, ConfigError, apply_override, build_config
from utils import logs
from utils.io.checkpoints import CheckpointError, load_checkpoint

log = logs.get("resume")


def resolve_config(preset: str, overrides: list[str], resume: Optional[str],
                   run_name: Callable[[Config], str], config_file: Optional[str] = None,
                   ) -> tuple[Config, Optional[dict], Optional[Path]]:
    """(config, checkpoint state or None, checkpoint path or None).

    `resume` is None, a checkpoint path, or 'auto' (= runs/<run_name(cfg)>/latest.pth when it
    exists, else a fresh run). A resumed run keeps the checkpoint's config; the same
    overrides are applied on top (e.g. --set train.iterations=... to extend a finished run).
    `config_file` (--config) replaces the preset. Reads only: nothing is written here.
    """
    cfg = build_config(preset, overrides, config_file)
    if not resume:
        return cfg, None, None
    path = Path(resume)
    if resume == "auto":
        path = Path(cfg.train.out_dir) / run_name(cfg) / "latest.pth"
        if not path.is_file():
            log.info(f"--resume auto: no {path} yet, starting a new run")
            return cfg, None, None
    state = load_checkpoint(path)
    try:
        cfg = Config.from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is not valid for this code: {exc}") from None
    for item in overrides:
        apply_override(cfg, item)
    return cfg, state, path
