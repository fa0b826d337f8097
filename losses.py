"""Training losses: the multi-output negative-SSIM loss and the online-update loss
(docs/method.md#losses, docs/method.md#online-update).

Weights come from the config (`cfg.loss.weights`, `cfg.loss.online_lambda`); nothing is
hard-coded here.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn as nn

from networks.pyramid import gaussian_pyramid
from utils.metrics.ssim import ssim_map

BRANCHES = ("bottom", "middle", "top", "half", "quarter")


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two [B, C, H, W] images with data range 1 (the authors' training SSIM).

    Gaussian window (window_size, sigma), depth-wise per channel, zero 'same' padding,
    C1 = 0.01^2, C2 = 0.03^2, averaged over pixels, channels and the batch. Inputs are not
    clamped (the authors did not clamp). Works for any size, also smaller than the window.
    Returns a differentiable scalar tensor.
    """
    return ssim_map(x, y, window_size=window_size, sigma=sigma, data_range=1.0,
                    padding="same").mean()


class HCNLoss(nn.Module):
    """L_syn = -sum_i w_i SSIM(pred_i, target_i) over the bottom, middle, top, 1/2 and 1/4 outputs.

    `weights` = cfg.loss.weights, in the order of BRANCHES. The 1/2 and 1/4 targets are the
    Gaussian pyramid of `clean` (pyr_down once and twice), built here rather than in the data
    loader (Gaussian pyrDown images, as the released code; the paper says "Laplacian",
    docs/method.md#losses). A branch that is None in `out` (e.g. half/quarter when the network ran
    with branches=False) is skipped: it adds nothing to the total and has no entry in `terms`.
    """

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(BRANCHES):
            raise ValueError(f"HCNLoss needs {len(BRANCHES)} weights ({', '.join(BRANCHES)}), "
                             f"got {len(weights)}: {weights}")
        if not all(w == w and abs(w) != float("inf") for w in weights):
            raise ValueError(f"HCNLoss weights must be finite, got {weights}")
        self.weights = weights

    def forward(self, out: Any, clean: torch.Tensor, l1_weight: float = 0.0,
                psnr_weight: float = 0.0) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """out: an HCNOutput (attributes bottom, middle, top, half, quarter); clean: [B, 3, H, W].

        `l1_weight` > 0 adds l1_weight * mean |bottom - clean| (cfg.loss.l1_weight; not in the
        paper): SSIM barely penalises a uniform brightness offset, L1 does.
        `psnr_weight` > 0 adds psnr_weight * psnr_loss(bottom, clean) (cfg.loss.psnr_weight;
        not in the paper): the negative per-image PSNR, the metric tables report.
        Returns (total loss, {"ssim_<branch>": detached SSIM value} for every branch present,
        plus "l1_bottom" / "psnr_bottom" (dB) when those terms are on).
        """
        preds = {name: getattr(out, name) for name in BRANCHES}
        targets = {"bottom": clean, "middle": clean, "top": clean}
        if preds["half"] is not None or preds["quarter"] is not None:
            _, targets["half"], targets["quarter"] = gaussian_pyramid(clean, 3)

        total = None
        terms: Dict[str, torch.Tensor] = {}
        for name, weight in zip(BRANCHES, self.weights):
            pred = preds[name]
            if pred is None:
                continue
            target = targets[name]
            if pred.shape != target.shape:
                raise ValueError(f"HCNLoss: the {name} output has shape {tuple(pred.shape)} but "
                                 f"its target (from clean {tuple(clean.shape)}) has shape "
                                 f"{tuple(target.shape)}")
            value = ssim(pred, target)
            terms[f"ssim_{name}"] = value.detach()
            term = -weight * value
            total = term if total is None else total + term
        if total is None:
            raise ValueError("HCNLoss: every output branch is None, nothing to train on")
        if l1_weight > 0:
            l1 = (preds["bottom"] - clean).abs().mean()
            terms["l1_bottom"] = l1.detach()
            total = total + l1_weight * l1
        if psnr_weight > 0:
            neg_psnr = psnr_loss(preds["bottom"], clean)
            terms["psnr_bottom"] = -neg_psnr.detach()
            total = total + psnr_weight * neg_psnr
        return total, terms


