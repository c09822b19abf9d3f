"""PSNR-oriented RRDBNet ×8: psnr_x4.py with scale 8 and 256×256 HR crops (32×32 LR).

Command:
  esrgan-train --config=configs/psnr_x8.py --workdir=runs/psnr_x8 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
Expected time: ~1.3× a psnr_x4 step (the same LR size, one more ×2 stage): about a week on one
  V100-class GPU for 1M steps.
Expected result: Set5 ×8 ≈ 27 dB PSNR on Y, crop_border 8 (bicubic: 24.40 dB).
"""

from esrgan_tf.train import configs


def get_config(variant: str = ""):
  """psnr_x4 at scale 8 with 256² crops; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "psnr_x4").get_config(variant)
  c.model.scale = 8
  c.data.color_augment = False  # As psnr_x4: DIV2K's colours need no augmentation.
  c.data.gt_size = 64 if variant == "smoke" else 256
  return c
