"""Real-ESRNet ×4plus (Real-ESRGAN's first stage): RRDBNet, L1 only, on the degradation pipeline.

Recipe (options/train_realesrnet_x4plus.yml): Real-ESRGAN's second-order degradations
(`esrgan_tf.data.realesrgan`), L1 against the USM-sharpened GT, gt_size 256, batch 12,
torch's Adam 2e-4, 1M steps, EMA 0.999, initialised from ESRGAN (or the PSNR RRDBNet).
Command: esrgan-train --config=configs/realesrnet_x4plus.py --workdir=runs/realesrnet_x4plus \
      --config.train.init_from=ESRGAN_SRx4_DF2KOST_official-ff704c30.pth \
      --config.data.train_dir=DF2K_HR --config.data.val_dir=Set5/HR
  (`:smoke`: tiny RRDBNet, the bundled photos, 20 steps, ~17 s: checks the installation.)
Time: 14.8 s/step at the yml's batch 12 and 256² GT, float32, 2 CPU cores (peak RSS 13.2 GB);
  the degradation pipeline alone feeds 26× that rate. 1M steps want GPUs.
Result: judge it on real low-quality photos (esrgan-eval --lr=PHOTOS scores NIQE), not on
  bicubic PSNR; Real-ESRGAN publishes it as RealESRNet_x4plus.pth.
  Measurements: docs/experiments/realesrgan.md.
"""

from esrgan_tf.train import configs

psnr_x4 = configs.load_sibling(__file__, "psnr_x4")


def degradation_pipeline(c, gt_size: int) -> None:
  """Switches `c.data` to Real-ESRGAN's degradation pipeline with the yml's defaults."""
  from esrgan_tf.data import realesrgan  # pylint: disable=g-import-not-at-top
  degradation = realesrgan.default_degradation_config()
  degradation.gt_size = gt_size
  c.data.pipeline = "realesrgan"
  c.data.degradation = degradation
  c.data.gt_size = gt_size


def apply_smoke(c) -> None:
  """Tiny nets and a few steps on the bundled photos, with a small degradation crop."""
  psnr_x4.apply_smoke(c)
  # gt 32 (LR 8) from 96² crop/pad instead of 400² (the 21-tap kernels dominate the cost).
  c.data.gt_size = c.data.degradation.gt_size = 32
  c.data.degradation.crop_pad_size = 96
  c.data.degradation.queue_size = 8
  c.data.shuffle_buffer = 4
  c.train.strategy = "default"


def get_config(variant: str = ""):
  """Real-ESRNet x4plus; `variant` "smoke" shrinks it."""
  c = psnr_x4.get_config()
  c.phase = "psnr"
  c.model.update(num_features=64, num_blocks=23, growth_channels=32, scale=4,
                 upsampler="nearest")
  degradation_pipeline(c, gt_size=256)
  c.data.batch_size = 12
  c.loss.update(pixel_criterion="l1", pixel_weight=1.0)
  # Real-ESRGAN has none, and recolouring a degraded pair is wrong (noise and JPEG do not
  # commute with colour maps); train.validate_config refuses it with this pipeline.
  c.data.color_augment = False
  c.loss.l1_gt_usm = True  # yml gt_usm: True
  c.loss.percep_gt_usm = False
  c.loss.gan_gt_usm = False
  # torch's Adam (Real-ESRGAN trains with BasicSR's torch.optim.Adam).
  c.optim.update(g_lr=2e-4, milestones=(1_000_000,), gamma=0.5, beta1=0.9, beta2=0.99,
                 epsilon_form="torch")
  c.train.update(steps=1_000_000, ema_decay=0.999)
  if variant == "smoke":
    apply_smoke(c)
  elif variant:
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  return c
