"""Clean backgrounds for synthetic rain: photos that ship inside installed wheels, or yours.

No download is needed. The built-in photos come from scikit-image (`skimage.data`),
scikit-learn (`sklearn/datasets/images`) and matplotlib (`mpl-data/sample_data`); the files
are read straight from the installed packages (sklearn and matplotlib are not imported).
Each split draws from its own fixed list of photos, so train, val and test never share a
scene (the two stereo motorcycle views are one scene, both in test). Gray photos are
replicated to 3 channels. Microscopy, astronomy and retina images are not used.

`data.clean_photos=DIR` replaces them with a folder of your own clean photos, split by
file into train/val/test (deterministic, about 80/10/10); the folder is only read.

Training backgrounds are random crops at a random scale (log-uniform between 1:1 detail
and the whole photo) with photometric augmentation: exposure, gamma, saturation, white
balance, blur or sharpening. Val/test backgrounds are plain crops.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import MappingProxyType
from typing import Optional, Sequence

import cv2
import numpy as np

from utils.errors import UserError
from utils.io.images import IMAGE_SUFFIXES, ImageReadError, read_image

SPLITS = ("train", "val", "test")
MAX_SIDE = 1024  # photos are downscaled to this longest side once, at load time

# Fixed assignment: never move a photo between splits (it would leak scenes into test).
SPLIT_SOURCES = MappingProxyType({
    "train": ("astronaut", "coffee", "rocket", "china", "grace_hopper", "camera", "brick",
              "grass", "gravel"),
    "val": ("chelsea", "coins"),
    "test": ("motorcycle_left", "motorcycle_right", "flower", "moon"),
})

# Photos shipped as plain files inside other packages' wheels: (package, path in package).
_PACKAGE_FILES = MappingProxyType({
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
})


class PhotoError(UserError, ValueError):
    """A clean photo source that cannot be used; the message names the file or package."""


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PhotoError(f"the built-in photo {relative!r} ships with the package {package!r}, "
                         f"which is not installed: pip install -r requirements.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise PhotoError(f"{path}: missing from the installed {package!r} package")
    return path


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data  # scikit-image builds its data registry on import: only when needed

    if name in ("motorcycle_left", "motorcycle_right"):
        return skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise PhotoError(f"scikit-image has no sample image {name!r}; install scikit-image>=0.21")
    return loader()


def _as_rgb_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.float32)
    elif image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = np.clip(image.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _limit_side(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    longest = max(image.shape[:2])
    if longest <= max_side:
        return image
    factor = max_side / longest
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def load_source(name: str) -> np.ndarray:
    """One built-in photo as RGB float32 HWC in [0, 1] (longest side at most MAX_SIDE)."""
    if name in _PACKAGE_FILES:
        image = read_image(_package_file(*_PACKAGE_FILES[name]))
    else:
        image = _as_rgb_float(_skimage_photo(name))
    return _limit_side(image)


def folder_splits(folder: str | Path) -> dict[str, list[Path]]:
    """The image files of a clean-photo folder, split by file: about 10% val, 10% test.

    Deterministic (sorted names, fixed permutation); needs at least 3 images.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PhotoError(f"data.clean_photos: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if len(files) < 3:
        raise PhotoError(f"data.clean_photos: {folder} holds {len(files)} image(s); at least 3 "
                         "are needed (train, val and test use different photos)")
    order = np.random.default_rng(0).permutation(len(files))
    held = max(1, int(round(0.1 * len(files))))
    return {"test": [files[i] for i in order[:held]],
            "val": [files[i] for i in order[held:2 * held]],
            "train": [files[i] for i in order[2 * held:]]}


def load_split(split: str, folder: Optional[str | Path] = None) -> list[tuple[str, np.ndarray]]:
    """(name, photo) of every photo of `split`: built-in, or from `folder` (only read)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if folder is None:
        return [(name, load_source(name)) for name in SPLIT_SOURCES[split]]
    photos = []
    for path in folder_splits(folder)[split]:
        try:
            photos.append((path.stem, _limit_side(read_image(path))))
        except ImageReadError as error:
            raise PhotoError(f"data.clean_photos: {error}") from None
    return photos


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


def augment_photo(image: np.ndarray, rng: np.random.Generator, flat: float = 0.0) -> np.ndarray:
    """Photometric augmentation of a clean crop: exposure, gamma, saturation, white balance,
    then blur or sharpening with probability 0.2 each. Output in [0, 1].

    `flat`: probability of a flat, bright scene (contrast 0.25-0.7 around a mean of 0.4-0.8,
    like an overcast sky or a grey wall). Without such clean scenes a model learns that every
    low-contrast bright image is hazed, and darkens them (measured on grey test photos and on
    real photos). 0 draws nothing, so the random stream of older runs is unchanged."""
    gain = 2.0 ** rng.uniform(-0.6, 0.4)
    gamma = rng.uniform(0.75, 1.35)
    saturation = rng.uniform(0.6, 1.3)
    balance = (1.0 + rng.uniform(-0.06, 0.06, size=3)).astype(np.float32)
    out = np.clip(image * gain, 0.0, 1.0) ** gamma
    gray = out.mean(axis=2, keepdims=True)
    out = np.clip((gray + saturation * (out - gray)) * balance, 0.0, 1.0)
    pick = rng.random()
    if pick < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.2))
    elif pick < 0.4:
        soft = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = np.clip(out + rng.uniform(0.3, 1.0) * (out - soft), 0.0, 1.0)
    if flat > 0 and rng.random() < flat:
        contrast, level = rng.uniform(0.25, 0.7), rng.uniform(0.4, 0.8)
        out = np.clip(level + contrast * (out - out.mean()), 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def clean_backgrounds(split: str, size: int, count: int, seed: int,
                      folder: Optional[str | Path] = None) -> list[tuple[str, np.ndarray]]:
    """`count` plain clean crops (source name, RGB float32 HWC) of `split`'s photos.

    Image i depends only on (seed, split, i): a smaller `count` gives a prefix of a larger one.
    Photos are used round-robin so every photo of the split appears.
    """
    if size < 1 or count < 0:
        raise ValueError(f"size must be >= 1 and count >= 0, got size={size}, count={count}")
    photos = load_split(split, folder)
    split_id = SPLITS.index(split)
    out = []
    for i in range(count):
        name, photo = photos[i % len(photos)]
        rng = np.random.default_rng([seed, split_id, i, 0])
        out.append((name, random_crop(photo, size, rng)))
    return out


def training_background(photos: Sequence[np.ndarray], size: int, rng: np.random.Generator,
                        flat: float = 0.0) -> np.ndarray:
    """One augmented training crop from a random photo (`flat`: see augment_photo)."""
    photo = photos[int(rng.integers(0, len(photos)))]
    return augment_photo(random_crop(photo, size, rng), rng, flat)
