"""Training-side timings (run inside a benchmark child): train step time and input-pipeline speed.

`step_time` and `data_pipeline_speed` are the harness's own copies of what used to be
`train.loop.benchmark_step_time` and `data.datasets.benchmark_data_pipeline`: the training
modules keep only training, the harness keeps only measuring. They call the training library's
public pieces (`train_state.create_train_state`, `train_steps.make_train_step`,
`datasets.make_train_dataset`), so they time exactly what `esrgan-train` runs.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from typing import Any, Mapping, Optional, Sequence

from esrgan_tf.benchmarking import engines


def step_time(config, steps: int = 10, warmup: int = 2) -> dict:
  """Times train steps of `config` (phase, precision, jit_compile, strategy) on synthetic data.

  The data is one random batch repeated (measures the step, not the input pipeline). In the
  gan phase, a random-init VGG19 stands in when the ImageNet weights are not available.

  Args:
    config: A full config; uses model, phase, data.gt_size/batch_size, train.precision,
      train.jit_compile, train.strategy, perceptual (VGG weights only if available).
    steps: Timed steps, each its own call of the train function (one inner step per call) and
      timed separately, as BasicSR's side is (`basicsr_steps`): the result is their median.
    warmup: Untimed steps first (at least 1: the first call traces).

  Returns:
    {"phase", "precision", "jit_compile", "replicas", "batch_size", "gt_size",
     "step_time_s" (median), "step_times_s" (each timed step), "step_cpu_s" (median CPU time
     of all threads per step: less sensitive than wall time to other load), "images_per_s",
     "startup_s" (model build + the first step, which traces), "build_s"}.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import loop as train_loop
  from esrgan_tf.train import state as train_state
  from esrgan_tf.train import steps as train_steps_lib
  # pylint: enable=g-import-not-at-top
  train_loop.validate_config(config)
  keras.utils.set_random_seed(config.seed)
  strategy = train_state.create_strategy(config.train.strategy, config.train.tpu_address)
  global_batch, gt = int(config.data.batch_size), config.data.gt_size
  build_start = time.perf_counter()
  with strategy.scope():
    state = train_state.create_train_state(config)
    models = state.models
    if config.phase == "gan" and config.perceptual.weight > 0 and models.vgg is None:
      # Timing only: a random-init VGG19 costs the same as the ImageNet one.
      from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
      with train_state.precision_policy(config.train.precision):
        models.vgg = VGGFeatureExtractor(config.perceptual.layers.to_dict(), weights=None)
  scale, generator = models.generator.scale, models.generator
  rng = np.random.default_rng(config.seed)
  hr = rng.uniform(size=(global_batch, gt, gt, generator.out_channels)).astype(np.float32)
  lr = rng.uniform(size=(global_batch, gt // scale, gt // scale,
                         generator.in_channels)).astype(np.float32)

  def dataset_fn(ctx):
    b = ctx.get_per_replica_batch_size(global_batch)
    return tf.data.Dataset.from_tensors((lr[:b], hr[:b])).repeat()

  iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
  train_steps = train_steps_lib.make_train_step(config, strategy, state, global_batch)
  one = tf.constant(1, tf.int32)  # A tensor: every call reuses the one trace.
  build_s = time.perf_counter() - build_start
  train_steps(iterator, one)["g_loss"].numpy()  # .numpy() waits for the step to finish.
  startup_s = time.perf_counter() - build_start
  for _ in range(max(warmup, 1) - 1):
    train_steps(iterator, one)["g_loss"].numpy()
  times, cpu_times = [], []
  for _ in range(steps):
    start, cpu_start = time.perf_counter(), time.process_time()
    train_steps(iterator, one)["g_loss"].numpy()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  median = statistics.median(times)
  return {"phase": config.phase, "precision": config.train.precision,
          "jit_compile": bool(config.train.jit_compile), "replicas": strategy.num_replicas_in_sync,
          "batch_size": global_batch, "gt_size": gt, "step_time_s": median,
          "step_times_s": times, "step_cpu_s": statistics.median(cpu_times),
          "images_per_s": global_batch / median, "startup_s": startup_s,
          "build_s": build_s}


