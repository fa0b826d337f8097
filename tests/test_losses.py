"""SSIM loss, multi-output HCN loss and online-update loss on known inputs."""
import math
from typing import NamedTuple, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from losses import HCNLoss, online_update_loss, psnr_loss, ssim
from networks.pyramid import pyr_down
from utils.metrics.ssim import gaussian_taps, ssim_map

C1, C2 = 0.01 ** 2, 0.03 ** 2


class FakeOutput(NamedTuple):  # same attributes as networks.HCNOutput
    bottom: torch.Tensor
    middle: torch.Tensor
    top: torch.Tensor
    half: Optional[torch.Tensor]
    quarter: Optional[torch.Tensor]


def _taps(size=11, sigma=1.5):
    t = np.array([math.exp(-(i - size // 2) ** 2 / (2 * sigma ** 2)) for i in range(size)])
    return t / t.sum()


@pytest.mark.parametrize("shape", [(2, 3, 32, 24), (1, 3, 5, 7), (3, 1, 1, 1)])
def test_ssim_of_image_with_itself_is_one(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)


def test_ssim_constant_images_zero_padding_by_hand():
    # Constant images a, b with zero 'same' padding: every local statistic is the constant
    # times w = (weight of the window inside the image), so the SSIM map has a closed form.
    a, b, h, w = 0.6, 0.3, 9, 14
    taps = _taps()
    inside_r = np.array([taps[max(0, 5 - i): 11 - max(0, i + 6 - h)].sum() for i in range(h)])
    inside_c = np.array([taps[max(0, 5 - j): 11 - max(0, j + 6 - w)].sum() for j in range(w)])
    wgt = np.outer(inside_r, inside_c)
    mu_a, mu_b, spread = a * wgt, b * wgt, wgt * (1 - wgt)
    expected = ((2 * mu_a * mu_b + C1) * (2 * a * b * spread + C2)
                / ((mu_a ** 2 + mu_b ** 2 + C1) * ((a * a + b * b) * spread + C2))).mean()
    x = torch.full((1, 3, h, w), a, dtype=torch.float64)
    y = torch.full((1, 3, h, w), b, dtype=torch.float64)
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-10)


def test_ssim_constant_shift_is_luminance_term_only():
    # Away from the padding a shift leaves variances and covariance unchanged, so the map is
    # (2 mu (mu + c) + C1) / (mu^2 + (mu + c)^2 + C1) with mu the local Gaussian mean.
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.7, size=(20, 23))
    shift = 0.2
    got = ssim_map(torch.from_numpy(x)[None, None], torch.from_numpy(x + shift)[None, None],
                   padding="valid")[0, 0].numpy()
    kernel = np.outer(_taps(), _taps())
    mu = ndimage.correlate(x, kernel, mode="constant")[5:-5, 5:-5]
    expected = (2 * mu * (mu + shift) + C1) / (mu ** 2 + (mu + shift) ** 2 + C1)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_ssim_matches_scipy_zero_padded_reference():
    rng = np.random.default_rng(2)
    x, y = rng.random((2, 3, 17, 12)), rng.random((2, 3, 17, 12))

    def blur(img):
        return ndimage.gaussian_filter(img, sigma=1.5, mode="constant", truncate=3.5)

    maps = []
    for a, b in zip(x.reshape(-1, 17, 12), y.reshape(-1, 17, 12)):
        ma, mb = blur(a), blur(b)
        va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
        maps.append((2 * ma * mb + C1) * (2 * cov + C2) / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2)))
    expected = np.mean(maps)
    got = ssim(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_ssim_loss_on_random_pairs_is_bounded_and_differentiable():
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        x = torch.rand(2, 3, 16, 16, generator=gen, requires_grad=True)
        y = torch.rand(2, 3, 16, 16, generator=gen)
        loss = -ssim(x, y)
        assert -1.0 <= loss.item() <= 1.0
        loss.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ssim_half_precision_input_is_computed_in_float32():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    y = (x + 0.05 * torch.rand(1, 3, 16, 16)).clamp(0, 1)
    ref = ssim(x, y)
    low = ssim(x.bfloat16(), y.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ref.item(), abs=2e-2)


def test_ssim_inside_autocast_stays_float32():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    y = (x + 0.02).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = ssim(x, y)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ssim(x, y).item(), rel=1e-6)


def test_gaussian_window_rejects_even_size():
    with pytest.raises(ValueError, match="odd"):
        gaussian_taps(10, 1.5, torch.float32)


def _outputs(clean, with_branches, gen):
    noisy = lambda t: (t + 0.1 * torch.randn(t.shape, generator=gen)).requires_grad_()
    half = pyr_down(clean)
    quarter = pyr_down(half)
    return FakeOutput(noisy(clean), noisy(clean), noisy(clean),
                      noisy(half) if with_branches else None,
                      noisy(quarter) if with_branches else None)


