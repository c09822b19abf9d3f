"""ESRGAN ×2 GAN phase: esrgan_x4.py with scale 2; initialise from a psnr_x2 run.

Command:
  esrgan-train --config=configs/esrgan_x2.py --workdir=runs/esrgan_x2 \
      --config.train.init_from=runs/psnr_x2 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
Expected time: ~4–5 days on one V100-class GPU for 400k steps.
Expected result: sharper textures than psnr_x2 at ~1–2 dB lower PSNR.
"""

import importlib.util
import os


def _load_sibling(name):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"esrgan_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(variant: str = ""):
  """esrgan_x4 at scale 2; `variant` "smoke" shrinks it."""
  c = _load_sibling("esrgan_x4").get_config(variant)
  c.model.scale = 2
  return c
