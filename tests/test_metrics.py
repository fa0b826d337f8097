"""The three evaluation protocols against scikit-image and hand-computed values."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from losses import ssim as loss_ssim
from utils.metrics.protocols import (PROTOCOLS, batch_psnr, image_metrics, matlab_box_downsample, psnr,
                           quantize_uint8, rgb_to_y_uint8, ssim_downsample_factor, ssim_metric)


def _pair(h=40, w=36, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth-ish content (blurred noise) so SSIM is far from both 0 and 1.
    gt = ndimage.gaussian_filter(rng.random((h, w, 3)), sigma=(2, 2, 0))
    gt = ((gt - gt.min()) / (gt.max() - gt.min())).astype(np.float32)
    pred = (gt + noise * rng.standard_normal(gt.shape)).astype(np.float32)  # unclipped
    return pred, gt


def _sk_ssim(a, b, data_range):
    return structural_similarity(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


def _sk_y(rgb01, rounded):
    q = quantize_uint8(rgb01).astype(np.uint8)
    y = rgb2ycbcr(q)[..., 0]  # float Y in [16, 235], MATLAB coefficients
    return np.floor(y + 0.5) if rounded else y


def test_rgb_psnr_matches_skimage_on_clipped_images():
    pred, gt = _pair()
    assert pred.max() > 1 or pred.min() < 0  # the clip is exercised
    expected = peak_signal_noise_ratio(np.clip(gt, 0, 1).astype(np.float64),
                                       np.clip(pred, 0, 1).astype(np.float64), data_range=1.0)
    assert psnr(pred, gt, "rgb") == pytest.approx(expected, rel=1e-9)


def test_rgb_psnr_constant_offset_by_hand():
    _, gt = _pair()
    gt = 0.1 + 0.8 * gt  # keep gt + offset inside [0, 1]
    offset = 0.01
    assert psnr(gt + offset, gt, "rgb") == pytest.approx(20 * math.log10(1 / offset), abs=1e-4)
    # Values above 1 are clipped: 1.3 against 1.0 is a perfect match.
    ones = np.ones((8, 8, 3), np.float32)
    assert psnr(ones * 1.3, ones, "rgb") == float("inf")


def test_rgb_ssim_is_the_training_ssim_on_unclipped_prediction():
    pred, gt = _pair()
    to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).astype(np.float64))[None]
    expected = loss_ssim(to_t(pred), to_t(gt)).item()
    assert ssim_metric(pred, gt, "rgb") == pytest.approx(expected, rel=1e-12)
    # Not clipped: the clipped prediction scores differently.
    assert ssim_metric(np.clip(pred, 0, 1), gt, "rgb") != pytest.approx(expected, rel=1e-6)


def test_y_protocol_matches_skimage_with_uint8_rounded_y():
    pred, gt = _pair(48, 52, seed=1)
    y_pred, y_gt = _sk_y(pred, rounded=True), _sk_y(gt, rounded=True)
    assert psnr(pred, gt, "y") == pytest.approx(
        peak_signal_noise_ratio(y_gt, y_pred, data_range=255), rel=1e-9)
    assert ssim_metric(pred, gt, "y") == pytest.approx(_sk_ssim(y_pred, y_gt, 255), rel=1e-9)


def test_y_float_protocol_matches_skimage_without_downsampling():
    pred, gt = _pair(256, 300, noise=0.03, seed=2)  # min side 256 -> f = 1
    y_pred, y_gt = _sk_y(pred, rounded=False), _sk_y(gt, rounded=False)
    assert psnr(pred, gt, "y-float") == pytest.approx(
        peak_signal_noise_ratio(y_gt / 255, y_pred / 255, data_range=1.0), rel=1e-9)
    assert ssim_metric(pred, gt, "y-float") == pytest.approx(_sk_ssim(y_pred, y_gt, 255), rel=1e-9)


def test_y_float_ssim_downsamples_512_images_by_two():
    pred, gt = _pair(512, 512, noise=0.03, seed=3)
    y_pred, y_gt = _sk_y(pred, rounded=False), _sk_y(gt, rounded=False)
    # f = 2, anchor at the first tap: 2x2 block means of pixel pairs (0,1), (2,3), ...
    block = lambda y: y.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    expected = _sk_ssim(block(y_pred), block(y_gt), 255)
    assert ssim_metric(pred, gt, "y-float") == pytest.approx(expected, rel=1e-9)
    assert ssim_metric(pred, gt, "y-float") != pytest.approx(_sk_ssim(y_pred, y_gt, 255), rel=1e-4)


def test_downsampling_factor_uses_matlab_rounding():
    assert ssim_downsample_factor(512, 512) == 2
    assert ssim_downsample_factor(256, 256) == 1
    assert ssim_downsample_factor(321, 481) == 1
    assert ssim_downsample_factor(383, 1000) == 1
    assert ssim_downsample_factor(384, 1000) == 2  # 1.5 rounds up
    assert ssim_downsample_factor(640, 640) == 3  # 2.5 rounds away from zero (numpy: 2)
    assert ssim_downsample_factor(20, 20) == 1


def test_box_downsample_odd_factor_with_symmetric_border():
    image = np.arange(25, dtype=np.float64).reshape(5, 5)
    out = matlab_box_downsample(image, 3)
    # f = 3: anchor in the middle, kept pixels 0 and 3; 'symmetric' repeats the edge pixel.
    rows = [[0, 0, 1], [2, 3, 4]]
    expected = np.array([[image[np.ix_(r, c)].mean() for c in rows] for r in rows])
    np.testing.assert_allclose(out, expected)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    _, gt = _pair()
    values = image_metrics(gt, gt.copy())
    assert set(values) == {f"{p}/{m}" for p in PROTOCOLS for m in ("psnr", "ssim")}
    for protocol in PROTOCOLS:
        assert values[f"{protocol}/psnr"] == float("inf")
        assert values[f"{protocol}/ssim"] == pytest.approx(1.0, abs=1e-12)


def test_uint8_rounding_cases():
    black = np.zeros((16, 16, 3), np.float32)
    # 0.4/255 quantises to 0: perfect under "y", not under "rgb" (no rounding there).
    assert psnr(black + 0.4 / 255, black, "y") == float("inf")
    assert psnr(black + 0.4 / 255, black, "rgb") == pytest.approx(20 * math.log10(255 / 0.4), rel=1e-6)
    # 0.6/255 -> 1. Gray 1 has Y = 16 + 219/255 = 16.86, which MATLAB rounds to 17 (truncation
    # would give 16): a Y error of exactly 1 -> 20 log10(255).
    assert rgb_to_y_uint8(np.array([[[1.0, 1.0, 1.0]]]))[0, 0] == 17
    assert psnr(black + 0.6 / 255, black, "y") == pytest.approx(20 * math.log10(255), rel=1e-12)
    # y-float keeps the unrounded Y difference 219/255 (on the 0..255 scale).
    assert psnr(black + 0.6 / 255, black, "y-float") == pytest.approx(
        20 * math.log10(255 * 255 / 219), rel=1e-9)


def test_uint8_y_matches_rounded_skimage_ycbcr_on_all_levels():
    rng = np.random.default_rng(4)
    rgb = np.concatenate([np.repeat(np.arange(256.0)[:, None], 3, axis=1),
                          rng.integers(0, 256, size=(4000, 3)).astype(np.float64)])[None]
    expected = np.floor(rgb2ycbcr(rgb.astype(np.uint8))[..., 0] + 0.5)
    np.testing.assert_array_equal(rgb_to_y_uint8(rgb), expected)


def test_crop_border():
    pred, gt = _pair(30, 30, seed=5)
    b = 4
    inner = (slice(b, -b), slice(b, -b))
    for protocol in PROTOCOLS:
        assert psnr(pred, gt, protocol, crop_border=b) == pytest.approx(
            psnr(pred[inner], gt[inner], protocol), rel=1e-12)
        assert ssim_metric(pred, gt, protocol, crop_border=b) == pytest.approx(
            ssim_metric(pred[inner], gt[inner], protocol), rel=1e-12)
    damaged = gt.copy()
    damaged[:2] = 0.0  # errors only within the cropped border
    assert psnr(damaged, gt, "rgb", crop_border=2) == float("inf")
    with pytest.raises(ValueError, match="crop_border"):
        psnr(pred, gt, crop_border=15)


def test_input_errors_are_clear():
    a = np.zeros((20, 20, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 21, 3\)"):
        psnr(a, np.zeros((20, 21, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(21, 20, 3\)"):
        ssim_metric(a, np.zeros((21, 20, 3), np.float32), "y")
    with pytest.raises(ValueError, match="unknown metric protocol"):
        psnr(a, a, "ycbcr")
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.uint8), a.astype(np.uint8))
    with pytest.raises(ValueError, match="11x11"):
        ssim_metric(np.zeros((8, 30, 3), np.float32), np.zeros((8, 30, 3), np.float32), "y")


def test_batch_psnr_matches_rgb_protocol():
    preds, gts = zip(*(_pair(24, 20, seed=s) for s in range(3)))
    to_t = lambda imgs: torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).copy())
    got = batch_psnr(to_t(preds), to_t(gts))
    assert got.shape == (3,)
    for value, pred, gt in zip(got.tolist(), preds, gts):
        assert value == pytest.approx(psnr(pred, gt, "rgb"), abs=1e-3)
    same = to_t(gts)
    assert torch.isinf(batch_psnr(same, same)).all()