def test_hcn_loss_skips_missing_branches():
    gen = torch.Generator().manual_seed(5)
    clean = torch.rand(2, 3, 29, 21, generator=gen)
    out = _outputs(clean, with_branches=False, gen=gen)
    total, terms = HCNLoss((1.0, 1.0, 1.0, 0.05, 0.001))(out, clean)
    assert set(terms) == {"ssim_bottom", "ssim_middle", "ssim_top"}
    expected = -sum(ssim(p, clean) for p in (out.bottom, out.middle, out.top))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert out.bottom.grad is not None and torch.isfinite(out.bottom.grad).all()


def test_hcn_loss_uses_pyramid_targets_and_weights():
    gen = torch.Generator().manual_seed(6)
    clean = torch.rand(2, 3, 29, 21, generator=gen)  # odd sizes: ceil halving 15x11, 8x6
    out = _outputs(clean, with_branches=True, gen=gen)
    w1 = (1.0, 1.0, 1.0, 0.05, 0.001)
    w2 = (0.5, 2.0, 0.0, 1.0, 3.0)
    total1, terms = HCNLoss(w1)(out, clean)
    total2, terms2 = HCNLoss(w2)(out, clean)
    names = ("bottom", "middle", "top", "half", "quarter")
    assert set(terms) == {f"ssim_{n}" for n in names}
    half_target = pyr_down(clean)
    assert terms["ssim_half"].item() == pytest.approx(ssim(out.half, half_target).item(), rel=1e-6)
    assert terms["ssim_quarter"].item() == pytest.approx(
        ssim(out.quarter, pyr_down(half_target)).item(), rel=1e-6)
    values = [terms[f"ssim_{n}"].item() for n in names]
    assert total1.item() == pytest.approx(-sum(w * s for w, s in zip(w1, values)), rel=1e-6)
    predicted_change = -sum((b - a) * s for a, b, s in zip(w1, w2, values))
    assert (total2 - total1).item() == pytest.approx(predicted_change, rel=1e-5)
    assert all(not t.requires_grad for t in terms.values())


def test_hcn_loss_l1_term_penalises_a_brightness_offset_that_ssim_barely_sees():
    gen = torch.Generator().manual_seed(7)
    clean = torch.rand(2, 3, 24, 24, generator=gen) * 0.8 + 0.1
    darker = FakeOutput(clean - 0.05, clean.clone(), clean.clone(), None, None)
    weights = (1.0, 1.0, 1.0, 0.05, 0.001)
    plain, terms = HCNLoss(weights)(darker, clean)
    with_l1, terms_l1 = HCNLoss(weights)(darker, clean, l1_weight=2.0)
    assert "l1_bottom" not in terms and terms_l1["l1_bottom"].item() == pytest.approx(0.05, rel=1e-4)
    assert (with_l1 - plain).item() == pytest.approx(0.1, rel=1e-4)
    assert 1.0 - terms["ssim_bottom"].item() < 0.02  # SSIM alone hardly notices 0.05 darker


def test_psnr_loss_is_minus_the_mean_per_image_psnr_and_hedges_where_l1_does_not():
    gen = torch.Generator().manual_seed(3)
    clean = torch.rand(2, 3, 20, 20, generator=gen)
    pred = clean + torch.tensor([0.05, 0.2]).view(2, 1, 1, 1) * torch.randn(2, 3, 20, 20, generator=gen)
    per_image = [-10 * math.log10(((p - c).double() ** 2).mean().item()) for p, c in zip(pred, clean)]
    assert per_image[0] - per_image[1] > 10  # two very different errors: a mean of logs, not a log of means
    assert psnr_loss(pred, clean).item() == pytest.approx(-np.mean(per_image), abs=1e-3)
    assert psnr_loss(clean, clean).item() == pytest.approx(-50.0)  # the ceiling: finite
    # One flat output for two equally likely truths (a veil or none) with texture it cannot
    # reproduce (error variance b): the mean of log-MSEs hedges between two tones closer than
    # sqrt(8 b), and commits to one when they are farther apart.
    texture = 0.05 * torch.randn(3, 8, 8, generator=gen)  # b = 0.0025, sqrt(8 b) = 0.14
    def total(low, high, level):
        truths = torch.stack([low + texture, high + texture])
        return psnr_loss(torch.full((2, 3, 8, 8), level), truths).item()
    assert total(0.45, 0.55, 0.5) < total(0.45, 0.55, 0.45)
    assert total(0.3, 0.7, 0.3) < total(0.3, 0.7, 0.5)


def test_hcn_loss_psnr_term_adds_its_weighted_value():
    gen = torch.Generator().manual_seed(8)
    clean = torch.rand(2, 3, 24, 24, generator=gen)
    out = FakeOutput(clean - 0.05, clean.clone(), clean.clone(), None, None)
    weights = (1.0, 1.0, 1.0, 0.05, 0.001)
    plain, terms = HCNLoss(weights)(out, clean)
    with_psnr, terms_psnr = HCNLoss(weights)(out, clean, psnr_weight=0.5)
    assert "psnr_bottom" not in terms
    assert terms_psnr["psnr_bottom"].item() == pytest.approx(-10 * math.log10(0.05 ** 2), rel=1e-4)
    assert (with_psnr - plain).item() == pytest.approx(-0.5 * terms_psnr["psnr_bottom"].item(), rel=1e-4)