def data_pipeline_speed(train_dir: Optional[str] = None, scale: int = 4, gt_size: int = 128,
                        batch_size: int = 16, num_batches: int = 30,
                        caches: Sequence[bool] = (True, False)) -> list[dict]:
  """Images/s of `esrgan_tf.data.datasets.make_train_dataset` (no assertions).

  Args:
    train_dir: HR folder; default the bundled training samples.
    scale: Upscaling factor.
    gt_size: HR crop size.
    batch_size: Batch size.
    num_batches: Batches timed after 3 warm-up batches.
    caches: The `cache` settings to measure.

  Returns:
    One dict per setting: {"name", "cache", "images_per_s", "batches", "batch_size", "gt_size",
    "scale"}.
  """
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
  if train_dir is None:
    from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
    train_dir = os.path.join(SAMPLES_DIR, "train")
  rows = []
  for cache in caches:
    config = dict(train_dir=train_dir, train_lr_dir="", tfrecords="", gt_size=gt_size,
                  augment=True, cache=cache, shuffle_buffer=64)
    iterator = iter(datasets.make_train_dataset(config, scale, batch_size, seed=0))
    for _ in range(3):
      next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
      next(iterator)
    elapsed = time.perf_counter() - start
    rows.append({"name": f"data x{scale} gt{gt_size} b{batch_size} cache={cache}", "cache": cache,
                 "images_per_s": num_batches * batch_size / elapsed, "batches": num_batches,
                 "batch_size": batch_size, "gt_size": gt_size, "scale": scale})
  return rows


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("esrgan_bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def job_train_step(job: Mapping[str, Any]) -> dict:
  """Train step time (`step_time`) on synthetic batches.

  Job keys: config (a configs/*.py path), precision, jit_compile, batch_size, gt_size, arch
  (overrides of config.model, optional), steps, warmup, intra_op/inter_op (optional threads).
  The gan phase's VGG19 gets random weights (same cost as ImageNet's; no download).
  """
  import keras  # pylint: disable=g-import-not-at-top
  engines.set_threads(job)
  config = _load_config(job["config"])
  config.data.batch_size, config.data.gt_size = int(job["batch_size"]), int(job["gt_size"])
  config.train.precision, config.train.jit_compile = job["precision"], bool(job["jit_compile"])
  config.train.strategy = "default"
  for key, value in job.get("arch", {}).items():
    config.model[key] = value
  with tempfile.TemporaryDirectory(prefix="esrgan_bench_") as tmp:
    if config.phase == "gan" and config.perceptual.weight > 0:
      path = os.path.join(tmp, "vgg19_random.weights.h5")
      keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
      config.perceptual.weights = path
    return step_time(config, steps=int(job["steps"]), warmup=int(job["warmup"]))


def job_data_pipeline(job: Mapping[str, Any]) -> dict:
  """Input-pipeline speed (`data_pipeline_speed`); job keys: num_batches. → {"rows": [...]}."""
  return {"rows": data_pipeline_speed(num_batches=int(job.get("num_batches", 30)))}


def job_degradation_pipeline(job: Mapping[str, Any]) -> dict:
  """Real-ESRGAN degradation pipeline speed at the yml's batch and sizes.

  Job keys: num_batches, batch_size (default 12), gt_size (default 256), queue_size (default
  the yml's 180: the first batch waits for that many degraded pairs). → {"rows": [...]}.
  """
  from esrgan_tf.data import realesrgan  # pylint: disable=g-import-not-at-top
  config = realesrgan.default_degradation_config()
  config.gt_size = int(job.get("gt_size", config.gt_size))
  config.queue_size = int(job.get("queue_size", config.queue_size))
  row = realesrgan.benchmark_degradation_pipeline(
      batch_size=int(job.get("batch_size", 12)), num_batches=int(job.get("num_batches", 10)),
      degradation_config=config)
  return {"rows": [row]}
