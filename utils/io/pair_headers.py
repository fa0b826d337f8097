"""A pair data set checked from the image headers before any training step or scoring: every
file readable, no image over the pixel limit, the rainy and clean image of each pair of one
size. A header costs a file open, not a decode (`utils.io.images.image_size`), so a set of
13,000 pairs is checked in seconds; pixel data that is cut short further on is found when
the pair is read, and that error names the file too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from utils import logs
from utils.io.images import ImageReadError, check_pixel_count, image_size, read_image
from utils.io.layouts import DatasetError, PairEntry
from utils.io.name_matching import ERRORS_SHOWN, few

log = logs.get("dataset")


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header; formats without a header we parse are decoded."""
    size = image_size(path) if path.is_file() else None
    if size is None:  # not a file, a corrupt header or a format only OpenCV reads
        image = read_image(path)
        return image.shape[1], image.shape[0]
    check_pixel_count(path, *size)
    return size


def _pair_size(entry: PairEntry, known: dict) -> tuple[int, int]:
    """(height, width) of the pair's clean image; DatasetError/ImageReadError says what is wrong.
    `known` keeps the sizes read so far: a clean image shared by many rainy ones (DDN: 14,
    SPA-Data: a video's frames) is read once."""
    width, height = header_size(entry.rainy)
    if entry.clean is None:  # side by side: the clean image is one half
        if width < 2:
            raise DatasetError(f"{entry.rainy}: {width} px wide, too narrow to hold a side-by-side pair")
        return height, width // 2
    if entry.clean not in known:
        known[entry.clean] = header_size(entry.clean)
    clean = known[entry.clean]
    if clean != (width, height):
        raise DatasetError(size_mismatch(entry, (width, height), clean))
    return height, width


def size_mismatch(entry: PairEntry, rainy: tuple[int, int], clean: tuple[int, int]) -> str:
    """The message for a pair whose images differ in size ((width, height) each)."""
    return (f"pair size mismatch: rainy {entry.rainy} is {rainy[0]}x{rainy[1]} but clean "
            f"{entry.clean} is {clean[0]}x{clean[1]} (width x height)")


def pair_sizes(entries: Sequence[PairEntry], label: str) -> list[tuple[int, int]]:
    """(height, width) of every pair's clean image, read from headers. One DatasetError names
    the broken pairs (count and first few; beyond those a warning names each one)."""
    sizes: list[Optional[tuple[int, int]]] = []
    broken: list[str] = []
    known: dict[Path, tuple[int, int]] = {}
    for entry in tqdm(entries, desc=f"checking {label}", unit="pair", leave=False, dynamic_ncols=True,
                      disable=not logs.bars_enabled() or len(entries) < 1000):
        try:
            sizes.append(_pair_size(entry, known))
        except (DatasetError, ImageReadError) as error:
            sizes.append(None)
            broken.append(str(error))
    if broken:
        if len(broken) > ERRORS_SHOWN:  # the error shows the first few: the log gets each one
            for problem in broken:
                log.warning(f"{label}: {problem}")
        raise DatasetError(f"{label}: {len(broken)} of {len(entries)} pairs cannot be used (unreadable, "
                           f"over the pixel limit, or rainy and clean of different sizes): {few(broken)}")
    return sizes
