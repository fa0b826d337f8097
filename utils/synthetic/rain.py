"""Rain rendering: turn a clean photo into a rainy one, deterministically from a seed.

Model (RGB float32 HWC in [0, 1]); the style (`utils.synthetic.styles`) sets every range:

1. Streaks: thresholded uniform noise gives sparse seed pixels (their value sets each
   streak's strength). The seeds are split into groups; each group is convolved with its
   own motion kernel (a soft line, or a "comet" with a bright head and fading tail): the
   classic thresholded-noise + motion-blur recipe, one `cv2.filter2D` per group. The
   length is the exposure-time motion blur of a falling drop.
2. Layers: far layers are short, thin, dense, dim and blurred; near layers are long, wide,
   sparse and out of focus. Each layer has its own direction jitter.
3. Veil: rain accumulation / haze, I = J*t + A*(1-t), with a smooth random transmission
   map (thicker towards the top of the frame, i.e. farther away, by `haze_depth`) and an
   airlight colour A. Far layers sit behind the veil, near layers in front of it.
4. Compositing: "screen" (1-(1-I)(1-R*c): a light source in front of the scene, never
   exceeds 1) or "add" (I + R*c clipped: the Rain100/Rain200 convention).
5. Mist and splashes near the ground, out-of-focus drops on the lens, then the camera:
   slight defocus, sensor noise, JPEG.
6. Gusts (held-out style only): the streak direction and density vary smoothly across
   the image.

`add_rain` renders one image. A clip (`utils.synthetic.video`) draws the style, the layers'
settings, the gusts and the veil once and moves the streak seeds from frame to frame, with
the same pieces: `draw_style`, `draw_streaks`, `gust_fields`, `render_streaks`,
`composite_rain`.

Units are pixels of the output image (Rain200 images are ~481x321 px, so streak lengths of
10-80 px look like those sets); `scale` stretches lengths, widths and radii.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np

from utils.synthetic.styles import DropLayer, Range, RainPreset, StreakLayer, resolve_style

GUST_BINS = 5  # direction bins used to render a spatially varying streak angle


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


@dataclass(frozen=True)
class StreakDraw:
    """One layer's streak settings drawn for one image (or one clip): what stays fixed while
    the seeds change."""

    density: float
    strength: float
    width: float  # px
    blur: float  # px
    groups: tuple[tuple[float, float], ...]  # (angle in degrees, length in px) per seed group
    shape: str

    def margin(self, gust: float) -> int:
        """Canvas padding around the image, so streaks that start outside still enter it."""
        longest = max(length for _, length in self.groups)
        return int(np.ceil(longest / 2.0 + 3.0 * self.width) + gust / 90.0 * longest) + 2


def draw_streaks(layer: StreakLayer, base_angle: float, scale: float,
                 rng: np.random.Generator) -> StreakDraw:
    """Draw one layer's density, strength, width, blur and per-group angle and length."""
    density = _uniform(rng, layer.density)
    strength = _uniform(rng, layer.strength)
    streak_width = _uniform(rng, layer.width) * scale
    blur = _uniform(rng, layer.blur) * scale
    angle = base_angle + _uniform(rng, (-layer.offset, layer.offset))
    groups = tuple((angle + _uniform(rng, (-layer.spread, layer.spread)),
                    _uniform(rng, layer.length) * scale) for _ in range(layer.groups))
    return StreakDraw(density, strength, streak_width, blur, groups, layer.shape)


def gust_fields(canvas: tuple[int, int], gust: float, rng: np.random.Generator):
    """(density gain, direction bins) of a gusty canvas: the seed threshold is scaled by the
    gain (0.3-1.7, smooth), and each bin (turn in degrees, boolean region) turns the streaks
    inside its region; no gust: (None, [(0, None)])."""
    if gust <= 0:
        return None, [(0.0, None)]
    gain = 0.3 + 1.4 * _smooth_field(canvas, rng, cells=3)
    turn = gust * (2.0 * _smooth_field(canvas, rng, cells=3) - 1.0)
    edges = np.linspace(-gust, gust, GUST_BINS + 1)
    index = np.clip(np.digitize(turn, edges[1:-1]), 0, GUST_BINS - 1)
    return gain, [(0.5 * (edges[k] + edges[k + 1]), index == k) for k in range(GUST_BINS)]


def render_streaks(seeds: list[np.ndarray], draw: StreakDraw, bins, shape_hw: tuple[int, int],
                   pad: int) -> np.ndarray:
    """Rain intensity map (H, W) of one layer from its seed maps (one padded canvas per group,
    values = each streak's strength), values >= 0 (may exceed 1 where streaks cross)."""
    height, width = shape_hw
    out = np.zeros((height, width), np.float32)
    for source, (group_angle, length) in zip(seeds, draw.groups):
        for turn_angle, region in bins:
            kernel = streak_kernel(length, draw.width, group_angle + turn_angle, draw.shape)
            masked = source if region is None else np.where(region, source, 0.0)
            streaks = cv2.filter2D(masked.astype(np.float32), -1, kernel,
                                   borderType=cv2.BORDER_CONSTANT)
            out += streaks[pad:pad + height, pad:pad + width]
    if draw.blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), draw.blur)
    # Soft saturation: crossings brighten but never blow out to a flat white sheet.
    return draw.strength * (1.0 - np.exp(-2.0 * out)) / (1.0 - np.exp(-2.0))


