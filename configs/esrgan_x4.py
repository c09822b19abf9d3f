"""ESRGAN ×4 GAN phase (paper §4.1), derived from psnr_x4.py.

G loss = 1e-2·L1 + 1·perceptual(VGG19 conv5_4, pre-activation) + 5e-3·RaGAN, D loss = RaGAN;
Adam 1e-4 for G and D, halved at 50k/100k/200k/300k of 400k steps; G initialised from the PSNR
run (`train.init_from`).

Command:
  esrgan-train --config=configs/esrgan_x4.py --workdir=runs/esrgan_x4 \
      --config.train.init_from=runs/psnr_x4 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (needs torchvision's VGG19 weights: downloaded once into the esrgan_tf cache.)
Expected time: ~3–4 days on one V100-class GPU for 400k steps (two extra networks per step).
Expected result: PSNR drops ~2–3 dB below the PSNR model (as in the paper: ESRGAN trades PSNR
  for texture); judge it on the image grids (bicubic | SR | HR) and perceptual metrics.
"""

from esrgan_tf.train import configs

psnr_x4 = configs.load_sibling(__file__, "psnr_x4")


def get_config(variant: str = ""):
  """The GAN-phase config; `variant` "smoke" shrinks it."""
  c = psnr_x4.get_config()
  c.phase = "gan"
  c.loss.pixel_weight = 1e-2
  c.loss.gan_weight = 5e-3
  c.perceptual.weight = 1.0
  # BasicSR's VGG19: torchvision's ImageNet weights with ImageNet mean/std (downloaded once,
  # esrgan_tf.weights.registry), not Keras' caffe VGG19: a different network gives a different loss.
  c.perceptual.weights = "torchvision"
  # BasicSR's D loss (each term detaches the other side's batch mean, five D passes per step):
  # the paper's form moves D's first update 40 % away from BasicSR's (docs/training_parity.md).
  c.loss.ragan_form = "basicsr"
  c.optim.epsilon_form = "torch"  # BasicSR trains with torch.optim.Adam.
  c.data.color_augment = False  # DIV2K's 800 photos span natural colours; BasicSR has none.
  c.optim.g_lr = 1e-4
  c.optim.d_lr = 1e-4
  c.optim.milestones = (50_000, 100_000, 200_000, 300_000)
  c.train.steps = 400_000
  if variant == "smoke":
    psnr_x4.apply_smoke(c)
  elif variant:
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  return c
