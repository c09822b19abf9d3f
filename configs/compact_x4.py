"""Real-ESRGAN's compact network ×4 (SRVGGNetCompact, the realesr-general-x4v3 setting).

Model: num_feat 64, num_conv 32, upscale 4, PReLU (1,213,296 parameters; realesr-animevideov3 is
num_conv 16). Data and optimisation: psnr_x4.py's (L1, Adam 2e-4, EMA 0.999) on BICUBIC LR;
Real-ESRGAN trains it on its degradation pipeline: set `config.data.pipeline = "realesrgan"` and
`config.data.degradation` as configs/realesrnet_x4plus.py does.
Command:
  esrgan-train --config=configs/compact_x4.py --workdir=runs/compact_x4 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (`:smoke`: num_feat 8, num_conv 2 for 20 steps on the bundled samples, ~1 min on a CPU.)
Time: not measured; ≈ 2.4 MFLOP per LR pixel against ≈ 36 for RRDBNet ×4: ~15× less per step.
Result: not measured; bicubic-trained, expect Set5 ×4 between bicubic (28.42 dB) and the
  RRDBNet PSNR model (32.73 dB) on Y.
"""

from esrgan_tf.train import configs


def get_config(variant: str = ""):
  """psnr_x4 with the Compact generator; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "psnr_x4").get_config(variant)
  # SRVGGNetCompact kwargs (Real-ESRGAN's names) plus `arch` for models.build_generator.
  c.model = dict(arch="srvgg", num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4,
                 act_type="prelu")
  c.data.color_augment = False  # As psnr_x4: trained on DIV2K-size data, natural colours.
  if variant == "smoke":
    c.model.num_feat, c.model.num_conv = 8, 2
  return c
