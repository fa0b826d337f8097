"""Derain your own photos and clips: a file, a folder or a glob, any size, any format OpenCV reads.

    python show.py photo.jpg                              # -> runs/show/photo.png
    python show.py "shots/*.jpg" --out runs/show/shots --panels --contact-sheet
    python show.py test/rainy --clean test/clean --panels  # rainy | derained | clean
    python show.py big.tif --tile 512 --overlap 48 --ensemble
    python show.py clip.mp4 --steady --side-by-side        # -> runs/show/clip.mp4, panels/clip.mp4
    python show.py clip.mp4 --frames 0:48 --every 2        # try a piece first

Outputs are PNGs named after the inputs (`<stem>.png`; `<stem>_<ext>.png` when two inputs
share a stem). Images above one megapixel are derained in overlapping 512 px tiles by
default (--tile auto), so memory stays bounded for any photo size. The script never
writes into an input folder and never replaces an existing file unless --overwrite is
given. Unreadable images are skipped with a warning; the exit status is then 1. A usage
error (no input, bad flag, missing checkpoint) exits with 2 before anything is written.

Clips (any container and codec OpenCV's FFmpeg reads: .mp4, .avi, .mkv, .mov, ...) are
derained frame by frame into `<stem>.mp4` (mp4v; MJPG .avi where mp4v cannot be written;
--video-format mkv: lossless) at the input's size and frame rate, streamed: memory does not
grow with the clip's length. Audio is not carried over. --steady averages each frame with
the previous ones along the motion, which removes most of the flicker (docs/video.md). A
clip that ends early or has a broken frame is reported (exit status 1) and the frames
derained so far are kept.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

from utils import logs, threads
from utils.cli import (UsageError, add_inference_args, open_model, pick_device, pick_precision,
                       resolve_checkpoint, resolve_tile, run_main, sync)
from utils.clips import FrameDerainer, FrameRange, derain_clip
from utils.inference import derain
from utils.io.files import check_outside
from utils.io.images import (ImageReadError, is_image_file, read_image, set_max_pixels, to_image,
                             to_tensor, write_image)
from utils.io.panels import contact_sheet, fit_within, side_by_side
from utils.progress import progress
from utils.io.video import VideoReader, VideoReadError, is_video_file
from utils.steady import DEFAULT_STRENGTH

PANEL_DIR = "panels"
SHEET_NAME = "contact_sheet.png"
# One JSON line per run (inputs, outputs, checkpoint, tiling, model config): appended, so
# the record of earlier runs into the same folder is never overwritten.
RUN_LOG_NAME = "show_runs.jsonl"
log = logs.get("show")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    add_inference_args(parser, default_tile="auto", default_precision="auto")
    parser.add_argument("--out", default="runs/show", help="output folder (default: runs/show)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--panels", action="store_true",
                        help=f"also write <out>/{PANEL_DIR}/<stem>.png: rainy | derained (| clean)")
    parser.add_argument("--clean", default=None, metavar="DIR",
                        help="folder of ground-truth images with the inputs' stems, added to the panels")
    parser.add_argument("--contact-sheet", action="store_true",
                        help=f"also write <out>/{SHEET_NAME}: a grid of rainy | derained thumbnails")
    parser.add_argument("--columns", type=int, default=3, help="contact sheet columns (default 3)")
    parser.add_argument("--thumb", type=int, default=480, help="contact sheet cell size in pixels (default 480)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    clips = parser.add_argument_group("clips")
    clips.add_argument("--frames", default=None, metavar="A:B",
                       help="derain frames A (from 0) to B (excluded) only; A: or :B leave a side open")
    clips.add_argument("--every", type=int, default=1, metavar="N",
                       help="derain every N-th frame (the output plays at 1/N of the frame rate, "
                            "same duration; default 1)")
    clips.add_argument("--steady", type=float, nargs="?", const=DEFAULT_STRENGTH, default=0.0,
                       metavar="STRENGTH",
                       help=f"steady the output: average each frame with the previous ones along "
                            f"the motion, with this weight in [0, 1) (default {DEFAULT_STRENGTH} "
                            "when given without a value; docs/video.md)")
    clips.add_argument("--side-by-side", action="store_true",
                       help=f"also write <out>/{PANEL_DIR}/<stem>.mp4 (or --video-format): input | derained")
    clips.add_argument("--video-format", default="mp4", choices=("mp4", "mkv", "avi"),
                       help="mp4: mp4v, plays almost everywhere (default); mkv: FFV1, lossless "
                            "and about 10x larger; avi: MJPG")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- inputs and outputs
def expand_inputs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their image files, sorted) and globs; plus patterns that matched nothing."""
    files, unmatched, seen = [], [], set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_input_file(p))
        elif path.is_file():
            found = [path]  # an explicit file is tried whatever its suffix
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                           if Path(p).is_file() and is_input_file(p))
        if not found:
            unmatched.append(pattern)
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, unmatched


