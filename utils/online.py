"""Online-update data (docs/method.md#online-update): pseudo-label storage and training crops.

Pseudo-labels B^k live under the run directory (never in the input folder) as float32 .npy
files, so no 8-bit round trip ever enters the loop. Round k is complete when its DONE marker
exists; a refresh interrupted half-way resumes where it stopped (files are written atomically).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from networks.resize import pad_bottom_right
from utils.io.files import atomic_write


class PseudoLabels:
    """`<root>/round_<k>/<name>.npy` ([3,H,W] float32 in [0,1]) plus a DONE marker per round."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, k: int) -> Path:
        return self.root / f"round_{k:03d}"

    def path(self, k: int, name: str) -> Path:
        return self.folder(k) / f"{name}.npy"

    def has(self, k: int, name: str) -> bool:
        return self.path(k, name).is_file()

    def complete(self, k: int) -> bool:
        return (self.folder(k) / "DONE").is_file()

    def save(self, k: int, name: str, label: torch.Tensor) -> None:
        array = label.detach().float().clamp(0, 1).cpu().numpy()
        with atomic_write(self.path(k, name)) as handle:
            np.save(handle, array)

    def load(self, k: int, name: str) -> torch.Tensor:
        return torch.from_numpy(np.load(self.path(k, name)))

    def stats_path(self, k: int, name: str) -> Path:
        return self.folder(k) / f"{name}.json"

    def save_stats(self, k: int, name: str, stats: dict) -> None:
        """Per-image statistics of round k (written after the label: together they mark it done)."""
        with atomic_write(self.stats_path(k, name)) as handle:
            handle.write(json.dumps(stats).encode())

    def load_stats(self, k: int, name: str) -> dict:
        return json.loads(self.stats_path(k, name).read_text())

    def mark_complete(self, k: int) -> None:
        (self.folder(k) / "DONE").write_text("all pseudo-labels of this round are written\n")

    def prune(self, keep: set[int]) -> None:
        """Delete the float labels of rounds not in `keep` (each round of a 12-megapixel set is
        hundreds of MB); the 8-bit previews of every round stay in rounds/."""
        for folder in sorted(self.root.glob("round_*")):
            k = int(folder.name.split("_")[1])
            if k not in keep:
                shutil.rmtree(folder)


def _crop(image: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return image[:, top:top + size, left:left + size]


def _pad_to(image: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad (replicate for tiny sides) a [3,H,W] image up to size x size at least."""
    _, h, w = image.shape
    return pad_bottom_right(image[None], max(0, size - h), max(0, size - w))[0]


def rotate_flip(image: torch.Tensor, degrees: float, flip: bool) -> torch.Tensor:
    """[3,H,W] rotated about its centre (bilinear, mirrored borders), then mirrored left-right."""
    array = image.permute(1, 2, 0).numpy()
    h, w = array.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    array = cv2.warpAffine(array, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return out.flip(-1) if flip else out


def largest_side(images: list[torch.Tensor]) -> int:
    """The longest side among [..., H, W] images: no training crop is larger."""
    return max(max(image.shape[-2:]) for image in images)


class OnlineCrops(Dataset):
    """Item i: aligned random crops of the rainy image O_i and its pseudo-label B_i^{k-1}, plus
    the rain layer O_j - B_j^{k-1} of an independent crop of a random *other* image j,
    turned by U(-rotate, rotate) degrees and mirrored with probability 1/2 when `rotate` > 0
    (the rain-transfer method: new streak directions from the photos' own rain).

    `length` (default: one item per image) above the image count cycles through the images
    again, with new crops. Randomness depends only on (seed, epoch, i), so a resumed run
    draws the same crops.
    """

    def __init__(self, rainy: list[torch.Tensor], labels: list[torch.Tensor], patch_size: int,
                 seed: int, rotate: float = 0.0, length: int | None = None):
        if len(rainy) != len(labels) or not rainy:
            raise ValueError(f"OnlineCrops needs one label per image, got {len(rainy)} images "
                             f"and {len(labels)} labels")
        # A crop never exceeds the largest image: a pseudo-label is the model's output with the
        # whole image in view, and this network's output depends on what it sees (its
        # similarity mining is global), so smaller crops than the image teach it a tone shift.
        patch_size = min(patch_size, largest_side(rainy))
        self.rainy = [_pad_to(r, patch_size) for r in rainy]
        self.labels = [_pad_to(b, patch_size) for b in labels]
        self.patch_size = patch_size
        self.seed = seed
        self.rotate = rotate
        self.length = max(len(rainy), length or 0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _random_crop(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        _, h, w = self.rainy[i].shape
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        return (_crop(self.rainy[i], top, left, self.patch_size),
                _crop(self.labels[i], top, left, self.patch_size))

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        n = len(self.rainy)
        i %= n
        rainy, label = self._random_crop(i, rng)
        j = i if n == 1 else int((i + 1 + rng.integers(0, n - 1)) % n)  # uniform over j != i
        partner_rainy, partner_label = self._random_crop(j, rng)
        partner_rain = partner_rainy - partner_label
        if self.rotate > 0:  # drawn after the crops: the other methods' crops stay as they were
            partner_rain = rotate_flip(partner_rain, float(rng.uniform(-self.rotate, self.rotate)),
                                       bool(rng.random() < 0.5))
        return {"rainy": rainy.contiguous(), "pseudo": label.contiguous(),
                "partner_rain": partner_rain.contiguous()}


TONE_SIGMA = 6.0  # px; streaks are 1-4 px wide, haze and exposure vary over tens of px


def keep_tone(label: torch.Tensor, reference: torch.Tensor, sigma: float = TONE_SIGMA) -> torch.Tensor:
    """`label`'s fine structure on `reference`'s tone: label - G(label) + G(reference), G a
    Gaussian blur of `sigma` px (mirrored borders), clipped to [0, 1]. With B^0 as reference,
    pseudo-labels can lose streaks round after round but not drift in brightness, colour or
    haze from where the synthetic model put them ([3,H,W] float32 tensors)."""
    def hwc(image: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.float32)

    def blur(image: torch.Tensor) -> np.ndarray:
        return cv2.GaussianBlur(hwc(image), (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)

    out = hwc(label) - blur(label) + blur(reference)
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).permute(2, 0, 1).contiguous()


def training_input(method: str, batch: dict) -> torch.Tensor:
    """What the model sees in an online-update step: the rainy crop O_i, or, for the rain-transfer
    method, the pseudo-clean crop B_i plus the other photo's (turned) rain layer R_j."""
    if method == "transfer":
        return (batch["pseudo"] + batch["partner_rain"]).clamp(0, 1)
    return batch["rainy"]


def replays_clean(index: int, share: float) -> bool:
    """Whether replay item `index` (counted over the whole update) is clean -> clean: evenly
    spaced, `share` of the items (0.5: every second one, 0.25: every fourth)."""
    return math.floor((index + 1) * share) > math.floor(index * share)


def replay_batch(stream, first: int, size: int, clean_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of the replay items first .. first+size-1 of a synthetic stream: rainy
    -> clean, so the update does not forget, and a share `clean_share` of clean -> clean (a
    clean image is a fixed point of the derainer, so `chain` converges instead of darkening)."""
    items = [stream[first + j] for j in range(size)]
    inputs = [it["clean" if replays_clean(first + j, clean_share) else "rainy"] for j, it in enumerate(items)]
    return torch.stack(inputs), torch.stack([it["clean"] for it in items])
