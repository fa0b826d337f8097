"""Image files in and out. One convention everywhere: RGB, float32, HWC, values in [0, 1].

Grayscale, RGBA and 16-bit files are converted consistently (gray is replicated to
3 channels, alpha is dropped, 16-bit is scaled by 1/65535, 8-bit by 1/255).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.errors import UserError
from utils.io.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(UserError, ValueError):
    """An image file is missing, unreadable or has an unsupported format."""


class ImageTooLarge(ImageReadError):
    """An image's header declares more pixels than the limit (checked before decoding)."""


class NonFinitePixels(ImageReadError):
    """A float image holds NaN or Inf values."""


# Largest image (width x height) any read decodes: 100 MP admits 50-megapixel photos twice
# over, while a forged header (e.g. 30000x30000 in an 875 KB PNG) is refused before a byte of
# pixels is allocated. `--max-pixels` of every script changes it (set_max_pixels); the value
# also goes into the environment so DataLoader workers started by spawn see it too.
DEFAULT_MAX_PIXELS = 100_000_000
_MAX_PIXELS_ENV = "HCN_MAX_PIXELS"


def max_pixels() -> int:
    try:
        return int(os.environ.get(_MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """The process-wide pixel limit of `read_image` (None: keep the current one)."""
    if limit is None:
        return
    if int(limit) < 1:
        raise ImageReadError(f"--max-pixels must be >= 1, got {limit}")
    os.environ[_MAX_PIXELS_ENV] = str(int(limit))


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a classic TIFF's first IFD, for files PIL cannot open (float RGB)."""
    if head[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    if offset + 2 > len(head):
        return None
    (count,) = struct.unpack(order + "H", head[offset:offset + 2])
    size = {}
    for i in range(count):
        entry = head[offset + 2 + 12 * i: offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            value = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
            size[tag] = value
    return (size[256], size[257]) if len(size) == 2 else None


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file header alone (PIL's lazy open, a TIFF IFD parser for the
    rest), without decoding pixels; None when the header cannot be parsed."""
    path = Path(path)
    try:
        from PIL import Image  # installed with scikit-image
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own limit applies, with our message
        try:
            with Image.open(path) as im:
                return tuple(int(v) for v in im.size)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # not a format PIL knows (or no PIL): try the TIFF header ourselves
        pass
    try:
        with open(path, "rb") as handle:
            return _tiff_size(handle.read(1 << 16))
    except (OSError, struct.error):
        return None


def check_pixel_count(path: str | Path, width: int, height: int, limit: int | None = None) -> None:
    limit = max_pixels() if limit is None else limit
    if width * height > limit:
        raise ImageTooLarge(f"{path}: {width}x{height} = {width * height / 1e6:.1f} megapixels is over "
                            f"the limit of {limit / 1e6:g} megapixels (raise it with --max-pixels)")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read any OpenCV-readable image as RGB float32 HWC in [0, 1].

    The pixel count is checked from the header before decoding (ImageTooLarge above
    `max_pixels`, default: the process-wide limit); NaN/Inf pixels raise NonFinitePixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    size = image_size(path)
    if size is not None:
        check_pixel_count(path, *size, limit=max_pixels)
    # np.fromfile + imdecode handles non-ASCII paths that cv2.imread cannot open.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if size is None:  # a header we could not parse: check before the float conversion at least
        check_pixel_count(path, image.shape[1], image.shape[0], limit=max_pixels)
    return to_rgb_float(image, str(path))


def to_rgb_float(image: np.ndarray, name: str = "image") -> np.ndarray:
    """OpenCV array (BGR/BGRA/gray, uint8/uint16/float) to RGB float32 HWC in [0, 1]."""
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        scaled = image.astype(np.float32) / 65535.0
    elif image.dtype in (np.float32, np.float64):
        bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        if bad:  # clipping would turn NaN into black and Inf into white, silently
            raise NonFinitePixels(f"{name}: {bad} non-finite pixel value(s) (NaN or Inf) in a float "
                                  f"image; fix or remove the file")
        scaled = np.clip(image.astype(np.float32), 0.0, 1.0)
    else:
        raise ImageReadError(f"{name}: unsupported pixel type {image.dtype}")
    if scaled.ndim == 2:
        scaled = scaled[:, :, None]
    channels = scaled.shape[2]
    if channels == 1:
        rgb = np.repeat(scaled, 3, axis=2)
    elif channels in (3, 4):
        rgb = scaled[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    else:
        raise ImageReadError(f"{name}: unsupported channel count {channels}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{name}: empty image")
    return np.ascontiguousarray(rgb)


def write_image(path: str | Path, image: np.ndarray, bits: int = 8) -> None:
    """Write an RGB float HWC image in [0, 1] (clipped) as 8- or 16-bit, atomically; folders
    are created."""
    path = Path(path)
    out = quantize(image, bits)
    ok, encoded = cv2.imencode(path.suffix or ".png", out[:, :, ::-1])
    if not ok:
        raise OSError(f"{path}: OpenCV cannot encode this format")
    with atomic_write(path) as handle:
        handle.write(encoded.tobytes())


def quantize(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """The integer pixel values `write_image` stores: clip to [0, 1], scale, round."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if bits == 8:
        return np.round(image * 255.0).astype(np.uint8)
    if bits == 16:
        return np.round(image * 65535.0).astype(np.uint16)
    raise ValueError(f"bits must be 8 or 16, got {bits}")


def as_saved(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """What `read_image` returns for `image` after `write_image(..., bits)`, bit for bit,
    without touching a file (same quantisation, same float32 division)."""
    return to_rgb_float(quantize(image, bits)[:, :, ::-1], "image")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC float array -> CHW float tensor (no copy of semantics, one copy of memory)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """CHW (or 1xCHW) tensor -> HWC float32 array on the CPU."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"to_image expects one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    return tensor.detach().float().cpu().permute(1, 2, 0).contiguous().numpy()
