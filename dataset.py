"""Data sets: benchmark layouts on disk, the embedded synthetic rain set, patches and splits.

Colour order is RGB everywhere; images are float32 in [0, 1] (gray, RGBA and 16-bit files
are converted by `utils.io.images.read_image`). Folders are validated up front (names and
pairing) and read lazily, one pair per `__getitem__`; a pair's sizes are checked when read.
Nothing here ever writes to, renames or deletes anything in a data folder.

Layouts accepted by `open_pairs(root, layout="auto")` (see `LAYOUTS`):

- `folders`: two subfolders of equally named images, rainy/clean = one of `FOLDER_NAME_PAIRS`
  (input/target as in Restormer/DRSformer/Rain13K, input/gt, rainy/clean, rain/norain, lq/gt,
  ...). Names are matched exactly, else after dropping rain/norain-style tokens (`rain-001`
  ~ `norain-001`, `norain-1x2` ~ `norain-1`), else DDN-style (`7_3` ~ `7`).
- `rain-norain`: one folder with `rain-NNN.*` and `norain-NNN.*` (Rain100H/L, PReNet);
  other files (e.g. `rainstreak-NNN.png`) are ignored.
- `rain200`: `rain/X2/norain-Nx2.png` + `norain/norain-N.png` (Rain200H/L as distributed).
- `ddn`: `rainy_image/{i}_{j}.jpg` + `ground_truth/{i}.jpg` (DDN Rain1400/Rain14000, 14 rainy
  per clean image; "rainy image"/"ground truth" with spaces also accepted).
- `side-by-side`: one folder of images holding both halves (Rain800, DID-MDN Rain1200, the HCN
  authors' format); `side_order` says which half is which ("clean-rainy": clean on the left,
  the HCN format; DID-MDN is "rainy-clean"). Halves are `[:, :W//2]` and `[:, W//2:2*(W//2)]`.
- `pair-list`: a text file (or a folder holding exactly one) with one `rainy clean` pair per
  line (SPA-Data style), separated by whitespace, a comma or a tab, paths relative to the
  list file's folder (a leading "/" is also read as relative); `#` starts a comment.

Auto-detection tries, in this order: ddn and rain200 subfolders, a `FOLDER_NAME_PAIRS`
subfolder pair, rain-/norain- file names, a pair list, then side-by-side (accepted only if
the two halves of a few sampled images show the same scene). The error names every layout
tried and why it did not fit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np
from torch.utils.data import Dataset

from utils.errors import UserError
from utils.inference import dihedral
from utils.io.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_image, to_tensor
from utils.synthetic.photos import load_split, training_background
from utils.synthetic.rain import add_rain
from utils.synthetic.sets import make_rainy_set
from utils.synthetic.styles import HELD_OUT

LAYOUTS = ("folders", "rain-norain", "rain200", "ddn", "side-by-side", "pair-list")
SIDE_ORDERS = ("clean-rainy", "rainy-clean")
# (rainy folder, clean folder), matched case-insensitively, first match wins.
FOLDER_NAME_PAIRS = (
    ("input", "target"), ("input", "gt"), ("input", "groundtruth"), ("rainy", "clean"),
    ("rainy", "gt"), ("rainy", "norain"), ("rain", "norain"), ("rain", "clean"), ("lq", "gt"),
    ("lq", "hq"),
)
DDN_RAINY_DIRS = ("rainy_image", "rainy image", "rainy_images")
DDN_CLEAN_DIRS = ("ground_truth", "ground truth", "groundtruth")
LIST_SUFFIXES = (".txt", ".lst", ".list")
AUGMENTS = ("none", "hflip", "dihedral")
_SHOWN = 5  # how many offending files an error message lists


class DatasetError(UserError, ValueError):
    """A data set folder or file is missing, malformed, unmatched or unreadable."""


@dataclass(frozen=True)
class PairEntry:
    name: str
    rainy: Path
    clean: Optional[Path]  # None for side-by-side files: both halves live in `rainy`


# ----------------------------------------------------------------------------- helpers


def _natural_key(text: str) -> list:
    """Sort 'rain-2' before 'rain-10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, hidden files (.DS_Store, ._x.png) skipped, natural order."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and is_image_file(p)]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def few(items: Sequence, limit: int = _SHOWN) -> str:
    """'a, b, c, ... (12 in all)': the first few items of a list, for error messages."""
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _read(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except ImageReadError as error:
        raise DatasetError(str(error)) from None


def _unique_names(paths: Sequence[Path], base: Optional[Path] = None) -> list[str]:
    """File stems, or longer names where stems collide (a.png + a.jpg, or x/1.png + y/1.png)."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    names = []
    for p in paths:
        rel = p.relative_to(base) if base is not None and p.is_relative_to(base) else Path(p.name)
        names.append(rel.as_posix().replace("/", "_"))
    return names


# Name keys used to pair rainy and clean files (and result files, see RESULT_NAME_RULES),
# tried in order.
_TOKEN_HEAD = re.compile(r"^(norain|rainy|rain|clean|gt|target|input)[-_ ]*")
_TOKEN_TAIL = re.compile(r"([-_ ]*(norain|rainy|rain|clean|gt|target|input))?(x\d)?$")
# What deraining methods append to the names of their outputs (PReNet_derain, *_out, ...).
_METHOD_SUFFIX = re.compile(r"[-_ ]*(derained|derain|output|out|results|result|res|pred|"
                            r"prediction|restored|rec|fake_b)$")


def _normalised(stem: str) -> str:
    key = _TOKEN_HEAD.sub("", stem.lower())
    return _TOKEN_TAIL.sub("", key) or stem.lower()


def _ddn_prefix(stem: str) -> str:
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def _same(stem: str) -> str:
    return stem


def _without_method_suffix(stem: str) -> str:
    """'norain-001_derain' -> '001' (method suffix, then rain/norain tokens removed)."""
    key = _METHOD_SUFFIX.sub("", stem.lower())
    return _normalised(key) if key else stem.lower()


def _last_number(stem: str) -> Optional[str]:
    """'rain-001_out' -> '1': the last run of digits, leading zeros dropped (None: no digits)."""
    found = re.findall(r"\d+", _without_method_suffix(stem))
    return str(int(found[-1])) if found else None


# (label, rainy stem -> key, clean stem -> key); a key of None matches nothing.
Strategy = tuple[str, Callable[[str], Optional[str]], Callable[[str], Optional[str]]]
_EXACT: Strategy = ("exact names", _same, _same)
_TOKENS: Strategy = ("names without rain/norain tokens", _normalised, _normalised)
_DDN: Strategy = ("DDN names i_j -> i", _ddn_prefix, _same)
_SUFFIX: Strategy = ("names without method suffixes (_derain, _out, _result, ...)",
                     _without_method_suffix, _without_method_suffix)
_NUMBER: Strategy = ("the last number in the name (1 ~ 001)", _last_number, _last_number)
# Ground-truth names (left) to a method's result files (right), e.g. rain-001 ~ norain-001.png
# ~ 001_derain.png ~ 1_out.png.
RESULT_NAME_RULES: tuple[Strategy, ...] = (_EXACT, _TOKENS, _SUFFIX, _NUMBER)


@dataclass(frozen=True)
class NameMatch:
    """Outcome of `match_names` under one rule: `index[i]` is the right name paired with left
    name i (None: unmatched); `lonely_left`/`lonely_right` list the unpaired indices."""

    rule: str
    index: list
    lonely_left: list
    lonely_right: list

    @property
    def complete(self) -> bool:
        return not self.lonely_left and not self.lonely_right


def match_names(left: Sequence[str], right: Sequence[str], strategies: Sequence[Strategy],
                one_to_one: bool = False) -> Optional[NameMatch]:
    """Pair every left name with one right name and use every right name, by the first rule
    (strategy) that does; otherwise the rule leaving the fewest names unpaired. Rules under
    which two right names share a key (1.png and 1.jpg), or, with `one_to_one`, two left names
    pick the same right name, are skipped; None when every rule was skipped."""
    best = None
    for label, left_key, right_key in strategies:
        by_key: dict[str, int] = {}
        duplicated = False
        for j, name in enumerate(right):
            key = right_key(name)
            if key is not None:
                duplicated |= key in by_key
                by_key[key] = j
        if duplicated:
            continue  # ambiguous under this rule, try the next one
        index = [by_key.get(left_key(name)) for name in left]
        paired = [j for j in index if j is not None]
        if one_to_one and len(set(paired)) != len(paired):
            continue
        used = set(paired)
        found = NameMatch(label, index, [i for i, j in enumerate(index) if j is None],
                          [j for j in range(len(right)) if j not in used])
        if found.complete:
            return found
        if best is None or (len(found.lonely_left) + len(found.lonely_right)
                            < len(best.lonely_left) + len(best.lonely_right)):
            best = found
    return best


def _match(rainy_files: list[Path], clean_files: list[Path], strategies: Sequence[Strategy],
           rainy_dir: Path, clean_dir: Path) -> list[PairEntry]:
    """Pair every rainy file with one clean file; every clean file must be used."""
    if not rainy_files:
        raise DatasetError(f"{rainy_dir}: no images in the rainy folder")
    if not clean_files:
        raise DatasetError(f"{clean_dir}: no images in the clean folder")
    found = match_names([p.stem for p in rainy_files], [p.stem for p in clean_files], strategies)
    if found is None:
        raise DatasetError(f"{clean_dir}: several clean files share a name (e.g. 1.png and 1.jpg); "
                           "cannot tell which one pairs with a rainy file")
    if found.complete:
        names = _unique_names(rainy_files)
        return [PairEntry(n, r, clean_files[j]) for n, r, j in zip(names, rainy_files, found.index)]
    lonely_rainy = [rainy_files[i].name for i in found.lonely_left]
    lonely_clean = [clean_files[j].name for j in found.lonely_right]
    parts = []
    if lonely_rainy:
        parts.append(f"{len(lonely_rainy)} rainy file(s) in {rainy_dir} have no clean match: "
                     f"{few(lonely_rainy)}")
    if lonely_clean:
        parts.append(f"{len(lonely_clean)} clean file(s) in {clean_dir} have no rainy match: "
                     f"{few(lonely_clean)}")
    raise DatasetError("unmatched files (best rule: " + found.rule + "; tried: "
                       + ", ".join(label for label, _, _ in strategies) + "). " + "; ".join(parts))


def _halves_correlation(image: np.ndarray) -> float:
    """Band-pass correlation of the left and right halves: ~1 for a side-by-side pair."""
    half = image.shape[1] // 2
    if half < 2 or image.shape[0] < 2:
        return 0.0
    bands = []
    for part in (image[:, :half], image[:, half:2 * half]):
        small = cv2.resize(np.ascontiguousarray(part.mean(axis=2)), (32, 32),
                           interpolation=cv2.INTER_AREA)
        # Remove the smooth part: sky-above-ground photos must not look like pairs.
        band = small - cv2.GaussianBlur(small, (0, 0), 4.0)
        bands.append(band.ravel() - band.mean())
    denom = float(np.linalg.norm(bands[0]) * np.linalg.norm(bands[1]))
    return float(bands[0] @ bands[1]) / denom if denom > 1e-8 else 0.0


# ----------------------------------------------------------------------------- layouts


def _folders_pair(root: Path) -> Optional[tuple[Path, Path]]:
    subdirs = _subdirs(root)
    for rainy, clean in FOLDER_NAME_PAIRS:
        if rainy in subdirs and clean in subdirs:
            return subdirs[rainy], subdirs[clean]
    return None


def _rain200_dirs(root: Path) -> Optional[tuple[Path, Path]]:
    subdirs = _subdirs(root)
    if "rain" not in subdirs or "norain" not in subdirs:
        return None
    scaled = [p for name, p in _subdirs(subdirs["rain"]).items() if re.fullmatch(r"x\d+", name)]
    return (scaled[0], subdirs["norain"]) if len(scaled) == 1 else None


def _ddn_dirs(root: Path) -> Optional[tuple[Path, Path]]:
    subdirs = _subdirs(root)
    rainy = next((subdirs[n] for n in DDN_RAINY_DIRS if n in subdirs), None)
    clean = next((subdirs[n] for n in DDN_CLEAN_DIRS if n in subdirs), None)
    return (rainy, clean) if rainy is not None and clean is not None else None


_RAIN_FILE = re.compile(r"^rain[-_](.+)$", re.IGNORECASE)
_NORAIN_FILE = re.compile(r"^norain[-_](.+)$", re.IGNORECASE)


def _rain_norain_files(root: Path) -> tuple[list[Path], list[Path]]:
    images = list_images(root)
    return ([p for p in images if _RAIN_FILE.match(p.stem)],
            [p for p in images if _NORAIN_FILE.match(p.stem)])


def _list_file(root: Path) -> Optional[Path]:
    if root.is_file():
        return root if root.suffix.lower() in LIST_SUFFIXES else None
    lists = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in LIST_SUFFIXES
             and not p.name.startswith(".")]
    return lists[0] if len(lists) == 1 else None


def _entries_in_dirs(root: Path, layout: str, dirs: Optional[tuple[Path, Path]], needs: str,
                     strategies: Sequence[Strategy]) -> list[PairEntry]:
    """Pairs matched between a (rainy, clean) subfolder pair; `needs` says what was expected."""
    if dirs is None:
        raise DatasetError(f"{root}: layout '{layout}' needs {needs}; "
                           f"found subfolders: {few(sorted(_subdirs(root))) or 'none'}")
    rainy_dir, clean_dir = dirs
    return _match(list_images(rainy_dir), list_images(clean_dir), strategies, rainy_dir, clean_dir)


def _entries_folders(root: Path) -> list[PairEntry]:
    needs = "a subfolder pair among " + ", ".join(r + "/" + c for r, c in FOLDER_NAME_PAIRS)
    return _entries_in_dirs(root, "folders", _folders_pair(root), needs, (_EXACT, _TOKENS, _DDN))


def _entries_rain200(root: Path) -> list[PairEntry]:
    return _entries_in_dirs(root, "rain200", _rain200_dirs(root),
                            "rain/X2/ (one X<n> subfolder) and norain/", (_TOKENS, _EXACT))


def _entries_ddn(root: Path) -> list[PairEntry]:
    needs = ("subfolders rainy_image/ and ground_truth/ "
             f"(or {', '.join(DDN_RAINY_DIRS[1:] + DDN_CLEAN_DIRS[1:])})")
    return _entries_in_dirs(root, "ddn", _ddn_dirs(root), needs, (_DDN, _EXACT))


def _entries_rain_norain(root: Path) -> list[PairEntry]:
    rainy, clean = _rain_norain_files(root)
    if not rainy and not clean:
        raise DatasetError(f"{root}: layout 'rain-norain' needs files named rain-<id> and "
                           f"norain-<id>; found {len(list_images(root))} other image(s)")
    ids: Strategy = ("rain-<id> ~ norain-<id>", lambda stem: _RAIN_FILE.match(stem).group(1).lower(),
                     lambda stem: _NORAIN_FILE.match(stem).group(1).lower())
    return _match(rainy, clean, (ids,), root, root)


def _entries_side_by_side(root: Path) -> list[PairEntry]:
    if root.is_file():
        files = [root] if is_image_file(root) else []
    else:
        files = list_images(root)
    if not files:
        raise DatasetError(f"{root}: no images for layout 'side-by-side'")
    base = root if root.is_dir() else root.parent
    return [PairEntry(n, p, None) for n, p in zip(_unique_names(files, base), files)]


def _entries_pair_list(root: Path) -> list[PairEntry]:
    list_path = _list_file(root)
    if list_path is None:
        raise DatasetError(f"{root}: layout 'pair-list' needs a list file ({', '.join(LIST_SUFFIXES)}) "
                           "or a folder holding exactly one")
    base = list_path.parent
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{list_path}: cannot read the pair list ({error})") from None
    pairs, missing = [], []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split("\t") if "\t" in line else re.split(r"[,\s]+", line)
        tokens = [t.strip() for t in tokens if t.strip()]
        if len(tokens) != 2:
            raise DatasetError(f"{list_path}:{number}: expected 'rainy_path clean_path', got {raw!r}")
        resolved = []
        for token in tokens:
            path = Path(token)
            if not path.is_absolute() or not path.exists():
                path = base / token.lstrip("/\\")
            if not path.is_file():
                missing.append(f"{token} (line {number})")
            resolved.append(path)
        pairs.append(tuple(resolved))
    if not pairs:
        raise DatasetError(f"{list_path}: the pair list is empty")
    if missing:
        raise DatasetError(f"{list_path}: {len(missing)} listed file(s) do not exist "
                           f"(paths are relative to {base}): {few(missing)}")
    names = _unique_names([r for r, _ in pairs], base)
    return [PairEntry(n, r, c) for n, (r, c) in zip(names, pairs)]


_BUILDERS = {
    "folders": _entries_folders, "rain-norain": _entries_rain_norain, "rain200": _entries_rain200,
    "ddn": _entries_ddn, "side-by-side": _entries_side_by_side, "pair-list": _entries_pair_list,
}


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
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DatasetError(f"{root}: the folder is empty")
    if _ddn_dirs(root) is not None:
        return "ddn"
    if _rain200_dirs(root) is not None:
        return "rain200"
    if _folders_pair(root) is not None:
        return "folders"
    rainy, clean = _rain_norain_files(root)
    if rainy or clean:
        return "rain-norain"
    if _list_file(root) is not None:
        return "pair-list"
    images = list_images(root)
    tried = []
    if images:
        # Up to 5 files spread over the folder; the median tolerates a flat image or two.
        sample = [images[i] for i in sorted({round(k * (len(images) - 1) / 4) for k in range(5)})]
        scores = [_halves_correlation(_read(p)) for p in sample]
        if float(np.median(scores)) > 0.35:
            return "side-by-side"
        tried.append(f"side-by-side ({len(images)} image(s) found, but their left and right "
                     f"halves do not show the same scene; pass layout='side-by-side' to force it)")
    else:
        tried.append("side-by-side (no images directly in the folder)")
    subdirs = sorted(_subdirs(root))
    hint = ""
    if {"train", "test"} & set(subdirs):
        hint = " This looks like a data set root: point root at its train/ or test/ folder."
    raise DatasetError(
        f"{root}: cannot detect the data set layout. Tried: "
        f"ddn (subfolders {DDN_RAINY_DIRS[0]}/ + {DDN_CLEAN_DIRS[0]}/), "
        "rain200 (rain/X2/ + norain/), "
        "folders (a subfolder pair such as "
        f"{', '.join(r + '/' + c for r, c in FOLDER_NAME_PAIRS[:4])}, ...), "
        "rain-norain (files rain-<id> + norain-<id>), "
        f"pair-list (one {'/'.join(LIST_SUFFIXES)} file), " + "; ".join(tried)
        + f". Subfolders found: {few(subdirs) or 'none'}." + hint)


# ----------------------------------------------------------------------------- data sets


class PairedImages(Dataset):
    """Full-size rainy/clean pairs from disk, read lazily; items are
    `{"name": str, "rainy": Tensor[3,H,W], "clean": Tensor[3,H,W]}`."""

    def __init__(self, entries: Sequence[PairEntry], root: Path, layout: str,
                 side_order: str = "clean-rainy"):
        if side_order not in SIDE_ORDERS:
            raise DatasetError(f"unknown side_order {side_order!r}; choose one of {SIDE_ORDERS}")
        if not entries:
            raise DatasetError(f"{root}: no image pairs found (layout {layout!r})")
        self.entries = list(entries)
        self.root = Path(root)
        self.layout = layout
        self.side_order = side_order

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"PairedImages({len(self)} pairs, layout={self.layout!r}, root={str(self.root)!r})"

    def group_keys(self) -> list[str]:
        """Rainy images made from the same clean image share a key (DDN: 14 per clean image)."""
        return [str(e.clean if e.clean is not None else e.rainy) for e in self.entries]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rainy, clean) as RGB float32 HWC arrays; DatasetError names the file(s) at fault."""
        entry = self.entries[index]
        if entry.clean is None:
            image = _read(entry.rainy)
            half = image.shape[1] // 2
            if half < 1:
                raise DatasetError(f"{entry.rainy}: {image.shape[1]} px wide, too narrow to hold "
                                   "a side-by-side pair")
            left, right = image[:, :half], image[:, half:2 * half]
            rainy, clean = (right, left) if self.side_order == "clean-rainy" else (left, right)
            return np.ascontiguousarray(rainy), np.ascontiguousarray(clean)
        rainy, clean = _read(entry.rainy), _read(entry.clean)
        if rainy.shape != clean.shape:
            raise DatasetError(f"pair size mismatch: rainy {entry.rainy} is "
                               f"{rainy.shape[1]}x{rainy.shape[0]} but clean {entry.clean} is "
                               f"{clean.shape[1]}x{clean.shape[0]} (width x height)")
        return rainy, clean

    def __getitem__(self, index: int) -> dict:
        rainy, clean = self.load(index)
        return {"name": self.entries[index].name, "rainy": to_tensor(rainy), "clean": to_tensor(clean)}

    def verify(self) -> None:
        """Read every pair now and report all problems at once (slow on big sets)."""
        errors = []
        for i in range(len(self)):
            try:
                self.load(i)
            except DatasetError as error:
                errors.append(str(error))
        if errors:
            raise DatasetError(f"{len(errors)} of {len(self)} pairs are broken: "
                               + " | ".join(errors[:_SHOWN]) + (" | ..." if len(errors) > _SHOWN else ""))


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
            self._names = list(names) if names is not None else _unique_names(self.paths)
        else:
            self._images = [np.asarray(i, dtype=np.float32) for i in images]
            self.paths = [None] * len(self._images)
            self._names = list(names) if names is not None else [f"{i:04d}" for i in range(len(self._images))]
        if len(self._names) != len(self.paths):
            raise ValueError(f"RainyImages: {len(self._names)} names for {len(self.paths)} images")

    def __repr__(self) -> str:
        return f"RainyImages({len(self)} images)"

    def load(self, index: int) -> np.ndarray:
        return self._images[index] if self._images is not None else _read(self.paths[index])

    def __getitem__(self, index: int) -> dict:
        return {"name": self._names[index], "rainy": to_tensor(self.load(index))}


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


def open_pairs(root: Union[str, Path], layout: str = "auto",
               side_order: str = "clean-rainy") -> PairedImages:
    """Open a paired data set folder (or pair list) in any of `LAYOUTS`; 'auto' detects it."""
    root = Path(root).expanduser()
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose 'auto' or one of {', '.join(LAYOUTS)}")
    if side_order not in SIDE_ORDERS:
        raise DatasetError(f"unknown side_order {side_order!r}; choose one of {SIDE_ORDERS}")
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if layout == "auto":
        layout = detect_layout(root)
    elif root.is_file() and layout not in ("pair-list", "side-by-side"):
        raise DatasetError(f"{root}: layout {layout!r} needs a folder, got a file")
    return PairedImages(_BUILDERS[layout](root), root, layout, side_order)


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
                       key=lambda p: _natural_key(p.relative_to(path).as_posix()))
    else:
        files = list_images(path)
    if not files:
        nested = [] if recursive else [p for p in path.rglob("*") if p.is_file() and is_image_file(p)]
        hint = f" ({len(nested)} image(s) in sub-folders: pass recursive=True)" if nested else ""
        raise DatasetError(f"{path}: no images found{hint}")
    return RainyImages(paths=files, names=_unique_names(files, path))


