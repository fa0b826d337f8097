"""Image quality and model size: PSNR/SSIM protocols, the SSIM core, per-image scoring and
per-set averaging, parameter and MAC counts."""