def test_hcn_loss_errors():
    with pytest.raises(ValueError, match="5 weights"):
        HCNLoss((1.0, 1.0, 1.0))
    clean = torch.rand(1, 3, 16, 16)
    bad = FakeOutput(clean, clean, clean, torch.rand(1, 3, 9, 8), None)
    with pytest.raises(ValueError, match=r"half output has shape \(1, 3, 9, 8\)"):
        HCNLoss((1, 1, 1, 1, 1))(bad, clean)


def test_online_loss_hand_computed_value():
    pred = torch.tensor([[[[0.5, 0.2]]], [[[0.9, 0.4]]]], requires_grad=True)  # [2, 1, 1, 2]
    label = torch.tensor([[[[0.4, 0.2]]], [[[1.0, 0.1]]]])
    rainy = torch.tensor([[[[0.8, 0.3]]], [[[1.0, 0.6]]]])
    partner = torch.tensor([[[[0.25, -0.5]]], [[[0.0, 0.5]]]])
    lam = 0.3
    total, terms = online_update_loss(pred, label, rainy, partner, lam)
    l1 = (0.1 + 0.0 + 0.1 + 0.3) / 4
    # Only partner > 0 counts: sample 0 element 0, sample 1 element 1.
    sample0 = 0.25 * (math.log(0.25) - (0.8 - 0.5))
    sample1 = 0.5 * (math.log(0.5) - (0.6 - 0.4))
    rain = (sample0 + sample1) / 2
    assert terms["l1"].item() == pytest.approx(l1, rel=1e-6)
    assert terms["rain_term"].item() == pytest.approx(rain, rel=1e-6)
    assert total.item() == pytest.approx(l1 + lam * rain, rel=1e-6)
    total.backward()
    # d/dpred: sign(pred - label) / N + lam * r / B on positive partner pixels.
    expected_grad = torch.tensor([[[[0.25 + lam * 0.25 / 2, 0.0]]],
                                  [[[-0.25, 0.25 + lam * 0.5 / 2]]]])
    torch.testing.assert_close(pred.grad, expected_grad)


def test_online_loss_matches_kl_div_sum_when_partner_rain_positive():
    # With r > 0 everywhere the authors' KLDivLoss(R, r).sum() is well defined: same value.
    gen = torch.Generator().manual_seed(7)
    pred, label, rainy = (torch.rand(2, 3, 8, 8, generator=gen) for _ in range(3))
    partner = torch.rand(2, 3, 8, 8, generator=gen) + 0.01
    _, terms = online_update_loss(pred, label, rainy, partner, lam=8e-5)
    reference = F.kl_div(rainy - pred, partner, reduction="sum") / 2
    assert terms["rain_term"].item() == pytest.approx(reference.item(), rel=1e-5)


def test_online_loss_never_nan_and_partner_detached():
    gen = torch.Generator().manual_seed(8)
    pred = torch.rand(2, 3, 8, 8, generator=gen, requires_grad=True)
    label, rainy = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    partner = (torch.rand(2, 3, 8, 8, generator=gen) - 0.5) * 2  # negative, and exact zeros:
    partner[0, 0, :2] = 0.0
    partner[1, 1, 3] = 1e-30  # tiny positive: r log r -> 0, still finite
    partner[1, 2, 4, 4] = float("nan")  # NaN partner pixels are masked like r <= 0
    partner.requires_grad_()
    total, terms = online_update_loss(pred, label, rainy, partner, lam=8e-5)
    assert torch.isfinite(total) and all(torch.isfinite(t) for t in terms.values())
    total.backward()
    assert torch.isfinite(pred.grad).all()
    assert partner.grad is None


def test_online_loss_shape_mismatch():
    a = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"partner_rain \(1, 3, 4, 5\)"):
        online_update_loss(a, a, a, torch.rand(1, 3, 4, 5), lam=1.0)


def test_psnr_loss_stops_pulling_at_its_ceiling():
    """An image past the ceiling (a dry photo returned nearly unchanged) gets no gradient, so
    it cannot outweigh the rainy images of its batch; below the ceiling it still pulls."""
    clean = torch.rand(2, 3, 8, 8)
    near = (clean + torch.tensor([1e-3, 0.05]).view(2, 1, 1, 1)).requires_grad_(True)
    psnr_loss(near, clean).backward()
    assert near.grad[0].abs().max() == 0  # 60 dB: past the 50 dB ceiling
    assert near.grad[1].abs().max() > 0  # 26 dB: still pulled towards the truth
    assert psnr_loss(clean + 1e-3, clean, ceiling_db=70.0).item() == pytest.approx(-60.0, abs=1e-3)
