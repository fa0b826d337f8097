"""Is a gap between two methods real? Paired bootstrap of per-image PSNR differences.

Both methods are scored on the same images, so the per-image difference d_i = PSNR_B(i) -
PSNR_A(i) removes what the images share (an easy image is easy for both). The gap is the
mean of d; its 95% interval is the percentile bootstrap: `resamples` (default 10,000) draws
of n images with replacement from the n differences, the mean of each, and the 2.5th and
97.5th percentiles of those means. The generator has a fixed seed, so a table is
reproducible. When the interval contains 0 the gap is "within noise": with these images,
it cannot be told from the image-to-image spread. (It says nothing about other test sets.)

Images where either PSNR is infinite (an output identical to the ground truth) have no
finite difference; they are left out and counted in `excluded`.
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
SEED = 0
_BLOCK_ELEMENTS = 1 << 22  # resampled values drawn at once (32 MiB of indices)


def paired_bootstrap(a, b, resamples: int = RESAMPLES, seed: int = SEED, level: float = 0.95) -> dict:
    """Mean of b - a over paired images and its percentile-bootstrap interval.

    Returns {"mean", "low", "high", "images" (finite pairs used), "excluded",
    "within_noise" (low <= 0 <= high)}; NaN values and within_noise None with no finite pair.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap needs two 1-D arrays of equal length, got {a.shape}, {b.shape}")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    finite = np.isfinite(a) & np.isfinite(b)
    diff = b[finite] - a[finite]
    n = diff.size
    out = {"images": int(n), "excluded": int(finite.size - n)}
    if n == 0:
        return {**out, "mean": float("nan"), "low": float("nan"), "high": float("nan"),
                "within_noise": None}
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    means = np.concatenate([diff[rng.integers(0, n, size=(min(block, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, block)])
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {**out, "mean": float(diff.mean()), "low": float(low), "high": float(high),
            "within_noise": bool(low <= 0.0 <= high)}
