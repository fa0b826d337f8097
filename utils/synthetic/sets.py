"""Fixed synthetic rain sets (validation, test, written data sets) and the preset picture."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from utils.errors import UserError
from utils.io.images import write_image
from utils.synthetic.photos import SPLITS, clean_backgrounds
from utils.synthetic.rain import add_rain
from utils.synthetic.styles import RainPreset, preset_id


class SetExistsError(UserError, FileExistsError):
    """The output folder of a synthetic set already holds files."""


def make_rainy_set(split: str, preset: Union[str, RainPreset], size: int | tuple[int, int],
                   count: int, seed: int, folder: Optional[str | Path] = None
                   ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """(names, rainy images, clean images) generated in memory.

    Clean backgrounds come from `split`'s own photos (built-in, or `folder`); image i depends
    only on (seed, split, i) for the background and (seed, split, i, preset) for the rain, so
    the sets of different presets of one seed and split share the same clean images.
    `size`: a side (square images) or (height, width): the centre of the square crop of the
    longer side.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    name = preset.name if isinstance(preset, RainPreset) else preset
    height, width = (size, size) if isinstance(size, int) else size
    backgrounds = clean_backgrounds(split, max(height, width), count, seed, folder)
    split_id = SPLITS.index(split)
    names, rainy, clean = [], [], []
    for i, (_, background) in enumerate(backgrounds):
        top, left = (background.shape[0] - height) // 2, (background.shape[1] - width) // 2
        background = np.ascontiguousarray(background[top:top + height, left:left + width])
        rng = np.random.default_rng([seed, split_id, i, preset_id(preset)])
        names.append(f"{split}-{name}-{i:04d}")
        rainy.append(add_rain(background, preset, rng))
        clean.append(background)
    return names, rainy, clean


def preset_panel(size: int = 192, seed: int = 0, source_index: int = 0, gap: int = 4,
                 presets: Sequence[str] = ("light", "heavy", "shifted", "mixed", "gusty")
                 ) -> np.ndarray:
    """One clean test image and its rainy versions side by side, labelled."""
    clean = clean_backgrounds("test", size, source_index + 1, seed)[source_index][1]
    tiles = [("clean", clean)]
    for k, name in enumerate(presets):
        tiles.append((name, add_rain(clean, name, np.random.default_rng([seed, 99, k]))))
    label_h = 22
    panel = np.full((size + label_h, len(tiles) * size + (len(tiles) - 1) * gap, 3), 255, np.uint8)
    for k, (name, tile) in enumerate(tiles):
        x0 = k * (size + gap)
        panel[label_h:, x0:x0 + size] = np.round(tile * 255.0).astype(np.uint8)
        # putText draws on 8-bit images only.
        cv2.putText(panel, name, (x0 + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return panel.astype(np.float32) / 255.0


def write_rainy_set(out: Path, names: Sequence[str], rainy: Sequence[np.ndarray],
                    clean: Sequence[np.ndarray], overwrite: bool = False) -> list[Path]:
    """Write `out/input/<name>.png` and `out/target/<name>.png`.

    Refuses (SetExistsError) when input/ or target/ already hold files, so two sets are never
    mixed by accident; `overwrite` replaces same-named files and leaves other files alone.
    """
    targets = [(out / folder / f"{name}.png", image)
               for name, r, c in zip(names, rainy, clean)
               for folder, image in (("input", r), ("target", c))]
    present = sorted(p for folder in ("input", "target") if (out / folder).is_dir()
                     for p in (out / folder).iterdir())
    if present and not overwrite:
        shown = ", ".join(str(p) for p in present[:3])
        raise SetExistsError(f"{out}: {len(present)} file(s) already exist ({shown}"
                              f"{', ...' if len(present) > 3 else ''}); pass --overwrite to "
                              "replace same-named files, or choose another --out")
    for path, image in targets:
        write_image(path, image)
    return [path for path, _ in targets]
