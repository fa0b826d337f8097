"""Which layout (`utils.io.layouts.LAYOUTS`) a data set folder is in, which half of its
side-by-side files is rainy, and, when no layout fits, what the folder holds and which layout
comes nearest, with what it lacks."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

from utils import logs
from utils.io.images import is_image_file
from utils.io.layouts import (CLEAN_DIR_NAMES, DDN_CLEAN_DIRS, DDN_RAINY_DIRS, FOLDER_NAME_PAIRS,
                              LIST_SUFFIXES, PRENET_RAINY_DIR, RAINY_DIR_NAMES, SIDE_ORDER_CHOICES,
                              DatasetError, PairEntry, few, in_gt_files, layout_by_names, list_files,
                              list_images, rain200_scaled, read_data_image, subfolders)
from utils.io.side_by_side import looks_side_by_side, sample, side_order_of

log = logs.get("dataset")


def detect_layout(root: Union[str, Path]) -> str:
    """The layout name of a data set folder (or pair list), or a DatasetError saying why not."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() in LIST_SUFFIXES:
            return "pair-list"
        raise DatasetError(f"{root}: is a single file; open_pairs needs a data set folder or a "
                           f"pair list ({', '.join(LIST_SUFFIXES)}); for rainy images alone use open_rainy")
    if not [p for p in root.iterdir() if not p.name.startswith(".")]:
        raise DatasetError(f"{root}: the folder is empty")
    layout = layout_by_names(root)
    if layout is not None:
        return layout
    images = list_images(root)
    if looks_side_by_side([read_data_image(p) for p in sample(images)]):
        return "side-by-side"
    raise DatasetError(f"{root}: cannot detect the data set layout. Found {_found(root, images)}. "
                       f"{_nearest(root)} Tried: {_tried(images)}.")


def resolve_side_order(root: Path, layout: str, entries: Sequence[PairEntry], side_order: str) -> str:
    """`side_order` itself, or for 'auto' the order the sampled side-by-side files show
    (clean-rainy for other layouts, where it is unused)."""
    if side_order not in SIDE_ORDER_CHOICES:
        raise DatasetError(f"unknown side_order {side_order!r}; choose one of {SIDE_ORDER_CHOICES}")
    if side_order != "auto":
        return side_order
    if layout != "side-by-side":
        return "clean-rainy"
    images = [read_data_image(e.rainy) for e in sample(entries)]
    order, scores = side_order_of(images)
    if order is None:
        raise DatasetError(f"{root}: cannot tell which half of the side-by-side images is rainy "
                           f"(left - right rain asymmetry of {len(images)} sampled images: "
                           f"{', '.join(f'{s:+.3f}' for s in scores)}); set the side order "
                           "(--side-order or data.side_order) to clean-rainy or rainy-clean")
    side = "right" if order == "clean-rainy" else "left"
    log.info(f"{root}: side-by-side pairs with the rainy half on the {side} (side order {order}, "
             f"seen in {len(images)} sampled images; set the side order to override)")
    return order


def _found(root: Path, images: list[Path]) -> str:
    """'3 image(s) (a.png, b.png, c.png), subfolders x/, y/, 1 other file(s) (Thumbs.db)'."""
    subdirs = sorted(p.name + "/" for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    others = sorted(p.name for p in root.iterdir()
                    if p.is_file() and not p.name.startswith(".") and not is_image_file(p))
    parts = [f"{len(images)} image(s)" + (f" ({few([p.name for p in images], 3)})" if images else "")]
    parts.append(f"subfolders {few(subdirs)}" if subdirs else "no subfolders")
    if others:
        parts.append(f"{len(others)} other file(s) ({few(others, 3)})")
    return ", ".join(parts)


def _nearest(root: Path) -> str:
    """What the folder lacks for the layouts it comes near, or where the data sets inside are."""
    subdirs = subfolders(root)
    inside = [f"{p.name}/ ({layout})" for name, p in sorted(subdirs.items())
              if (layout := layout_by_names(p)) is not None]
    hints = [f"its subfolders hold data sets: {few(inside)}; point at one of them"] if inside else []
    rainy = [n + "/" for n in RAINY_DIR_NAMES if n in subdirs]
    clean = [n + "/" for n in CLEAN_DIR_NAMES if n in subdirs]
    if rainy and not clean:
        hints.append(f"folders/ddn: found {few(rainy)} but no clean subfolder beside it (one of "
                     f"{', '.join(n + '/' for n in CLEAN_DIR_NAMES)})")
        if PRENET_RAINY_DIR in subdirs:
            hints.append(f"rain-norain: found {PRENET_RAINY_DIR}/ but no rain-<id> files in it and no "
                         "norain-<id> files here")
    if clean and not rainy:
        hints.append(f"folders/ddn: found {few(clean)} but no rainy subfolder beside it (one of "
                     f"{', '.join(n + '/' for n in RAINY_DIR_NAMES)})")
    scaled = rain200_scaled(root)
    if len(scaled) > 1:
        hints.append(f"rain200: rain/ holds {len(scaled)} scale folders ({few([p.name for p in scaled])}); "
                     "it needs exactly one")
    inputs, truths = in_gt_files(root)
    if bool(inputs) != bool(truths):
        hints.append(f"in-gt: found {len(inputs)} <id>_in and {len(truths)} <id>_GT file(s); it needs both")
    lists = list_files(root)
    if len(lists) > 1:
        hints.append(f"pair-list: found {len(lists)} list files ({few([p.name for p in lists])}); pass "
                     "the one to read as the data path")
    if {"train", "test"} & set(subdirs):
        hints.append("this looks like a data set root: point at its train/ or test/ folder")
    return ("Nearest: " + "; ".join(hints) + ".") if hints else "No layout comes near."


def _tried(images: list[Path]) -> str:
    side = (f"side-by-side ({len(images)} image(s) found, but their left and right halves do not "
            "show the same scene; pass layout='side-by-side' to force it)" if images else
            "side-by-side (no images directly in the folder)")
    return ", ".join([
        f"ddn (subfolders {DDN_RAINY_DIRS[0]}/ + {DDN_CLEAN_DIRS[0]}/)", "rain200 (rain/X2/ + norain/)",
        f"folders (a subfolder pair such as {', '.join(r + '/' + c for r, c in FOLDER_NAME_PAIRS[:4])}, ...)",
        f"rain-norain (files norain-<id> + rain-<id>, or {PRENET_RAINY_DIR}/rain-<id>)",
        "in-gt (files <id>_in + <id>_GT)", f"pair-list (one {'/'.join(LIST_SUFFIXES)} file)", side])
