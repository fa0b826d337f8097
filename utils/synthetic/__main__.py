"""Write a synthetic rainy/clean data set: `python -m utils.synthetic --preset mixed --out DIR`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from utils.cli import run_main
from utils.io.images import write_image
from utils.synthetic.sets import make_rainy_set, preset_panel, write_rainy_set
from utils.synthetic.styles import HELD_OUT, PRESET_NAMES


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.synthetic",
        description="Write a synthetic rainy/clean data set (input/ + target/ PNG folders) made "
                    "from photos shipped inside installed packages, or from your own clean photos.")
    parser.add_argument("--preset", default="mixed", choices=PRESET_NAMES,
                        help=f"rain style (held out from training: {', '.join(HELD_OUT)})")
    parser.add_argument("--out", type=Path, help="output folder (gets input/ and target/)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"),
                        help="which source photos to use (disjoint between splits)")
    parser.add_argument("--photos", type=Path, default=None,
                        help="folder of your own clean photos (only read) instead of the built-in ones")
    parser.add_argument("--size", type=int, default=None,
                        help="image side in pixels (default 256; 160 per tile for --panel)")
    parser.add_argument("--count", type=int, default=100, help="number of pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--panel", type=Path, metavar="PNG",
                        help="instead of a data set, write a picture of a clean test image and "
                             "its rainy versions in every style (docs/rain_presets.png)")
    args = parser.parse_args(argv)
    if (args.size is not None and args.size < 1) or args.count < 1 or args.seed < 0:
        parser.error("--size and --count must be >= 1 and --seed >= 0")
    if args.panel is None and args.out is None:
        parser.error("give --out DIR (data set) or --panel PNG (preview picture)")
    if args.panel is not None:
        if args.panel.exists() and not args.overwrite:
            parser.error(f"{args.panel} already exists; pass --overwrite to replace it")
        write_image(args.panel, preset_panel(size=args.size or 160, seed=args.seed))
        print(f"wrote {args.panel}")
        return 0
    start = time.perf_counter()
    size = args.size or 256
    names, rainy, clean = make_rainy_set(args.split, args.preset, size, args.count, args.seed,
                                         args.photos)
    write_rainy_set(args.out, names, rainy, clean, overwrite=args.overwrite)
    print(f"wrote {len(names)} {args.preset} pairs ({args.split} photos, {size}px) to "
          f"{args.out}/input and {args.out}/target in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
