"""Quickstart: a small ×4 RRDBNet trained on the bundled sample photos, on a laptop CPU.

`scripts/quickstart.py` runs the PSNR phase (this config) and then a short GAN phase
(`quickstart.py:gan`, initialised from the PSNR workdir), evaluates on the held-out
samples/val/chelsea.png against MATLAB bicubic and prints the PSNR gain.

Command (what scripts/quickstart.py does):
  esrgan-train --config=configs/quickstart.py --workdir=runs/quickstart/psnr
  esrgan-train --config=configs/quickstart.py:gan --workdir=runs/quickstart/gan \
      --config.train.init_from=runs/quickstart/psnr
Expected time: ~3–4 min on an idle 2-core x86 CPU (TF 2.21, float32); measured 8 min with the
  CPU shared by several other jobs (load average ~10).
Expected result: PSNR (Y, crop 4) on chelsea.png +0.3 dB over MATLAB bicubic (measured: 29.57
  vs 29.26 dB, SSIM 0.723 vs 0.705) after 1000 PSNR steps; the 100-step GAN phase keeps it
  (+0.31 dB): without the ImageNet VGG it is L1 + 5e-3·RaGAN, so the pixel weight stays 1.

Perceptual loss offline: `perceptual.weights = "imagenet_if_cached"` uses the ImageNet VGG19
weights if they are already in ~/.keras/models and otherwise logs a warning and DROPS the
perceptual term (a random VGG gives a meaningless loss; the quickstart must not need the
network). Pass `--config.perceptual.weights=imagenet` to download them.
"""

import os

import esrgan_tf
from esrgan_tf import configlib


def get_config(variant: str = ""):
  """The PSNR phase; `variant` "gan" gives the short GAN phase."""
  if variant not in ("", "psnr", "gan"):
    raise ValueError(f"unknown quickstart variant {variant!r} (known: psnr, gan)")
  c = configlib.load_sibling(__file__, "esrgan_x4" if variant == "gan" else "psnr_x4").get_config()
  c.model.update(num_features=16, num_blocks=2, growth_channels=8)
  c.data.update(train_dir=os.path.join(esrgan_tf.SAMPLES_DIR, "train"),
                val_dir=os.path.join(esrgan_tf.SAMPLES_DIR, "val"),
                gt_size=64, batch_size=8, shuffle_buffer=16)
  c.train.update(strategy="default", steps=1000, steps_per_loop=50, log_every=50,
                 eval_every=1000, checkpoint_every=500, keep_checkpoints=1, ema_decay=0.99)
  # A high LR for a tiny net and a short run (measured: 800 steps at 2e-3 beat 1000 at 1e-3).
  c.optim.update(g_lr=2e-3, milestones=(700,), gamma=0.5)
  if variant == "gan":
    c.discriminator.update(num_features=16)
    c.perceptual.weights = "imagenet_if_cached"
    c.loss.pixel_weight = 1.0
    c.train.update(steps=100, eval_every=100, checkpoint_every=100)
    c.optim.update(g_lr=1e-4, d_lr=1e-4, milestones=())
  return c
