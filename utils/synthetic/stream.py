"""Training pairs made on the fly from the clean photos: a new background crop and a new rain
draw for every sample (`data.synthetic_fresh`), reproducible by (seed, epoch, index)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from utils.io.images import to_tensor
from utils.io.layouts import DatasetError
from utils.synthetic.photos import training_background
from utils.synthetic.rain import add_rain
from utils.synthetic.styles import HELD_OUT


class SyntheticRainStream(Dataset):
    """Training pairs made on the fly: a new augmented background crop and a new rain draw
    for every sample (items `{"rainy", "clean"}` Tensor[3,p,p], like PatchDataset).

    Sample (epoch, index) depends only on (seed, epoch, index), not on worker count or
    order; `length` samples make one epoch. Rain is rendered at a random `scale` in
    `scales` (log-uniform), so streak sizes vary relative to the scene. `flat_scenes`: share
    of flat, bright clean backgrounds (utils.synthetic.photos.augment_photo).
    """

    def __init__(self, photos: Sequence[np.ndarray], patch_size: int, length: int,
                 preset: str = "mixed", seed: int = 0, scales: tuple[float, float] = (0.5, 1.6),
                 flat_scenes: float = 0.0, dry_share: float = 0.0, streak_share: float = 0.0):
        if not photos:
            raise DatasetError("SyntheticRainStream: no clean photos")
        if patch_size < 1 or length < 1:
            raise ValueError(f"patch_size and length must be >= 1, got {patch_size}, {length}")
        if preset in HELD_OUT:
            raise ValueError(f"rain style {preset!r} is held out for measuring generalisation; "
                             "do not train on it")
        self.photos, self.patch_size, self.length = list(photos), int(patch_size), int(length)
        if not 0.0 <= flat_scenes <= 1.0:
            raise ValueError(f"flat_scenes must be in [0, 1], got {flat_scenes}")
        self.preset, self.seed, self.scales, self.epoch = preset, int(seed), scales, 0
        self.flat_scenes = float(flat_scenes)
        for name, share in (("dry_share", dry_share), ("streak_share", streak_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {share}")
        if dry_share + streak_share > 1.0:
            raise ValueError(f"dry_share + streak_share must be <= 1, got {dry_share + streak_share}")
        self.dry_share, self.streak_share = float(dry_share), float(streak_share)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        shares = (f", dry {self.dry_share:g}, streaks {self.streak_share:g}"
                  if self.dry_share or self.streak_share else "")
        return (f"SyntheticRainStream({self.length} samples/epoch, {len(self.photos)} photos, "
                f"preset={self.preset!r}{shares}, patch={self.patch_size})")

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        clean = training_background(self.photos, self.patch_size, rng, self.flat_scenes)
        scale = float(np.exp(rng.uniform(np.log(self.scales[0]), np.log(self.scales[1]))))
        preset = self._pick_style(rng)
        rainy = clean if preset is None else add_rain(clean, preset, rng, scale=scale)
        return {"rainy": to_tensor(rainy), "clean": to_tensor(clean)}

    def _pick_style(self, rng: np.random.Generator) -> Optional[str]:
        """The sample's rain style; None for a dry sample (clean -> clean). Draws nothing when
        both shares are 0, so the stream of runs without them is unchanged."""
        if self.dry_share == 0.0 and self.streak_share == 0.0:
            return self.preset
        pick = rng.random()
        if pick < self.dry_share:
            return None
        return "streaks" if pick < self.dry_share + self.streak_share else self.preset
