"""Export a training run as the shipped model: its EMA (else plain) weights in float16 into
weights/standard.pth, and the record weights/standard.json (sha256, training command, scores).

    python scripts/export_weights.py runs/standard_p160/latest.pth
    python scripts/export_weights.py runs/w32/latest.pth --out /tmp/w32.pth
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from utils.cli import run_main  # noqa: E402
from utils.io import shipped  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/export_weights.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (e.g. runs/standard_p160/latest.pth)")
    parser.add_argument("--out", type=Path, default=shipped.SHIPPED, help=f"default: {shipped.SHIPPED}")
    parser.add_argument("--position-extent", type=int, default=None, metavar="N",
                        help="store model.position_extent=N (default: the run's own)")
    args = parser.parse_args(argv)
    record = shipped.export(args.checkpoint, args.out, position_extent=args.position_extent)
    print(f"wrote {args.out} ({record['bytes'] / 1e6:.2f} MB, sha256 {record['sha256'][:12]}...) "
          f"and {shipped.record_path(args.out).name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
