"""Real-ESRGAN ×4 (the GAN stage): RRDBNet G, U-Net SN D, L1 + multi-layer perceptual + GAN.

Real-ESRGAN options/train_realesrgan_x4plus.yml: the degradation pipeline of
realesrnet_x4plus.py; U-Net discriminator with spectral norm (num_feat 64, skip_connection);
losses L1 (weight 1) + perceptual (VGG19 before ReLU, L1, {conv1_2: 0.1, conv2_2: 0.1,
conv3_4: 1, conv4_4: 1, conv5_4: 1}, weight 1) + vanilla GAN (weight 0.1); `l1_gt_usm: True`,
`percep_gt_usm: True`, `gan_gt_usm: False`; Adam 1e-4 for G and D, β (0.9, 0.99), milestone
400k of 400k steps; EMA 0.999; G initialised from Real-ESRNet (params_ema).

Perceptual weights: the Keras ImageNet VGG19 (caffe preprocessing) where BasicSR uses
torchvision's VGG19 with ImageNet normalisation; `--config.perceptual.weights=PATH` takes a
Keras VGG19 weights file. `:smoke` uses "imagenet_if_cached" (as configs/quickstart.py): the
perceptual term is dropped with a warning when the VGG19 weights were never downloaded.

Command:
  esrgan-train --config=configs/realesrgan_x4plus.py --workdir=runs/realesrgan_x4plus \
      --config.train.init_from=runs/realesrnet_x4plus \
      --config.data.train_dir=DF2K_HR --config.data.val_dir=Set5/HR
  Fine-tuning from the published G and D (Real-ESRGAN's finetune_realesrgan_x4plus.yml):
      --config.train.init_from=RealESRGAN_x4plus.pth \
      --config.train.init_discriminator_from=RealESRGAN_x4plus_netD.pth
  (`:smoke`: tiny G (nf 8, nb 1) and D (nf 8), the bundled photos, 32² GT, batch 4, 20 steps:
  20 s in total on 2 shared CPU cores; l_g_gan ≈ 0.1·log 2 and d_loss ≈ 2·log 2 (D near chance),
  l_pix falls; eval PSNR far below bicubic, as in realesrnet_x4plus.py:smoke.)
Expected time per step (scripts/measure_train_step.py --config=configs/realesrgan_x4plus.py
  --batch=12 --gt=256 --steps=2: full RRDBNet + U-Net SN D nf 64 + VGG19 to conv5_4, synthetic
  batches, TF 2.21, 2 idle AMD EPYC cores with AVX-512 and AVX512_BF16, 2026-12-01): float32 at
  the yml's batch 12 does not fit in 23 GiB (killed at 24.4 GB RSS); `--precision=mixed_bfloat16`
  (`--config.train.precision=mixed_bfloat16` when training): 16.4 s/step (0.73 images/s), peak
  RSS 11.3 GB; float32 at batch 6: 16.9 s/step (0.36 images/s), peak RSS 10.8 GB. Real-ESRGAN
  trained 400k steps on 4 V100s; on one GPU/TPU: not measured.
Expected result: sharper, artefact-free textures on real photos than Real-ESRNet, at lower
  PSNR; Real-ESRGAN publishes this recipe's result as RealESRGAN_x4plus.pth.
"""

from esrgan_tf.models import vgg
from esrgan_tf.train import configs

realesrnet = configs.load_sibling(__file__, "realesrnet_x4plus")


def get_config(variant: str = ""):
  """Real-ESRGAN x4plus; `variant` "smoke" shrinks it."""
  if variant not in ("", "smoke"):
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  c = realesrnet.get_config(variant)
  c.phase = "gan"
  c.discriminator.update(type="unet_sn", num_features=8 if variant == "smoke" else 64)
  c.discriminator.skip_connection = True
  c.perceptual.layers = dict(vgg.REAL_ESRGAN_LAYERS)  # BasicSR layer names
  c.perceptual.criterion = "l1"
  c.perceptual.update(weight=1.0, weights="imagenet_if_cached" if variant == "smoke"
                      else "imagenet")
  c.loss.update(pixel_criterion="l1", pixel_weight=1.0, gan_weight=0.1, l1_gt_usm=True,
                percep_gt_usm=True, gan_gt_usm=False)
  c.loss.gan_type = "vanilla"
  c.optim.update(g_lr=1e-4, d_lr=1e-4)
  if variant == "smoke":
    c.optim.milestones = (10,)
  else:
    c.optim.milestones = (400_000,)
    c.train.steps = 400_000
  c.train.ema_decay = 0.9 if variant == "smoke" else 0.999
  return c
