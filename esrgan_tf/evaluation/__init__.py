"""Metrics (PSNR/SSIM as BasicSR computes them) and the HTML report."""
