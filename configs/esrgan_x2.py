"""ESRGAN ×2 GAN phase: esrgan_x4.py with scale 2; initialise from a psnr_x2 run.

Command:
  esrgan-train --config=configs/esrgan_x2.py --workdir=runs/esrgan_x2 \
      --config.train.init_from=runs/psnr_x2 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
Expected time: ~4–5 days on one V100-class GPU for 400k steps.
Expected result: sharper textures than psnr_x2 at ~1–2 dB lower PSNR.
"""

from esrgan_tf.train import configs


def get_config(variant: str = ""):
  """esrgan_x4 at scale 2; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "esrgan_x4").get_config(variant)
  c.model.scale = 2
  c.data.color_augment = False  # As esrgan_x4: DIV2K's colours need no augmentation.
  return c
