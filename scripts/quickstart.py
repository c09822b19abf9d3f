"""Quickstart (README command 1): train a small ESRGAN on the bundled photos and measure it.

  python scripts/quickstart.py [--workdir=runs/quickstart] [--seed=N]

A thin driver over configs/quickstart.py (the whole recipe, colour augmentation included, is
the config's: `esrgan-train --config=configs/quickstart.py` and `:gan` train the same model):
1. PSNR phase (configs/quickstart.py) in WORKDIR/psnr;
2. a short GAN phase (configs/quickstart.py:gan) in WORKDIR/gan, initialised from WORKDIR/psnr;
3. evaluates the EMA generators on the held-out photos (samples/val/chelsea.png and
   samples/heldout/*.png, never trained on) against MATLAB bicubic (PSNR on Y, crop_border =
   scale, as papers report) and prints the per-photo, mean and worst gains; the model runs as
   esrgan-upscale runs it, with reflect pre-padding (`tiling.DEFAULT_PRE_PAD`, --pre_pad);
4. exports a SavedModel to WORKDIR/saved_model (TF Serving layout);
5. writes WORKDIR/comparison.png: bicubic | SR | HR.

Re-running resumes (finished phases are skipped). Exit status 1 if the GAN-phase model does not
beat bicubic on chelsea.png or on the mean over the held-out photos.
"""

import os
import sys
import time

from absl import app, flags, logging

from esrgan_tf import cli
from esrgan_tf.core import fileio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory.")
_PSNR_STEPS = flags.DEFINE_integer("psnr_steps", None, "Override the PSNR-phase steps.")
_GAN_STEPS = flags.DEFINE_integer("gan_steps", None, "Override the GAN-phase steps.")
_SEED = flags.DEFINE_integer("seed", None, "Override the seed of both phases (config.seed).")
_PRE_PAD = flags.DEFINE_integer("pre_pad", None, "Reflect pre-padding at evaluation (input "
                                "pixels; esrgan_tf.inference.tiling); default esrgan-upscale's.")


def _config_module():
  from esrgan_tf.train import configs  # pylint: disable=g-import-not-at-top
  return configs.load_config_module(os.path.join(REPO, "configs", "quickstart.py"))


def _write_png(path, image):
  from esrgan_tf.images import (
    encoders,  # pylint: disable=g-import-not-at-top
    pixels,  # pylint: disable=g-import-not-at-top
  )
  png = encoders.encode_png(pixels.from_float(image))
  fileio.write_bytes(path, png, overwrite=True)  # a re-run replaces its own comparison image


def _held_out_pairs(config, scale):
  """(name, lr, hr) of samples/val (chelsea) and samples/heldout: photos never trained on."""
  import esrgan_tf  # pylint: disable=g-import-not-at-top
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
  pairs = datasets.load_validation_set(config.data, scale)
  heldout = os.path.join(esrgan_tf.SAMPLES_DIR, "heldout")
  if os.path.isdir(heldout):
    pairs += datasets.load_validation_set(
        {"val_dir": heldout, "val_lr_dir": "", "val_max_images": 0}, scale)
  return pairs


def main(argv):
  del argv
  start = time.perf_counter()
  from esrgan_tf.evaluation import metrics
  from esrgan_tf.inference import engine, tiling
  from esrgan_tf.models import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import loop as train_loop
  workdir = _WORKDIR.value
  module = _config_module()
  psnr_cfg, gan_cfg = module.get_config("psnr"), module.get_config("gan")
  if _PSNR_STEPS.value is not None:
    psnr_cfg.train.steps = _PSNR_STEPS.value
  if _GAN_STEPS.value is not None:
    gan_cfg.train.steps = _GAN_STEPS.value
  if _SEED.value is not None:
    psnr_cfg.seed = gan_cfg.seed = _SEED.value
  pre_pad = tiling.DEFAULT_PRE_PAD if _PRE_PAD.value is None else _PRE_PAD.value
  psnr_dir, gan_dir = os.path.join(workdir, "psnr"), os.path.join(workdir, "gan")
  gan_cfg.train.init_from = psnr_dir

  # What `esrgan-train --config=configs/quickstart.py[:gan]` runs, with the same configs.
  print(f"[1/4] PSNR phase: {psnr_cfg.train.steps} steps -> {psnr_dir}", flush=True)
  train_loop.train_and_evaluate(psnr_cfg, psnr_dir)
  print(f"[2/4] GAN phase: {gan_cfg.train.steps} steps -> {gan_dir}", flush=True)
  train_loop.train_and_evaluate(gan_cfg, gan_dir)

  scale = gan_cfg.model.scale
  pairs = _held_out_pairs(gan_cfg, scale)
  print(f"[3/4] Evaluating on {len(pairs)} held-out photos (samples/val, samples/heldout): "
        f"Y-PSNR dB, crop {scale}, pre_pad {pre_pad}", flush=True)
  rows = {}
  for label, spec in (("PSNR phase", psnr_dir), ("GAN phase", gan_dir)):
    model = workdir_lib.load_generator_from_workdir(spec)  # EMA weights.
    result = metrics.evaluate(engine.keras_engine(model, name=spec), pairs, crop_border=scale,
                              y_channel=True, tiles=tiling.TileSpec(tile=0, pre_pad=pre_pad))
    rows[label] = (model, result)
    gains = {r["name"]: r["psnr"] - r["bicubic_psnr"] for r in result["images"]}
    worst = min(gains, key=gains.get)
    print(f"  {label}: " + ", ".join(f"{k} {v:+.2f}" for k, v in gains.items()))
    print(f"  {label}: mean gain {result['psnr_gain']:+.3f} dB, worst {gains[worst]:+.3f} dB "
          f"({worst})")
  model, result = rows["GAN phase"]
  first = result["images"][0]  # chelsea.png: samples/val comes first.
  gain = first["psnr"] - first["bicubic_psnr"]

  print("[4/4] Export and comparison image", flush=True)
  from esrgan_tf.export import saved_model  # pylint: disable=g-import-not-at-top
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)  # SavedModel tracing logs pages of INFO lines.
  try:
    version_dir = saved_model.export_saved_model(model, os.path.join(workdir, "saved_model"),
                                            source=gan_dir)
  finally:
    logging.set_verbosity(verbosity)
  print(f"  SavedModel: {version_dir}")
  name, lr, hr = pairs[0]
  sr = tiling.upscale_array(lr, engine.keras_engine(model),
                            tiling.TileSpec(tile=0, batch=4, pre_pad=pre_pad))
  grid_path = os.path.join(workdir, "comparison.png")
  _write_png(grid_path, train_loop.comparison_grid(lr, sr, hr))
  print(f"  {grid_path}: bicubic | SR | HR ({name})")
  print(f"PSNR gain over bicubic on {name}: {gain:+.3f} dB; over the {len(pairs)} held-out "
        f"photos: mean {result['psnr_gain']:+.3f} dB (total {time.perf_counter() - start:.0f} s)")
  if gain <= 0 or result["psnr_gain"] <= 0:
    cli.fail(f"the quickstart model did not beat bicubic (PSNR gain {gain:+.3f} dB, held-out "
             f"mean {result['psnr_gain']:+.3f} dB)", name)


if __name__ == "__main__":
  cli.quiet_tensorflow(sys.argv)  # before TensorFlow is imported (in main)
  app.run(main)