def is_input_file(path: Path) -> bool:
    return is_image_file(path) or is_video_file(path)


def output_names(files: list[Path], reserved: tuple[str, ...] = (), suffix: str = ".png") -> list[str]:
    """`<stem><suffix>`, made unique by the input's suffix, then the parent folder, when stems
    collide; an input whose name is `reserved` (the contact sheet's) gets `<stem>_<ext><suffix>`."""
    def unique(names):
        return len(set(names)) == len(names) and not set(names) & set(reserved)

    names = [f"{p.stem}{suffix}" for p in files]
    if unique(names):
        return names
    stems = [p.stem for p in files]
    names = [f"{p.stem}_{p.suffix.lstrip('.').lower()}{suffix}"
             if stems.count(p.stem) > 1 or n in reserved else n for p, n in zip(files, names)]
    if unique(names):
        return names
    names = [f"{p.parent.name}_{n}" if names.count(n) > 1 or n in reserved else n
             for p, n in zip(files, names)]
    if not unique(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"several inputs would be written to the same file(s) {dup[:3]}; "
                         f"run them separately with different --out folders")
    return names


def check_output_folder(out: Path, files: list[Path], targets: list[Path]) -> None:
    """Refuse an output folder inside an input folder, and any output landing in one."""
    out = out.resolve()
    folders = {p.resolve().parent for p in files}
    for folder in sorted(folders):
        check_outside(out, folder)
    for target in targets:
        if target.resolve().parent in folders:
            raise ValueError(f"{target} would be written into an input folder; choose another --out")


def find_clean(clean_dir: Path, stem: str) -> Path | None:
    matches = sorted(p for p in clean_dir.glob(glob.escape(stem) + ".*") if is_image_file(p))
    return matches[0] if matches else None


def planned_outputs(out: Path, names: list[str], args, clip_names: list[str] = ()) -> list[Path]:
    targets = [out / n for n in names]
    if args.panels:
        targets += [out / PANEL_DIR / n for n in names]
    if args.contact_sheet and names:
        targets.append(out / SHEET_NAME)
    targets += [out / n for n in clip_names]
    if args.side_by_side:
        targets += [out / PANEL_DIR / n for n in clip_names]
    return targets


