"""Two ×4 heads on one trunk: `psnr` (L1 only) and `gan` (the ESRGAN loss), trained together.

ESRGAN reaches the perception–distortion trade-off by interpolating a PSNR network and a GAN
network offline (§3.4); here both are heads of one MultiHeadRRDBNet, trained in one run from one
trunk pass, and blended live at inference (`esrgan-upscale --blend_heads=psnr:0.3,gan:0.7`).

Recipe (esrgan_tf/train/head_config.py): the gan phase of esrgan_x4.py (128² HR crops, batch 16,
Adam 1e-4, VGG19 conv5_4, RaGAN in BasicSR's form), with
  psnr: 1·L1 (no perceptual or GAN term, no discriminator),
  gan:  1e-2·L1 + 1·perceptual + 5e-3·RaGAN, its own VGG-style discriminator;
both heads move the trunk (trunk_gradient 1). Start from a PSNR-oriented ×4 RRDBNet: its weights
go into the trunk and BOTH heads (train.init_from takes a workdir, .pth, .safetensors, .keras):
  esrgan-train --config=configs/psnr_x4.py --workdir=runs/psnr_x4 ...
  esrgan-train --config=configs/multihead_psnr_gan_x4.py --workdir=runs/psnr_gan_x4 \
      --config.train.init_from=runs/psnr_x4 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (`:smoke`: a tiny net for a few steps on the bundled samples, seconds on a CPU.)
Set `--config.head_losses.gan.trunk_gradient=0` to keep the trunk PSNR-oriented (the gan head
then learns only its own convs on the trunk's features).
Expected time: about esrgan_x4's (one more head: 2.7 of 35.9 MFLOP per LR pixel), 3–4 days on
  one V100-class GPU for 400k steps.
Expected result: not measured at this size; the psnr head should stay near the PSNR model's
  Set5 figure and the gan head behave as esrgan_x4 (PSNR ~2–3 dB lower, sharper textures).
"""

from esrgan_tf.train import configs

HEADS = ({"name": "psnr", "scale": 4}, {"name": "gan", "scale": 4})


def get_config(variant: str = ""):
  """The config; `variant` "smoke" shrinks it."""
  if variant not in ("", "smoke"):
    raise ValueError(f"unknown config variant {variant!r} (known: smoke)")
  c = configs.load_sibling(__file__, "esrgan_x4").get_config(variant)
  model = dict(c.model)
  model.pop("scale")
  # The gan head is the default output (what esrgan-upscale gives without --head).
  c.model = dict(model, arch="multihead_rrdbnet", heads=[dict(h) for h in HEADS],
                 default_head="gan")
  c.head_losses = {
      "psnr": dict(weight=1.0, pixel_weight=1.0, perceptual_weight=0.0, gan_weight=0.0,
                   trunk_gradient=1.0),
      "gan": dict(weight=1.0, pixel_weight=1e-2, perceptual_weight=1.0, gan_weight=5e-3,
                  trunk_gradient=1.0),
  }
  if variant == "smoke":
    c.train.update(steps=4, steps_per_loop=2, log_every=2, eval_every=4, checkpoint_every=2,
                   eval_niqe=False)
    c.optim.milestones = (2,)
  return c
