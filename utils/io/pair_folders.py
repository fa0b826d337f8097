"""A folder (or pair list) of rainy/clean pairs as a data set: validated up front, read lazily.

`open_pairs` detects the layout (utils/io/layout_detection.py; every layout is listed in
utils/io/layouts.py) and, for side-by-side files, which half is which; `PairedImages` reads
one pair per item and checks its sizes. Nothing here writes to the data folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from utils.io.images import to_tensor
from utils.io.layout_detection import detect_layout, resolve_side_order
from utils.io.layouts import (LAYOUTS, SIDE_ORDER_CHOICES, SIDE_ORDERS, DatasetError, PairEntry,
                              pair_entries, read_data_image)
from utils.io.pair_headers import pair_sizes, size_mismatch
from utils.io.side_by_side import halves


class PairedImages(Dataset):
    """Full-size rainy/clean pairs from disk, read lazily; items are
    `{"name": str, "rainy": Tensor[3,H,W], "clean": Tensor[3,H,W]}`."""

    def __init__(self, entries: Sequence[PairEntry], root: Path, layout: str,
                 side_order: str = "clean-rainy"):
        if side_order not in SIDE_ORDERS:
            raise DatasetError(f"unknown side_order {side_order!r}; choose one of {SIDE_ORDERS}")
        if not entries:
            raise DatasetError(f"{root}: no image pairs found (layout {layout!r})")
        self.entries = list(entries)
        self.root = Path(root)
        self.layout = layout
        self.side_order = side_order
        self._sizes: Optional[list] = None

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"PairedImages({len(self)} pairs, layout={self.layout!r}, root={str(self.root)!r})"

    def group_keys(self) -> list[str]:
        """Rainy images made from the same clean image share a key (DDN: 14 per clean image)."""
        return [str(e.clean if e.clean is not None else e.rainy) for e in self.entries]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rainy, clean) as RGB float32 HWC arrays; DatasetError names the file(s) at fault."""
        entry = self.entries[index]
        if entry.clean is None:
            image = read_data_image(entry.rainy)
            if image.shape[1] < 2:
                raise DatasetError(f"{entry.rainy}: {image.shape[1]} px wide, too narrow to hold "
                                   "a side-by-side pair")
            left, right = halves(image)
            rainy, clean = (right, left) if self.side_order == "clean-rainy" else (left, right)
            return np.ascontiguousarray(rainy), np.ascontiguousarray(clean)
        rainy, clean = read_data_image(entry.rainy), read_data_image(entry.clean)
        if rainy.shape != clean.shape:
            raise DatasetError(size_mismatch(entry, rainy.shape[1::-1], clean.shape[1::-1]))
        return rainy, clean

    def __getitem__(self, index: int) -> dict:
        rainy, clean = self.load(index)
        return {"name": self.entries[index].name, "rainy": to_tensor(rainy), "clean": to_tensor(clean)}

    def verify(self) -> list[tuple[int, int]]:
        """Check every pair now from its image headers (fast: utils.io.pair_headers) and return
        (height, width) per pair; a DatasetError counts the broken pairs, a warning names each."""
        if self._sizes is None:
            self._sizes = pair_sizes(self.entries, str(self.root))
        return self._sizes


def open_pairs(root: Union[str, Path], layout: str = "auto", side_order: str = "auto") -> PairedImages:
    """Open a paired data set folder (or pair list) in any of `LAYOUTS`; 'auto' detects the
    layout, and the side order of side-by-side files (utils.io.side_by_side)."""
    root = Path(root).expanduser()
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose 'auto' or one of {', '.join(LAYOUTS)}")
    if side_order not in SIDE_ORDER_CHOICES:
        raise DatasetError(f"unknown side_order {side_order!r}; choose one of {SIDE_ORDER_CHOICES}")
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if layout == "auto":
        layout = detect_layout(root)
    elif root.is_file() and layout not in ("pair-list", "side-by-side"):
        raise DatasetError(f"{root}: layout {layout!r} needs a folder, got a file")
    entries = pair_entries(root, layout)
    return PairedImages(entries, root, layout, resolve_side_order(root, layout, entries, side_order))
