"""Tables and per-round curves of online-update runs (real_train.py), over seeds.

    python -m utils.online_report runs/a_s1 runs/a_s2 runs/a_s3 --label chain \
        runs/p_s1 runs/p_s2 runs/p_s3 --label paper --plot docs/online_curve.png

Each group of run folders (one per seed) ends with --label NAME. Printed per group: the
result round's PSNR/SSIM on the hidden ground truth, in-domain PSNR, BRISQUE and the change
of its outputs' mean brightness from round 0 as mean ± spread (max - min over seeds), and
the same for round 0 (the synthetic model, (b)).
The plot shows PSNR on the target, in-domain PSNR, BRISQUE and the outputs' mean brightness
per round for every seed of the first group (the input's values as dashed lines). Needs matplotlib for --plot only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_train import accepted_round, round_stats  # noqa: E402

KEYS = ("psnr", "ssim", "in_domain_psnr", "brisque", "brightness_change")


def summarise(runs: list[Path]) -> dict:
    """{'b': {key: (mean, spread)}, 'final': {...}, 'rounds': [accepted round per seed]}."""
    rows = {"b": {}, "final": {}, "input": {}}
    finals, zeros, inputs, accepted = [], [], [], []
    for run in runs:
        stats = round_stats(run)
        a = accepted_round(run)
        accepted.append(a)
        finals.append(stats[a])
        zeros.append(stats[0])
        inputs.append({k: stats[0].get("input_" + k) for k in KEYS})
    for name, entries in (("b", zeros), ("final", finals), ("input", inputs)):
        for key in KEYS:
            values = [e.get(key) for e in entries if e.get(key) is not None]
            if values:
                rows[name][key] = (float(np.mean(values)), float(np.max(values) - np.min(values)))
    gains = [f["psnr"] - z["psnr"] for f, z in zip(finals, zeros) if "psnr" in f]
    if gains:
        rows["gain"] = (float(np.mean(gains)), float(np.max(gains) - np.min(gains)))
    rows["rounds"] = accepted
    return rows


def _cell(row: dict, key: str, digits: int = 2) -> str:
    if key not in row:
        return "-"
    mean, spread = row[key]
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def plot(runs: list[Path], label: str, out: Path) -> bool:
    """Write the per-round curves of `runs` to `out`; False (nothing written) when the runs
    recorded none of the plotted quantities."""
    panels = [("psnr", "PSNR on the target (dB)"), ("in_domain_psnr", "in-domain PSNR (dB)"),
              ("brisque", "BRISQUE (lower is better)"), ("brightness", "mean brightness of the outputs")]
    present = [(k, t) for k, t in panels if any(k in e for r in runs for e in round_stats(r).values())]
    if not present:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], present):
        for run in runs:
            stats = round_stats(run)
            ks = sorted(k for k in stats if key in stats[k])
            ax.plot(ks, [stats[k][key] for k in ks], marker="o", label=run.name)
            a = accepted_round(run)
            if key in stats.get(a, {}):
                ax.scatter([a], [stats[a][key]], s=120, facecolors="none", edgecolors="k")
        first = round_stats(runs[0])[0]
        if "input_" + key in first:
            ax.axhline(first["input_" + key], ls="--", c="gray", label="rainy input")
        ax.set_xlabel("round (0 = synthetic model)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"online update per round: {label} (circle: the round kept)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="+", help="run folders, each group followed by --label NAME")
    parser.add_argument("--plot", type=Path, default=None, help="write the first group's per-round curve here")
    argv = list(sys.argv[1:] if argv is None else argv)
    groups, current, plot_path = [], [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--label":
            groups.append((argv[i + 1], current))
            current, i = [], i + 2
        elif argv[i] == "--plot":
            plot_path, i = Path(argv[i + 1]), i + 2
        else:
            current.append(Path(argv[i]))
            i += 1
    if current:
        groups.append((current[0].name, current))
    if not groups:
        parser.error("no run folders")
    print("| row | seeds | PSNR | SSIM | gain vs (b) | in-domain PSNR | BRISQUE | brightness vs (b) | round kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = summarise(groups[0][1])
    for name, key in (("no deraining", "input"), ("(b) synthetic model", "b")):
        row = first[key]
        print(f"| {name} | {len(groups[0][1])} | {_cell(row, 'psnr')} | {_cell(row, 'ssim', 4)} | | "
              f"{_cell(row, 'in_domain_psnr')} | {_cell(row, 'brisque')} | | |")
    for label, runs in groups:
        s = summarise(runs)
        gain = f"{s['gain'][0]:+.2f} ± {s['gain'][1]:.2f}" if "gain" in s else "-"
        print(f"| {label} | {len(runs)} | {_cell(s['final'], 'psnr')} | {_cell(s['final'], 'ssim', 4)} | {gain} | "
              f"{_cell(s['final'], 'in_domain_psnr')} | {_cell(s['final'], 'brisque')} | "
              f"{_cell(s['final'], 'brightness_change', 3)} | {s['rounds']} |")
    if plot_path:
        if plot(groups[0][1], groups[0][0], plot_path):
            print(f"written {plot_path}")
        else:
            print(f"nothing to plot: the runs recorded no per-round scores; {plot_path} not written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
