"""Data sets: rainy/clean pairs from disk, the embedded synthetic rain, patches and splits.

Colour order is RGB everywhere; images are float32 in [0, 1] (gray, RGBA and 16-bit files
are converted by `utils.io.images.read_image`). Pair folders are opened by
`utils.io.pair_folders.open_pairs` (validated up front, read lazily, one pair per
`__getitem__`; every layout is listed in `utils.io.layouts`), the on-the-fly synthetic
stream is `utils.synthetic.stream`; this module builds the scripts' data sets from them.
Nothing here ever writes to, renames or deletes anything in a data folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from utils.inference import dihedral
from utils.io.images import IMAGE_SUFFIXES, is_image_file, to_tensor
from utils.io.layouts import DatasetError, list_images, read_data_image
from utils.io.name_matching import natural_key, unique_names
from utils.io.pair_folders import open_pairs
from utils.synthetic.photos import load_split
from utils.synthetic.sets import make_rainy_set
from utils.synthetic.stream import SyntheticRainStream

AUGMENTS = ("none", "hflip", "dihedral")

# ----------------------------------------------------------------------------- data sets


class _NamedImages(Dataset):
    """Base of the in-memory/unpaired sets: items are named, `len` counts the names."""

    _names: list[str]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)


class InMemoryPairs(_NamedImages):
    """Pairs held as arrays (the synthetic set, or rainy images with pseudo-labels)."""

    def __init__(self, names: Sequence[str], rainy: Sequence[np.ndarray], clean: Sequence[np.ndarray]):
        if not len(names) == len(rainy) == len(clean):
            raise ValueError(f"InMemoryPairs: {len(names)} names, {len(rainy)} rainy and "
                             f"{len(clean)} clean images")
        for name, r, c in zip(names, rainy, clean):
            if r.shape != c.shape or r.ndim != 3 or r.shape[2] != 3:
                raise DatasetError(f"{name}: rainy {r.shape} and clean {c.shape} must be equal HWC RGB")
        self._names = list(names)
        self.rainy_images = [np.asarray(r, dtype=np.float32) for r in rainy]
        self.clean_images = [np.asarray(c, dtype=np.float32) for c in clean]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs)"

    def group_keys(self) -> list[str]:
        return self.names

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.rainy_images[index], self.clean_images[index]

    def __getitem__(self, index: int) -> dict:
        rainy, clean = self.load(index)
        return {"name": self._names[index], "rainy": to_tensor(rainy), "clean": to_tensor(clean)}

    def rainy_only(self) -> "RainyImages":
        """The rainy images alone (for online fine-tuning); clean ones stay hidden here."""
        return RainyImages(images=self.rainy_images, names=self._names)


class SyntheticPairs(InMemoryPairs):
    """The embedded synthetic set; `clean_images` is the (hidden) ground truth."""

    def __init__(self, names, rainy, clean, split: str, preset: str, seed: int):
        super().__init__(names, rainy, clean)
        self.split, self.preset, self.seed = split, preset, seed

    def __repr__(self) -> str:
        return (f"SyntheticPairs({len(self)} pairs, split={self.split!r}, preset={self.preset!r}, "
                f"seed={self.seed})")


class RainyImages(_NamedImages):
    """Unpaired rainy images, from files (read lazily) or arrays; items are
    `{"name": str, "rainy": Tensor[3,H,W]}`. `.paths` holds None for in-memory images."""

    def __init__(self, paths: Optional[Sequence[Path]] = None,
                 images: Optional[Sequence[np.ndarray]] = None,
                 names: Optional[Sequence[str]] = None):
        if (paths is None) == (images is None):
            raise ValueError("RainyImages needs either paths or images")
        if paths is not None:
            self.paths = [Path(p) for p in paths]
            self._images = None
            self._names = list(names) if names is not None else unique_names(self.paths)
        else:
            self._images = [np.asarray(i, dtype=np.float32) for i in images]
            self.paths = [None] * len(self._images)
            self._names = list(names) if names is not None else [f"{i:04d}" for i in range(len(self._images))]
        if len(self._names) != len(self.paths):
            raise ValueError(f"RainyImages: {len(self._names)} names for {len(self.paths)} images")

    def __repr__(self) -> str:
        return f"RainyImages({len(self)} images)"

    def load(self, index: int) -> np.ndarray:
        return self._images[index] if self._images is not None else read_data_image(self.paths[index])

    def __getitem__(self, index: int) -> dict:
        return {"name": self._names[index], "rainy": to_tensor(self.load(index))}


class DryPhotos(Dataset):
    """Rain-free photos as pairs whose input is their own ground truth: what a derainer does
    to a dry photo, which should come back unchanged. `photos`: a pair set (its clean side
    is used) or a RainyImages (a folder of your clean photos); items as a pair set's."""

    def __init__(self, photos: Dataset):
        self.photos = photos

    @property
    def names(self) -> list[str]:
        return _names_of(self.photos)

    def __len__(self) -> int:
        return len(self.photos)

    def __repr__(self) -> str:
        return f"DryPhotos({len(self)} of {self.photos!r})"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.photos, RainyImages):
            photo = self.photos.load(index)
        else:
            photo = _load_pair(self.photos, index)[1]
        return photo, photo

    def __getitem__(self, index: int) -> dict:
        photo = to_tensor(self.load(index)[1])
        return {"name": self.names[index], "rainy": photo, "clean": photo}


