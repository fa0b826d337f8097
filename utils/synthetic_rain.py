"""Rain synthesis: turn a clean photo into a realistic rainy one, deterministically from a seed.

Model (all in linear-ish display space, RGB float32 HWC in [0, 1]):

1. Streaks: thresholded uniform noise gives sparse seed pixels (their value sets each
   streak's strength). The seeds are split into a few groups; each group is convolved with
   its own motion kernel (a line of given length, width and angle with soft ends, or a
   "comet" with a bright head and fading tail), which is the classic thresholded-noise +
   motion-blur recipe, done with one `cv2.filter2D` per group.
2. Layers: far layers are short, thin, dense, dim and defocused (Gaussian blur); near
   layers are long, wide, sparse and brighter. Each layer has its own direction spread.
3. Veil: rain accumulation / haze, I = J*t + A*(1-t), with a smooth random transmission
   map t and an airlight colour A. Far layers sit behind the veil, near layers in front.
4. Compositing: "screen" (1-(1-I)(1-R*c), never exceeds 1, physically a light source in
   front of the scene) or "add" (I + R*c clipped, the Rain100/Rain200 convention).
5. Optional out-of-focus raindrops on the lens (soft discs that show a blurred, brightened
   copy of the scene) and sensor noise.

Units are pixels of the output image (Rain200 images are ~481x321 px, so streak lengths of
10-80 px look like those sets); pass `scale` to add_rain to stretch them for other sizes.

Presets: `light` (Rain200L-like: thin sparse streaks, one direction, additive), `heavy`
(Rain200H-like: dense streaks in several directions, accumulation/haze, screen) and
`shifted` (a different style standing in for real rain: fine comet-shaped drizzle, long
thin translucent streaks, wide defocused near streaks, tinted haze and rain, lens drops,
sensor noise).

CLI: `python -m utils.synthetic_rain --preset heavy --out DIR` writes DIR/input + DIR/target.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional, Sequence, Union

import cv2
import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class StreakLayer:
    """One depth layer of streaks; each range is drawn uniformly per image."""

    density: Range  # fraction of pixels that seed a streak
    length: Range  # streak length, px
    width: Range  # streak width (FWHM), px
    strength: Range  # peak opacity of a full-strength streak
    blur: Range  # Gaussian sigma of the layer (defocus), px
    groups: int = 1  # seed groups, each with its own kernel (angle/length variety)
    spread: float = 0.0  # each group's angle = layer angle + U(-spread, spread), degrees
    offset: float = 0.0  # layer angle = image angle + U(-offset, offset), degrees
    shape: str = "line"  # "line" (soft ends) | "comet" (bright head, fading tail)
    behind_veil: bool = False  # far layers are attenuated by the haze veil


@dataclass(frozen=True)
class DropLayer:
    """Out-of-focus drops on the lens: soft discs showing a blurred, brighter scene."""

    density: Range  # fraction of pixels that seed a drop
    radius: Range  # px
    opacity: Range


@dataclass(frozen=True)
class RainPreset:
    name: str
    layers: tuple[StreakLayer, ...]
    angle: Range  # image base angle from vertical, degrees (positive leans right)
    composite: str  # "screen" | "add"
    veil: Range = (0.0, 0.0)  # haze strength 1 - mean transmission
    airlight: Range = (0.8, 0.95)  # gray level of the veil
    tint: float = 0.0  # max per-channel deviation of the airlight / rain colour
    rain_color: Range = (0.9, 1.0)  # gray level of the streaks
    drops: Optional[DropLayer] = None
    noise: Range = (0.0, 0.0)  # sensor noise sigma


_LIGHT = RainPreset(
    name="light",
    angle=(-25.0, 25.0),
    composite="add",
    layers=(
        StreakLayer(density=(0.002, 0.005), length=(12.0, 28.0), width=(0.8, 1.3),
                    strength=(0.4, 0.75), blur=(0.0, 0.4), groups=2, spread=1.5),
    ),
)

_HEAVY = RainPreset(
    name="heavy",
    angle=(-35.0, 35.0),
    composite="screen",
    veil=(0.1, 0.3),
    airlight=(0.75, 0.95),
    tint=0.02,
    layers=(
        StreakLayer(density=(0.01, 0.02), length=(8.0, 18.0), width=(0.8, 1.3),
                    strength=(0.25, 0.45), blur=(0.7, 1.3), groups=2, spread=6.0,
                    offset=8.0, behind_veil=True),
        StreakLayer(density=(0.004, 0.008), length=(25.0, 50.0), width=(1.3, 2.2),
                    strength=(0.45, 0.75), blur=(0.3, 0.7), groups=3, spread=12.0,
                    offset=12.0),
        StreakLayer(density=(0.0005, 0.0015), length=(45.0, 80.0), width=(2.5, 4.0),
                    strength=(0.3, 0.55), blur=(1.0, 2.0), groups=2, spread=10.0,
                    offset=15.0),
    ),
)

_SHIFTED = RainPreset(
    name="shifted",
    angle=(-20.0, 20.0),
    composite="screen",
    veil=(0.15, 0.35),
    airlight=(0.6, 0.9),
    tint=0.12,
    rain_color=(0.8, 1.0),
    layers=(
        StreakLayer(density=(0.02, 0.04), length=(5.0, 12.0), width=(0.6, 1.0),
                    strength=(0.15, 0.3), blur=(0.8, 1.5), groups=3, spread=8.0,
                    shape="comet", behind_veil=True),
        StreakLayer(density=(0.004, 0.01), length=(20.0, 50.0), width=(0.7, 1.2),
                    strength=(0.2, 0.4), blur=(0.3, 0.8), groups=4, spread=6.0, offset=5.0),
        StreakLayer(density=(0.0005, 0.0015), length=(15.0, 35.0), width=(2.5, 4.0),
                    strength=(0.3, 0.5), blur=(1.5, 2.5), groups=3, spread=15.0,
                    offset=10.0, shape="comet"),
    ),
    drops=DropLayer(density=(0.0003, 0.0008), radius=(2.5, 7.0), opacity=(0.25, 0.5)),
    noise=(0.004, 0.012),
)

RAIN_PRESETS = MappingProxyType({p.name: p for p in (_LIGHT, _HEAVY, _SHIFTED)})


def get_preset(preset: Union[str, RainPreset]) -> RainPreset:
    if isinstance(preset, RainPreset):
        return preset
    if preset not in RAIN_PRESETS:
        raise ValueError(f"unknown rain preset {preset!r}; choose one of {sorted(RAIN_PRESETS)}")
    return RAIN_PRESETS[preset]


def streak_kernel(length: float, width: float, angle: float, shape: str = "line") -> np.ndarray:
    """Motion kernel of one streak, peak ~1 (less for sub-pixel widths), float32.

    Built analytically on a grid (no drawing loop): along-streak profile times a Gaussian
    cross-section. `angle` is degrees from vertical, positive leaning right (top to the left).
    """
    sigma = max(width / 2.355, 0.45)
    # Keep the integrated cross-section equal to `width` so thin streaks get fainter, not wider.
    amplitude = min(1.0, width / (sigma * np.sqrt(2.0 * np.pi)))
    radius = int(np.ceil(length / 2.0 + 3.0 * sigma)) + 1
    coords = np.arange(-radius, radius + 1, dtype=np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    theta = np.deg2rad(angle)
    along = y * np.cos(theta) - x * np.sin(theta)  # +: towards the bottom (falling direction)
    across = y * np.sin(theta) + x * np.cos(theta)
    t = along / max(length, 1e-3) + 0.5  # 0 at the top end, 1 at the bottom end
    inside = np.clip(t, 0.0, 1.0)
    if shape == "line":
        profile = np.sin(np.pi * inside) ** 0.5  # soft ends
    elif shape == "comet":
        profile = np.exp(-3.0 * (1.0 - inside))  # bright head at the bottom, fading tail
    else:
        raise ValueError(f"unknown streak shape {shape!r}; use 'line' or 'comet'")
    # Soft, anti-aliased ends: a half-pixel ramp outside [0, 1] along the streak.
    outside = np.maximum(np.maximum(-t, t - 1.0) * max(length, 1e-3), 0.0)
    profile = profile * np.clip(1.0 - outside, 0.0, 1.0)
    kernel = amplitude * profile * np.exp(-0.5 * (across / sigma) ** 2)
    return kernel.astype(np.float32)


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else float(bounds[0])


def _streak_layer(shape_hw: tuple[int, int], layer: StreakLayer, base_angle: float,
                  scale: float, rng: np.random.Generator) -> np.ndarray:
    """Rain intensity map (H, W) of one layer, values >= 0 (may exceed 1 where streaks cross)."""
    height, width = shape_hw
    density = _uniform(rng, layer.density)
    strength = _uniform(rng, layer.strength)
    streak_width = _uniform(rng, layer.width) * scale
    blur = _uniform(rng, layer.blur) * scale
    angle = base_angle + _uniform(rng, (-layer.offset, layer.offset))
    groups = [(angle + _uniform(rng, (-layer.spread, layer.spread)),
               _uniform(rng, layer.length) * scale) for _ in range(layer.groups)]
    pad = int(np.ceil(max(length for _, length in groups) / 2.0 + 3.0 * streak_width)) + 2
    # One noise field on a padded canvas so streaks that start outside still enter the image.
    noise = rng.random((height + 2 * pad, width + 2 * pad), dtype=np.float32)
    out = np.zeros((height, width), np.float32)
    for g, (group_angle, length) in enumerate(groups):
        lo, hi = density * g / layer.groups, density * (g + 1) / layer.groups
        in_group = (noise >= lo) & (noise < hi)
        # Seed strength from the noise value itself: 0.5..1 across the group's band.
        seeds = np.where(in_group, 1.0 - 0.5 * (noise - lo) / max(hi - lo, 1e-12), 0.0)
        kernel = streak_kernel(length, streak_width, group_angle, layer.shape)
        streaks = cv2.filter2D(seeds.astype(np.float32), -1, kernel,
                               borderType=cv2.BORDER_CONSTANT)
        out += streaks[pad:pad + height, pad:pad + width]
    if blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    # Soft saturation: crossings brighten but never blow out to a flat white sheet.
    return strength * (1.0 - np.exp(-2.0 * out)) / (1.0 - np.exp(-2.0))


def _smooth_field(shape_hw: tuple[int, int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """Low-frequency random field in [0, 1] (bicubic upsampling of a tiny noise grid)."""
    grid = rng.random((cells, cells), dtype=np.float32)
    field = cv2.resize(grid, (shape_hw[1], shape_hw[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0.0, 1.0)


def _tinted(gray: float, tint: float, rng: np.random.Generator) -> np.ndarray:
    deviation = rng.uniform(-tint, tint, size=3).astype(np.float32) if tint > 0 else np.zeros(3, np.float32)
    return np.clip(gray * (1.0 + deviation - deviation.mean()), 0.0, 1.0).astype(np.float32)


def _composite(image: np.ndarray, rain: np.ndarray, color: np.ndarray, mode: str) -> np.ndarray:
    layer = rain[:, :, None] * color[None, None, :]
    if mode == "screen":
        return 1.0 - (1.0 - image) * (1.0 - np.clip(layer, 0.0, 1.0))
    if mode == "add":
        return np.clip(image + layer, 0.0, 1.0)
    raise ValueError(f"unknown composite mode {mode!r}; use 'screen' or 'add'")


def _lens_drops(image: np.ndarray, drops: DropLayer, scale: float,
                rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    density = _uniform(rng, drops.density)
    radius = _uniform(rng, drops.radius) * scale
    opacity = _uniform(rng, drops.opacity)
    seeds = (rng.random((height, width), dtype=np.float32) < density).astype(np.float32)
    size = int(np.ceil(radius)) * 2 + 3
    coords = np.arange(size, dtype=np.float32) - size // 2
    dist = np.hypot(*np.meshgrid(coords, coords, indexing="ij"))
    disc = np.clip(radius + 0.5 - dist, 0.0, 1.0) * (0.6 + 0.4 * (dist / max(radius, 1e-3)) ** 2)
    mask = np.clip(cv2.filter2D(seeds, -1, disc.astype(np.float32),
                                borderType=cv2.BORDER_CONSTANT), 0.0, 1.0) * opacity
    # A drop refracts a defocused, slightly brighter view of the scene.
    seen = np.clip(cv2.GaussianBlur(image, (0, 0), max(radius, 0.5)) * 1.1 + 0.08, 0.0, 1.0)
    return image * (1.0 - mask[:, :, None]) + seen * mask[:, :, None]


def add_rain(clean: np.ndarray, preset: Union[str, RainPreset], rng: np.random.Generator,
             scale: float = 1.0) -> np.ndarray:
    """Rainy version of `clean` (RGB float32 HWC in [0, 1]); same shape, float32, in [0, 1].

    Every random choice comes from `rng`, in a fixed order: same state, same output.
    `scale` multiplies all lengths, widths and radii (1.0 = Rain200-like pixel sizes).
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"add_rain expects an RGB HWC image, got shape {clean.shape}")
    spec = get_preset(preset)
    shape_hw = clean.shape[:2]
    base_angle = _uniform(rng, spec.angle)
    rain_color = _tinted(_uniform(rng, spec.rain_color), spec.tint, rng)
    layers = [(layer, _streak_layer(shape_hw, layer, base_angle, scale, rng)) for layer in spec.layers]

    image = np.clip(clean, 0.0, 1.0)
    for layer, rain in layers:
        if layer.behind_veil:
            image = _composite(image, rain, rain_color, spec.composite)
    veil = _uniform(rng, spec.veil)
    if veil > 0:
        airlight = _tinted(_uniform(rng, spec.airlight), spec.tint, rng)
        # Uneven haze: strength varies smoothly over the image between 0.6x and 1.4x.
        haze = np.clip(veil * (0.6 + 0.8 * _smooth_field(shape_hw, rng)), 0.0, 0.95)[:, :, None]
        image = image * (1.0 - haze) + airlight[None, None, :] * haze
    for layer, rain in layers:
        if not layer.behind_veil:
            image = _composite(image, rain, rain_color, spec.composite)
    if spec.drops is not None:
        image = _lens_drops(image, spec.drops, scale, rng)
    sigma = _uniform(rng, spec.noise)
    if sigma > 0:
        image = image + rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def make_rainy_set(split: str, preset: Union[str, RainPreset], size: int, count: int,
                   seed: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """(names, rainy images, clean images) generated in memory.

    Clean backgrounds come from `split`'s own photos (utils.clean_photos); image i depends
    only on (seed, split, i) for the background and (seed, split, i, preset) for the rain, so
    the light/heavy/shifted sets of one seed and split share the same clean images.
    """
    from utils.clean_photos import SPLITS, clean_backgrounds

    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    spec = get_preset(preset)
    preset_id = sorted(RAIN_PRESETS).index(spec.name) + 1 if spec.name in RAIN_PRESETS else 0
    split_id = SPLITS.index(split) if split in SPLITS else -1
    backgrounds = clean_backgrounds(split, size, count, seed)
    names, rainy, clean = [], [], []
    for i, (_, background) in enumerate(backgrounds):
        rng = np.random.default_rng([seed, split_id, i, preset_id])
        names.append(f"{split}-{spec.name}-{i:04d}")
        rainy.append(add_rain(background, spec, rng))
        clean.append(background)
    return names, rainy, clean


def preset_panel(size: int = 192, seed: int = 0, source_index: int = 0,
                 gap: int = 4) -> np.ndarray:
    """One clean test image and its light, heavy and shifted versions side by side, labelled."""
    from utils.clean_photos import clean_backgrounds

    clean = clean_backgrounds("test", size, source_index + 1, seed)[source_index][1]
    tiles = [("clean", clean)]
    for k, name in enumerate(("light", "heavy", "shifted")):
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

    Refuses (FileExistsError) when input/ or target/ already hold files, so two sets are never
    mixed by accident; `overwrite` replaces same-named files and leaves other files alone.
    """
    from utils.io.images import write_image

    targets = [(out / folder / f"{name}.png", image)
               for name, r, c in zip(names, rainy, clean)
               for folder, image in (("input", r), ("target", c))]
    present = sorted(p for folder in ("input", "target") if (out / folder).is_dir()
                     for p in (out / folder).iterdir())
    if present and not overwrite:
        shown = ", ".join(str(p) for p in present[:3])
        raise FileExistsError(f"{out}: {len(present)} file(s) already exist ({shown}"
                              f"{', ...' if len(present) > 3 else ''}); pass --overwrite to "
                              "replace same-named files, or choose another --out")
    for path, image in targets:
        write_image(path, image)
    return [path for path, _ in targets]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.synthetic_rain",
        description="Write a synthetic rainy/clean data set (input/ + target/ PNG folders) "
                    "made from scikit-image's sample photos.")
    parser.add_argument("--preset", default="heavy", choices=sorted(RAIN_PRESETS))
    parser.add_argument("--out", type=Path, help="output folder (gets input/ and target/)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="which source photos to use (disjoint between splits)")
    parser.add_argument("--size", type=int, default=None,
                        help="image side in pixels (default 256; 176 per tile for --panel)")
    parser.add_argument("--count", type=int, default=100, help="number of pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--panel", type=Path, metavar="PNG",
                        help="instead of a data set, write a picture of a clean test image and "
                             "its light/heavy/shifted versions (for the README)")
    args = parser.parse_args(argv)
    if (args.size is not None and args.size < 1) or args.count < 1 or args.seed < 0:
        parser.error("--size and --count must be >= 1 and --seed >= 0")
    if args.panel is None and args.out is None:
        parser.error("give --out DIR (data set) or --panel PNG (preview picture)")
    from utils.io.images import write_image

    if args.panel is not None:
        if args.panel.exists() and not args.overwrite:
            parser.error(f"{args.panel} already exists; pass --overwrite to replace it")
        write_image(args.panel, preset_panel(size=args.size or 176, seed=args.seed))
        print(f"wrote {args.panel}")
        return 0
    start = time.perf_counter()
    size = args.size or 256
    names, rainy, clean = make_rainy_set(args.split, args.preset, size, args.count, args.seed)
    try:
        write_rainy_set(args.out, names, rainy, clean, overwrite=args.overwrite)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(names)} {args.preset} pairs ({args.split} photos, {size}px) to "
          f"{args.out}/input and {args.out}/target in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
