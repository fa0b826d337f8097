"""The embedded rainy clip: a camera moving over a clean test photo through falling rain.

    python -m utils.synthetic.video --out runs/clip     # rainy.mkv, clean.mkv, clip.json

No download: the scene is one of the held-out test photos (utils/synthetic/photos.py), the
camera pans across it once over the clip and zooms in slowly (1x to 1.2x), and the rain is
the held-out `gusty` style by default, drawn once for the whole clip. Its drops fall:
each streak moves along its own direction by FALL_PER_FRAME of its length from one frame to
the next (near, long streaks fast, far ones slowly), through gusts that stay put (the wind
turns the streaks and thins them where it blows). The veil and the mist near the ground are
the same in every frame; the sensor noise is new in each. Same seed, same frames, bit for
bit. Frames are made one at a time and the drops cell by cell (DropField), so a clip of any
length streams in bounded memory.

The clean clip is the ground truth. Both are written losslessly (FFV1 in .mkv), so scores
(`eval.py --clip`) see no compression.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from utils.cli import run_main
from utils.errors import UserError
from utils.io.files import write_text
from utils.io.video import VideoWriter
from utils.synthetic.photos import SPLIT_SOURCES, load_source
from utils.synthetic.rain import (StreakDraw, composite_rain, draw_streaks, draw_style, gust_fields,
                                  render_streaks)
from utils.synthetic.styles import PRESET_NAMES, StreakLayer

FALL_PER_FRAME = 1.5  # streak lengths a drop falls between frames (open shutter: 2/3 of a frame)
ZOOM = 1.2  # magnification at the last frame against the first
RAIN_UNIT = 256  # short side at which the style's lengths and widths hold as they are


@dataclass(frozen=True)
class ClipSpec:
    """What the embedded clip is; every field is a flag of the command line."""

    frames: int = 48
    width: int = 256
    height: int = 192
    fps: float = 12.0
    photo: str = "motorcycle_left"  # a held-out test photo
    style: str = "gusty"
    seed: int = 0

    def check(self) -> None:
        if self.frames < 2 or min(self.width, self.height) < 16 or not self.fps > 0 or self.seed < 0:
            raise UserError(f"clip: need at least 2 frames of 16x16 pixels, fps > 0 and seed >= 0, "
                            f"got {self.frames} frames of {self.width}x{self.height}, fps {self.fps}, "
                            f"seed {self.seed}")
        if self.photo not in SPLIT_SOURCES["test"]:
            raise UserError(f"clip: photo {self.photo!r} is not a test photo; choose one of "
                            f"{', '.join(SPLIT_SOURCES['test'])}")
        if self.style not in PRESET_NAMES:
            raise UserError(f"clip: unknown rain style {self.style!r}; choose one of {', '.join(PRESET_NAMES)}")


# ----------------------------------------------------------------------------- the camera
def camera_frames(spec: ClipSpec) -> Iterator[np.ndarray]:
    """The clean clip: the photo, scaled so the first view spans 80% of its height, seen by a
    camera that pans across it (left to right, a little downwards) and zooms in to ZOOM."""
    photo = load_source(spec.photo)
    factor = spec.height / (0.8 * photo.shape[0])
    factor = max(factor, spec.width / (0.8 * photo.shape[1]))  # wide frames on a tall photo
    size = (round(photo.shape[1] * factor), round(photo.shape[0] * factor))
    photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    ph, pw = photo.shape[:2]
    for t in range(spec.frames):
        s = t / (spec.frames - 1)
        zoom = 1.0 + (ZOOM - 1.0) * s
        half_w, half_h = spec.width / (2 * zoom), spec.height / (2 * zoom)
        cx = half_w + (pw - 2 * half_w) * (0.1 + 0.8 * s)
        cy = half_h + (ph - 2 * half_h) * (0.4 + 0.2 * s)
        # Frame pixel (x, y) sees photo pixel (cx + (x - w/2) / zoom, cy + (y - h/2) / zoom).
        matrix = np.array([[1 / zoom, 0, cx - (spec.width - 1) / (2 * zoom)],
                           [0, 1 / zoom, cy - (spec.height - 1) / (2 * zoom)]], np.float64)
        frame = cv2.warpAffine(photo, matrix, (spec.width, spec.height),
                               flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT_101)
        yield np.clip(frame, 0.0, 1.0)


# ----------------------------------------------------------------------------- the rain
class DropField:
    """The drops of one seed group, falling by `step` (dy, dx) px per frame: a Poisson field of
    start positions (frame 0, canvas coordinates), each with a strength and a thinning draw,
    made cell by cell when a frame needs it (canvas-sized cells, each from its own seed). A
    frame sees at most four cells, so a clip of any length holds only those."""

    def __init__(self, canvas: tuple[int, int], step: np.ndarray, density: float, top_gain: float,
                 seed: int):
        self.canvas, self.step, self.top_gain, self.seed = canvas, step, top_gain, seed
        self.density = density * top_gain  # thinned back to `density` x gain where drawn
        self._cells: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}

    def _cell(self, i: int, j: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.seed, i + (1 << 31), j + (1 << 31)])
        height, width = self.canvas
        count = int(rng.poisson(self.density * height * width))
        start = (np.array([i * height, j * width]) + rng.random((count, 2)) * [height, width])
        return start, (1.0 - 0.5 * rng.random(count)).astype(np.float32), rng.random(count) * self.top_gain

    def at(self, t: int) -> tuple[np.ndarray, ...]:
        """(y, x, strength, thinning draw) of the drops on the canvas at frame t."""
        origin = -t * self.step  # the start positions on the canvas at frame t: origin + [0, canvas)
        rows, cols = (range(int(np.floor(origin[k] / self.canvas[k])),
                            int(np.floor(origin[k] / self.canvas[k] + 1.0)) + 1) for k in (0, 1))
        self._cells = {(i, j): self._cells.get((i, j)) or self._cell(i, j) for i in rows for j in cols}
        start, strength, thin = (np.concatenate(parts) for parts in zip(*self._cells.values()))
        position = np.floor(start + t * self.step).astype(np.int64)
        y, x = position[:, 0], position[:, 1]
        keep = (y >= 0) & (y < self.canvas[0]) & (x >= 0) & (x < self.canvas[1])
        return y[keep], x[keep], strength[keep], thin[keep]


class FallingLayer:
    """One depth layer of streaks over a clip: its settings and gusts drawn once, and one
    DropField per seed group, falling along the group's streak direction by FALL_PER_FRAME
    of its length per frame."""

    def __init__(self, layer: StreakLayer, base_angle: float, scale: float, gust: float,
                 shape_hw: tuple[int, int], rng: np.random.Generator):
        self.layer, self.shape_hw = layer, shape_hw
        self.draw: StreakDraw = draw_streaks(layer, base_angle, scale, rng)
        self.pad = self.draw.margin(gust)
        self.canvas = (shape_hw[0] + 2 * self.pad, shape_hw[1] + 2 * self.pad)
        self.gain, self.bins = gust_fields(self.canvas, gust, rng)
        top_gain = 1.0 if self.gain is None else float(self.gain.max())
        density = self.draw.density / len(self.draw.groups)
        self.drops = []
        for angle, length in self.draw.groups:
            theta = np.deg2rad(angle)
            step = FALL_PER_FRAME * length * np.array([np.cos(theta), -np.sin(theta)])  # (dy, dx)
            self.drops.append(DropField(self.canvas, step, density, top_gain, int(rng.integers(1 << 62))))

    def render(self, t: int) -> np.ndarray:
        """The layer's rain intensity map (H, W) at frame t."""
        seeds = []
        for field in self.drops:
            y, x, strength, thin = field.at(t)
            if self.gain is not None:  # where the gust thins the rain, fewer drops show
                keep = thin < self.gain[y, x]
                y, x, strength = y[keep], x[keep], strength[keep]
            canvas = np.zeros(self.canvas, np.float32)
            canvas[y, x] = strength
            seeds.append(canvas)
        return render_streaks(seeds, self.draw, self.bins, self.shape_hw, self.pad)


