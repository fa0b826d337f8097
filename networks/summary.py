"""Human-readable parameter table of an HCN: sub-networks, heads and glue, total."""
from __future__ import annotations

import torch.nn as nn

from .hcn import HCN, SUBNETWORKS

_GROUPS = (
    ("feature heads (6)", ("fe_",)),
    ("image heads (5)", ("ic_",)),
    ("glue convs (up2, up3, fusion11/12/21)", ("up2", "up3", "fusion")),
)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_summary(model: HCN) -> str:
    rows: list[tuple[str, int]] = []
    for name in SUBNETWORKS:
        sub = getattr(model, name)
        rows.append((name, _count(sub)))
    first = getattr(model, SUBNETWORKS[0])
    rows.append(("  per module: dense groups", _count(first.encoder) + _count(first.decoder)))
    rows.append(("  per module: BiSCSM", _count(first.similarity)))
    fusions = _count(first.fuse_half) + _count(first.fuse_full)
    rows.append(("  per module: decoder fusions", fusions))
    for label, prefixes in _GROUPS:
        total = sum(_count(child) for child_name, child in model.named_children()
                    if child_name.startswith(prefixes))
        rows.append((label, total))
    rows.append(("total", _count(model)))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'part':<{width}}  {'params':>11}", "-" * (width + 13)]
    lines += [f"{label:<{width}}  {count:>11,}" for label, count in rows]
    if getattr(model, "legacy", False):
        lines.append("(legacy_code_quirks: N13 and some fusions/MINE modules are unused)")
    return "\n".join(lines)
