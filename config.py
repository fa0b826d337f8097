"""Typed configuration: the schema (one dataclass per section), its bounds and the presets.

A run is fully described by one `Config`: a preset (`paper`, `demo`, `standard`) or a saved
config.json, with `--set section.field=value` overrides on top (parsed in
utils/config_parse.py). The resolved config is written as JSON next to every run's outputs
(`Config.save`). The shipped model's later training stages are `--set` overrides on
`standard`, written once in docs/shipped_model.md#how-it-was-trained.

Values marked "from released code" come from the authors' implementation because
the paper text does not state them (docs/method.md#values-from-the-released-code).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from utils.errors import UserError

# Forward-pass precisions (utils/engine/precision.py): no autocast, bf16 autocast, or bf16 only
# where the device computes it natively.
PRECISIONS = ("fp32", "bf16", "auto")
# Pseudo-label methods and losses of the online update (OnlineConfig.method / .loss).
ONLINE_METHODS = ("paper", "direct", "chain", "transfer")
ONLINE_LOSSES = ("paper", "l1")


@dataclass
class ModelConfig:
    channels: int = 20  # feature width C of every sub-network
    # Residual blocks per dense group: encoder at 1, 1/2, 1/4 scale; the decoder mirrors it.
    encoder_blocks: Tuple[int, int, int] = (12, 2, 1)
    attention_reduction: int = 4  # key/query embedding width = channels // reduction
    attention_softmax_scale: float = 10.0
    # Queries per attention chunk: bounds attention memory on large images. Small enough that
    # a chunk's score block stays in a CPU's cache; a GPU may prefer much larger chunks.
    attention_chunk: int = 256
    # Recompute dense groups in backward instead of storing them: less memory for more time
    # (docs/training.md).
    checkpoint_activations: bool = False
    # Restore the released code's wiring bugs (N31 in N13's place, one decoder fusion, shared
    # mining modules, top Up2Down query A2; docs/method.md#released-code-bugs), for comparison only.
    legacy_code_quirks: bool = False
    # Inputs larger than this many pixels per side get BiSCSM's position code squeezed into
    # the range seen on training patches of that size (position interpolation,
    # docs/method.md#input-size); 0: raw pixel positions at any size, as the paper.
    position_extent: int = 0


# ModelConfig fields that change memory, speed or inference on large inputs but no weight's
# meaning: a checkpoint trained with other values is the same model (train.init accepts it).
RUNTIME_MODEL_FIELDS = ("attention_chunk", "checkpoint_activations", "position_extent")


@dataclass
class LossConfig:
    # SSIM loss weights of bottom, middle, top, 1/2-scale and 1/4-scale outputs (from released code).
    weights: Tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 0.05, 0.001)
    online_lambda: float = 8e-5  # weight of the rain-layer term of the online-update loss
    # L1 fidelity on the bottom output (not in the paper, whose loss is SSIM only): weight, and
    # the training step from which it is on. SSIM alone leaves a uniform brightness offset.
    l1_weight: float = 0.0
    l1_start: int = 0
    # Negative per-image PSNR of the bottom output (losses.psnr_loss; not in the paper): weight.
    psnr_weight: float = 0.0


@dataclass
class DataConfig:
    # None: the embedded synthetic rain set (no download). Otherwise a data set folder.
    root: Optional[str] = None
    layout: str = "auto"  # see utils/io/layouts.py (LAYOUTS)
    # Side-by-side pairs: which half is which (clean-rainy | rainy-clean | auto: the half rain
    # brightens is the rainy one, judged on a few images; utils/io/side_by_side.py).
    side_order: str = "auto"
    # Rain style of the embedded set: light | heavy | shifted | mixed (a new random style per
    # image); "gusty" is held out from training (utils/synthetic/styles.py).
    synthetic_preset: str = "light"
    # Train on pairs made on the fly (new background crop and rain per sample; synthetic_count
    # samples per epoch) instead of a fixed set of synthetic_count images.
    synthetic_fresh: bool = False
    # Share of flat, bright clean backgrounds in the on-the-fly stream (overcast sky, grey
    # wall): without them a model takes every low-contrast bright scene for haze and darkens it.
    flat_scenes: float = 0.0
    # Shares of the on-the-fly stream that are dry (clean -> clean: a photo without rain must
    # come back unchanged) and `streaks` rain alone (long sharp streaks, no haze: the look of
    # the Rain100L-style benchmarks); the rest is synthetic_preset.
    dry_share: float = 0.0
    streak_share: float = 0.0
    # Folder of your own clean photos for the embedded set (only read); None: built-in photos.
    clean_photos: Optional[str] = None
    synthetic_size: int = 256  # side of the embedded synthetic images (>= the paper's 224 patch)
    synthetic_count: int = 48  # training images generated for the embedded set
    synthetic_val_count: int = 12  # validation images (from photos disjoint from train's)
    synthetic_test_count: int = 24  # test images for eval/real_train (disjoint photos again)
    synthetic_seed: int = 0  # generation seed: the embedded data don't change with train.seed
    patch_size: int = 224
    augment: bool = False  # the paper trains without augmentation "for fair comparison"
    val_fraction: float = 0.05  # held out of the training set for model selection
    num_workers: int = 2


@dataclass
class TrainConfig:
    name: str = "hcn"
    out_dir: str = "runs"
    iterations: int = 75_000
    batch_size: int = 12
    # Micro-batches of batch_size per optimizer step, their gradients averaged: batch 4 with
    # accumulate 4 trains like batch 16 in the memory of batch 4 (effective batch = batch_size
    # x accumulate x processes). `iterations` counts optimizer steps.
    accumulate: int = 1
    lr: float = 5e-4
    milestones: Tuple[float, ...] = (0.6, 0.8)  # fractions of `iterations` where lr *= gamma
    gamma: float = 0.1
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 disables the exponential moving average of weights
    val_every: int = 2_000
    ckpt_every: int = 1_000
    log_every: int = 50
    image_every: int = 2_000  # tensorboard image panels
    max_bad_steps: int = 5  # consecutive non-finite losses before aborting
    # Wall-time budget of one invocation (--time-limit): the run stops with latest.pth saved
    # before it runs out, so a scheduler's wall time never kills it mid-write. 0: no limit.
    max_hours: float = 0.0
    seed: int = 66
    # fp32 | bf16 | auto: bf16 autocast on a GPU or CPU with native bf16, fp16 + GradScaler on a
    # GPU without it, else fp32 (utils/engine/precision.py).
    precision: str = "auto"
    channels_last: bool = True  # on CUDA only
    compile: bool = False  # torch.compile the model
    # Start from the weights of this checkpoint (its EMA shadow if it has one) with a fresh
    # optimizer and lr schedule: a second training stage. None: random initial weights.
    init: Optional[str] = None


@dataclass
class OnlineConfig:
    """Online-update fine-tuning on real rainy images (docs/method.md#online-update)."""

    init: Optional[str] = None  # synthetic checkpoint to start from
    # Folder (or file) of real rainy images; None: the embedded demonstration, `target` rain on
    # the held-out test photos with the ground truth hidden from the method (report only).
    data: Optional[str] = None
    name: str = "online"  # run directory runs/<name>/ (train.out_dir)
    # How round k's pseudo-labels B^k are made (docs/online_update.md):
    #   paper:  B^k = f_k(O), the current model on the rainy input (the paper's online update)
    #   direct: B^k = B^0, fixed labels never refreshed (the paper's baseline (c))
    #   chain:  B^k = f_k(B^{k-1}), the current model on the previous label: it removes what the
    #           model still sees as rain in its own labels, so removal grows round by round.
    #   transfer: labels as paper, but the training input is B_i^k plus the rain layer
    #           R_j^k = O_j - B_j^k of another photo, turned by up to 40 degrees and mirrored:
    #           the photos' own rain, on their own (estimated) backgrounds, in new directions.
    method: str = "paper"
    # Online-update loss: "paper" = L1 + loss.online_lambda x rain-layer term (docs/method.md#losses);
    # "l1" = L1 to the pseudo-labels only.
    loss: str = "paper"
    # Weight of a supervised L1 term on fresh synthetic pairs (data.synthetic_preset, the
    # synthetic model's own training rain, at data.patch_size) in every step: anchors the
    # update (0: off, paper).
    replay: float = 0.0
    # Share of the replay items that are clean -> clean (a clean image is a fixed point of the
    # derainer, which keeps `chain` from compounding); the others are rainy -> clean. On real
    # photos these items teach the model to leave haze alone, so its outputs can brighten
    # round after round (docs/online_update.md).
    replay_clean: float = 0.5
    # Pseudo-labels of round k > 0 keep the tone of B^0: B^k - G(B^k) + G(B^0), G a 6 px
    # Gaussian blur (utils/online.py, keep_tone). Streaks are thin, so labels can still lose
    # them round after round, but brightness, colour and haze stay where the synthetic model
    # put them instead of drifting with self-training.
    keep_tone: bool = False
    # EMA of the weights during the update (replaces train.ema_decay: a long EMA would hide a
    # short update).
    ema_decay: float = 0.0
    # Real photos are shrunk (area filter) to this longer side for the update (0: full size).
    max_side: int = 0
    # A clip as `data` (docs/video.md): the update trains on every clip_every-th frame, at most
    # clip_frames of them spread over the clip; then the adapted model derains the whole clip
    # into runs/<name>/<stem>.mp4, steadied with strength clip_steady (0: off; utils/steady.py).
    clip_every: int = 4
    clip_frames: int = 12
    clip_steady: float = 0.6
    # Stop when a round loses more than this (dB) on the synthetic guard set (the synthetic
    # model's own rain, data.synthetic_preset, at target_size on target_count held-out val
    # photos; no target ground truth); the result (final.pth) is then the round before.
    # 0: never stop early. Above the guard set's round-to-round noise, far below a collapse
    # (docs/online_update.md gives both).
    guard_db: float = 0.3
    # The embedded demonstration (data None): rain style, side and count of the test photos.
    target: str = "gusty"
    target_size: int = 128
    target_count: int = 12
    # Methods also run (each in runs/<name>/compare_<method>/) on the embedded demonstration,
    # for the (b)/(c)/(d) table; () runs only `method`.
    compare: Tuple[str, ...] = ()
    # Score every round's outputs with the no-reference BRISQUE (utils/metrics/noref.py).
    nr_score: bool = True
    # Pseudo-label refresh: tiled inference above this side (0: never tile). The mining
    # attention is quadratic in tile area, so smaller tiles cost less per pixel.
    tile: int = 256
    # Precision of the pseudo-label refresh and of the per-round scoring (fp32 | bf16 | auto;
    # utils/engine/precision.py); the update's training steps follow train.precision.
    refresh_precision: str = "auto"
    rounds: int = 20  # pseudo-label refreshes (one per real epoch in the paper)
    epochs_per_round: int = 1
    batch_size: int = 1
    patch_size: int = 224
    lr: float = 5e-6  # synthetic final lr (inferred)
    # (round, lr) overrides applied when that round starts (from released code).
    lr_steps: Tuple[Tuple[int, float], ...] = (
        (6, 1e-6), (8, 5e-7), (10, 1e-7), (12, 5e-8), (14, 1e-8), (16, 5e-9),
    )


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from utils.io.files import write_text  # atomic: never a 0-byte config.json
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def paper() -> Config:
    """The published recipe: Rain200H-size training, 75k iterations at batch 12."""
    return Config()


def demo() -> Config:
    """A small model and short schedule that trains on a 2-core CPU in minutes."""
    return Config(
        model=ModelConfig(channels=12, encoder_blocks=(3, 1, 1)),
        data=DataConfig(patch_size=64, augment=True, synthetic_size=96, synthetic_count=48,
                        num_workers=0),
        # 480 iterations: the val PSNR plateaus after the second lr decay, so more steps buy
        # nothing measurable (docs/training.md, "Presets").
        train=TrainConfig(
            name="demo", iterations=480, batch_size=4, lr=1e-3, val_every=120,
            ckpt_every=120, log_every=10, image_every=120,
        ),
        # The rain term is a per-sample sum over the crop, the L1 term a mean: 64 px crops
        # instead of 224 px need lambda x (224/64)^2 to keep the paper's balance (8e-5 -> 1e-3).
        loss=LossConfig(online_lambda=1e-3),
        online=OnlineConfig(name="demo_online", rounds=3, epochs_per_round=2, batch_size=2,
                            patch_size=64, lr=2e-4, lr_steps=()),
    )


def standard() -> Config:
    """Stage 1 of the shipped model: `mixed` synthetic rain, sized to train on a CPU in hours.
    The later stages are this config with `--set` overrides, written once as the recipe in
    docs/shipped_model.md#how-it-was-trained (tests/test_shipped_recipe.py checks them).

    Width 16 with 3/1/1 blocks and 96 px patches, chosen on what a training step costs at each
    size (docs/shipped_model.md, "Why this size").
    """
    return Config(
        # Trained on 96 px patches, used on whole photos: position interpolation (measured in
        # docs/method.md#input-size) keeps BiSCSM's position code in its trained range.
        model=ModelConfig(channels=16, encoder_blocks=(3, 1, 1), position_extent=96),
        data=DataConfig(synthetic_preset="mixed", synthetic_fresh=True, synthetic_count=4000,
                        synthetic_size=256, synthetic_val_count=16, synthetic_test_count=24,
                        patch_size=96, num_workers=0),
        train=TrainConfig(
            name="standard", iterations=1200, batch_size=4, lr=1e-3, milestones=(0.7, 0.9),
            gamma=0.25, grad_clip=1.0, ema_decay=0.995, val_every=250, ckpt_every=50,
            log_every=10, image_every=250,
        ),
        # SSIM alone (the paper's loss) leaves a uniform brightness offset, which L1 on the
        # bottom output corrects (docs/shipped_model.md); it joins at step 822, where the
        # shipped run switched it on.
        loss=LossConfig(online_lambda=(224 / 96) ** 2 * 8e-5, l1_weight=1.0, l1_start=822),
        # Rain transfer with L1 to the labels, synthetic replay (rainy -> clean and clean ->
        # clean) and the guard: the mode that beat the model alone on the shipped weights
        # (docs/online_update.md). A small lr because the shipped weights carry no optimizer
        # state: a fresh Adam moves every weight by about lr in its first steps. Crops as
        # large as the refresh tiles (online.tile): a label is the model's output with a
        # whole tile in view, and on smaller crops the model learns a tone shift; on smaller
        # images the crop is the whole image.
        online=OnlineConfig(name="standard_online", method="transfer", loss="l1", replay=1.0,
                            rounds=5, epochs_per_round=2, batch_size=2, patch_size=256, lr=1e-5,
                            lr_steps=(), target_size=96, target_count=8,
                            compare=("direct", "paper")),
    )


PRESETS = {"paper": paper, "demo": demo, "standard": standard}


class ConfigError(UserError, ValueError):
    """A bad preset, --set override, --config file or config entry; the message names the field."""


# Sane bounds on what allocates memory before any weights are checked (paper: width 20,
# blocks (12, 2, 1)); applied to presets + overrides and to configs stored in checkpoints.
# Wider models are possible by editing these, not by a crafted file.
MODEL_BOUNDS = {"channels": (1, 512), "encoder_blocks": (1, 128), "attention_reduction": (1, 512),
                "attention_chunk": (1, 1 << 24), "position_extent": (0, 1 << 20)}


def validate(cfg: "Config") -> None:
    """The schema's constraints beyond types (choices, ranges, model-size bounds; types are
    checked where the text is parsed, utils/config_parse.py); ConfigError names the field."""
    for where, value in (("train.precision", cfg.train.precision),
                         ("online.refresh_precision", cfg.online.refresh_precision)):
        if value not in PRECISIONS:
            raise ConfigError(f"config {where}: {value!r} is not one of {', '.join(PRECISIONS)}")
    for where, value, allowed in (("online.method", cfg.online.method, ONLINE_METHODS),
                                  ("online.loss", cfg.online.loss, ONLINE_LOSSES)):
        if value not in allowed:
            raise ConfigError(f"config {where}: {value!r} is not one of {', '.join(allowed)}")
    unknown = [m for m in cfg.online.compare if m not in ONLINE_METHODS]
    if unknown:
        raise ConfigError(f"config online.compare: {', '.join(map(repr, unknown))} not among "
                          f"{', '.join(ONLINE_METHODS)}")
    if cfg.train.accumulate < 1:
        raise ConfigError(f"config train.accumulate: {cfg.train.accumulate} micro-batches per step; "
                          "at least 1 (1: no accumulation)")
    if cfg.online.replay < 0:
        raise ConfigError(f"config online.replay: {cfg.online.replay} is negative (0 turns it off)")
    if cfg.online.clip_every < 1 or cfg.online.clip_frames < 1 or not 0.0 <= cfg.online.clip_steady < 1.0:
        raise ConfigError(f"config online.clip_every / clip_frames / clip_steady: need >= 1, >= 1 and "
                          f"[0, 1), got {cfg.online.clip_every}, {cfg.online.clip_frames}, "
                          f"{cfg.online.clip_steady}")
    if not 0.0 <= cfg.online.replay_clean <= 1.0:
        raise ConfigError(f"config online.replay_clean: {cfg.online.replay_clean} is outside [0, 1] "
                          "(the share of clean -> clean replay items)")
    for where, value in (("loss.l1_weight", cfg.loss.l1_weight),
                         ("loss.psnr_weight", cfg.loss.psnr_weight)):
        if not (math.isfinite(value) and value >= 0.0):
            raise ConfigError(f"config {where}: {value} must be finite and >= 0 (0 turns it off)")
    if not (math.isfinite(cfg.train.max_hours) and cfg.train.max_hours >= 0.0):
        raise ConfigError(f"config train.max_hours: {cfg.train.max_hours} must be finite and >= 0 "
                          "(0: no time limit)")
    for where, value in (("data.flat_scenes", cfg.data.flat_scenes),
                         ("data.dry_share", cfg.data.dry_share),
                         ("data.streak_share", cfg.data.streak_share)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"config {where}: {value} is outside [0, 1]")
    if (cfg.data.dry_share or cfg.data.streak_share) and not (cfg.data.synthetic_fresh
                                                             and cfg.data.root is None):
        raise ConfigError("config data.dry_share / data.streak_share shape the on-the-fly synthetic "
                          "stream: they need data.synthetic_fresh=true and no data.root")
    if cfg.data.dry_share + cfg.data.streak_share > 1.0:
        raise ConfigError(f"config data.dry_share + data.streak_share: "
                          f"{cfg.data.dry_share + cfg.data.streak_share:g} is more than 1")
    model = cfg.model
    if not isinstance(model.encoder_blocks, tuple) or len(model.encoder_blocks) != 3:
        raise ConfigError(f"config model.encoder_blocks: expected 3 numbers, got {model.encoder_blocks!r}")
    for name, (low, high) in MODEL_BOUNDS.items():
        values = getattr(model, name)
        for value in values if isinstance(values, tuple) else (values,):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config model.{name}: expected an integer, got {value!r}")
            if not low <= value <= high:
                raise ConfigError(f"config model.{name}: {value} is outside [{low}, {high}]")
