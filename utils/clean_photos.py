"""Clean backgrounds for the embedded synthetic rain set: photos shipped inside scikit-image.

No download is needed: these images are part of the scikit-image wheel (`skimage.data`).
Each split draws from its own fixed list of source photos, so train, val and test never
share a scene (the two stereo motorcycle views are one scene and both belong to test).
Gray sources are replicated to 3 channels; RGBA sources are not used.

Backgrounds are random square crops (random scale, random position, random horizontal
flip; no vertical flip, photos stay upright) resized to the requested size.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable

import cv2
import numpy as np

SPLITS = ("train", "val", "test")

# Fixed assignment: never move a photo between splits (it would leak scenes into test).
SPLIT_SOURCES = MappingProxyType({
    "train": ("astronaut", "coffee", "rocket", "immunohistochemistry", "retina",
              "hubble_deep_field", "camera", "brick", "grass", "gravel"),
    "val": ("chelsea", "coins"),
    "test": ("motorcycle_left", "motorcycle_right", "moon"),
})


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    import skimage.data  # imported lazily: no work at import time

    if name == "motorcycle_left":
        return lambda: skimage.data.stereo_motorcycle()[0]
    if name == "motorcycle_right":
        return lambda: skimage.data.stereo_motorcycle()[1]
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise RuntimeError(f"scikit-image {skimage.__version__} has no sample image {name!r}; "
                           "install scikit-image>=0.21")
    return loader


def load_source(name: str) -> np.ndarray:
    """One source photo as RGB float32 HWC in [0, 1]."""
    image = np.asarray(_skimage_loader(name)())
    if image.dtype == np.bool_:
        image = image.astype(np.float32)
    elif image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = np.clip(image.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size crop of `photo` at a random scale (log-uniform), position and h-flip."""
    height, width = photo.shape[:2]
    shortest = min(height, width)
    lo = min(size, shortest)
    # Log-uniform side: as many close-ups (1:1 detail) as wide views (whole scene).
    side = int(round(np.exp(rng.uniform(np.log(lo), np.log(shortest)))))
    side = max(1, min(side, shortest))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = photo[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    crop = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interpolation)
    return np.clip(crop, 0.0, 1.0).astype(np.float32)


def clean_backgrounds(split: str, size: int, count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """`count` clean crops (source name, RGB float32 HWC) of `split`'s photos.

    Image i depends only on (seed, split, i): a smaller `count` gives a prefix of a larger one.
    Sources are used round-robin so every photo of the split appears.
    """
    if split not in SPLIT_SOURCES:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if size < 1 or count < 0:
        raise ValueError(f"size must be >= 1 and count >= 0, got size={size}, count={count}")
    sources = SPLIT_SOURCES[split]
    photos = {name: load_source(name) for name in sources[:count]}
    split_id = SPLITS.index(split)
    out = []
    for i in range(count):
        name = sources[i % len(sources)]
        rng = np.random.default_rng([seed, split_id, i, 0])
        out.append((name, random_crop(photos[name], size, rng)))
    return out
