"""Real-ESRGAN ×4plus, the GAN stage; `:finetune` fine-tunes the published model on your photos.

Recipe (options/train_realesrgan_x4plus.yml): realesrnet_x4plus.py's degradations, U-Net SN D,
L1 + perceptual (torchvision VGG19, 5 layers) + vanilla GAN 0.1 on the USM-sharpened GT, torch's
Adam 1e-4, EMA 0.999; steps equal to Real-ESRGAN's (docs/training_parity.md).
Command: esrgan-train --config=configs/realesrgan_x4plus.py --workdir=runs/realesrgan_x4plus \
      --config.train.init_from=runs/realesrnet_x4plus --config.data.train_dir=DF2K_HR \
      --config.data.val_dir=Set5/HR
  Fine-tune: --config=configs/realesrgan_x4plus.py:finetune --config.data.train_dir=MY_PHOTOS
      (G: RealESRGAN_x4plus, or any --model file: .pth/.safetensors/ncnn .param, via
      --config.train.init_from; D: the published netD, or --config.train.init_discriminator_from=
      "" for a new one). `:smoke`: tiny nets, 20 steps on the bundled photos, ~20 s.
Time: 16.4 s/step at the yml's batch 12 and 256² GT with --config.train.precision=mixed_bfloat16
  on 2 CPU cores (float32 needs > 23 GiB there); 400k steps want GPUs.
Result: the recipe of the published RealESRGAN_x4plus.pth; fine-tuning starts from its exact
  outputs. Measurements: docs/experiments/realesrgan.md.
"""

from esrgan_tf.models import vgg
from esrgan_tf.train import configs

realesrnet = configs.load_sibling(__file__, "realesrnet_x4plus")


# Fine-tuning (Real-ESRGAN's options/finetune_realesrgan_x4plus.yml: the x4plus recipe, D from
# the published netD): the published generator by name (downloaded once, weights.registry) and D.
FINETUNE_GENERATOR = "RealESRGAN_x4plus"
FINETUNE_DISCRIMINATOR = "RealESRGAN_x4plus_netD"


def get_config(variant: str = ""):
  """Real-ESRGAN x4plus; `variant` "smoke" shrinks it, "finetune" starts from the published G
  and D."""
  if variant not in ("", "smoke", "finetune"):
    raise ValueError(f"unknown config variant {variant!r} (known: smoke, finetune)")
  smoke = variant == "smoke"
  c = realesrnet.get_config("smoke" if smoke else "")
  c.phase = "gan"
  c.discriminator.update(type="unet_sn", num_features=8 if smoke else 64)
  c.discriminator.skip_connection = True
  c.perceptual.layers = dict(vgg.REAL_ESRGAN_LAYERS)  # BasicSR layer names
  c.perceptual.criterion = "l1"
  # Real-ESRGAN's VGG19 is torchvision's (ImageNet mean/std), downloaded once (weights.registry).
  c.perceptual.update(weight=1.0, weights="imagenet_if_cached" if smoke else "torchvision")
  c.loss.update(pixel_criterion="l1", pixel_weight=1.0, gan_weight=0.1, l1_gt_usm=True,
                percep_gt_usm=True, gan_gt_usm=False)
  c.loss.gan_type = "vanilla"
  c.optim.update(g_lr=1e-4, d_lr=1e-4)
  if smoke:
    c.optim.milestones = (10,)
  else:
    c.optim.milestones = (400_000,)
    c.train.steps = 400_000
  c.train.ema_decay = 0.9 if smoke else 0.999
  if variant == "finetune":
    c.train.update(init_from=FINETUNE_GENERATOR, init_discriminator_from=FINETUNE_DISCRIMINATOR)
  return c
