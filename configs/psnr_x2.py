"""PSNR-oriented RRDBNet ×2: psnr_x4.py with scale 2 (HR crop 128 → 64×64 LR).

Command:
  esrgan-train --config=configs/psnr_x2.py --workdir=runs/psnr_x2 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
Expected time: ~1.5× a psnr_x4 step (4× the LR pixels through the trunk): over a week on one
  V100-class GPU for 1M steps.
Expected result: Set5 ×2 ≈ 38 dB PSNR on Y, crop_border 2 (bicubic: 33.66 dB).
"""

from esrgan_tf.train import configs


def get_config(variant: str = ""):
  """psnr_x4 at scale 2; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "psnr_x4").get_config(variant)
  c.model.scale = 2
  c.data.color_augment = False  # As psnr_x4: DIV2K's colours need no augmentation.
  return c
