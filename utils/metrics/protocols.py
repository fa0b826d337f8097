"""PSNR / SSIM under the three evaluation protocols used by deraining papers
(docs/method.md#metric-protocols).

Numbers from different protocols differ by 0.1-2.5 dB, so every value carries its protocol name.
Inputs are RGB float HWC numpy arrays in [0, 1] (the prediction may be unclipped).

* "rgb" - the HCN authors' Python protocol, the one behind their results table.
  PSNR: prediction and target clipped to [0, 1] and scaled by 255, NOT rounded; MSE over all
  pixels and channels; peak 255. SSIM: the training SSIM (Gaussian 11 / 1.5, zero 'same'
  padding, data range 1, C1 = 0.01^2, C2 = 0.03^2, mean over pixels and channels) on the
  UNCLIPPED float prediction, exactly as the authors' eval did. Decision: stay faithful, since
  this protocol exists to be compared with their table; the clip matters only for outputs
  outside [0, 1], which a trained model rarely produces.

* "y" - the Restormer/MSPFN MATLAB script (evaluate_PSNR_SSIM.m; Rain100H/L, Rain200H/L,
  Test100/1200/2800, SPA-Data). The script reads 8-bit PNGs, so both images are first
  quantised to uint8 exactly as utils.io.images.write_image saves them (clip, x255, round).
  Y = MATLAB rgb2ycbcr on uint8 input: imlincomb of T = (1/255) * [65.481, 128.553, 24.966]
  plus offset 16, computed in double and converted to uint8 (round half away from zero).
  PSNR on Y with peak 255. SSIM = Wang's ssim_index (2003): 11x11 Gaussian, sigma 1.5,
  K = (0.01, 0.03), L = 255, filter2 'valid', mean of the map; no downsampling.

* "y-float" - the RCDNet/PReNet MATLAB script (statistic.m + psnr.m + Wang's 2009 ssim.m;
  Rain1200/DID, Rain1400/DDN, Rain12). Images are read as uint8 PNGs (same quantisation as
  above) then im2double, so Y = rgb2ycbcr on doubles: (65.481 R + 128.553 G + 24.966 B + 16)
  / 255 with R, G, B in [0, 1], NOT rounded. PSNR on Y with peak 1 (psnr.m picks peak 1 when
  max <= 2). SSIM = ssim(Y*255, Ygt*255) of Wang's 2009 ssim.m: downsampling factor
  f = max(1, round(min(H, W) / 256)) (MATLAB round: halves away from zero); if f > 1 both
  images are box-filtered with ones(f)/f^2 by imfilter(..., 'symmetric', 'same') (correlation,
  anchor at floor((f+1)/2), mirror padding that repeats the edge pixel) and subsampled at
  (1:f:end, 1:f:end); then the 'valid' Gaussian SSIM as in "y". Caveat: RCDNet's and
  DRSformer's DID/DDN folders ship no ssim.m, so there `ssim` resolves to whatever is on the
  MATLAB path; PReNet ships Wang's 2009 file, which is what is reproduced here.

`crop_border` removes that many pixels from every side before anything else (none of the
three reference scripts crops). The MATLAB SSIMs need at least 11x11 pixels after the crop
(the scripts return -Inf below that); here that is a ValueError.

Identical images: PSNR is float("inf") (MSE = 0; MATLAB and scikit-image give Inf too). It is
kept, not capped, so no table is silently biased: a set mean containing one is inf,
utils.io.tables.format_value prints "inf", and json.dumps writes Infinity (readable by Python's
json, not by strict JSON parsers). NaN only comes from NaN inputs.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Tuple

import numpy as np
import torch

from utils.metrics.ssim import ssim_map

PROTOCOLS = ("rgb", "y", "y-float")

# MATLAB rgb2ycbcr, Y row of the BT.601 matrix for RGB in [0, 1] (Poynton eq. 9.6).
_Y_COEFFS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {protocol!r}; choose one of {PROTOCOLS}")


def _check_pair(pred, target, protocol: str, crop_border: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validate shapes/dtypes, crop the border, return float64 copies."""
    _check_protocol(protocol)
    arrays = []
    for name, image in (("pred", pred), ("target", target)):
        if isinstance(image, torch.Tensor):
            raise TypeError(f"{name}: expected an HWC numpy array, got a torch tensor of shape "
                            f"{tuple(image.shape)} (use utils.io.images.to_image)")
        image = np.asarray(image)
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"{name}: expected a float image in [0, 1], got dtype {image.dtype} "
                            f"(divide 8-bit images by 255)")
        if image.ndim != 3:
            raise ValueError(f"{name}: expected an HWC image, got shape {image.shape}")
        arrays.append(image)
    pred, target = arrays
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: pred {pred.shape} vs target {target.shape}")
    if protocol != "rgb" and pred.shape[2] != 3:
        raise ValueError(f"protocol {protocol!r} needs RGB images (H, W, 3), got shape {pred.shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) \
            or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    height, width = pred.shape[:2]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    if crop_border:
        pred = pred[crop_border:-crop_border, crop_border:-crop_border]
        target = target[crop_border:-crop_border, crop_border:-crop_border]
    return pred.astype(np.float64), target.astype(np.float64)


def quantize_uint8(image: np.ndarray) -> np.ndarray:
    """The 8-bit values of an image as write_image saves it: clip, x255 in float32, round.

    Returned as float64 holding integers 0..255 (convenient for further arithmetic)."""
    clipped = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.round(clipped * np.float32(255.0)).astype(np.float64)


def _round_half_away(values: np.ndarray) -> np.ndarray:
    # MATLAB's conversion to integer classes rounds halves away from zero (numpy: to even).
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def rgb_to_y_uint8(rgb255: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr(uint8)(:, :, 1): HWC integer-valued RGB in [0, 255] -> Y in [16, 235].

    Same arithmetic as MATLAB: T = (1/255) * coeffs, Y = T1 R + T2 G + T3 B + 16 in double,
    rounded half away from zero and saturated to uint8. Returned as float64 integers."""
    t = [(1.0 / 255.0) * c for c in _Y_COEFFS]
    y = t[0] * rgb255[..., 0] + t[1] * rgb255[..., 1] + t[2] * rgb255[..., 2] + _Y_OFFSET
    return np.clip(_round_half_away(y), 0.0, 255.0)


def rgb_to_y_float(rgb01: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr(double)(:, :, 1): HWC RGB in [0, 1] -> Y in [16/255, 235/255], unrounded."""
    t = [c / 255.0 for c in _Y_COEFFS]
    return t[0] * rgb01[..., 0] + t[1] * rgb01[..., 1] + t[2] * rgb01[..., 2] + _Y_OFFSET / 255.0


def ssim_downsample_factor(height: int, width: int) -> int:
    """f = max(1, round(min(H, W) / 256)) of Wang's 2009 ssim.m, with MATLAB's rounding."""
    return max(1, int(math.floor(min(height, width) / 256.0 + 0.5)))


def matlab_box_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """imfilter(image, ones(f)/f^2, 'symmetric', 'same') then image(1:f:end, 1:f:end), 2-D.

    imfilter correlates with the kernel anchored at floor((f+1)/2) (1-based), so output pixel
    i averages input pixels i-(c-1) .. i+(f-c), c = floor((f+1)/2); 'symmetric' pads by
    mirroring with the edge pixel repeated (numpy mode 'symmetric'). Only the kept pixels are
    computed."""
    if factor <= 1:
        return image
    before = (factor + 1) // 2 - 1
    after = factor - 1 - before
    padded = np.pad(image, ((before, after), (before, after)), mode="symmetric")
    # Window starting at padded index i covers input pixels i - before .. i + after; keep
    # i = 0, f, 2f, ... (MATLAB 1:f:end), i.e. ceil(n / f) samples per axis.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (factor, factor))
    return windows[::factor, ::factor].mean(axis=(-2, -1))


def _psnr_from_mse(mse: float, peak: float) -> float:
    if mse == 0.0:
        return float("inf")
    return float(10.0 * math.log10(peak * peak / mse))


def _to_nchw(image: np.ndarray) -> torch.Tensor:
    image = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def _matlab_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang's ssim_index on 2-D images in [0, 255]: Gaussian 11/1.5, K (0.01, 0.03), 'valid'."""
    if min(a.shape) < 11:
        raise ValueError(f"MATLAB-style SSIM needs at least 11x11 pixels, got {a.shape[0]}x"
                         f"{a.shape[1]} (after crop_border/downsampling)")
    value = ssim_map(_to_nchw(a), _to_nchw(b), window_size=11, sigma=1.5, data_range=255.0,
                     padding="valid")
    return float(value.mean())


def psnr(pred: np.ndarray, target: np.ndarray, protocol: str = "rgb", crop_border: int = 0) -> float:
    """PSNR in dB of an RGB float HWC prediction against its target under `protocol`.

    float("inf") when the (protocol-processed) images are identical."""
    pred, target = _check_pair(pred, target, protocol, crop_border)
    if protocol == "rgb":
        a, b, peak = np.clip(pred, 0, 1) * 255.0, np.clip(target, 0, 1) * 255.0, 255.0
    elif protocol == "y":
        a, b, peak = rgb_to_y_uint8(quantize_uint8(pred)), rgb_to_y_uint8(quantize_uint8(target)), 255.0
    else:
        a = rgb_to_y_float(quantize_uint8(pred) / 255.0)
        b = rgb_to_y_float(quantize_uint8(target) / 255.0)
        peak = 1.0
    return _psnr_from_mse(float(np.mean((a - b) ** 2)), peak)


def ssim_metric(pred: np.ndarray, target: np.ndarray, protocol: str = "rgb",
                crop_border: int = 0) -> float:
    """Mean SSIM of an RGB float HWC prediction against its target under `protocol`."""
    pred, target = _check_pair(pred, target, protocol, crop_border)
    if protocol == "rgb":
        # The authors' SSIM on the unclipped float prediction (see module docstring).
        return float(ssim_map(_to_nchw(pred), _to_nchw(target), window_size=11, sigma=1.5,
                              data_range=1.0, padding="same").mean())
    if protocol == "y":
        return _matlab_ssim(rgb_to_y_uint8(quantize_uint8(pred)),
                            rgb_to_y_uint8(quantize_uint8(target)))
    a = rgb_to_y_float(quantize_uint8(pred) / 255.0) * 255.0
    b = rgb_to_y_float(quantize_uint8(target) / 255.0) * 255.0
    if min(a.shape) < 11:  # ssim.m checks the size before downsampling
        raise ValueError(f"MATLAB-style SSIM needs at least 11x11 pixels, got {a.shape[0]}x{a.shape[1]}")
    factor = ssim_downsample_factor(*a.shape)
    return _matlab_ssim(matlab_box_downsample(a, factor), matlab_box_downsample(b, factor))


def image_metrics(pred: np.ndarray, target: np.ndarray, protocols: Iterable[str] = PROTOCOLS,
                  crop_border: int = 0) -> Dict[str, float]:
    """{"<protocol>/psnr": .., "<protocol>/ssim": ..} for every requested protocol."""
    protocols = tuple(protocols)
    for protocol in protocols:
        _check_protocol(protocol)
    results: Dict[str, float] = {}
    for protocol in protocols:
        results[f"{protocol}/psnr"] = psnr(pred, target, protocol, crop_border)
        results[f"{protocol}/ssim"] = ssim_metric(pred, target, protocol, crop_border)
    return results


def batch_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image RGB PSNR of [B, C, H, W] tensors, both clipped to [0, 1], peak 1 (fast
    validation during training; equals the "rgb" protocol up to float32). inf where equal."""
    if pred.shape != target.shape:
        raise ValueError(f"batch_psnr: pred and target shapes differ: {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"batch_psnr expects [B, C, H, W] tensors, got {tuple(pred.shape)}")
    diff = pred.detach().float().clamp(0, 1) - target.detach().float().clamp(0, 1)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    # 1 / 0 = inf and log10(inf) = inf: identical images give inf, never NaN.
    return 10.0 * torch.log10(1.0 / mse)
