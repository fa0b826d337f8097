"""Paper-ready LaTeX tables (booktabs): methods x data sets, one table per metric protocol.

Each data set gets a PSNR and an SSIM column; per column the best method is bold and the
second best underlined, ranked on the printed (rounded) values so that ties share the mark.
Rows listed in `unranked` (the rainy input) are printed above a rule and never ranked.
Params (M) and GMACs columns appear when some row has them ("--" where unknown, e.g. a
result folder). An infinite PSNR (output identical to the ground truth) prints as
$\\infty$ and ranks first. Needs \\usepackage{booktabs} in the preamble.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
DIGITS = {"psnr": 2, "ssim": 4}


def escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(text))


def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if value == math.inf:
        return r"$\infty$"
    return f"{value:.{digits}f}"


def _marks(values: Sequence[Any], digits: int) -> list[str]:
    """'best', 'second' or '' per value, ranking rounded values (higher is better)."""
    rounded = [round(v, digits) if isinstance(v, (int, float)) and not math.isnan(v) else None
               for v in values]
    distinct = sorted({v for v in rounded if v is not None}, reverse=True)
    rank = {v: ("best" if i == 0 else "second" if i == 1 else "") for i, v in enumerate(distinct)}
    return [rank.get(v, "") if v is not None else "" for v in rounded]


def latex_table(rows: Sequence[Mapping[str, Any]], datasets: Sequence[str], methods: Sequence[str],
                protocol: str, unranked: Sequence[str] = (), caption: str = "",
                label: str = "") -> str:
    """One booktabs `table` for `protocol`; rows are dicts with "dataset", "method",
    "<protocol>/psnr", "<protocol>/ssim" and optionally "params" and "gmacs"."""
    cell = {(r["dataset"], r["method"]): r for r in rows}
    size = {}
    for r in rows:  # params/GMACs are per method, whatever the data set
        if r.get("params") is not None:
            size[r["method"]] = (r["params"], r.get("gmacs"))
    show_size = bool(size)
    lead = ["Method"] + (["Params (M)", "GMACs"] if show_size else [])
    ranked = [m for m in methods if m not in unranked]
    body_cells = {m: [escape(m)] + ([_number(size[m][0] / 1e6, 3) if m in size else "--",
                                     _number(size[m][1], 2) if m in size else "--"] if show_size else [])
                  for m in methods}
    for dataset in datasets:
        for metric in ("psnr", "ssim"):
            key, digits = f"{protocol}/{metric}", DIGITS[metric]
            values = {m: cell.get((dataset, m), {}).get(key) for m in methods}
            marks = dict(zip(ranked, _marks([values[m] for m in ranked], digits)))
            for m in methods:
                text = _number(values[m], digits)
                mark = marks.get(m, "")
                body_cells[m].append(rf"\textbf{{{text}}}" if mark == "best" else
                                     rf"\underline{{{text}}}" if mark == "second" else text)
    first = len(lead) + 1
    groups = " & ".join(rf"\multicolumn{{2}}{{c}}{{{escape(d)}}}" for d in datasets)
    rules = " ".join(rf"\cmidrule(lr){{{first + 2 * i}-{first + 2 * i + 1}}}" for i in range(len(datasets)))
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{caption}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [r"\begin{tabular}{l" + "r" * (len(lead) - 1) + "cc" * len(datasets) + "}", r"\toprule",
              " & ".join([""] * len(lead)) + " & " + groups + r" \\", rules,
              " & ".join(lead) + " & " + " & ".join(["PSNR", "SSIM"] * len(datasets)) + r" \\",
              r"\midrule"]
    for m in methods:
        if m in unranked:
            lines.append(" & ".join(body_cells[m]) + r" \\")
    if any(m in unranked for m in methods) and ranked:
        lines.append(r"\midrule")
    lines += [" & ".join(body_cells[m]) + r" \\" for m in ranked]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
