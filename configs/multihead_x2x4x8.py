"""One RRDBNet trunk, three output heads: ×2, ×4 and ×8 from one pass (MultiHeadRRDBNet).

The model part is complete: the trunk of ESRGAN/Real-ESRGAN (nf=64 nb=23 gc=32) and one head
per scale, each its own ×2 stages, conv_hr and conv_last, with the "nearest" upsampler of the
published weights, so Real-ESRGAN's x4plus can initialise the trunk and the x4 head
(`esrgan_tf.models.multihead.from_rrdbnet`, or `MultiHeadRRDBNet.load_rrdbnet`).

Training: NOT YET. The data/loss/optim/train fields below are psnr_x4's, kept so that every
config has the same keys; per-head losses and weights (`heads` entries gaining pixel/perceptual/
GAN weights), smaller-scale targets made from the ×8 HR by MATLAB bicubic, and a discriminator per
GAN head come with multi-head training. Until then build the model from it:

  from esrgan_tf import models
  from esrgan_tf.train import configs
  c = configlib.load_config_module("configs/multihead_x2x4x8.py").get_config()
  model = models.build_generator(c.model)      # → MultiHeadRRDBNet, heads x2, x4, x8

`:smoke` shrinks the net (nf 8, nb 1, gc 4) as the other configs' smoke variants do.
"""

from esrgan_tf.train import configs

HEADS = ({"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}, {"name": "x8", "scale": 8})


def get_config(variant: str = ""):
  """psnr_x4 with the multi-head generator; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "psnr_x4").get_config(variant)
  model = dict(c.model)
  model.pop("scale")  # each head has its own
  # MultiHeadRRDBNet kwargs; "nearest" (the published weights' layout) for every head.
  c.model = dict(model, arch="multihead_rrdbnet", heads=[dict(h) for h in HEADS],
                 default_head="x4")
  return c
