"""Inference on images of any size: whole-image, overlapped tiles, and the flip self-ensemble.

`derain` is the one entry point used by eval.py, show.py, scripts/bench.py and the online
pseudo-label refresh. It always returns the bottom network's prediction (the model's
answer, docs/method.md#architecture) and never runs the multi-scale training branches.

Why tiles: the mining attention is global over the 1/4-scale feature map, so its
cost grows with the square of the pixel count; a 12-megapixel photo cannot run in
one piece. Tiles are processed a batch at a time (on the model's device) while the
full image and the blend accumulators stay on the input's device (CPU for photos),
so accelerator memory depends on the tile size only.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

__all__ = ["derain", "dihedral", "inverse_dihedral", "tile_starts", "blend_window",
           "ENSEMBLE_TRANSFORMS"]


# ----------------------------------------------------------------------------- transforms
def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of a [..., H, W] tensor: k % 4 quarter turns
    (counter-clockwise), then a horizontal flip if k >= 4 (k=0 is the identity).

    The one numbering of the project: training augmentation and the ensemble use it."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def inverse_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo `dihedral(., k)`: the flip first, then the quarter turns back."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


# ----------------------------------------------------------------------------- tiling geometry
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with at least `overlap` overlap.

    Tiles are spread evenly (the last one ends exactly at the border), so every overlap
    is at least `overlap` and no tile sticks out of the image (no padding needed).
    """
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def _ramp_1d(size: int, ramp: int, left: bool, right: bool) -> torch.Tensor:
    """1 inside, a raised-cosine rise over `ramp` pixels at the sides that touch another tile.

    Values stay strictly positive, so the normalised blend is defined at every pixel; sides on
    the image border keep weight 1 (no other tile covers those pixels).
    """
    w = torch.ones(size, dtype=torch.float32)
    ramp = min(ramp, size // 2)
    if ramp > 0:
        i = torch.arange(ramp, dtype=torch.float32)
        rise = 0.5 - 0.5 * torch.cos(math.pi * (i + 1) / (ramp + 1))
        if left:
            w[:ramp] = rise
        if right:
            w[size - ramp:] = rise.flip(0)
    return w


def blend_window(height: int, width: int, overlap: int, top: bool = True, bottom: bool = True,
                 left: bool = True, right: bool = True) -> torch.Tensor:
    """Separable [height, width] weight of one tile; the flags say which sides are blended."""
    wy = _ramp_1d(height, overlap, top, bottom)
    wx = _ramp_1d(width, overlap, left, right)
    return wy[:, None] * wx[None, :]


# The self-ensemble averages the 4 flips (identity, half turn, horizontal and vertical flip:
# k = 0, 2, 4, 6), not all 8 dihedral transforms as in super-resolution. Rain streaks have a
# direction: a quarter turn makes near-vertical rain horizontal, which a deraining model has
# never seen (docs/evaluation.md, `show.py`, measures each on the shipped model).
ENSEMBLE_TRANSFORMS = (0, 2, 4, 6)


# ----------------------------------------------------------------------------- forward passes
def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _forward(model, x: torch.Tensor, ensemble: bool, precision=None) -> torch.Tensor:
    """Bottom prediction of a batch in float32 (the model runs under `precision`'s autocast);
    with `ensemble`, the mean over the 4 flips (ENSEMBLE_TRANSFORMS)."""
    def bottom(inputs):
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            out = model(inputs, branches=False).bottom
        return out.float()

    if not ensemble:
        return bottom(x)
    total = None
    for k in ENSEMBLE_TRANSFORMS:  # one batched call per transform: memory of a plain pass
        pred = inverse_dihedral(bottom(dihedral(x, k)), k)
        total = pred if total is None else total.add_(pred)
    return total / len(ENSEMBLE_TRANSFORMS)


def _tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    th, tw = min(tile, height), min(tile, width)
    for y in tile_starts(height, th, overlap):
        for x in tile_starts(width, tw, overlap):
            yield y, x, th, tw


def derain(model: torch.nn.Module, rainy: torch.Tensor, tile: int | None = None, overlap: int = 32,
           ensemble: bool = False, tile_batch: int = 4, precision=None) -> torch.Tensor:
    """Derain a batch [B,3,H,W] in [0,1]; returns the bottom prediction [B,3,H,W] (float32, unclipped).

    tile: None/0 runs the whole image at once; otherwise square tiles of this side (clipped to
        the image), overlapping by at least `overlap` pixels and blended with a raised-cosine
        window (weights accumulated, then normalised), `tile_batch` tiles per model call.
    ensemble: average the 4 flips (inverse-transformed; ENSEMBLE_TRANSFORMS), also per tile.
    precision: a utils.engine.precision.Precision whose autocast wraps each model call (None:
        as the caller has it); the blending and the result stay float32.
    The result lives on `rainy`'s device; the model runs on its own device.
    """
    if rainy.dim() != 4 or rainy.shape[1] != 3:
        raise ValueError(f"derain expects a [B,3,H,W] tensor, got {tuple(rainy.shape)}")
    if tile is not None and tile > 0 and not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
    device = _model_device(model)
    batch, _, height, width = rainy.shape
    with torch.inference_mode():
        if not tile or (height <= tile and width <= tile):
            return _forward(model, rainy.to(device, torch.float32), ensemble, precision).to(rainy.device)

        out = torch.zeros(batch, 3, height, width, dtype=torch.float32, device=rainy.device)
        weight = torch.zeros(1, 1, height, width, dtype=torch.float32, device=rainy.device)
        boxes = list(_tiles(height, width, tile, overlap))
        for first in range(0, len(boxes), tile_batch):
            chunk = boxes[first:first + tile_batch]
            # All tiles share one size (clipped to the image), so they stack into one batch.
            crops = torch.cat([rainy[:, :, y:y + th, x:x + tw] for y, x, th, tw in chunk])
            preds = _forward(model, crops.to(device, torch.float32), ensemble,
                             precision).to(rainy.device)
            preds = preds.view(len(chunk), batch, 3, *preds.shape[-2:])
            for (y, x, th, tw), pred in zip(chunk, preds):
                w = blend_window(th, tw, overlap, top=y > 0, bottom=y + th < height,
                                 left=x > 0, right=x + tw < width).to(rainy.device)
                out[:, :, y:y + th, x:x + tw] += pred * w
                weight[:, :, y:y + th, x:x + tw] += w
        return out / weight