def split_train_val(pairs: Dataset, val_fraction: float, seed: int) -> tuple[PairSubset, PairSubset]:
    """Deterministic held-out split by group (pairs sharing a clean image stay together).

    round(val_fraction * groups) groups go to validation, at least one when val_fraction > 0
    and at least one group always stays in training; val_fraction = 0 gives an empty val set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = _group_keys(pairs)
    groups = sorted(set(keys), key=_natural_key)
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


class SyntheticRainStream(Dataset):
    """Training pairs made on the fly: a new augmented background crop and a new rain draw
    for every sample (items `{"rainy", "clean"}` Tensor[3,p,p], like PatchDataset).

    Sample (epoch, index) depends only on (seed, epoch, index), not on worker count or
    order; `length` samples make one epoch. Rain is rendered at a random `scale` in
    `scales` (log-uniform), so streak sizes vary relative to the scene. `flat_scenes`: share
    of flat, bright clean backgrounds (utils.synthetic.photos.augment_photo).
    """

    def __init__(self, photos: Sequence[np.ndarray], patch_size: int, length: int,
                 preset: str = "mixed", seed: int = 0, scales: tuple[float, float] = (0.5, 1.6),
                 flat_scenes: float = 0.0):
        if not photos:
            raise DatasetError("SyntheticRainStream: no clean photos")
        if patch_size < 1 or length < 1:
            raise ValueError(f"patch_size and length must be >= 1, got {patch_size}, {length}")
        if preset in HELD_OUT:
            raise ValueError(f"rain style {preset!r} is held out for measuring generalisation; "
                             "do not train on it")
        self.photos, self.patch_size, self.length = list(photos), int(patch_size), int(length)
        if not 0.0 <= flat_scenes <= 1.0:
            raise ValueError(f"flat_scenes must be in [0, 1], got {flat_scenes}")
        self.preset, self.seed, self.scales, self.epoch = preset, int(seed), scales, 0
        self.flat_scenes = float(flat_scenes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"SyntheticRainStream({self.length} samples/epoch, {len(self.photos)} photos, "
                f"preset={self.preset!r}, patch={self.patch_size})")

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        clean = training_background(self.photos, self.patch_size, rng, self.flat_scenes)
        scale = float(np.exp(rng.uniform(np.log(self.scales[0]), np.log(self.scales[1]))))
        rainy = add_rain(clean, self.preset, rng, scale=scale)
        return {"rainy": to_tensor(rainy), "clean": to_tensor(clean)}


def synthetic_stream_from_config(data_cfg, seed: int) -> SyntheticRainStream:
    """The on-the-fly training stream of `data_cfg` (train photos, built-in or `clean_photos`)."""
    photos = [photo for _, photo in load_split("train", data_cfg.clean_photos)]
    return SyntheticRainStream(photos, data_cfg.patch_size, data_cfg.synthetic_count,
                               data_cfg.synthetic_preset, seed=seed,
                               flat_scenes=data_cfg.flat_scenes)


def build_train_val(data_cfg, seed: int) -> tuple[Dataset, Dataset]:
    """(train_pairs, val_pairs) of full-size images from a `config.DataConfig`.

    root None: the embedded synthetic set; train and val come from disjoint photos
    (`synthetic_count` / `synthetic_val_count` images, generated from `synthetic_seed` so that
    the data do not change with the training seed). With `synthetic_fresh` the train side is
    None: training uses `synthetic_stream_from_config` instead. Otherwise `open_pairs(root,
    layout, side_order)` split by `val_fraction` with `seed`.
    """
    if data_cfg.root is None:
        train = None if data_cfg.synthetic_fresh else synthetic_from_config(data_cfg, "train")
        return train, synthetic_from_config(data_cfg, "val")
    pairs = open_pairs(data_cfg.root, data_cfg.layout, data_cfg.side_order)
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
