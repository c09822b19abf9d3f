"""Does sharing a trunk cost PSNR? The quickstart recipe with ×2/×4/×8 heads, and its baselines.

Every variant is configs/quickstart.py's PSNR phase (nf 16, nb 2, gc 8, the four bundled photos,
colour augmentation, 4000 steps at 2e-3 with ×0.3 at 60/80/90 %, EMA 0.99, batch 8) on the same
16² LR crops; only the outputs differ:
  ""        one trunk, heads x2/x4/x8 trained jointly (HR crops 128², targets 32²/64²/128²: the
            ×2 and ×4 targets are the MATLAB-bicubic downscaled HR, train/head_config.py);
  "x2", "x4", "x8"
            a single-scale RRDBNet of that scale trained alone (HR crops 16·s: "x4" is the
            quickstart model);
  "x2_alone", "x4_alone", "x8_alone"
            the three-head model with only that head trained (the others weight 0): the same data
            and targets as "", without the other heads' gradients in the trunk;
  "gan", "gan_shared"
            quickstart's GAN phase for all three heads (300 steps, init_from the "" run) with a
            patch discriminator per head, or one patch discriminator shared by the three scales.
Commands (each variant its own workdir), then the per-head table:
  esrgan-train --config=configs/multihead_quickstart.py --workdir=runs/mhq/joint
  esrgan-train --config=configs/multihead_quickstart.py:x2 --workdir=runs/mhq/x2    # x4, x8 ...
  esrgan-train --config=configs/multihead_quickstart.py:gan --workdir=runs/mhq/gan \
      --config.train.init_from=runs/mhq/joint
  python scripts/eval_multihead_quickstart.py --workdirs=runs/mhq/joint,runs/mhq/x2,...
Expected time: ~10 min for "" (52 img/s), 2–5 min per other PSNR variant on 2 idle x86 cores
  (measured 15 min and 4–8.5 min on 2 cores shared with other jobs, load 3–8); "gan" 2–4 min.
Expected result (seed 0, docs/multihead.md; mean Y-PSNR gain over bicubic on the six photos of
  esrgan_tf/samples/val + heldout, crop = scale): joint heads x2 +0.96, x4 +0.70, x8 +0.51 dB;
  single-scale models +0.74, +1.21, +0.53 dB; one head trained alone on the joint data
  x2 +1.11, x4 +1.16 dB. Sharing the tiny trunk cost 0.15 dB at x2 and 0.46 dB at x4 (most of
  it on the flat photos camera_sky and retina_fovea), nothing at x8. "gan" vs "gan_shared": equal
  within 0.02 dB and 0.15 NIQE per head.
"""

from esrgan_tf.train import configs

HEADS = ({"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}, {"name": "x8", "scale": 8})
LR_SIZE = 16  # The quickstart's LR crop (64² HR at ×4).
VARIANTS = ("", "x2", "x4", "x8", "x2_alone", "x4_alone", "x8_alone", "gan", "gan_shared")


def get_config(variant: str = ""):
  """The joint three-head run; `variant` one of the baselines (module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown config variant {variant!r} (known: {', '.join(VARIANTS[1:])})")
  gan = variant.startswith("gan")
  c = configs.load_sibling(__file__, "quickstart").get_config("gan" if gan else "")
  if variant in ("x2", "x4", "x8"):
    c.model.scale = int(variant[1:])
    c.data.gt_size = LR_SIZE * c.model.scale
    return c
  model = dict(c.model)
  model.pop("scale")
  c.model = dict(model, arch="multihead_rrdbnet", heads=[dict(h) for h in HEADS],
                 default_head="x4")
  c.data.gt_size = LR_SIZE * max(h["scale"] for h in HEADS)
  if gan:
    # quickstart:gan's mix for every head (pixel 1, perceptual 1 if the VGG19 weights are
    # cached, RaGAN 5e-3); a fully convolutional discriminator so that one can judge all scales.
    c.discriminator.update(type="patch", shared=variant == "gan_shared")
    c.train.update(steps=300, eval_every=300, checkpoint_every=300)
    mix = dict(weight=1.0, pixel_weight=float(c.loss.pixel_weight),
               perceptual_weight=float(c.perceptual.weight), gan_weight=float(c.loss.gan_weight),
               trunk_gradient=1.0)
    c.head_losses = {h["name"]: dict(mix) for h in HEADS}
    return c
  trained = variant.split("_")[0] if variant else None
  c.head_losses = {
      h["name"]: dict(weight=1.0 if trained in (None, h["name"]) else 0.0, pixel_weight=1.0,
                      perceptual_weight=0.0, gan_weight=0.0, trunk_gradient=1.0)
      for h in HEADS}
  return c
