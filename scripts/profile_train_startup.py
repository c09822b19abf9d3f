r"""Where a training run's start-up goes, then the median of separately timed steps and peak RSS.

  python scripts/profile_train_startup.py --config=configs/psnr_x4.py --batch=4 --gt=128 \
      [--precision=mixed_bfloat16] [--steps=4]

Prints one JSON line: for each start-up stage (import TF, networks + optimizers, Python tracing
of the step `tf.function`, its first call = Grappler + executor/oneDNN set-up + one step) the wall
time, the process CPU time and the peak RSS after it; then the median wall and CPU time of
`--steps` separately timed steps (one `tf.function` call of one step each, after one untimed
step) and the final peak RSS. CPU time matters on a shared machine: it does not grow with other
processes' load the way wall time does (a single-threaded stage's CPU time is its idle-machine
wall time). The gan phase's VGG19 gets random weights (same cost as ImageNet's; no download).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time

_T0 = time.perf_counter()

from absl import app, flags  # noqa: E402  (after _T0: the TF import is timed)

_CONFIG = flags.DEFINE_string("config", None, "Config file (path[:variant]).")
_BATCH = flags.DEFINE_integer("batch", 4, "Batch size.")
_GT = flags.DEFINE_integer("gt", 128, "HR crop size.")
_PRECISION = flags.DEFINE_string("precision", "float32", "config.train.precision.")
_STEPS = flags.DEFINE_integer("steps", 4, "Separately timed steps.")
flags.mark_flag_as_required("config")


class _Clock:
  """Stage marks: (wall s, CPU s) since the previous mark, and the peak RSS (GB) so far."""

  def __init__(self):
    self.marks, self._wall, self._cpu = {}, _T0, 0.0

  def mark(self, name: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    self.marks[name] = {"wall_s": round(wall - self._wall, 2), "cpu_s": round(cpu - self._cpu, 2),
                        "peak_rss_gb": round(_peak_rss_gb(), 2)}
    self._wall, self._cpu = wall, cpu


def _peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: KB.


def main(argv):
  del argv
  clock = _Clock()
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import configs
  from esrgan_tf.train import loop as train_loop
  from esrgan_tf.train import state as train_state
  from esrgan_tf.train import steps as train_steps
  # pylint: enable=g-import-not-at-top
  clock.mark("import")
  path, _, variant = _CONFIG.value.partition(":")
  config = configs.load_config_module(path).get_config(variant)
  batch, gt = _BATCH.value, _GT.value
  config.data.batch_size, config.data.gt_size = batch, gt
  config.train.precision, config.train.strategy = _PRECISION.value, "default"
  if config.phase == "gan" and config.perceptual.weight > 0:
    vgg_path = os.path.join(tempfile.mkdtemp(), "vgg19_random.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(vgg_path)
    config.perceptual.weights = vgg_path
  train_loop.validate_config(config)
  keras.utils.set_random_seed(config.seed)
  clock.mark("config")
  strategy = train_state.create_strategy("default")
  with strategy.scope():
    state = train_state.create_train_state(config)
  clock.mark("networks_and_optimizers")
  rng = np.random.default_rng(0)
  scale = state.models.generator.scale
  hr = rng.uniform(size=(batch, gt, gt, 3)).astype(np.float32)
  lr = rng.uniform(size=(batch, gt // scale, gt // scale, 3)).astype(np.float32)
  element = {"lr": lr, "hr": hr, "gt_usm": hr} if train_loop.data_pipeline(config) == "realesrgan" \
      else (lr, hr)
  iterator = iter(strategy.distribute_datasets_from_function(
      lambda ctx: tf.data.Dataset.from_tensors(element).repeat()))
  step_fn = train_steps.make_train_step(config, strategy, state, batch)
  one = tf.constant(1, tf.int32)
  step_fn.get_concrete_function(iterator, one)
  clock.mark("trace")
  step_fn(iterator, one)["g_loss"].numpy()
  clock.mark("first_call")
  startup = {k: round(sum(m[k] for m in clock.marks.values()), 1) for k in ("wall_s", "cpu_s")}
  step_fn(iterator, one)["g_loss"].numpy()  # Untimed: the first call's caches warm.
  walls, cpus = [], []
  for _ in range(_STEPS.value):
    wall, cpu = time.perf_counter(), time.process_time()
    step_fn(iterator, one)["g_loss"].numpy()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  print(json.dumps({
      "config": _CONFIG.value, "phase": config.phase, "precision": _PRECISION.value,
      "batch": batch, "gt": gt, "startup": startup, "stages": clock.marks,
      "step_median_wall_s": round(float(np.median(walls)), 3),
      "step_median_cpu_s": round(float(np.median(cpus)), 3),
      "peak_rss_gb": round(_peak_rss_gb(), 2), "load_average": os.getloadavg()}))


if __name__ == "__main__":
  app.run(main)
