"""Real-ESRGAN's compact network ×4 (SRVGGNetCompact, the realesr-general-x4v3 setting).

Model: num_feat 64, num_conv 32, upscale 4, PReLU — the arguments Real-ESRGAN's
inference_realesrgan.py builds realesr-general-x4v3 with (1,213,296 parameters; realesr-animevideov3
is the same with num_conv 16). Data and optimisation: psnr_x4.py's (L1, Adam 2e-4, EMA 0.999) on
BICUBIC LR; Real-ESRGAN trains this network on its second-order degradation pipeline: set
`config.data.pipeline = "realesrgan"` and `config.data.degradation` as configs/realesrnet_x4plus.py
does.

The trainer builds the generator with `esrgan_tf.models.build_generator(config.model)` (the
`arch` key selects the class); `--model=WORKDIR` loads the trained Compact net the same way.

Command:
  esrgan-train --config=configs/compact_x4.py --workdir=runs/compact_x4 \
      --config.data.train_dir=DIV2K_train_HR --config.data.val_dir=Set5/HR
  (`:smoke`: num_feat 8, num_conv 2 for 20 steps on the bundled samples, ~1 min on a CPU.)
Expected time: not measured. Per LR pixel the 3×3 convs cost 2·(27·64 + 32·9·64² + 9·64·48)
  ≈ 2.4 MFLOP, against ≈ 36 MFLOP for RRDBNet x4 (its up/HR convs run at 2–4× resolution):
  ~15× less compute per step than psnr_x4.
Expected result: not measured here; bicubic-trained, expect Set5 ×4 between bicubic (28.42 dB)
  and the RRDBNet PSNR model (32.73 dB) on Y.
"""

from esrgan_tf.train import configs


def get_config(variant: str = ""):
  """psnr_x4 with the Compact generator; `variant` "smoke" shrinks it."""
  c = configs.load_sibling(__file__, "psnr_x4").get_config(variant)
  # SRVGGNetCompact kwargs (Real-ESRGAN's names) plus `arch` for models.build_generator.
  c.model = dict(arch="srvgg", num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4,
                 act_type="prelu")
  if variant == "smoke":
    c.model.num_feat, c.model.num_conv = 8, 2
  return c
