"""What an online-update run (real_train.py) reports: its per-round record, the closing
report, the (b)/(c)/(d) table of the demonstration, and tables and per-round curves over seeds.

    python -m utils.online_report runs/a_s1 runs/a_s2 runs/a_s3 --label chain \
        runs/p_s1 runs/p_s2 runs/p_s3 --label paper --plot docs/online_curve.png

Each group of run folders (one per seed) ends with --label NAME. Printed per group: the
result round's PSNR/SSIM on the hidden ground truth, in-domain PSNR, BRISQUE and the change
of its outputs' mean brightness from round 0 as mean ± spread (max - min over seeds), and
the same for round 0 (the synthetic model, (b)).
The plot shows PSNR on the target, in-domain PSNR, BRISQUE and the outputs' mean brightness
per round for every seed of the first group (the input's values as dashed lines). Needs
matplotlib for --plot only.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from config import Config
    from utils.engine.run_dir import RunDir


def accepted_round(run_path: Path) -> int:
    """The round whose weights are the result (final.pth): the last one the guard accepted."""
    path = run_path / "accepted.json"
    if path.is_file():
        return int(json.loads(path.read_text())["accepted_round"])
    stats = round_stats(run_path)
    return max(stats) if stats else 0


def round_stats(run_path: Path) -> dict[int, dict]:
    """{round: its statistics}, from the run's rounds.jsonl (written once per refresh)."""
    path = run_path / "rounds.jsonl"
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out[entry["round"]] = entry  # the last entry of a round wins
    return out


ROW_NAMES = {"paper": "(d) online update (paper: B^k = f_k(O))",
             "direct": "(c) direct fine-tuning (fixed B^0)",
             "chain": "chain labels (B^k = f_k(B^{k-1}))",
             "transfer": "rain transfer (B_i^k + R_j^k -> B_i^k)"}


def report(cfg: Config, run: RunDir) -> None:
    """The closing report of one run: every round's scores and tone check, before/after, a
    warning when the tone drifted without ground truth to judge it, final.json and rounds.png."""
    stats = round_stats(run.path)
    last = accepted_round(run.path)
    after_rounds = f"after {last} round{'' if last == 1 else 's'}"
    print(f"\nonline update ({cfg.online.method}) finished: {cfg.online.rounds} rounds; result (round {last}) "
          f"{run.path / 'final.pth'}, per-round outputs and panels in {run.path / 'rounds'}")
    for k in sorted(stats):
        entry = stats[k]
        head = f"round {k}" + (" (result)" if k == last else "") + ":"
        parts = []
        if "psnr" in entry:
            parts.append(f"{entry['psnr']:.2f} dB / {entry['ssim']:.4f} on the hidden ground truth")
        if "in_domain_psnr" in entry:
            parts.append(f"in-domain {entry['in_domain_psnr']:.2f} dB")
        if "brisque" in entry:
            parts.append(f"BRISQUE {entry['brisque']:.2f} (input {stats[0].get('input_brisque', float('nan')):.2f}; lower is better)")
        if "brightness_change" in entry:
            parts.append(f"mean brightness {entry['brightness_change']:+.3f}, colour shift "
                         f"{entry['colour_shift']:.3f} vs round 0")
        print(f"  {head} " + ", ".join(parts))
    if 0 in stats and "psnr" in stats[0]:
        before, after = stats[0], stats[last]
        print(f"  before the online update (synthetic model, round 0): {before['psnr']:.2f} dB / {before['ssim']:.4f}")
        print(f"  {after_rounds} (final.pth): {after['psnr']:.2f} dB / {after['ssim']:.4f}")
        print(f"  change: {after['psnr'] - before['psnr']:+.2f} dB")
        run.log(f"before {before['psnr']:.3f} dB, after {after['psnr']:.3f} dB "
                f"({after['psnr'] - before['psnr']:+.3f} dB)")
    elif 0 in stats and "brisque" in stats[0] and "brisque" in stats[last]:
        # No ground truth (real photos): the no-reference score is the one number there is.
        before, after = stats[0]["brisque"], stats[last]["brisque"]
        print(f"  BRISQUE before the online update (synthetic model, round 0): {before:.2f}; "
              f"{after_rounds} (final.pth): {after:.2f} ({after - before:+.2f}; lower is better)")
        if after >= before:
            print("  the no-reference score did not improve: compare the panels (input | round 0 | round k) "
                  "and keep the synthetic model unless they show fewer streaks")
        run.log(f"BRISQUE before {before:.3f}, after {after:.3f} ({after - before:+.3f})")
    drift = tone_drift(stats.get(last, {}))
    if drift and "psnr" in stats.get(last, {}):  # the hidden ground truth judges the change
        print(f"  tone: {drift} (the PSNR above says whether that is closer to the truth)")
    elif drift:
        print(f"  {drift}: compare the panels; online.keep_tone=true holds the tone of round 0")
        run.log(drift, logging.WARNING)
    final = {"method": cfg.online.method, "rounds": cfg.online.rounds, "accepted_round": last,
             "final_weights": str(run.path / "final.pth"), "previews": str(run.path / "rounds"),
             "per_round": [stats[k] for k in sorted(stats)]}
    run.write_final(final)
    try:  # the per-round curve, when matplotlib is installed
        if plot([run.path], cfg.online.method, run.path / "rounds.png"):
            print(f"  per-round curve: {run.path / 'rounds.png'}")
    except ImportError:
        pass


