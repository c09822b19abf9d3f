"""Cheap regression checks of the quickstart (configs/quickstart.py + esrgan_tf.data.augment)."""

from __future__ import annotations

import os

import numpy as np
import pytest
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
  # The colour augmentation is what makes it generalise (docs/experiments/quickstart.md), and it
  # is the config's: both phases train with it.
  for variant in ("psnr", "gan"):
    v = module.get_config(variant)
    assert v.data.color_augment is True and dict(v.data.color) == module.COLOR_AUGMENT
  assert module.COLOR_AUGMENT["permute"] is True and module.COLOR_AUGMENT["max_hue"] > 3
  # Held-out photos exist and none of them is a training photo.
  heldout = os.listdir(os.path.join(esrgan_tf.SAMPLES_DIR, "heldout"))
  assert len(heldout) >= 3
  assert not set(heldout) & set(os.listdir(c.data.train_dir))


def _plain_dataset(c):
  data_config = c.data.to_dict()
  data_config["color_augment"] = False
  return datasets.make_train_dataset(data_config, c.model.scale, c.data.batch_size, seed=c.seed)


def _reference_dataset(c):
  """The batches scripts/quickstart.py trained on before the recipe moved into the config: the
  plain bicubic pipeline, recoloured per batch with seed·1000 + 1 (input pipeline 0)."""
  return augment.color_augmented_dataset(_plain_dataset(c), c.seed * 1000 + 1,
                                         **_module().COLOR_AUGMENT)


def test_quickstart_config_batches_equal_the_scripts_recoloured_ones():
  c = _module().get_config()
  c.data.batch_size = 4
  got = train_loop.make_dataset_fn(c, 4)(tf.distribute.InputContext())
  gt = c.data.gt_size
  for (lr, hr), (lr0, hr0) in zip(got.take(2), _reference_dataset(c).take(2)):
    assert lr.shape == (4, gt // 4, gt // 4, 3) and hr.shape == (4, gt, gt, 3)
    np.testing.assert_array_equal(lr.numpy(), lr0.numpy())
    np.testing.assert_array_equal(hr.numpy(), hr0.numpy())
  lr, hr = lr.numpy(), hr.numpy()
  assert 0 <= hr.min() and hr.max() <= 1 and 0 <= lr.min() and lr.max() <= 1
  plain = _plain_dataset(c)
  assert np.abs(hr - list(plain.skip(1).take(1))[0][1].numpy()).mean() > 0.01  # recoloured
  for i in range(4):
    # Still a MATLAB-bicubic pair: the recoloured LR is the degraded recoloured HR.
    assert np.abs(lr[i] - datasets.degrade(hr[i], 4)).mean() < 1.5 / 255, i


@pytest.mark.parametrize("variant", ["psnr", "gan"])
def test_quickstart_config_trains_the_scripts_model(tmp_path, variant):
  """`esrgan-train --config=configs/quickstart.py[:gan]` (train_and_evaluate on the config, as
  the CLI calls it) and the former script (plain config + its recolouring dataset_fn) give the
  same weights after a few steps with the same seed."""
  def config(color_augment):
    c = _module().get_config(variant)
    c.model.update(num_features=8, num_blocks=1, growth_channels=4)
    c.data.update(batch_size=2, gt_size=32)
    c.discriminator.num_features = 4
    c.perceptual.update(weight=0.0, weights="")
    c.train.update(steps=3, steps_per_loop=3, log_every=3, eval_every=0, checkpoint_every=3,
                   progress=False)
    c.data.color_augment = color_augment
    return c

  cli = train_loop.train_and_evaluate(config(True), str(tmp_path / "cli"))
  plain = config(False)
  script_fn = augment.with_color_augment(train_loop.make_dataset_fn(plain, 2), plain.seed,
                                         **_module().COLOR_AUGMENT)
  script = train_loop.train_and_evaluate(plain, str(tmp_path / "script"), dataset_fn=script_fn)
  for name in ("generator", "ema_generator", "discriminator"):
    a, b = getattr(cli["models"], name), getattr(script["models"], name)
    if a is None:
      continue
    for x, y in zip(a.get_weights(), b.get_weights()):
      np.testing.assert_array_equal(x, y)
  # And not the model trained without the recolouring.
  uncoloured = train_loop.train_and_evaluate(config(False), str(tmp_path / "plain"))
  assert any(np.abs(x - y).max() > 0 for x, y in zip(
      cli["models"].generator.get_weights(), uncoloured["models"].generator.get_weights()))


def test_color_augment_is_refused_with_the_degradation_pipeline():
  c = configs.load_config_module(
      os.path.join(REPO, "configs", "realesrnet_x4plus.py")).get_config("smoke")
  c.data.color_augment = True
  with pytest.raises(datasets.DataError, match="color_augment"):
    train_loop.make_dataset_fn(c, 4)(tf.distribute.InputContext())


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
