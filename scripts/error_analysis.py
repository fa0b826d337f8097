"""Where a model's error on synthetic rain is: tone or structure, and whether the tone is visible.

    python scripts/error_analysis.py            # the shipped weights, about 10 minutes on 2 threads
    python scripts/error_analysis.py --checkpoint runs/demo/best.pth --fit-count 100 --size 96

Prints, per image of the `mixed` test split and then per set, the PSNR (rgb) of the rainy
input and of the output, and of two oracles that use the ground truth:
- tone: the output minus its mean error per channel (what a perfect haze and brightness
  estimate would reach);
- low: the output minus its error smoothed by a Gaussian of sigma 8 px (all slow errors).

Then it asks whether the tone error can be seen in the images: a ridge regression from
global statistics of the rainy input and of the output (per channel mean, std and
percentiles; dark-channel percentiles; mean gradient) to the output's per-channel mean
error, fit on `--fit-count` images of the training photos with fresh `mixed` rain, and
applied as a correction to a second draw on the training photos, to the val photos and to
every test style. The numbers are in docs/shipped_model.md (where the remaining error is).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from utils import threads  # noqa: E402
from utils.cli import add_threads_arg, open_model, resolve_checkpoint, run_main  # noqa: E402
from utils.inference import derain  # noqa: E402
from utils.io.images import to_image, to_tensor  # noqa: E402
from utils.metrics.protocols import psnr  # noqa: E402  (rgb: clipped, the protocol of the tables)
from utils.synthetic.sets import make_rainy_set  # noqa: E402

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
TEST_STYLES = ("mixed", "gusty", "light", "heavy", "shifted")


def global_stats(image: np.ndarray) -> np.ndarray:
    """Statistics of a whole HWC image that a haze or brightness estimate could use."""
    channels = image.reshape(-1, 3)
    dark = cv2.erode(image.min(axis=2), np.ones((15, 15), np.uint8))  # dark channel prior
    gray = image.mean(axis=2)
    gradient = np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()
    return np.concatenate([channels.mean(0), channels.std(0),
                           np.percentile(channels, PERCENTILES, axis=0).ravel(),
                           [dark.mean()], np.percentile(dark, (5, 50, 95)), [gradient]])


def run_set(model, split: str, style: str, size: int, count: int, seed: int, label: str) -> dict:
    """Outputs of `model` on a synthetic set: features, per-channel mean errors, PSNRs."""
    _, rainy, clean = make_rainy_set(split, style, size, count, seed)
    rows = {"features": [], "offset": [], "input": [], "output": [], "tone": [], "low": [],
            "outputs": [], "clean": clean}
    for r, c in tqdm(list(zip(rainy, clean)), desc=label, leave=False):
        with torch.no_grad():
            out = np.clip(to_image(derain(model, to_tensor(r)[None])[0]), 0.0, 1.0)
        error = out - c
        rows["features"].append(np.concatenate([global_stats(r), global_stats(out)]))
        rows["offset"].append(error.mean(axis=(0, 1)))
        rows["input"].append(psnr(r, c))
        rows["output"].append(psnr(out, c))
        rows["tone"].append(psnr(out - rows["offset"][-1], c))
        rows["low"].append(psnr(out - cv2.GaussianBlur(error, (0, 0), 8), c))
        rows["outputs"].append(out)
    rows["features"], rows["offset"] = np.array(rows["features"]), np.array(rows["offset"])
    return rows


class Ridge:
    """Ridge regression on standardised features (closed form)."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, alpha: float):
        self.mean, self.std = features.mean(0), features.std(0) + 1e-8
        x = (features - self.mean) / self.std
        self.bias = targets.mean(0)
        self.weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (targets - self.bias))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std @ self.weights + self.bias


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="default: the shipped weights")
    parser.add_argument("--size", type=int, default=256, help="image side (the test split: 256)")
    parser.add_argument("--fit-count", type=int, default=400,
                        help="training-photo images the ridge is fit on (the second draw has half)")
    parser.add_argument("--alphas", default="1,3,10,30,100",
                        help="ridge penalties tried; the best on the second training-photo draw is used")
    add_threads_arg(parser)
    args = parser.parse_args(argv)
    threads.apply_threads(args.threads)
    model, _ = open_model(resolve_checkpoint(args.checkpoint), torch.device("cpu"))

    test = run_set(model, "test", "mixed", args.size, 24, 0, "test mixed")
    print(f"{'image':>5} {'input':>6} {'output':>6} {'tone':>6} {'low':>6}  offset (r, g, b)")
    for i in range(24):
        offset = ", ".join(f"{v:+.3f}" for v in test["offset"][i])
        print(f"{i:5d} {test['input'][i]:6.2f} {test['output'][i]:6.2f} {test['tone'][i]:6.2f} "
              f"{test['low'][i]:6.2f}  ({offset})")

    fit = run_set(model, "train", "mixed", args.size, args.fit_count, 7, "fit (train photos)")
    second = run_set(model, "train", "mixed", args.size, args.fit_count // 2, 8, "train photos")
    # The penalty is chosen on the training photos alone (new rain), never on val or test.
    scores = {}
    for alpha in (float(a) for a in args.alphas.split(",")):
        ridge = Ridge(fit["features"], fit["offset"], alpha)
        predicted = ridge(second["features"])
        scores[alpha] = np.mean([psnr(o - p, c) for o, p, c in
                                 zip(second["outputs"], predicted, second["clean"])])
    alpha = max(scores, key=scores.get)
    print("\nridge penalty on the second training-photo draw: "
          + ", ".join(f"{a:g}: {v:.2f} dB" for a, v in scores.items()) + f"; using {alpha:g}")
    ridge = Ridge(fit["features"], fit["offset"], alpha)
    sets = {"train photos, new rain": second,
            "val mixed": run_set(model, "val", "mixed", args.size, 16, 0, "val")}
    sets["test mixed"] = test
    for style in TEST_STYLES[1:]:
        sets[f"test {style}"] = run_set(model, "test", style, args.size, 24, 0, f"test {style}")
    print(f"\nmean PSNR (rgb) per set; 'ridge': the output minus the ridge's predicted offset "
          f"(fit on {args.fit_count} training-photo images)")
    print(f"{'set':<24} {'input':>6} {'output':>6} {'tone':>6} {'low':>6} {'ridge':>6}  R^2")
    for name, rows in sets.items():
        predicted = ridge(rows["features"])
        corrected = [psnr(o - p, c) for o, p, c in zip(rows["outputs"], predicted, rows["clean"])]
        residual = np.sum((rows["offset"] - predicted) ** 2)
        r2 = 1.0 - residual / np.sum((rows["offset"] - rows["offset"].mean(0)) ** 2)
        print(f"{name:<24} {np.mean(rows['input']):6.2f} {np.mean(rows['output']):6.2f} "
              f"{np.mean(rows['tone']):6.2f} {np.mean(rows['low']):6.2f} {np.mean(corrected):6.2f}  {r2:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
