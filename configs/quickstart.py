"""Quickstart: a small ×4 RRDBNet trained on the bundled photos on a laptop CPU (README command 1).

Command (both phases, then the held-out evaluation and a SavedModel, resuming when re-run):
  python scripts/quickstart.py --workdir=runs/quickstart [--seed=1]
or the same two phases by hand (the same model for the same seed: the recipe is all here):
  esrgan-train --config=configs/quickstart.py --workdir=runs/quickstart/psnr
  esrgan-train --config=configs/quickstart.py:gan --workdir=runs/quickstart/gan \
      --config.train.init_from=runs/quickstart/psnr
Expected time: 4000 + 100 steps, ~2 min on 2 idle x86 cores (TF 2.21, float32); 4–5 min shared.
Expected result (GAN-phase EMA generator, Y-PSNR, crop 4, vs MATLAB bicubic on the held-out
  photos samples/val + samples/heldout): mean gain ≈ +1.1 to +1.3 dB, chelsea ≈ +0.45 dB, the flat
  grey sky within 0.2 dB of bicubic. Per-photo figures, seeds and the recipe's experiments:
  docs/experiments/quickstart.md.
"""

import math
import os

import esrgan_tf
from esrgan_tf.train import configs

# Colour augmentation (`config.data.color`, esrgan_tf.data.augment): without it the model learns the
# four training photos' colours and tints strongly coloured photos (up to −32 dB vs bicubic):
# RGB permutation, any hue, saturation ×[0.5, 1.5]; half the pairs "flat" (contrast cut to
# c in [0, 1] towards a random colour), half with HR grain of σ ≤ 4 levels. Measured choices:
# docs/experiments/quickstart.md.
COLOR_AUGMENT = dict(permute=True, max_hue=math.pi, saturation=(0.5, 1.5), min_contrast=0.0,
                     contrast_prob=0.5, grain=4 / 255, grain_prob=0.5)


def get_config(variant: str = ""):
  """The PSNR phase; `variant` "gan" gives the short GAN phase."""
  if variant not in ("", "psnr", "gan"):
    raise ValueError(f"unknown quickstart variant {variant!r} (known: psnr, gan)")
  c = configs.load_sibling(__file__, "esrgan_x4" if variant == "gan" else "psnr_x4").get_config()
  c.model.update(num_features=16, num_blocks=2, growth_channels=8)
  c.data.update(train_dir=os.path.join(esrgan_tf.SAMPLES_DIR, "train"),
                val_dir=os.path.join(esrgan_tf.SAMPLES_DIR, "val"),
                gt_size=64, batch_size=8, shuffle_buffer=16)
  c.data.color_augment = True  # Four training photos: their colours must not be learnt.
  c.data.color.update(COLOR_AUGMENT)
  # 4000 steps, EMA decay 0.99 (0.999 left colour casts on a tiny net): measured choices in
  # docs/experiments/quickstart.md.
  c.train.update(strategy="default", steps=4000, steps_per_loop=50, log_every=100,
                 eval_every=4000, checkpoint_every=1000, keep_checkpoints=1, ema_decay=0.99)
  # A high LR for a tiny net, ×0.3 at 60/80/90 % so the weights settle and flat colours come
  # out right (docs/experiments/quickstart.md).
  c.optim.update(g_lr=2e-3, milestones=(2400, 3200, 3600), gamma=0.3)
  if variant == "gan":
    c.discriminator.update(num_features=16)
    c.perceptual.weights = "imagenet_if_cached"
    c.loss.pixel_weight = 1.0
    c.train.update(steps=100, eval_every=100, checkpoint_every=100)
    c.optim.update(g_lr=1e-4, d_lr=1e-4, milestones=())
  return c