# ----------------------------------------------------------------------------- main
def run(args) -> int:
    """Returns the exit status: 0 when every image was derained, 1 when some failed; raises a
    UserError (exit 2) for a usage error, before anything is written."""
    files, unmatched = expand_inputs(args.inputs)
    if not files:
        raise UsageError(f"no input images: {', '.join(repr(p) for p in unmatched)} matched no "
                         "image or video file (give files, folders or glob patterns)")
    for pattern in unmatched:
        log.warning(f"{pattern!r} matched no image or video file")
    clips = [p for p in files if is_video_file(p)]
    files = [p for p in files if not is_video_file(p)]
    frames = check_clips(clips, args)
    out = Path(args.out)
    clean_dir = Path(args.clean) if args.clean else None
    if clean_dir is not None and not clean_dir.is_dir():
        raise UsageError(f"--clean {clean_dir}: no such folder")
    fixed_tile = resolve_tile(args.tile, 1, 1)  # validates the flag before any work
    if fixed_tile and not 0 <= args.overlap < fixed_tile:
        raise UsageError(f"--overlap must be in [0, --tile), got {args.overlap} with tile {fixed_tile}")
    if args.overlap < 0 or args.tile_batch < 1:
        raise UsageError("--overlap must be >= 0 and --tile-batch >= 1")
    try:
        set_max_pixels(args.max_pixels)
        names = output_names(files, reserved=(SHEET_NAME,) if args.contact_sheet else ())
        clip_names = output_names(clips, suffix=f".{args.video_format}")
        targets = planned_outputs(out, names, args, clip_names)
        check_output_folder(out, files + clips, targets)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise UsageError(f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; "
                             f"pass --overwrite to replace them or choose another --out")

    device = pick_device(args.device)
    model, model_cfg = open_model(resolve_checkpoint(args.checkpoint), device, use_ema=not args.no_ema,
                                  position_extent=args.position_extent)
    precision = pick_precision(args.precision, device)

    out.mkdir(parents=True, exist_ok=True)
    settings = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inputs": [str(p) for p in files + clips],
                "outputs": names + clip_names, "device": str(device),
                "threads": threads.in_use().as_dict(), "model_config": model_cfg.to_dict(),
                "precision": precision.name, "precision_reason": precision.reason,
                "args": {k: v for k, v in vars(args).items()}}
    with open(out / RUN_LOG_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(settings, default=str) + "\n")

    failed, thumbs, labels = [], [], []
    bar = progress(desc="derain", unit="img", iterable=list(zip(files, names)), active=bool(files))
    for path, name in bar:
        try:
            rainy = read_image(path)
        except ImageReadError as exc:
            log.warning(f"skipped {exc}")
            failed.append((path, str(exc)))
            continue
        height, width = rainy.shape[:2]
        tile = resolve_tile(args.tile, height, width)
        start = time.perf_counter()
        pred = derain(model, to_tensor(rainy).unsqueeze(0), tile=tile, overlap=args.overlap,
                      ensemble=args.ensemble, tile_batch=args.tile_batch, precision=precision)
        sync(device)
        seconds = time.perf_counter() - start
        derained = np.clip(to_image(pred), 0.0, 1.0)
        write_image(out / name, derained, bits=args.bits)
        how = f"tiles {tile}/{args.overlap}" if tile and max(height, width) > tile else "whole"
        log.info(f"{path} ({width}x{height}, {how}{', flip ensemble x4' if args.ensemble else ''}"
                 f"{', ' + precision.name if precision.dtype is not None else ''}) "
                 f"-> {out / name}  {seconds:.2f} s")

        if args.panels:
            row, row_labels = [rainy, derained], ["rainy", "derained"]
            clean_path = find_clean(clean_dir, path.stem) if clean_dir is not None else None
            if clean_path is not None:
                try:
                    clean = read_image(clean_path)
                except ImageReadError as exc:
                    log.warning(f"ground truth not used: {exc}")
                else:
                    if clean.shape == rainy.shape:
                        row.append(clean)
                        row_labels.append("clean")
                    else:
                        log.warning(f"{clean_path} is {clean.shape[1]}x{clean.shape[0]}, "
                                    f"not {width}x{height}: left out of the panel")
            elif clean_dir is not None:
                log.warning(f"no ground truth for {path.stem} in {clean_dir}")
            write_image(out / PANEL_DIR / name, side_by_side(row, row_labels), bits=args.bits)
        if args.contact_sheet:  # keep small thumbnails only: bounded memory for big folders
            thumbs.append(side_by_side([fit_within(rainy, args.thumb // 2),
                                        fit_within(derained, args.thumb // 2)]))
            labels.append(path.name)
    bar.close()

    if args.contact_sheet and thumbs:
        write_image(out / SHEET_NAME, contact_sheet(thumbs, labels, columns=args.columns,
                                                    thumb=args.thumb))
        log.info(f"contact sheet -> {out / SHEET_NAME}")
    if files:
        print(f"{len(files) - len(failed)} of {len(files)} image(s) derained into {out}")
    if failed:
        log.warning(f"{len(failed)} image(s) could not be read and were skipped:\n"
                    + "\n".join(f"  {reason}" for _, reason in failed))
    broken = derain_clips(clips, clip_names, out, FrameDerainer(
        model, args.tile, args.overlap, args.tile_batch, args.ensemble, precision), frames, args)
    return 1 if failed or broken else 0


def check_clips(clips: list[Path], args) -> FrameRange:
    """The clip flags, checked, and every clip opened once: an unreadable clip is an error
    before anything is written. Returns the --frames/--every range."""
    frames = FrameRange.parse(args.frames, args.every)
    if not 0.0 <= args.steady < 1.0:
        raise UsageError(f"--steady must be in [0, 1), got {args.steady}")
    for clip in clips:
        with VideoReader(clip, max_pixels=args.max_pixels) as reader:
            log.info(f"{clip}: {reader.info.describe()}")
    return frames


def derain_clips(clips: list[Path], names: list[str], out: Path, derainer: FrameDerainer,
                 frames: FrameRange, args) -> int:
    """Derain each clip into out/<name> (and out/panels/<name> with --side-by-side); returns
    how many could not be read or came short."""
    broken = 0
    for clip, name in zip(clips, names):
        side = out / PANEL_DIR / name if args.side_by_side else None
        try:
            result = derain_clip(clip, out / name, derainer, frames, args.steady, side, args.max_pixels)
        except VideoReadError as exc:
            log.warning(f"skipped {exc}")
            broken += 1
            continue
        broken += not result.report()
    return broken


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.setup(args)
    threads.apply_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
