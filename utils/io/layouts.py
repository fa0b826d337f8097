"""Data set layouts on disk: which files form rainy/clean pairs, found by folder and file names.

Only names are looked at here (and, for side-by-side files, a few sampled images), so a
folder is validated before anything is trained; `utils.io.pair_folders.PairedImages` reads the pairs.
Nothing here ever writes to, renames or deletes anything in a data folder. docs/datasets.md
lists each public benchmark as distributed and the layout that reads it.

Layouts accepted by `open_pairs(root, layout="auto")` (utils/io/pair_folders.py) (see `LAYOUTS`):

- `folders`: two subfolders, rainy/clean = one of `FOLDER_NAME_PAIRS` (input/target as in
  Restormer/DRSformer/Rain13K, rainy/groundtruth as PReNet's Rain12, rain/gt as SPA-Data's
  real_test_1000, rain/norain as JORDER-E/RCDNet, ...). Names are matched exactly, else
  after dropping rain/norain-style tokens (`rain-001` ~ `norain-001`, `norain-1x2` ~
  `norain-1`, `000` ~ `000gt`), else DDN-style (`7_3` ~ `7`).
- `rain-norain`: `norain-NNN.*` files with `rain-NNN.*` beside them or in a `rainy/`
  subfolder (Rain100H/L, RainTrainH/L as PReNet distributes them); other files (JORDER's
  `rainstreak-NNN.png`, `rainregion-NNN.png`) are ignored.
- `in-gt`: one folder of `<id>_in.*` and `<id>_GT.*` files (Rain12 as its authors distribute it).
- `rain200`: `rain/X2/norain-Nx2.png` + `norain/norain-N.png` (Rain200H/L as distributed).
- `ddn`: `rainy_image/{i}_{j}.jpg` + `ground_truth/{i}.jpg` (DDN Rain1400/Rain12600, 14 rainy
  per clean image; "rainy image"/"ground truth" with spaces also accepted).
- `side-by-side`: one folder of images holding both halves (Rain800, DID-MDN Rain1200, the HCN
  authors' format); `side_order` says which half is which, "auto" tells it from the pixels
  (`utils.io.side_by_side`). Halves are `[:, :W//2]` and `[:, W//2:2*(W//2)]`.
- `pair-list`: a text file (or a folder holding exactly one) with one `rainy clean` pair per
  line (SPA-Data's real_world.txt, real_test_1000.txt), separated by whitespace, a comma or a
  tab, paths relative to the list file's folder (a leading "/" is also read as relative); `#`
  starts a comment.

In every layout a clean image without a rainy one is left out with a warning (PReNet's
RainTrainH lacks the rainy files of 546 scenes); a rainy image without a clean one is an error.
Auto-detection tries, in this order: ddn and rain200 subfolders, a `FOLDER_NAME_PAIRS`
subfolder pair, rain-/norain- names, _in/_GT names, a pair list, then side-by-side (only if the
halves of a few sampled images show the same scene). Its error says what the folder holds and
which layout comes nearest, with what that layout lacks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from utils import logs
from utils.errors import UserError
from utils.io.images import ImageReadError, is_image_file, read_image
from utils.io.name_matching import (DDN_NAMES, EXACT, WITHOUT_TOKENS, Strategy, few, match_names, natural_key,
                                    unique_names)
from utils.io.side_by_side import SIDE_ORDERS

LAYOUTS = ("folders", "rain-norain", "in-gt", "rain200", "ddn", "side-by-side", "pair-list")
SIDE_ORDER_CHOICES = ("auto",) + SIDE_ORDERS
# (rainy folder, clean folder), matched case-insensitively, first match wins.
FOLDER_NAME_PAIRS = (
    ("input", "target"), ("input", "gt"), ("input", "groundtruth"), ("rainy", "clean"),
    ("rainy", "gt"), ("rainy", "groundtruth"), ("rainy", "norain"), ("rain", "norain"),
    ("rain", "clean"), ("rain", "gt"), ("lq", "gt"), ("lq", "hq"),
)
DDN_RAINY_DIRS = ("rainy_image", "rainy image", "rainy_images")
DDN_CLEAN_DIRS = ("ground_truth", "ground truth", "groundtruth")
PRENET_RAINY_DIR = "rainy"  # PReNet's Rain100H/L: rainy/rain-001.png beside norain-001.png
LIST_SUFFIXES = (".txt", ".lst", ".list")
RAINY_DIR_NAMES = sorted({r for r, _ in FOLDER_NAME_PAIRS} | set(DDN_RAINY_DIRS))
CLEAN_DIR_NAMES = sorted({c for _, c in FOLDER_NAME_PAIRS} | set(DDN_CLEAN_DIRS))
log = logs.get("dataset")


class DatasetError(UserError, ValueError):
    """A data set folder or file is missing, malformed, unmatched or unreadable."""


@dataclass(frozen=True)
class PairEntry:
    name: str
    rainy: Path
    clean: Optional[Path]  # None for side-by-side files: both halves live in `rainy`


# ----------------------------------------------------------------------------- helpers


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, hidden files (.DS_Store, ._x.png) skipped, natural order."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and is_image_file(p)]
    return sorted(files, key=lambda p: natural_key(p.name))


def subfolders(folder: Path) -> dict[str, Path]:
    """Visible subfolders by lower-case name."""
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def read_data_image(path: Path):
    """`read_image`, failing with a DatasetError that names the file."""
    try:
        return read_image(path)
    except ImageReadError as error:
        raise DatasetError(str(error)) from None


def _match(rainy_files: list[Path], clean_files: list[Path], strategies: Sequence[Strategy],
           rainy_dir: Path, clean_dir: Path, base: Optional[Path] = None) -> list[PairEntry]:
    """Pair every rainy file with one clean file; clean files left over are left out (warned)."""
    if not rainy_files:
        raise DatasetError(f"{rainy_dir}: no images in the rainy folder")
    if not clean_files:
        raise DatasetError(f"{clean_dir}: no images in the clean folder")
    found = match_names([p.stem for p in rainy_files], [p.stem for p in clean_files], strategies)
    if found is None:
        raise DatasetError(f"{clean_dir}: several clean files share a name (e.g. 1.png and 1.jpg); "
                           "cannot tell which one pairs with a rainy file")
    lonely_clean = [clean_files[j].name for j in found.lonely_right]
    if not found.lonely_left:
        if lonely_clean:
            log.warning(f"{clean_dir}: {len(lonely_clean)} clean image(s) have no rainy image and "
                        f"are left out: {few(lonely_clean)}")
        names = unique_names(rainy_files, base)
        return [PairEntry(n, r, clean_files[j]) for n, r, j in zip(names, rainy_files, found.index)]
    lonely_rainy = [rainy_files[i].name for i in found.lonely_left]
    parts = [f"{len(lonely_rainy)} rainy file(s) in {rainy_dir} have no clean match: {few(lonely_rainy)}"]
    if lonely_clean:
        parts.append(f"{len(lonely_clean)} clean file(s) in {clean_dir} have no rainy match: "
                     f"{few(lonely_clean)}")
    raise DatasetError("unmatched files (best rule: " + found.rule + "; tried: "
                       + ", ".join(label for label, _, _ in strategies) + "). " + "; ".join(parts))


# ----------------------------------------------------------------------------- layouts by names


def _folders_pair(root: Path) -> Optional[tuple[Path, Path]]:
    subdirs = subfolders(root)
    for rainy, clean in FOLDER_NAME_PAIRS:
        if rainy in subdirs and clean in subdirs:
            return subdirs[rainy], subdirs[clean]
    return None


def rain200_scaled(root: Path) -> list[Path]:
    rain = subfolders(root).get("rain")
    return [] if rain is None else [p for n, p in sorted(subfolders(rain).items()) if re.fullmatch(r"x\d+", n)]


def _rain200_dirs(root: Path) -> Optional[tuple[Path, Path]]:
    scaled, norain = rain200_scaled(root), subfolders(root).get("norain")
    return (scaled[0], norain) if len(scaled) == 1 and norain is not None else None


def _ddn_dirs(root: Path) -> Optional[tuple[Path, Path]]:
    subdirs = subfolders(root)
    rainy = next((subdirs[n] for n in DDN_RAINY_DIRS if n in subdirs), None)
    clean = next((subdirs[n] for n in DDN_CLEAN_DIRS if n in subdirs), None)
    return (rainy, clean) if rainy is not None and clean is not None else None


_RAIN_FILE = re.compile(r"^rain[-_](.+)$", re.IGNORECASE)
_NORAIN_FILE = re.compile(r"^norain[-_](.+)$", re.IGNORECASE)
_IN_FILE = re.compile(r"^(.+)[-_ ](?:in|input)$", re.IGNORECASE)
_GT_FILE = re.compile(r"^(.+)[-_ ]gt$", re.IGNORECASE)


def _tagged(files: list[Path], pattern: re.Pattern) -> list[Path]:
    return [p for p in files if pattern.match(p.stem)]


def _rain_norain_files(root: Path) -> tuple[list[Path], list[Path]]:
    images = list_images(root)
    rainy_dir = subfolders(root).get(PRENET_RAINY_DIR)
    rainy_images = images + (list_images(rainy_dir) if rainy_dir is not None else [])
    return _tagged(rainy_images, _RAIN_FILE), _tagged(images, _NORAIN_FILE)


def in_gt_files(root: Path) -> tuple[list[Path], list[Path]]:
    images = list_images(root)
    return _tagged(images, _IN_FILE), _tagged(images, _GT_FILE)


def list_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in LIST_SUFFIXES
                  and not p.name.startswith("."))


def _list_file(root: Path) -> Optional[Path]:
    if root.is_file():
        return root if root.suffix.lower() in LIST_SUFFIXES else None
    lists = list_files(root)
    return lists[0] if len(lists) == 1 else None


def _entries_in_dirs(root: Path, layout: str, dirs: Optional[tuple[Path, Path]], needs: str,
                     strategies: Sequence[Strategy]) -> list[PairEntry]:
    """Pairs matched between a (rainy, clean) subfolder pair; `needs` says what was expected."""
    if dirs is None:
        raise DatasetError(f"{root}: layout '{layout}' needs {needs}; "
                           f"found subfolders: {few(sorted(subfolders(root))) or 'none'}")
    rainy_dir, clean_dir = dirs
    return _match(list_images(rainy_dir), list_images(clean_dir), strategies, rainy_dir, clean_dir)


def _entries_folders(root: Path) -> list[PairEntry]:
    needs = "a subfolder pair among " + ", ".join(r + "/" + c for r, c in FOLDER_NAME_PAIRS)
    return _entries_in_dirs(root, "folders", _folders_pair(root), needs, (EXACT, WITHOUT_TOKENS, DDN_NAMES))


def _entries_rain200(root: Path) -> list[PairEntry]:
    return _entries_in_dirs(root, "rain200", _rain200_dirs(root),
                            "rain/X2/ (one X<n> subfolder) and norain/", (WITHOUT_TOKENS, EXACT))


def _entries_ddn(root: Path) -> list[PairEntry]:
    needs = ("subfolders rainy_image/ and ground_truth/ "
             f"(or {', '.join(DDN_RAINY_DIRS[1:] + DDN_CLEAN_DIRS[1:])})")
    return _entries_in_dirs(root, "ddn", _ddn_dirs(root), needs, (DDN_NAMES, EXACT))


def _entries_tagged(root: Path, layout: str, files: tuple[list[Path], list[Path]],
                    patterns: tuple[re.Pattern, re.Pattern], needs: str) -> list[PairEntry]:
    """Pairs of one folder whose rainy and clean files are told apart by a name tag."""
    rainy, clean = files
    if not rainy or not clean:
        raise DatasetError(f"{root}: layout '{layout}' needs {needs}; found {len(rainy)} rainy and "
                           f"{len(clean)} clean file(s) so named")
    ids: Strategy = (f"{layout} ids", lambda stem: patterns[0].match(stem).group(1).lower(),
                     lambda stem: patterns[1].match(stem).group(1).lower())
    return _match(rainy, clean, (ids,), rainy[0].parent, root, base=root)


def _entries_rain_norain(root: Path) -> list[PairEntry]:
    return _entries_tagged(root, "rain-norain", _rain_norain_files(root), (_RAIN_FILE, _NORAIN_FILE),
                           f"norain-<id> files and rain-<id> files beside them or in {PRENET_RAINY_DIR}/")


def _entries_in_gt(root: Path) -> list[PairEntry]:
    return _entries_tagged(root, "in-gt", in_gt_files(root), (_IN_FILE, _GT_FILE),
                           "files named <id>_in and <id>_GT")


def _entries_side_by_side(root: Path) -> list[PairEntry]:
    if root.is_file():
        files = [root] if is_image_file(root) else []
    else:
        files = list_images(root)
    if not files:
        raise DatasetError(f"{root}: no images for layout 'side-by-side'")
    base = root if root.is_dir() else root.parent
    return [PairEntry(n, p, None) for n, p in zip(unique_names(files, base), files)]


def _list_line(list_path: Path, number: int, raw: str) -> Optional[list[str]]:
    """The two paths of one pair-list line (None: blank or comment)."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    tokens = line.split("\t") if "\t" in line else re.split(r"[,\s]+", line)
    tokens = [t.strip() for t in tokens if t.strip()]
    if len(tokens) != 2:
        raise DatasetError(f"{list_path}:{number}: expected 'rainy_path clean_path', got {raw!r}")
    return tokens


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
        tokens = _list_line(list_path, number, raw)
        for token in tokens or ():
            path = Path(token)
            if not path.is_absolute() or not path.exists():
                path = base / token.lstrip("/\\")
            if not path.is_file():
                missing.append(f"{token} (line {number})")
            pairs.append(path)
    if not pairs:
        raise DatasetError(f"{list_path}: the pair list is empty")
    if missing:
        raise DatasetError(f"{list_path}: {len(missing)} listed file(s) do not exist "
                           f"(paths are relative to {base}): {few(missing)}")
    rainy, clean = pairs[0::2], pairs[1::2]
    return [PairEntry(n, r, c) for n, r, c in zip(unique_names(rainy, base), rainy, clean)]


_BUILDERS = {
    "folders": _entries_folders, "rain-norain": _entries_rain_norain, "in-gt": _entries_in_gt,
    "rain200": _entries_rain200, "ddn": _entries_ddn, "side-by-side": _entries_side_by_side,
    "pair-list": _entries_pair_list,
}


def pair_entries(root: Path, layout: str) -> list[PairEntry]:
    """The pairs of a data set folder (or pair list) in a known layout; DatasetError names the
    files that do not pair up."""
    return _BUILDERS[layout](root)


def layout_by_names(root: Path) -> Optional[str]:
    """The layout a folder's file and folder names say (every layout but side-by-side), or None."""
    if _ddn_dirs(root) is not None:
        return "ddn"
    if _rain200_dirs(root) is not None:
        return "rain200"
    if _folders_pair(root) is not None:
        return "folders"
    if any(_rain_norain_files(root)):
        return "rain-norain"
    if all(in_gt_files(root)):
        return "in-gt"
    return "pair-list" if _list_file(root) is not None else None
