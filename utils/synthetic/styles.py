"""Rain styles: what a rainy image looks like, as ranges drawn per image.

A `RainPreset` describes one style: depth layers of streaks, haze, mist near the ground,
lens drops and camera effects, each as a (low, high) range drawn uniformly per image.

Named styles:
- `light` (Rain200L-like: thin sparse streaks, one direction, additive),
- `streaks` (Rain100L-like: long, sharp, bright streaks in one direction and nothing else:
  no haze, no camera effects; most faint, a few bright),
- `heavy` (Rain200H-like: dense streaks in several directions, accumulation and haze),
- `shifted` (fine comet-shaped drizzle, tinted haze, lens drops and sensor noise),
- `mixed`: domain randomisation. Every image draws a whole new style (`sample_style`):
  1-3 depth layers, any streak length/width/angle/density, line or comet streaks,
  additive or screen compositing, haze with a depth cue, mist near the ground, lens drops,
  noise, JPEG and defocus. This is what the shipped model trains on.
- `gusty` is **held out**: never used for training, it measures generalisation. Its
  streak direction and density vary smoothly across the image (wind gusts, sheets of
  rain), which no `mixed` draw does, on top of mist near the ground.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional, Union

import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class StreakLayer:
    """One depth layer of streaks; each range is drawn uniformly per image."""

    density: Range  # fraction of pixels that seed a streak
    length: Range  # streak length (exposure time x fall speed), px
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
    haze_depth: float = 0.0  # depth cue: haze this much thicker at the top (far) than the bottom
    tint: float = 0.0  # max per-channel deviation of the airlight / rain colour
    rain_color: Range = (0.9, 1.0)  # gray level of the streaks
    mist: Range = (0.0, 0.0)  # splash mist and spray near the ground (bottom of the image)
    drops: Optional[DropLayer] = None
    noise: Range = (0.0, 0.0)  # sensor noise sigma
    jpeg: Range = (0.0, 0.0)  # JPEG quality of the rainy image; 0 = no compression
    defocus: Range = (0.0, 0.0)  # Gaussian sigma of a slight whole-image defocus, px
    gust: float = 0.0  # spatial variation of direction (degrees) and density (held-out style)


LIGHT = RainPreset(
    name="light",
    angle=(-25.0, 25.0),
    composite="add",
    layers=(
        StreakLayer(density=(0.002, 0.005), length=(12.0, 28.0), width=(0.8, 1.3),
                    strength=(0.4, 0.75), blur=(0.0, 0.4), groups=2, spread=1.5),
    ),
)

STREAKS = RainPreset(
    name="streaks",
    angle=(-35.0, 35.0),
    composite="add",
    rain_color=(0.85, 1.0),
    layers=(
        StreakLayer(density=(0.0015, 0.006), length=(20.0, 50.0), width=(0.5, 0.9),
                    strength=(0.15, 0.35), blur=(0.0, 0.3), groups=2, spread=1.5),
        StreakLayer(density=(0.0003, 0.0015), length=(25.0, 60.0), width=(0.8, 2.2),
                    strength=(0.35, 0.8), blur=(0.0, 0.6), groups=2, spread=1.5),
    ),
)

HEAVY = RainPreset(
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

SHIFTED = RainPreset(
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

GUSTY = RainPreset(
    name="gusty",
    angle=(-30.0, 30.0),
    composite="screen",
    veil=(0.1, 0.3),
    airlight=(0.7, 0.9),
    haze_depth=0.6,
    tint=0.05,
    rain_color=(0.85, 1.0),
    mist=(0.1, 0.25),
    gust=25.0,
    noise=(0.003, 0.008),
    layers=(
        StreakLayer(density=(0.015, 0.03), length=(8.0, 16.0), width=(0.7, 1.1),
                    strength=(0.2, 0.35), blur=(0.8, 1.3), groups=2, spread=5.0,
                    behind_veil=True),
        StreakLayer(density=(0.004, 0.008), length=(30.0, 60.0), width=(1.2, 2.0),
                    strength=(0.4, 0.65), blur=(0.2, 0.6), groups=2, spread=6.0, offset=6.0),
        StreakLayer(density=(0.0006, 0.0012), length=(50.0, 90.0), width=(2.5, 3.5),
                    strength=(0.3, 0.5), blur=(1.2, 2.0), groups=2, spread=8.0, offset=8.0),
    ),
)

MIXED = "mixed"  # not a fixed preset: `sample_style` draws one per image
RAIN_PRESETS = MappingProxyType({p.name: p for p in (LIGHT, STREAKS, HEAVY, SHIFTED, GUSTY)})
PRESET_NAMES = tuple(sorted([*RAIN_PRESETS, MIXED]))
HELD_OUT = ("gusty",)  # styles no training preset may produce


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _point(value: float) -> Range:
    return (float(value), float(value))


def sample_style(rng: np.random.Generator) -> RainPreset:
    """One random rain style of the `mixed` distribution (domain randomisation).

    Depth d in [0, 1] orders the layers: far (d ~ 0) streaks are short, thin, faint, dense,
    blurred and behind the haze; near (d ~ 1) streaks are long, wide, sparse and out of
    focus. An overall amount (log-uniform over a 10x range) goes from drizzle to downpour.
    Never sets `gust` (kept for the held-out style).
    """
    count = int(rng.integers(1, 4))
    depths = np.sort(rng.uniform(0.0, 1.0, count))
    amount = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    layers = []
    for d in depths:
        length = _lerp(6.0, 50.0, d) * rng.uniform(0.6, 1.8)
        width = _lerp(0.6, 3.0, d) * rng.uniform(0.8, 1.4)
        strength = min(0.9, _lerp(0.18, 0.6, d) * rng.uniform(0.7, 1.4))
        density = min(0.06, float(np.exp(_lerp(np.log(0.02), np.log(0.0008), d))) * amount)
        if d > 0.75:  # near the lens: out of focus
            blur = rng.uniform(1.0, 2.5)
        elif d < 0.35:  # far: small and soft
            blur = rng.uniform(0.5, 1.5)
        else:
            blur = rng.uniform(0.0, 0.6)
        layers.append(StreakLayer(
            density=_point(density), length=_point(length), width=_point(width),
            strength=_point(strength), blur=_point(blur), groups=int(rng.integers(1, 5)),
            spread=float(rng.uniform(0.0, 12.0)), offset=float(rng.uniform(0.0, 10.0)),
            shape="comet" if rng.random() < 0.25 else "line", behind_veil=bool(d < 0.35)))
    hazy = rng.random() < 0.55
    return RainPreset(
        name=MIXED,
        layers=tuple(layers),
        angle=_point(rng.uniform(-35.0, 35.0)),
        composite="screen" if rng.random() < 0.5 else "add",
        veil=_point(rng.uniform(0.05, 0.45) if hazy else 0.0),
        airlight=_point(rng.uniform(0.55, 0.95)),
        haze_depth=float(rng.uniform(0.0, 1.0)),
        tint=float(rng.uniform(0.0, 0.1)),
        rain_color=_point(rng.uniform(0.7, 1.0)),
        mist=_point(rng.uniform(0.05, 0.3) if rng.random() < 0.25 else 0.0),
        drops=(DropLayer(density=_point(rng.uniform(0.0002, 0.0008)),
                         radius=_point(rng.uniform(2.0, 8.0)),
                         opacity=_point(rng.uniform(0.2, 0.5)))
               if rng.random() < 0.2 else None),
        noise=_point(rng.uniform(0.002, 0.015) if rng.random() < 0.5 else 0.0),
        jpeg=_point(rng.uniform(40.0, 95.0) if rng.random() < 0.35 else 0.0),
        defocus=_point(rng.uniform(0.3, 0.9) if rng.random() < 0.15 else 0.0),
    )


def resolve_style(preset: Union[str, RainPreset], rng: np.random.Generator) -> RainPreset:
    """The style to render: a preset by name or object, or a fresh draw for 'mixed'."""
    if isinstance(preset, RainPreset):
        return preset
    if preset == MIXED:
        return sample_style(rng)
    if preset not in RAIN_PRESETS:
        raise ValueError(f"unknown rain preset {preset!r}; choose one of {list(PRESET_NAMES)}")
    return RAIN_PRESETS[preset]


def preset_id(preset: Union[str, RainPreset]) -> int:
    """A stable small integer per named style (part of the per-image seed)."""
    name = preset.name if isinstance(preset, RainPreset) else preset
    return PRESET_NAMES.index(name) + 1 if name in PRESET_NAMES else 0


__all__ = ["StreakLayer", "DropLayer", "RainPreset", "RAIN_PRESETS", "PRESET_NAMES", "HELD_OUT",
           "MIXED", "sample_style", "resolve_style", "preset_id"]
