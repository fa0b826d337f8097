"""Image files in and out. One convention everywhere: RGB, float32, HWC, values in [0, 1].

Grayscale, RGBA and 16-bit files are converted consistently (gray is replicated to
3 channels, alpha is dropped, 16-bit is scaled by 1/65535, 8-bit by 1/255).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from utils.errors import UserError
from utils.io.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(UserError, ValueError):
    """An image file is missing, unreadable or has an unsupported format."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read any OpenCV-readable image as RGB float32 HWC in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    # np.fromfile + imdecode handles non-ASCII paths that cv2.imread cannot open.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return to_rgb_float(image, str(path))


def to_rgb_float(image: np.ndarray, name: str = "image") -> np.ndarray:
    """OpenCV array (BGR/BGRA/gray, uint8/uint16/float) to RGB float32 HWC in [0, 1]."""
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        scaled = image.astype(np.float32) / 65535.0
    elif image.dtype in (np.float32, np.float64):
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
