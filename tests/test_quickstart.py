"""Cheap regression checks of the quickstart (configs/quickstart.py + esrgan_tf.data.augment)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

import esrgan_tf
from esrgan_tf.data import augment, datasets
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
  return configs.load_config_module(os.path.join(REPO, "configs", "quickstart.py"))


def test_quickstart_config_and_color_augment_settings():
  module = _module()
  c = module.get_config()
  train_loop.validate_config(c)
  assert (c.model.num_features, c.model.num_blocks, c.model.growth_channels) == (16, 2, 8)
  assert os.path.samefile(c.data.train_dir, os.path.join(esrgan_tf.SAMPLES_DIR, "train"))
  # The colour augmentation is what makes it generalise (configs/quickstart.py docstring).
  assert module.COLOR_AUGMENT["permute"] is True and module.COLOR_AUGMENT["max_hue"] > 3
  # Held-out photos exist and none of them is a training photo.
  heldout = os.listdir(os.path.join(esrgan_tf.SAMPLES_DIR, "heldout"))
  assert len(heldout) >= 3
  assert not set(heldout) & set(os.listdir(c.data.train_dir))


def test_quickstart_dataset_fn_yields_recoloured_aligned_batches():
  c = _module().get_config()
  c.data.batch_size = 4
  plain = train_loop.make_dataset_fn(c, 4)
  recoloured = augment.with_color_augment(plain, c.seed, **_module().COLOR_AUGMENT)
  context = tf.distribute.InputContext()
  lr, hr = next(iter(recoloured(context)))
  lr0, hr0 = next(iter(plain(context)))
  gt = c.data.gt_size
  assert lr.shape == (4, gt // 4, gt // 4, 3) and hr.shape == (4, gt, gt, 3)
  assert lr.dtype == hr.dtype == tf.float32
  lr, hr = lr.numpy(), hr.numpy()
  assert 0 <= hr.min() and hr.max() <= 1 and 0 <= lr.min() and lr.max() <= 1
  assert np.abs(hr - hr0.numpy()).mean() > 0.01  # recoloured, same crops (same base seed)
  for i in range(4):
    # Still a MATLAB-bicubic pair: the recoloured LR is the degraded recoloured HR.
    assert np.abs(lr[i] - datasets.degrade(hr[i], 4)).mean() < 1.5 / 255, i


def test_quickstart_script_end_to_end_with_few_steps(tmp_path):
  """README command 1's script, shortened: trains, evaluates on val + heldout, exports, and
  exits 1 naming the photo because a 5-step model cannot beat bicubic (the real run does)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  run = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "quickstart.py"),
       f"--workdir={tmp_path / 'qs'}", "--psnr_steps=5", "--gan_steps=2"],
      capture_output=True, text=True, timeout=600, cwd=REPO)
  assert run.returncode == 1, run.stderr[-3000:]
  assert "error: the quickstart model did not beat bicubic" in run.stderr
  assert "held-out photos: mean" in run.stdout  # chelsea + samples/heldout were evaluated
