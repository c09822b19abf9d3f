"""Real-ESRNet ×4 (Real-ESRGAN's first stage): RRDBNet, L1 only, on the degradation pipeline.

Real-ESRGAN options/train_realesrnet_x4plus.yml: RRDBNet nf 64 nb 23 gc 32; Real-ESRGAN's
second-order degradations with their default ranges (`esrgan_tf.data.realesrgan.
default_degradation_config()`, the yml's names); `gt_usm: True` (the LR is made from the
USM-sharpened GT and L1 is taken against it: `loss.l1_gt_usm`); gt_size 256, batch 12 (per GPU in
the yml; here the global batch), queue_size 180; Adam 2e-4 β (0.9, 0.99), milestone 1M of 1M
steps (i.e. no decay); EMA 0.999; initialised from ESRGAN weights.

Initialisation: the yml's pretrain_network_g is ESRGAN_SRx4_DF2KOST_official-ff704c30.pth
(BasicSR's ESRGAN ×4 GAN model, params_ema); the PSNR RRDBNet (RRDB_PSNR_x4.pth or a psnr_x4
workdir) works as well. Give either with `--config.train.init_from=PATH` (left empty so the
config runs without a download).

Command:
  esrgan-train --config=configs/realesrnet_x4plus.py --workdir=runs/realesrnet_x4plus \
      --config.train.init_from=ESRGAN_SRx4_DF2KOST_official-ff704c30.pth \
      --config.data.train_dir=DF2K_HR --config.data.val_dir=Set5/HR
  (`:smoke`: tiny RRDBNet (nf 8, nb 1), the bundled photos, 32² GT from 96² degradation crops,
  batch 4, 20 steps, no init: 17 s in total on 2 shared CPU cores; l_pix falls 0.36 → 0.32 and
  eval PSNR stays far below bicubic (~10 vs 29.3 dB on chelsea.png): it checks the installation,
  it does not train a model.)
Expected time per step (scripts/measure_train_step.py --config=configs/realesrnet_x4plus.py
  --batch=12 --gt=256 --steps=2: full RRDBNet, the yml's batch 12 and 256² GT, synthetic batches,
  float32, TF 2.21, 2 idle AMD EPYC cores with AVX-512, 2026-12-01): 14.8 s/step (0.81 images/s),
  warm-up (trace + first step) 49 s, peak RSS 13.2 GB. The degradation pipeline alone
  (`scripts/benchmark.py --sections=data`: realesrgan_degradation.benchmark_degradation_pipeline,
  gt 256, crop_pad 400, batch 12, bundled photos) feeds 20.8 images/s on the same CPU, 26× this
  step's rate. Real-ESRGAN trained its 1M steps on 4 V100s (batch 12 each); on one GPU/TPU: not
  measured.
Expected result: eval/psnr on a bicubic validation set is NOT the target (the model is trained
  for real degradations and sharpened GT); judge it on real low-quality photos. Real-ESRGAN
  publishes the result of this recipe as RealESRNet_x4plus.pth.
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
  c.loss.l1_gt_usm = True  # yml gt_usm: True
  c.loss.percep_gt_usm = False
  c.loss.gan_gt_usm = False
  c.optim.update(g_lr=2e-4, milestones=(1_000_000,), gamma=0.5, beta1=0.9, beta2=0.99)
  c.train.update(steps=1_000_000, ema_decay=0.999)
  if variant == "smoke":
    apply_smoke(c)
  elif variant:
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  return c