class PairSubset(Dataset):
    """A subset of a pair data set that keeps `names`, `load` and `group_keys`."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base = base
        self.indices = [int(i) for i in indices]

    @property
    def names(self) -> list[str]:
        names = _names_of(self.base)
        return [names[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"PairSubset({len(self)} of {self.base!r})"

    def group_keys(self) -> list[str]:
        keys = _group_keys(self.base)
        return [keys[i] for i in self.indices]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return _load_pair(self.base, self.indices[index])

    def __getitem__(self, index: int) -> dict:
        return self.base[self.indices[index]]


def _names_of(pairs: Dataset) -> list[str]:
    names = getattr(pairs, "names", None)
    return list(names) if names is not None else [f"{i:06d}" for i in range(len(pairs))]


def _group_keys(pairs: Dataset) -> list[str]:
    return pairs.group_keys() if hasattr(pairs, "group_keys") else _names_of(pairs)


def _load_pair(pairs: Dataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) HWC arrays from any pair data set (ours have `load`, others give tensors)."""
    if hasattr(pairs, "load"):
        return pairs.load(index)
    item = pairs[index]
    return (item["rainy"].permute(1, 2, 0).numpy(), item["clean"].permute(1, 2, 0).numpy())


# ----------------------------------------------------------------------------- public API


def open_rainy(path: Union[str, Path], recursive: bool = False) -> RainyImages:
    """Unpaired rainy images: a folder (sub-folders too with `recursive`) or one image file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if not is_image_file(path):
            raise DatasetError(f"{path}: not an image file (known suffixes: {', '.join(IMAGE_SUFFIXES)})")
        return RainyImages(paths=[path])
    if recursive:
        files = sorted((p for p in path.rglob("*") if p.is_file() and is_image_file(p)
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                       key=lambda p: natural_key(p.relative_to(path).as_posix()))
    else:
        files = list_images(path)
    if not files:
        nested = [] if recursive else [p for p in path.rglob("*") if p.is_file() and is_image_file(p)]
        hint = f" ({len(nested)} image(s) in sub-folders: pass recursive=True)" if nested else ""
        raise DatasetError(f"{path}: no images found{hint}")
    return RainyImages(paths=files, names=unique_names(files, path))


def split_train_val(pairs: Dataset, val_fraction: float, seed: int) -> tuple[PairSubset, PairSubset]:
    """Deterministic held-out split by group (pairs sharing a clean image stay together).

    round(val_fraction * groups) groups go to validation, at least one when val_fraction > 0
    and at least one group always stays in training; val_fraction = 0 gives an empty val set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = _group_keys(pairs)
    groups = sorted(set(keys), key=natural_key)
    n_val = int(round(val_fraction * len(groups)))
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:n_val]}
    train = [i for i, k in enumerate(keys) if k not in val_groups]
    val = [i for i, k in enumerate(keys) if k in val_groups]
    return PairSubset(pairs, train), PairSubset(pairs, val)


def synthetic_pairs(split: str, preset: str = "light", size: int = 96, count: int = 24,
                    seed: int = 0, photos: Optional[str] = None) -> SyntheticPairs:
    """The embedded rain set in memory (no download): `count` pairs of size x size pixels.

    `split` picks disjoint source photos (train|val|test) from the built-in photos or from
    the folder `photos`; `.clean_images` is the ground truth (use `.rainy_only()` to hand
    the rainy images alone to online fine-tuning).
    """
    names, rainy, clean = make_rainy_set(split, preset, size, count, seed, photos)
    return SyntheticPairs(names, rainy, clean, split=split, preset=preset, seed=seed)


def synthetic_from_config(data_cfg, split: str, preset: Optional[str] = None,
                          count: Optional[int] = None) -> SyntheticPairs:
    """`synthetic_pairs` with the sizes and seed of `data_cfg` (count per split by default)."""
    default_count = {"train": data_cfg.synthetic_count, "val": data_cfg.synthetic_val_count,
                     "test": data_cfg.synthetic_test_count}
    if split not in default_count:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(default_count)}")
    return synthetic_pairs(split, preset or data_cfg.synthetic_preset, data_cfg.synthetic_size,
                           default_count[split] if count is None else count,
                           data_cfg.synthetic_seed, data_cfg.clean_photos)