# Past this mean change (about 5 of 255 grey levels) a darker, lighter or tinted result shows
# on flat areas such as sky and walls.
TONE_DRIFT_WARN = 0.02


def tone_drift(entry: dict) -> str:
    """A warning when a round's outputs moved in tone from round 0's by more than TONE_DRIFT_WARN
    on average ("" otherwise): self-training can drift darker, brighter or into a tint, and
    BRISQUE does not see it (on real photos it rewards contrast, not the right tone)."""
    change, shift = entry.get("brightness_change", 0.0), entry.get("colour_shift", 0.0)
    found = []
    if abs(change) > TONE_DRIFT_WARN:
        found.append(f"{abs(change):.3f} {'darker' if change < 0 else 'brighter'} than round 0's")
    if shift > TONE_DRIFT_WARN:
        found.append(f"tinted (one colour channel moved {shift:.3f} away from the others)")
    return f"the result's outputs are on average {' and '.join(found)}" if found else ""


def _row(name: str, entry: dict, prefix: str = "") -> dict:
    return {"row": name, "psnr": entry.get(prefix + "psnr"), "ssim": entry.get(prefix + "ssim"),
            "in_domain_psnr": entry.get("in_domain_psnr") if not prefix else None,
            "brisque": entry.get(prefix + "brisque"), "brightness": entry.get(prefix + "brightness"),
            "round": entry.get("round")}


def comparison(cfg: Config, runs: dict[str, Path]) -> dict:
    """The (b)/(c)/(d) table of the embedded demonstration, printed and written to
    runs/<name>/comparison.json."""
    main = round_stats(runs[cfg.online.method])
    rows = [_row("no deraining (rainy input)", main[0], "input_"),
            _row("(b) synthetic model alone (round 0)", main[0])]
    for method, path in runs.items():
        stats = round_stats(path)
        rows.append(_row(ROW_NAMES[method] + (" [default]" if method == cfg.online.method else ""),
                         stats[accepted_round(path)]) | {"method": method})
    b = rows[1]["psnr"]
    d = rows[2]["psnr"]
    gain = d - b
    others = {r["method"]: r["psnr"] for r in rows[3:]}
    print(f"\nOn the embedded {cfg.online.target} rain ({cfg.online.target_count} held-out test photos, "
          f"{cfg.online.target_size} px; ground truth used only here), rgb protocol:")
    print(f"  {'':58s} {'PSNR':>7s} {'SSIM':>7s} {'in-domain':>10s} {'BRISQUE':>8s} {'brightness':>10s}")
    for r in rows:
        cells = [f"{r['psnr']:7.2f}", f"{r['ssim']:7.4f}",
                 f"{r['in_domain_psnr']:10.2f}" if r["in_domain_psnr"] is not None else f"{'':10s}",
                 f"{r['brisque']:8.2f}" if r["brisque"] is not None else f"{'':8s}",
                 f"{r['brightness']:10.3f}" if r["brightness"] is not None else ""]
        print(f"  {r['row']:58s} " + " ".join(cells))
    verdict = (f"{cfg.online.method} vs (b): {gain:+.2f} dB; no deraining is {rows[0]['psnr'] - b:+.2f} dB "
               f"from (b)")
    for method, value in others.items():
        verdict += f"; vs {method}: {d - value:+.2f} dB"
    in_domain = rows[2]["in_domain_psnr"] - rows[1]["in_domain_psnr"]
    verdict += (f"; in-domain ({cfg.data.synthetic_preset} rain) {in_domain:+.2f} dB")
    print("verdict: " + verdict)
    result = {"target": cfg.online.target, "rows": rows, "gain_db": gain,
              "in_domain_change_db": in_domain, "verdict": verdict}
    (runs[cfg.online.method] / "comparison.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {runs[cfg.online.method] / 'comparison.json'}")
    return result


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
    records = [(run, round_stats(run), accepted_round(run)) for run in runs]  # each file read once
    present = [(k, t) for k, t in panels if any(k in e for _, stats, _ in records for e in stats.values())]
    if not present:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], present):
        for run, stats, a in records:
            ks = sorted(k for k in stats if key in stats[k])
            ax.plot(ks, [stats[k][key] for k in ks], marker="o", label=run.name)
            if key in stats.get(a, {}):
                ax.scatter([a], [stats[a][key]], s=120, facecolors="none", edgecolors="k")
        first = records[0][1].get(0, {})
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
