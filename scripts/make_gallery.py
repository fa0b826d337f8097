"""Make the README gallery: real rainy photos and held-out synthetic pairs, derained.

    python scripts/make_gallery.py --real-dir PATH/TO/real_rain_photos        # shipped weights

Writes docs/gallery_real.jpg (rainy | derained crops of up to 3 real photos, derained at
full resolution as show.py does) and docs/gallery_synthetic.jpg (rainy | derained | clean
on the embedded test split of the held-out styles, with PSNR).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from dataset import synthetic_pairs  # noqa: E402
from utils.cli import open_model, resolve_checkpoint, run_main  # noqa: E402
from utils.io import shipped  # noqa: E402
from utils.inference import derain  # noqa: E402
from utils.io.images import read_image, to_image, to_tensor, write_image  # noqa: E402
from utils.io.panels import side_by_side  # noqa: E402
from utils.metrics.protocols import psnr  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
REAL = ("ddn_real_1.jpg", "didmdn_real_6.jpg", "ddn_real_3.jpg")
STYLES = ("mixed", "gusty", "heavy")


def _derain(model, image: np.ndarray) -> np.ndarray:
    out = derain(model, to_tensor(image)[None], tile=256, overlap=32)
    return np.clip(to_image(out[0]), 0.0, 1.0)


def _centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top = max(0, (image.shape[0] - height) // 2)
    left = max(0, (image.shape[1] - width) // 2)
    return image[top:top + height, left:left + width]


def _stack(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    return np.concatenate(padded)[:-gap]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped weights/standard.pth")
    parser.add_argument("--real-dir", type=Path, required=True, help="folder holding the real photos")
    parser.add_argument("--crop", default="300x400", help="HxW of each real-photo crop")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, cfg = open_model(resolve_checkpoint(args.checkpoint or str(shipped.SHIPPED)), "cpu")
    height, width = (int(v) for v in args.crop.split("x"))
    rows = []
    for name in REAL:
        rainy = read_image(args.real_dir / name)
        clean = _derain(model, rainy)
        rows.append(side_by_side([_centre_crop(rainy, height, width), _centre_crop(clean, height, width)],
                                 labels=[f"{name} (real rain)", "derained"]))
    write_image(DOCS / "gallery_real.jpg", _stack(rows))
    rows = []
    for index, style in enumerate(STYLES):
        pairs = synthetic_pairs("test", style, cfg.data.synthetic_size, index + 1, cfg.data.synthetic_seed)
        rainy, clean = pairs.rainy_images[index], pairs.clean_images[index]
        out = _derain(model, rainy)
        rows.append(side_by_side([rainy, out, clean], labels=[
            f"{style} rain ({psnr(rainy, clean):.1f} dB)", f"derained ({psnr(out, clean):.1f} dB)", "clean"]))
    write_image(DOCS / "gallery_synthetic.jpg", _stack(rows))
    print(f"wrote {DOCS / 'gallery_real.jpg'} and {DOCS / 'gallery_synthetic.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
