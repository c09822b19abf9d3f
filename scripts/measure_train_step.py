r"""Times the train step of a config on this machine (synthetic batches: the step only).

  python scripts/measure_train_step.py --config=configs/realesrnet_x4plus.py --batch=12 \
      --gt=256 --steps=2

Builds the config's full networks (G, EMA, and D + VGG19 in the gan phase; a random-init VGG19
written to a temporary weights file when the ImageNet one is not cached, same cost), feeds
random batches of the config's structure ({lr, hr, gt_usm} for data.pipeline="realesrgan"),
runs one warm-up step (tracing) and then `--steps` timed steps, and prints seconds per step,
images/s and the peak RSS. The data pipeline's own throughput is measured separately by
`esrgan_tf.data.realesrgan.benchmark_degradation_pipeline`.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time

from absl import app, flags
import keras
import tensorflow as tf

from esrgan_tf.models import vgg as vgg_lib
from esrgan_tf.train import configs
from esrgan_tf.train import loop as train_loop
from esrgan_tf.train import state as train_state
from esrgan_tf.train import steps as train_steps

_CONFIG = flags.DEFINE_string("config", None, "Config file (path[:variant]).")
_BATCH = flags.DEFINE_integer("batch", None, "Batch size (default: the config's).")
_GT = flags.DEFINE_integer("gt", None, "HR crop size (default: the config's).")
_STEPS = flags.DEFINE_integer("steps", 2, "Timed steps after the warm-up step.")
_PRECISION = flags.DEFINE_enum("precision", None, ["float32", "mixed_float16", "mixed_bfloat16"],
                               "Training precision (default: the config's).")
flags.mark_flag_as_required("config")


def _load(spec: str):
  path, _, variant = spec.partition(":")
  if not os.path.isfile(path):
    raise app.UsageError(f"--config: {path}: no such config file")
  try:
    return configs.load_config_module(path).get_config(variant)
  except ValueError as e:  # e.g. an unknown variant
    raise app.UsageError(f"--config: {spec}: {e}") from e


def main(argv):
  del argv
  config = _load(_CONFIG.value)
  batch = _BATCH.value or config.data.batch_size
  gt = _GT.value or config.data.gt_size
  config.data.batch_size, config.data.gt_size = batch, gt
  if _PRECISION.value:
    config.train.precision = _PRECISION.value
  if config.phase == "gan" and config.perceptual.weight > 0:
    if vgg_lib.imagenet_weights_path() is None:  # same FLOPs with random weights
      path = os.path.join(tempfile.mkdtemp(), "vgg19_random.weights.h5")
      keras.applications.VGG19(include_top=False, weights=None,
                               input_shape=(None, None, 3)).save_weights(path)
      config.perceptual.weights = path
  keras.utils.set_random_seed(0)
  strategy = tf.distribute.get_strategy()
  state = train_state.create_train_state(config)
  scale = state.models.generator.scale
  lr = tf.random.uniform([batch, gt // scale, gt // scale, 3])
  hr = tf.random.uniform([batch, gt, gt, 3])
  if train_loop.data_pipeline(config) == "realesrgan":
    element = {"lr": lr, "hr": hr, "gt_usm": hr}
  else:
    element = (lr, hr)
  iterator = iter(tf.data.Dataset.from_tensors(element).repeat())
  step = train_steps.make_train_step(config, strategy, state, batch)
  start = time.perf_counter()
  step(iterator, tf.constant(1))
  warm = time.perf_counter() - start
  start = time.perf_counter()
  out = step(iterator, tf.constant(_STEPS.value))
  {k: v.numpy() for k, v in out.items()}
  per_step = (time.perf_counter() - start) / _STEPS.value
  g = state.models.generator.count_params()
  d = state.models.discriminator.count_params() if state.models.discriminator else 0
  print(f"{_CONFIG.value}: phase {config.phase}, {config.train.precision}, batch {batch}, gt {gt}, "
        f"G {g:,} params, D {d:,} params, VGG {'yes' if state.models.vgg is not None else 'no'}: "
        f"warm-up (trace + 1 step) {warm:.1f} s, {per_step:.2f} s/step over {_STEPS.value} "
        f"steps ({batch / per_step:.2f} images/s), peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB; "
        f"load average {os.getloadavg()}")


if __name__ == "__main__":
  app.run(main)
