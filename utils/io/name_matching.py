"""Pairing files by name: rainy with clean images, and a method's results with ground truth.

A rule (`Strategy`) turns each name on either side into a key; names pair when their keys
are equal. `match_names` tries rules in order and keeps the first that pairs everything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

ERRORS_SHOWN = 5  # how many offending files an error message lists


def natural_key(text: str) -> list:
    """Sort 'rain-2' before 'rain-10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def few(items: Sequence, limit: int = ERRORS_SHOWN) -> str:
    """'a, b, c, ... (12 in all)': the first few items of a list, for error messages."""
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


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


_TOKEN_HEAD = re.compile(r"^(norain|rainy|rain|clean|gt|target|input)[-_ ]*")
_TOKEN_TAIL = re.compile(r"([-_ ]*(norain|rainy|rain|clean|gt|target|input))?(x\d)?$")
# What deraining methods append to the names of their outputs (PReNet_derain, *_out, ...);
# the short EDSR-code and DRSformer tags (norain-1_x2_SR, 1_DR) only after a separator.
_METHOD_SUFFIX = re.compile(r"(?:[-_ ]*(?:derained|derain|output|out|results|result|res|pred|"
                            r"prediction|restored|rec|fake_b)|[-_ ](?:x\d+[-_ ])?(?:sr|dr))$")


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


# (label, left name -> key, right name -> key); a key of None matches nothing.
Strategy = tuple[str, Callable[[str], Optional[str]], Callable[[str], Optional[str]]]
EXACT: Strategy = ("exact names", _same, _same)
WITHOUT_TOKENS: Strategy = ("names without rain/norain tokens", _normalised, _normalised)
DDN_NAMES: Strategy = ("DDN names i_j -> i", _ddn_prefix, _same)
_SUFFIX: Strategy = ("names without method suffixes (_derain, _out, _x2_SR, ...)",
                     _without_method_suffix, _without_method_suffix)
_NUMBER: Strategy = ("the last number in the name (1 ~ 001)", _last_number, _last_number)
# Ground-truth names (left) to a method's result files (right), e.g. rain-001 ~ norain-001.png
# ~ 001_derain.png ~ 1_out.png.
RESULT_NAME_RULES: tuple[Strategy, ...] = (EXACT, WITHOUT_TOKENS, _SUFFIX, _NUMBER)


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