def synthetic_stream_from_config(data_cfg, seed: int) -> SyntheticRainStream:
    """The on-the-fly training stream of `data_cfg` (train photos, built-in or `clean_photos`)."""
    photos = [photo for _, photo in load_split("train", data_cfg.clean_photos)]
    return SyntheticRainStream(photos, data_cfg.patch_size, data_cfg.synthetic_count,
                               data_cfg.synthetic_preset, seed=seed,
                               flat_scenes=data_cfg.flat_scenes, dry_share=data_cfg.dry_share,
                               streak_share=data_cfg.streak_share)


def build_train_val(data_cfg, seed: int) -> tuple[Dataset, Dataset]:
    """(train_pairs, val_pairs) of full-size images from a `config.DataConfig`.

    root None: the embedded synthetic set; train and val come from disjoint photos
    (`synthetic_count` / `synthetic_val_count` images, generated from `synthetic_seed` so that
    the data do not change with the training seed). With `synthetic_fresh` the train side is
    None: training uses `synthetic_stream_from_config` instead. Otherwise `open_pairs(root,
    layout, side_order)`, its headers checked (`PairedImages.verify`), split by `val_fraction`
    with `seed`.
    """
    if data_cfg.root is None:
        train = None if data_cfg.synthetic_fresh else synthetic_from_config(data_cfg, "train")
        return train, synthetic_from_config(data_cfg, "val")
    pairs = open_pairs(data_cfg.root, data_cfg.layout, data_cfg.side_order)
    pairs.verify()  # every pair's header before the first step: all broken files at once
    return split_train_val(pairs, data_cfg.val_fraction, seed)


# ----------------------------------------------------------------------------- patches


def _pad_to(image: np.ndarray, patch: int) -> np.ndarray:
    """Reflect-pad H and W up to `patch` (split evenly); np.pad reflects repeatedly if needed."""
    pad_h, pad_w = max(patch - image.shape[0], 0), max(patch - image.shape[1], 0)
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
                  mode="reflect")


class PatchDataset(Dataset):
    """Random aligned crops of a pair data set: items `{"rainy", "clean"}` Tensor[3,p,p].

    Randomness comes from a Generator seeded by (seed, epoch, index), so a sample does not
    depend on the DataLoader's worker count or order; call `set_epoch(e)` before each epoch
    (with persistent_workers=True the workers keep the epoch they were created with).
    augment: False/"none", True/"dihedral" (8 flips/rotations, the Restormer/BasicSR choice;
    note quarter turns make streaks horizontal) or "hflip" (keeps rain falling downwards).
    `repeat` makes one epoch visit every image that many times (small sets, big batches).
    """

    def __init__(self, pairs: Dataset, patch_size: int, augment: Union[bool, str] = False,
                 seed: int = 0, repeat: int = 1):
        if patch_size < 1 or repeat < 1:
            raise ValueError(f"patch_size and repeat must be >= 1, got {patch_size}, {repeat}")
        if len(pairs) == 0:
            raise DatasetError("PatchDataset: the pair data set is empty")
        mode = ("dihedral" if augment else "none") if isinstance(augment, bool) else augment
        if mode not in AUGMENTS:
            raise ValueError(f"unknown augment {augment!r}; choose True, False or one of {AUGMENTS}")
        self.pairs, self.patch_size, self.augment = pairs, int(patch_size), mode
        self.seed, self.repeat, self.epoch = int(seed), int(repeat), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        rainy, clean = _load_pair(self.pairs, index % len(self.pairs))
        if rainy.shape != clean.shape:  # in-memory or foreign data sets
            raise DatasetError(f"pair {index % len(self.pairs)}: rainy {rainy.shape} != clean {clean.shape}")
        p = self.patch_size
        rainy, clean = _pad_to(rainy, p), _pad_to(clean, p)
        top = int(rng.integers(0, rainy.shape[0] - p + 1))
        left = int(rng.integers(0, rainy.shape[1] - p + 1))
        rainy = to_tensor(np.ascontiguousarray(rainy[top:top + p, left:left + p], dtype=np.float32))
        clean = to_tensor(np.ascontiguousarray(clean[top:top + p, left:left + p], dtype=np.float32))
        if self.augment != "none":
            op = int(rng.integers(0, 8)) if self.augment == "dihedral" else 4 * int(rng.integers(0, 2))
            rainy, clean = dihedral(rainy, op).contiguous(), dihedral(clean, op).contiguous()
        return {"rainy": rainy, "clean": clean}