def rainy_clip(spec: ClipSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rainy, clean) frames of the clip, one pair at a time (RGB float32 HWC in [0, 1])."""
    spec.check()
    rng = np.random.default_rng([spec.seed, 0])
    style, base_angle, rain_color = draw_style(spec.style, rng)
    scale = min(spec.width, spec.height) / RAIN_UNIT
    shape_hw = (spec.height, spec.width)
    layers = [FallingLayer(layer, base_angle, scale, style.gust, shape_hw, rng) for layer in style.layers]
    for t, clean in enumerate(camera_frames(spec)):
        rain = [(falling.layer, falling.render(t)) for falling in layers]
        # The veil and mist draw alike in every frame (one seed), the sensor noise anew.
        rainy = composite_rain(clean, rain, style, rain_color, scale, np.random.default_rng([spec.seed, 1]),
                               camera_rng=np.random.default_rng([spec.seed, 2, t]))
        yield rainy, clean


def write_clip(out: Path, spec: ClipSpec, overwrite: bool = False) -> dict:
    """Write out/rainy.mkv, out/clean.mkv (lossless) and out/clip.json (the spec); returns
    the paths. Refuses to replace existing files unless `overwrite`."""
    spec.check()
    paths = {"rainy": out / "rainy.mkv", "clean": out / "clean.mkv", "spec": out / "clip.json"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose "
                        "another --out")
    size = (spec.width, spec.height)
    with VideoWriter(paths["rainy"], spec.fps, size) as rainy, VideoWriter(paths["clean"], spec.fps, size) as clean:
        for rainy_frame, clean_frame in rainy_clip(spec):
            rainy.write(rainy_frame)
            clean.write(clean_frame)
    write_text(paths["spec"], json.dumps({**asdict(spec), "fall_per_frame": FALL_PER_FRAME,
                                          "zoom": ZOOM}, indent=2) + "\n")
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    defaults = ClipSpec()
    parser = argparse.ArgumentParser(prog="python -m utils.synthetic.video",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Writes OUT/rainy.mkv, OUT/clean.mkv (FFV1, lossless) "
                                            "and OUT/clip.json.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--frames", type=int, default=defaults.frames, help=f"default {defaults.frames}")
    parser.add_argument("--size", default=f"{defaults.width}x{defaults.height}", metavar="WxH",
                        help=f"frame size (default {defaults.width}x{defaults.height})")
    parser.add_argument("--fps", type=float, default=defaults.fps, help=f"default {defaults.fps:g}")
    parser.add_argument("--photo", default=defaults.photo, choices=SPLIT_SOURCES["test"])
    parser.add_argument("--style", default=defaults.style, choices=PRESET_NAMES,
                        help=f"rain style (default {defaults.style}, held out from training)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected WxH, e.g. 256x192, got {args.size!r}")
    spec = ClipSpec(args.frames, width, height, args.fps, args.photo, args.style, args.seed)
    paths = write_clip(args.out, spec, args.overwrite)
    print(f"wrote {spec.frames} frames of {width}x{height} at {spec.fps:g} fps ({spec.style} rain on "
          f"{spec.photo}): {paths['rainy']} and its ground truth {paths['clean']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
