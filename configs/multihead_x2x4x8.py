"""One RRDBNet trunk, three output heads: ×2, ×4 and ×8 from one pass (MultiHeadRRDBNet).

Model: the trunk of ESRGAN/Real-ESRGAN (nf=64 nb=23 gc=32) and one head per scale, each its own
×2 stages, conv_hr and conv_last, with the "nearest" upsampler of the published weights, so
Real-ESRGAN's x4plus can initialise the trunk and the x4 head (`train.init_from`, or
`esrgan_tf.models.multihead.from_rrdbnet`).

Training (esrgan_tf/train/head_config.py): the data pipeline makes 256² HR crops and their
MATLAB-bicubic ×1/8 LR (32², what every head sees); the ×8 head is trained against the HR, the
×4 and ×2 heads against the HR resized by 1/2 and 1/4 with the same MATLAB bicubic (128², 64²).
Each head's loss mix is `head_losses` (absent fields: the single-head `loss`/`perceptual`
values); the generator loss is Σ_head weight · loss_head, one trunk pass and one update per step.

Phases, as for one head (ESRGAN §4.1):
  esrgan-train --config=configs/multihead_x2x4x8.py --workdir=runs/mh_psnr \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  esrgan-train --config=configs/multihead_x2x4x8.py:gan --workdir=runs/mh_gan \
      --config.train.init_from=runs/mh_psnr \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (`:smoke` / `:gan_smoke`: tiny nets for a few steps on the bundled samples, seconds on a CPU.)
The gan phase gives each head the ESRGAN loss (1e-2·L1 + perceptual + 5e-3·RaGAN) and its own
VGG-style discriminator at its target size (64², 128², 256²).
Expected time: one step costs about psnr_x8's plus the ×2/×4 heads (the trunk runs once on the
  32² LR; the ×8 head is 11 of the 47 MFLOP per LR pixel: scripts/benchmark.py
  --sections=multihead), i.e. about a week on one V100-class GPU for 1M steps.
Expected result: not measured at this size (no GPU here). At the quickstart size (nf 16, nb 2:
  configs/multihead_quickstart.py, docs/multihead.md) the joint heads gained +0.96/+0.70/+0.51 dB
  over bicubic (×2/×4/×8) against +1.11/+1.16 dB for a head trained alone on the same data and
  +0.74/+1.21/+0.53 dB for single-scale models: sharing a 2-block trunk cost up to 0.5 dB at ×4.
"""

from esrgan_tf.train import configs

HEADS = ({"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}, {"name": "x8", "scale": 8})
VARIANTS = ("", "smoke", "gan", "gan_smoke")


def get_config(variant: str = ""):
  """The psnr phase; `variant` "gan" the gan phase, "smoke"/"gan_smoke" tiny CI runs."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown config variant {variant!r} (known: {', '.join(VARIANTS[1:])})")
  gan = variant.startswith("gan")
  smoke = variant.endswith("smoke")
  c = configs.load_sibling(__file__, "esrgan_x4" if gan else "psnr_x4").get_config(
      "smoke" if smoke else "")
  model = dict(c.model)
  model.pop("scale")  # each head has its own
  # MultiHeadRRDBNet kwargs; "nearest" (the published weights' layout) for every head.
  c.model = dict(model, arch="multihead_rrdbnet", heads=[dict(h) for h in HEADS],
                 default_head="x4")
  # HR crops at the largest scale (×8): 256² → 32² LR, as psnr_x8; the ×4 target is 128² (psnr_x4's
  # crop), the ×2 target 64². Smoke: 64² → 8² LR, targets 16², 32², 64² (the smallest the
  # VGG-style discriminator takes is 8²).
  c.data.gt_size = 64 if smoke else 256
  if gan:
    # ESRGAN's G loss for every head (esrgan_x4: 1e-2·L1 + 1·VGG conv5_4 + 5e-3·RaGAN).
    mix = dict(weight=1.0, pixel_weight=1e-2, perceptual_weight=1.0, gan_weight=5e-3,
               trunk_gradient=1.0)
  else:
    mix = dict(weight=1.0, pixel_weight=1.0, perceptual_weight=0.0, gan_weight=0.0,
               trunk_gradient=1.0)
  # Equal weights: every loss is a per-pixel mean, so the heads' losses are on one scale.
  c.head_losses = {h["name"]: dict(mix) for h in HEADS}
  if smoke:
    c.train.update(steps=4, steps_per_loop=2, log_every=2, eval_every=4, checkpoint_every=2,
                   eval_niqe=False)
    c.optim.milestones = (2,)
  return c