def _streak_layer(shape_hw: tuple[int, int], layer: StreakLayer, base_angle: float,
                  scale: float, gust: float, rng: np.random.Generator) -> np.ndarray:
    """Rain intensity map (H, W) of one layer, values >= 0 (may exceed 1 where streaks cross)."""
    height, width = shape_hw
    draw = draw_streaks(layer, base_angle, scale, rng)
    pad = draw.margin(gust)
    # One noise field on a padded canvas so streaks that start outside still enter the image.
    canvas = (height + 2 * pad, width + 2 * pad)
    noise = rng.random(canvas, dtype=np.float32)
    # Gusts: density and direction vary smoothly; bins of direction are rendered separately.
    gain, bins = gust_fields(canvas, gust, rng)
    if gain is not None:
        noise = noise / gain
    seeds = []
    for g in range(len(draw.groups)):
        lo, hi = draw.density * g / len(draw.groups), draw.density * (g + 1) / len(draw.groups)
        in_group = (noise >= lo) & (noise < hi)
        # Seed strength from the noise value itself: 0.5..1 across the group's band.
        seeds.append(np.where(in_group, 1.0 - 0.5 * (noise - lo) / max(hi - lo, 1e-12), 0.0))
    return render_streaks(seeds, draw, bins, shape_hw, pad)


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




def _veil(image: np.ndarray, spec: RainPreset, rng: np.random.Generator) -> np.ndarray:
    """Haze of accumulated rain, uneven (0.6x-1.4x) and thicker towards the top (farther)."""
    veil = _uniform(rng, spec.veil)
    if veil <= 0:
        return image
    height, width = image.shape[:2]
    airlight = _tinted(_uniform(rng, spec.airlight), spec.tint, rng)
    haze = veil * (0.6 + 0.8 * _smooth_field((height, width), rng))
    if spec.haze_depth > 0:
        rows = np.linspace(0.5, -0.5, height, dtype=np.float32)[:, None]
        haze = haze * (1.0 + spec.haze_depth * rows)
    haze = np.clip(haze, 0.0, 0.95)[:, :, None]
    return image * (1.0 - haze) + airlight[None, None, :] * haze


def _mist(image: np.ndarray, strength: float, scale: float,
          rng: np.random.Generator) -> np.ndarray:
    """Spray near the ground: a bright, patchy mist over the bottom third plus splash specks."""
    height, width = image.shape[:2]
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    ramp = np.clip((rows - 0.6) / 0.4, 0.0, 1.0) ** 1.5
    mist = strength * ramp * (0.5 + 0.5 * _smooth_field((height, width), rng, cells=6))
    specks = (rng.random((height, width), dtype=np.float32) < 0.004).astype(np.float32)
    specks = cv2.GaussianBlur(specks, (0, 0), max(0.6 * scale, 0.5)) * 4.0 * ramp
    amount = np.clip(mist + np.clip(specks, 0.0, 1.0) * strength * 2.0, 0.0, 0.9)[:, :, None]
    return image * (1.0 - amount) + 0.92 * amount


def _camera(image: np.ndarray, spec: RainPreset, rng: np.random.Generator) -> np.ndarray:
    """What the camera adds after the scene: slight defocus, sensor noise, JPEG."""
    sigma = _uniform(rng, spec.defocus)
    if sigma > 0.2:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = _uniform(rng, spec.noise)
    if noise > 0:
        image = image + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)
    quality = _uniform(rng, spec.jpeg)
    if quality >= 1:
        pixels = np.round(image * 255.0).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
        if ok:  # channel order does not matter for a round trip
            image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0
    return image


def draw_style(preset: Union[str, RainPreset], rng: np.random.Generator
               ) -> tuple[RainPreset, float, np.ndarray]:
    """The style (a fresh draw for "mixed"), its base streak angle and the rain colour: what
    one image, or one whole clip, shares."""
    spec = resolve_style(preset, rng)
    return spec, _uniform(rng, spec.angle), _tinted(_uniform(rng, spec.rain_color), spec.tint, rng)


def add_rain(clean: np.ndarray, preset: Union[str, RainPreset], rng: np.random.Generator,
             scale: float = 1.0) -> np.ndarray:
    """Rainy version of `clean` (RGB float32 HWC in [0, 1]); same shape, float32, in [0, 1].

    `preset`: a style name (see `utils.synthetic.styles`; "mixed" draws a new style from
    `rng`) or a RainPreset. Every random choice comes from `rng`, in a fixed order: same
    state, same output. `scale` multiplies all lengths, widths and radii.
    """
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"add_rain expects an RGB HWC image, got shape {clean.shape}")
    spec, base_angle, rain_color = draw_style(preset, rng)
    shape_hw = clean.shape[:2]
    layers = [(layer, _streak_layer(shape_hw, layer, base_angle, scale, spec.gust, rng))
              for layer in spec.layers]
    return composite_rain(clean, layers, spec, rain_color, scale, rng)


def composite_rain(clean: np.ndarray, layers, spec: RainPreset, rain_color: np.ndarray, scale: float,
                   rng: np.random.Generator, camera_rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene with its rain: `layers` ((StreakLayer, intensity map) pairs) composited
    around the veil, then mist, lens drops and the camera (defocus, noise, JPEG). The veil,
    mist and drops draw from `rng`, the camera from `camera_rng` (default `rng`): a clip draws
    the former alike for every frame and the sensor noise anew."""
    image = np.clip(np.asarray(clean, dtype=np.float32), 0.0, 1.0)
    for layer, rain in layers:
        if layer.behind_veil:
            image = _composite(image, rain, rain_color, spec.composite)
    image = _veil(image, spec, rng)
    for layer, rain in layers:
        if not layer.behind_veil:
            image = _composite(image, rain, rain_color, spec.composite)
    mist = _uniform(rng, spec.mist)
    if mist > 0:
        image = _mist(image, mist, scale, rng)
    if spec.drops is not None:
        image = _lens_drops(image, spec.drops, scale, rng)
    return _camera(image, spec, rng if camera_rng is None else camera_rng).astype(np.float32)
