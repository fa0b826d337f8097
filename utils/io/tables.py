"""Result tables as Markdown and CSV (one formatting for every report the scripts write)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["format_value", "markdown_table", "write_csv"]


def format_value(value: Any, digits: int = 4) -> str:
    """Floats with `digits` decimals, None/NaN as an em dash, everything else via str."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        if value == float("inf"):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                   headers: Mapping[str, str] | None = None,
                   digits: Mapping[str, int] | None = None) -> str:
    """A GitHub Markdown table; `headers` renames columns, `digits` sets decimals per column."""
    headers = headers or {}
    digits = digits or {}
    head = [headers.get(c, c) for c in columns]
    body = [[format_value(row.get(c), digits.get(c, 4)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]
    align = ["---:" if num else ":---" for num in numeric]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Plain CSV with full float precision (for later analysis); missing values are empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
