"""Other methods' derained images on disk ("result folders"), paired with a data set's ground truth.

A result folder holds one image per ground-truth image, named after it by any of the rules
the data set layouts use (`utils.io.name_matching.RESULT_NAME_RULES`, tried in order): exact
names, names without rain/norain tokens (`rain-001` ~ `norain-001`), names without a method
suffix (`001_derain`, `1_out`, `rain-001_result`, `norain-1_x2_SR`, ...) and the last number in
the name (`1` ~ `001`). Test scripts that save copies of the input and the ground truth next to
each result (`RESTORED_WITH_COPIES`) are read as they are: only the restored files count.
For anything else, `pattern` (eval.py --match) is a regular expression searched in each
result file's stem whose first group is the name used by those rules (files it does not
match pair with nothing). Every ground-truth image needs exactly one result and every result
file one ground-truth image; the error names the unpaired files on both sides.

With several data sets, a result folder holds one subfolder per data set, named as the data
set is in the table (what `eval.py --save-images` writes under images/<method>/); with one
data set the folder itself may hold the images.

Alignment (`align`): "error" (default) refuses any size difference. "crop" is for methods
that crop (multiples of 8 or 16) or pad: both images are cropped to their common size,
anchored at the **top-left** corner, which is what `x[:h - h % k, :w - w % k]`-style code
produces (for the usual 1-pixel difference, 481x321 -> 480x320, a centred crop would pick the
same pixels). Differences above MAX_CROP pixels per side stay an error even with "crop".
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from utils.io.images import ImageReadError, read_image
from utils.io.layouts import list_images
from utils.io.name_matching import RESULT_NAME_RULES, few, match_names

ALIGNS = ("error", "crop")
MAX_CROP = 32  # pixels per side a method may crop or pad under align="crop"
# (tag of the restored image, tags of the copies saved beside it) at the end of the file names:
# RCDNet and JORDER-E (EDSR code) write norain-1_x2_SR.png with _LR (rainy) and _HR (ground
# truth); DRSformer's evaluation folder holds 1_DR.png with 1_GT.png.
RESTORED_WITH_COPIES = (("_sr", ("_lr", "_hr")), ("_dr", ("_gt",)))


class ResultsError(ValueError):
    """A result folder is missing, does not pair with the ground truth, or holds mis-sized images."""


def result_rules(pattern: Optional[str] = None) -> tuple:
    """The name rules for result files; with `pattern`, its first group replaces the stem."""
    if not pattern:
        return RESULT_NAME_RULES
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ResultsError(f"--match {pattern!r}: not a regular expression ({exc})") from None
    if regex.groups < 1:
        raise ResultsError(f"--match {pattern!r}: needs a group, e.g. '_(\\d+)_', whose text is the key")

    def keyed(rule):
        def key(stem):
            found = regex.search(stem)
            return rule(found.group(1)) if found and found.group(1) else None
        return key

    return tuple((f"{label} after --match", left, keyed(right))
                 for label, left, right in RESULT_NAME_RULES)


def folder_for_set(root: str | Path, set_name: str, set_count: int) -> Path:
    """`root/<set_name>` when it exists; `root` itself when it is the only data set."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root}: no such folder")
    if (root / set_name).is_dir():
        return root / set_name
    if set_count == 1:
        return root
    raise ResultsError(f"{root}: no subfolder {set_name}/; with several data sets a result folder "
                       "holds one subfolder per data set, named as in the table")


def pair_results(folder: str | Path, names: Sequence[str], pattern: Optional[str] = None) -> list[Path]:
    """The result file for each ground-truth name, in order; ResultsError names what is unpaired."""
    folder = Path(folder)
    files = restored_only(list_images(folder))
    if not files:
        raise ResultsError(f"{folder}: no images")
    rules = result_rules(pattern)
    found = match_names(list(names), [p.stem for p in files], rules, one_to_one=True)
    if found is None:
        raise ResultsError(f"{folder}: several result files share a name under every rule (e.g. "
                           "1.png and 1.jpg); pass --match REGEX or remove the extra files")
    if found.complete:
        return [files[j] for j in found.index]
    parts = []
    if found.lonely_left:
        parts.append(f"{len(found.lonely_left)} ground-truth image(s) without a result: "
                     f"{few([names[i] for i in found.lonely_left])}")
    if found.lonely_right:
        parts.append(f"{len(found.lonely_right)} result file(s) without ground truth: "
                     f"{few([files[j].name for j in found.lonely_right])}")
    raise ResultsError(f"{folder}: unmatched files ({'; '.join(parts)}; best rule: {found.rule}; "
                       "pass --match REGEX whose first group is the ground truth's name or number)")


def restored_only(files: list[Path]) -> list[Path]:
    """The restored images of a folder that also holds copies of the inputs and ground truth
    (`RESTORED_WITH_COPIES`); other folders unchanged."""
    for restored, copies in RESTORED_WITH_COPIES:
        tags = [next((t for t in (restored, *copies) if p.stem.lower().endswith(t)), None) for p in files]
        if None not in tags and restored in tags and len(set(tags)) > 1:
            return [p for p, tag in zip(files, tags) if tag == restored]
    return files


def align(result: np.ndarray, truth: np.ndarray, mode: str = "error") -> tuple[np.ndarray, np.ndarray]:
    """(result, truth) of equal size: unchanged, or cropped to the common top-left region."""
    if result.shape == truth.shape:
        return result, truth
    if mode == "crop" and size_problem(result.shape, truth.shape, mode) is None:
        height, width = min(result.shape[0], truth.shape[0]), min(result.shape[1], truth.shape[1])
        return result[:height, :width], truth[:height, :width]
    raise ResultsError(size_problem(result.shape, truth.shape, mode) or "size mismatch")


def size_problem(result_shape: Sequence[int], truth_shape: Sequence[int], mode: str) -> Optional[str]:
    """None when `align` accepts the sizes, else 'WxH vs WxH' (width x height)."""
    if tuple(result_shape) == tuple(truth_shape):
        return None
    if mode == "crop" and max(abs(result_shape[0] - truth_shape[0]),
                              abs(result_shape[1] - truth_shape[1])) <= MAX_CROP:
        return None
    return f"{result_shape[1]}x{result_shape[0]} vs {truth_shape[1]}x{truth_shape[0]}"


def check_sizes(files: Sequence[Path], truth_shapes: Sequence[tuple], mode: str, label: str) -> None:
    """Read every result file once and report all unreadable and mis-sized ones together."""
    bad, unreadable = [], []
    for path, shape in zip(files, truth_shapes):
        try:
            problem = size_problem(read_image(path).shape, shape, mode)
        except ImageReadError:
            unreadable.append(path.name)
            continue
        if problem is not None:
            bad.append(f"{path.name} ({problem})")
    parts = []
    if unreadable:
        parts.append(f"{len(unreadable)} unreadable: {few(unreadable)}")
    if bad:
        hint = (f"--align crop accepts differences up to {MAX_CROP} px" if mode == "crop"
                else "pass --align crop for methods that crop or pad")
        parts.append(f"{len(bad)} mis-sized (result vs ground truth, width x height): {few(bad)}; {hint}")
    if parts:
        raise ResultsError(f"{label}: " + "; ".join(parts))
