"""Quickstart (README command 1): train a small ESRGAN on the bundled photos and measure it.

  python scripts/quickstart.py [--workdir=runs/quickstart]

1. PSNR phase of configs/quickstart.py in WORKDIR/psnr;
2. a short GAN phase (configs/quickstart.py:gan) in WORKDIR/gan, initialised from WORKDIR/psnr;
3. evaluates the EMA generator on the held-out samples/val/chelsea.png against MATLAB bicubic
   (PSNR on Y, crop_border = scale, as papers report) and prints the gain;
4. exports a SavedModel to WORKDIR/saved_model (TF Serving layout) when esrgan_tf.export exists;
5. writes WORKDIR/comparison.png: bicubic | SR | HR.

Re-running resumes (finished phases are skipped). Exit status 1 if the PSNR gain is not positive.
"""

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from esrgan_tf import cli
from esrgan_tf import fileio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory.")
_PSNR_STEPS = flags.DEFINE_integer("psnr_steps", None, "Override the PSNR-phase steps.")
_GAN_STEPS = flags.DEFINE_integer("gan_steps", None, "Override the GAN-phase steps.")


def _config(variant):
  from esrgan_tf import configlib  # pylint: disable=g-import-not-at-top
  path = os.path.join(REPO, "configs", "quickstart.py")
  return configlib.load_config_module(path).get_config(variant)


def _write_png(path, image):
  from esrgan_tf import imaging_codecs, pixels  # pylint: disable=g-import-not-at-top
  png = imaging_codecs.encode_png(pixels.from_float(image))
  fileio.write_bytes(path, png, overwrite=True)  # a re-run replaces its own comparison image


def main(argv):
  del argv
  start = time.perf_counter()
  from esrgan_tf import data, metrics, train, upscaler
  from esrgan_tf import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value
  psnr_cfg, gan_cfg = _config("psnr"), _config("gan")
  if _PSNR_STEPS.value is not None:
    psnr_cfg.train.steps = _PSNR_STEPS.value
  if _GAN_STEPS.value is not None:
    gan_cfg.train.steps = _GAN_STEPS.value
  psnr_dir, gan_dir = os.path.join(workdir, "psnr"), os.path.join(workdir, "gan")
  gan_cfg.train.init_from = psnr_dir

  print(f"[1/4] PSNR phase: {psnr_cfg.train.steps} steps -> {psnr_dir}", flush=True)
  train.train_and_evaluate(psnr_cfg, psnr_dir)
  print(f"[2/4] GAN phase: {gan_cfg.train.steps} steps -> {gan_dir}", flush=True)
  train.train_and_evaluate(gan_cfg, gan_dir)

  print("[3/4] Evaluating on the held-out photo (samples/val/chelsea.png)", flush=True)
  scale = gan_cfg.model.scale
  pairs = data.load_validation_set(gan_cfg.data, scale)
  rows = {}
  for label, spec in (("PSNR phase", psnr_dir), ("GAN phase", gan_dir)):
    model = workdir_lib.load_generator_from_workdir(spec)  # EMA weights.
    result = metrics.evaluate_upscaler(upscaler.keras_upscaler(model, name=spec), pairs,
                                       crop_border=scale, y_channel=True)
    rows[label] = (model, result)
    gain = result["mean"]["psnr"] - result["bicubic_mean"]["psnr"]
    print(f"  {label:<10} PSNR {result['mean']['psnr']:.3f} dB (Y, crop {scale}) vs bicubic "
          f"{result['bicubic_mean']['psnr']:.3f} dB: gain {gain:+.3f} dB; SSIM "
          f"{result['mean']['ssim']:.4f} vs {result['bicubic_mean']['ssim']:.4f}")
  model, result = rows["GAN phase"]
  gain = result["mean"]["psnr"] - result["bicubic_mean"]["psnr"]

  print("[4/4] Export and comparison image", flush=True)
  try:
    from esrgan_tf import export  # pylint: disable=g-import-not-at-top
    export_fn = export.export_saved_model
  except (ImportError, AttributeError) as e:
    print(f"  SavedModel export skipped: esrgan_tf.export.export_saved_model unavailable ({e})")
  else:
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)  # SavedModel tracing logs pages of INFO lines.
    try:
      version_dir = export_fn(model, os.path.join(workdir, "saved_model"), source=gan_dir)
    finally:
      logging.set_verbosity(verbosity)
    print(f"  SavedModel: {version_dir}")
  name, lr, hr = pairs[0]
  sr = upscaler.keras_upscaler(model)(lr[None])[0]
  grid_path = os.path.join(workdir, "comparison.png")
  _write_png(grid_path, train.comparison_grid(lr, sr, hr))
  print(f"  {grid_path}: bicubic | SR | HR ({name})")
  print(f"PSNR gain over bicubic on {name}: {gain:+.3f} dB "
        f"(total {time.perf_counter() - start:.0f} s)")
  if gain <= 0:
    cli.fail(f"the quickstart model did not beat bicubic (PSNR gain {gain:+.3f} dB)", name)


if __name__ == "__main__":
  cli.quiet_tensorflow(sys.argv)  # before TensorFlow is imported (in main)
  app.run(main)
