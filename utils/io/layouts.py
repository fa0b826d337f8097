"""Data set layouts on disk: which files form rainy/clean pairs, found by folder and file names.

Only names are looked at here (and, for side-by-side detection, a few sampled images), so
a folder is validated before anything is trained; `dataset.PairedImages` reads the pairs.
Nothing here ever writes to, renames or deletes anything in a data folder.

Layouts accepted by `dataset.open_pairs(root, layout="auto")` (see `LAYOUTS`):

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

from utils.errors import UserError
from utils.io.images import ImageReadError, is_image_file, read_image

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
ERRORS_SHOWN = 5  # how many offending files an error message lists


class DatasetError(UserError, ValueError):
    """A data set folder or file is missing, malformed, unmatched or unreadable."""


@dataclass(frozen=True)
class PairEntry:
    name: str
    rainy: Path
    clean: Optional[Path]  # None for side-by-side files: both halves live in `rainy`


# ----------------------------------------------------------------------------- helpers


def natural_key(text: str) -> list:
    """Sort 'rain-2' before 'rain-10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, hidden files (.DS_Store, ._x.png) skipped, natural order."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and is_image_file(p)]
    return sorted(files, key=lambda p: natural_key(p.name))


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def few(items: Sequence, limit: int = ERRORS_SHOWN) -> str:
    """'a, b, c, ... (12 in all)': the first few items of a list, for error messages."""
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def read_data_image(path: Path) -> np.ndarray:
    """`read_image`, failing with a DatasetError that names the file."""
    try:
        return read_image(path)
    except ImageReadError as error:
        raise DatasetError(str(error)) from None


def unique_names(paths: Sequence[Path], base: Optional[Path] = None) -> list[str]:
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
        names = unique_names(rainy_files)
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
    return [PairEntry(n, p, None) for n, p in zip(unique_names(files, base), files)]


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
    names = unique_names([r for r, _ in pairs], base)
    return [PairEntry(n, r, c) for n, (r, c) in zip(names, pairs)]


_BUILDERS = {
    "folders": _entries_folders, "rain-norain": _entries_rain_norain, "rain200": _entries_rain200,
    "ddn": _entries_ddn, "side-by-side": _entries_side_by_side, "pair-list": _entries_pair_list,
}


def pair_entries(root: Path, layout: str) -> list[PairEntry]:
    """The pairs of a data set folder (or pair list) in a known layout; DatasetError names the
    files that do not pair up."""
    return _BUILDERS[layout](root)


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
        scores = [_halves_correlation(read_data_image(p)) for p in sample]
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
