"""Image panels for looking at results: side-by-side rows, contact sheets, tensorboard grids.

Numpy functions take and return RGB float32 HWC images in [0, 1] (the project convention);
`tensor_grid` works on [B,3,H,W] tensors for tensorboard `add_image` (CHW).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

__all__ = ["side_by_side", "contact_sheet", "fit_within", "tensor_grid"]

_LABEL_HEIGHT = 22
_BACKGROUND = 1.0  # white gaps and label bars


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB HWC image, got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most `max_side`; area filter for quality."""
    image = _as_image(image)
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    """Put `text` in a bar above the image (the image itself stays untouched)."""
    # Drawn in uint8: OpenCV's anti-aliased text needs 8-bit images.
    bar = np.full((_LABEL_HEIGHT, image.shape[1], 3), round(_BACKGROUND * 255), dtype=np.uint8)
    cv2.putText(bar, text, (4, _LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar.astype(np.float32) / 255.0, image], axis=0)


def side_by_side(images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 gap: int = 4) -> np.ndarray:
    """Images in one row (e.g. rainy | derained | clean), each optionally labelled on top.

    Images of different heights are bottom-padded with white to the tallest.
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    cells = [_as_image(im) for im in images]
    if labels is not None:
        cells = [_label(im, text) for im, text in zip(cells, labels)]
    height = max(c.shape[0] for c in cells)
    row = []
    for i, cell in enumerate(cells):
        if cell.shape[0] < height:
            pad = np.full((height - cell.shape[0], cell.shape[1], 3), _BACKGROUND, np.float32)
            cell = np.concatenate([cell, pad], axis=0)
        if i:
            row.append(np.full((height, gap, 3), _BACKGROUND, np.float32))
        row.append(cell)
    return np.concatenate(row, axis=1)


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                  columns: int = 4, thumb: int = 320, gap: int = 6) -> np.ndarray:
    """A grid of thumbnails, each shrunk to fit `thumb` x `thumb` and centred in its cell.

    Cells are as large as the largest thumbnail (plus its label), so wide panels do not
    leave square cells mostly empty.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    smalls = [fit_within(image, thumb) for image in images]
    if labels is not None:
        smalls = [_label(small, text) for small, text in zip(smalls, labels)]
    columns = max(1, min(columns, len(smalls)))
    rows = -(-len(smalls) // columns)
    cell_h = max(s.shape[0] for s in smalls)
    cell_w = max(s.shape[1] for s in smalls)
    sheet = np.full((rows * cell_h + (rows + 1) * gap, columns * cell_w + (columns + 1) * gap, 3),
                    _BACKGROUND, dtype=np.float32)
    for i, small in enumerate(smalls):
        r, c = divmod(i, columns)
        top = gap + r * (cell_h + gap) + (cell_h - small.shape[0]) // 2
        left = gap + c * (cell_w + gap) + (cell_w - small.shape[1]) // 2
        sheet[top:top + small.shape[0], left:left + small.shape[1]] = small
    return sheet


def tensor_grid(columns: Sequence[torch.Tensor], max_rows: int = 4, gap: int = 2) -> torch.Tensor:
    """Tensorboard panel: column j shows `columns[j]` ([B,3,H,W], same H, W), one row per sample.

    E.g. `tensor_grid([rainy, pred, clean])` -> [3, H', W'] in [0, 1] for `add_image`.
    """
    if not columns:
        raise ValueError("tensor_grid needs at least one column")
    shape = columns[0].shape
    if any(c.shape[1:] != shape[1:] or c.dim() != 4 for c in columns):
        raise ValueError(f"tensor_grid columns must all be [B,3,H,W] of one size, got "
                         f"{[tuple(c.shape) for c in columns]}")
    rows = min(max_rows, min(c.shape[0] for c in columns))
    stack = torch.stack([c[:rows].detach().float().cpu().clamp(0, 1) for c in columns], dim=1)
    stack = torch.nn.functional.pad(stack, (0, gap, 0, gap), value=1.0)  # [R, C, 3, H+g, W+g]
    r, c, ch, h, w = stack.shape
    grid = stack.permute(2, 0, 3, 1, 4).reshape(ch, r * h, c * w)
    return grid[:, :-gap, :-gap] if gap else grid
