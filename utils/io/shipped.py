"""The model shipped with the project: `weights/standard.pth` and its record `standard.json`.

The weights file holds the resolved config and the EMA weights in float16 (half the size;
they are cast back to float32 on load, and the output moves by < 0.01 dB). The JSON record
holds the file's sha256, the command that trained it and its held-out scores; loading
checks the hash, so a truncated or replaced file is an error, never a silent wrong model.
`python scripts/export_weights.py RUN/latest.pth` exports a trained run as the shipped model.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from utils.io.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from utils.io.files import write_text

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
SHIPPED = WEIGHTS_DIR / "standard.pth"
# Four stages, each from the previous stage's weights and config.
TRAINED_BY = ("python train.py --preset standard, then stages 2-4 of "
              "docs/shipped_model.md#how-it-was-trained (python train.py --config runs/STAGE --set ...)")


def record_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(weights: Path = SHIPPED) -> dict:
    """The record of shipped weights after checking the file against its sha256."""
    record_file = record_path(weights)
    if not weights.is_file() or not record_file.is_file():
        raise CheckpointError(f"shipped weights {weights} or their record {record_file.name} are "
                              "missing; restore them with `git checkout -- weights/` or retrain "
                              f"them: {TRAINED_BY}")
    record = json.loads(record_file.read_text())
    actual = sha256(weights)
    if actual != record.get("sha256"):
        raise CheckpointError(f"{weights}: sha256 {actual[:12]}... does not match the recorded "
                              f"{str(record.get('sha256'))[:12]}... in {record_file.name} (corrupt or "
                              "replaced); restore it with `git checkout -- weights/`")
    return record


def export(checkpoint: Path, out: Path = SHIPPED, scores: Optional[dict] = None,
           position_extent: Optional[int] = None) -> dict:
    """Write the EMA (else plain) weights of a training checkpoint as float16, plus the record.
    `position_extent` replaces the config's model.position_extent (an inference setting, for
    runs trained before it existed)."""
    state = load_checkpoint(checkpoint)
    if position_extent is not None:
        state["config"].setdefault("model", {})["position_extent"] = int(position_extent)
    weights = state["ema"] if state.get("ema") is not None else state["model"]
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}
    save_checkpoint({"config": state["config"], "model": half}, out)
    record = {
        "file": out.name,
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
        "parameters": int(sum(v.numel() for v in weights.values() if v.is_floating_point())),
        "trained_by": TRAINED_BY,
        "source_checkpoint": checkpoint.name,
        "step": state.get("step"),
        # The run's best validation score and its step; the exported weights are those of
        # `step` (the final weights when exported from latest.pth).
        "best_step": state.get("best_step"),
        "best_val_psnr_rgb": state.get("best_metric"),
        "storage": "float16 (cast to float32 on load)",
        "config": state["config"],
    }
    if scores:
        record["held_out_test"] = scores
    write_text(record_path(out), json.dumps(record, indent=2) + "\n")
    return record