def psnr_loss(pred: torch.Tensor, clean: torch.Tensor, ceiling_db: float = 50.0) -> torch.Tensor:
    """Negative PSNR (data range 1) of each image of a [B, C, H, W] batch, averaged: the mean of
    10 log10(MSE_i): the metric a table's mean PSNR reports, so each image counts by its
    relative error. Where the haze is ambiguous it hedges between nearby guesses (unlike L1,
    which follows the median). The differentiable counterpart of
    utils.metrics.protocols.batch_psnr (which clips and detaches, as a metric must): not
    clipped, so outputs outside [0, 1] still get a gradient.

    Each image's PSNR counts up to `ceiling_db` and no further: its gradient grows as 1/MSE, so
    without a ceiling a nearly perfect image (a dry photo, clean -> clean) would outweigh every
    rainy one for ever; at 50 dB an image is within about a grey level everywhere."""
    floor = 10.0 ** (-ceiling_db / 10.0)
    mse = (pred.float() - clean.float()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(mse.clamp_min(floor))).mean()


def online_update_loss(pred: torch.Tensor, pseudo_label: torch.Tensor, rainy: torch.Tensor,
                       partner_rain: torch.Tensor, lam: float
                       ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Online-update loss on real images (docs/method.md#online-update), lam = cfg.loss.online_lambda.

    total = mean |pred - pseudo_label|
            + lam * mean_over_batch( sum_over_elements [r > 0] * r * (log r - (rainy - pred)) )
    with r = partner_rain, the rain layer O_j - B_j^{k-1} of a random partner image under the
    previous pseudo-labels (detached: it is a target, not a prediction).

    The paper calls the second term a KL divergence, but the authors computed it with
    nn.KLDivLoss(R, r) applied to the raw rain layer R = rainy - pred: R is treated as
    log-probabilities, with no softmax and no log, and elements with r <= 0 are masked out by
    old PyTorch. So it is NOT a true KL; it is this masked linear term, whose gradient w.r.t.
    R is -r on pixels where r > 0. Current PyTorch's KLDivLoss returns NaN for negative r;
    here the mask is applied with torch.where (log of 1 where masked), so finite inputs give
    a finite loss and finite gradients for any sign of r.

    All four tensors are [B, C, H, W] of one shape. Returns (total, {"l1", "rain_term"}),
    terms detached; rain_term is the per-sample sum averaged over the batch (before lam).
    """
    shapes = {"pred": pred.shape, "pseudo_label": pseudo_label.shape, "rainy": rainy.shape,
              "partner_rain": partner_rain.shape}
    if len(set(shapes.values())) != 1:
        listing = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"online_update_loss needs tensors of one shape, got {listing}")
    if pred.dim() < 2:
        raise ValueError(f"online_update_loss expects batched tensors [B, ...], got {tuple(pred.shape)}")
    # Sums over ~150k elements overflow fp16: compute the loss in float32 at least.
    work = torch.promote_types(pred.dtype, torch.float32)
    pred32 = pred.to(work)
    l1 = (pred32 - pseudo_label.to(work)).abs().mean()

    r = partner_rain.detach().to(work)
    positive = r > 0  # NaN compares False, so it is masked too
    safe_r = torch.where(positive, r, torch.ones_like(r))
    predicted_rain = rainy.to(work) - pred32
    elementwise = torch.where(positive, safe_r * (torch.log(safe_r) - predicted_rain),
                              torch.zeros_like(r))
    rain_term = elementwise.flatten(1).sum(dim=1).mean()
    total = l1 + lam * rain_term
    return total, {"l1": l1.detach(), "rain_term": rain_term.detach()}
