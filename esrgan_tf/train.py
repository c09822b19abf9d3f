"""ESRGAN training: a custom `tf.function` loop under `tf.distribute`.

Entry point: `train_and_evaluate(config, workdir)` (config schema: configs/psnr_x4.py). Two
phases (ESRGAN §4.1):
  * "psnr": G trained with the pixel loss only (the PSNR-oriented RRDBNet).
  * "gan":  G loss = pixel·w_pix + perceptual·w_perc + RaGAN·w_gan, D loss = RaGAN; G is
            initialised from a PSNR run (`config.train.init_from`).

Distribution contract (tf.distribute custom-training-loop guide): models, optimizers, EMA and
checkpoint are created under `strategy.scope()`; optimizers are built before the first step;
losses are per example and averaged with `tf.nn.compute_average_loss(global_batch_size=...)`;
one `tf.function` runs `strategy.run` for `steps` inner steps (`tf.range`) and reduces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import tempfile
import time
from typing import Callable, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from esrgan_tf import losses
from esrgan_tf import loading
from esrgan_tf import upscaler
from esrgan_tf import workdir as workdir_lib
from esrgan_tf.models.discriminator import Discriminator
from esrgan_tf.models.rrdbnet import RRDBNet

PHASES = ("psnr", "gan")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN/inf; the message names the step."""


# --- construction --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def create_strategy(name: str, tpu_address: str = "") -> tf.distribute.Strategy:
  """The `tf.distribute` strategy named by `config.train.strategy`, one per process.

  Cached: a second MirroredStrategy over the same devices restarts the collective instance
  keys, and its all-reduces then collide with the first one's (seen with TF 2.21 when two
  phases run in one process); MultiWorkerMirroredStrategy and TPU initialisation are also
  once-per-process.

  Args:
    name: "auto" (MirroredStrategy over the visible GPUs, else the default strategy),
      "default", "mirrored", "multi_worker" (MultiWorkerMirroredStrategy from TF_CONFIG) or
      "tpu".
    tpu_address: TPU name/address for "tpu" ("" = the local/colab TPU).

  Returns:
    The strategy.

  Raises:
    ValueError: An unknown name.
  """
  if name not in STRATEGIES:
    raise ValueError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")
  if name == "auto":
    name = "mirrored" if tf.config.list_logical_devices("GPU") else "default"
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


@dataclasses.dataclass
class Models:
  """The networks of a run (discriminator/vgg are None in the psnr phase)."""
  generator: RRDBNet
  ema_generator: RRDBNet
  discriminator: Optional[Discriminator] = None
  vgg: Optional[keras.Model] = None


def _perceptual_weights_source(perceptual) -> Optional[str]:
  """Resolves `config.perceptual.weights`; None means: drop the perceptual term."""
  from esrgan_tf.models import vgg as vgg_lib  # pylint: disable=g-import-not-at-top
  source = perceptual.weights
  if source == "imagenet_if_cached":
    path = vgg_lib.imagenet_weights_path()
    if path is None:
      logging.warning(
          "VGG19 ImageNet weights are not in ~/.keras/models (%s) and this config does not "
          "download them: the perceptual loss is DROPPED (weight 0). Run once with internet "
          "(python -c 'import keras; keras.applications.VGG19(include_top=False)') to enable it.",
          vgg_lib.IMAGENET_NOTOP_FILE)
      return None
    return path
  if source not in ("imagenet", "") and not os.path.isfile(source):
    raise ValueError(f"perceptual.weights: VGG19 weights file {source!r} does not exist")
  return source or None


def create_models(config) -> Models:
  """Builds G, its EMA copy and, for the gan phase, D and the VGG feature extractor.

  Call under `strategy.scope()` (and after setting the precision policy).

  Args:
    config: The full config (uses model, phase, data.gt_size, discriminator, perceptual, loss).

  Returns:
    A built `Models`.
  """
  generator = RRDBNet(**config.model, name="generator")
  generator.build((None, None, None, config.model.in_channels))
  ema = RRDBNet(**config.model, name="ema_generator")
  ema.build((None, None, None, config.model.in_channels))
  ema.set_weights(generator.get_weights())
  models = Models(generator, ema)
  if config.phase == "gan":
    d_cfg = config.discriminator
    models.discriminator = Discriminator(
        d_cfg.type, d_cfg.num_features, input_size=config.data.gt_size,
        num_stages=d_cfg.num_stages, spectral_norm=d_cfg.spectral_norm,
        in_channels=config.model.out_channels)
    models.discriminator.build((None, config.data.gt_size, config.data.gt_size,
                                config.model.out_channels))
    if config.perceptual.weight > 0:
      source = _perceptual_weights_source(config.perceptual)
      if source is not None:
        from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
        models.vgg = VGGFeatureExtractor(config.perceptual.layers.to_dict(), weights=source)
  return models


def _lr_schedule(base_lr: float, milestones, gamma: float):
  milestones = [int(m) for m in milestones]
  if not milestones:
    return base_lr
  values = [base_lr * gamma ** i for i in range(len(milestones) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(milestones, values)


def create_optimizers(config, models: Models):
  """Adam optimizers for G (and D), with step-wise LR decay, built for their variables.

  Call under `strategy.scope()`. Building before the first distributed step creates the slot
  variables in cross-replica context (the tf.distribute contract for Keras 3 optimizers).

  Args:
    config: Uses config.optim (g_lr, d_lr, milestones, gamma, beta1, beta2) and
      config.train.precision (mixed_float16 wraps in LossScaleOptimizer).
    models: From `create_models`.

  Returns:
    (g_optimizer, d_optimizer or None).
  """
  o = config.optim

  def make(lr, variables, name):
    opt = keras.optimizers.Adam(_lr_schedule(lr, o.milestones, o.gamma), beta_1=o.beta1,
                                beta_2=o.beta2, epsilon=1e-8, name=name)
    if config.train.precision == "mixed_float16":
      opt = keras.mixed_precision.LossScaleOptimizer(opt, name=f"{name}_loss_scale")
    opt.build(variables)
    return opt

  g_opt = make(o.g_lr, models.generator.trainable_variables, "g_adam")
  d_opt = None
  if models.discriminator is not None:
    d_opt = make(o.d_lr, models.discriminator.trainable_variables, "d_adam")
  return g_opt, d_opt


def learning_rate(optimizer) -> float:
  """The optimizer's current learning rate (schedule evaluated at its iteration count)."""
  inner = getattr(optimizer, "inner_optimizer", optimizer)
  lr = inner.learning_rate
  return float(lr.numpy() if hasattr(lr, "numpy") else lr)


# --- the step ------------------------------------------------------------------------------------


def _f32(x):
  return tf.cast(x, tf.float32)


def _scaled(optimizer, loss):
  """The loss to differentiate (call inside the tape): scaled by a LossScaleOptimizer."""
  if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss


def _apply(optimizer, scaled_loss, tape, variables):
  # LossScaleOptimizer.apply unscales the gradients and skips the step if they are not finite.
  optimizer.apply(tape.gradient(scaled_loss, variables), variables)


def make_replica_step(config, models: Models, g_opt, d_opt, global_batch_size: int):
  """The per-replica train step `(lr, hr) -> {loss name: scalar}` of `config.phase`.

  Each returned loss is this replica's share (sum over its examples / global batch), so the
  SUM over replicas is the global-batch mean.
  """
  pix_w = float(config.loss.pixel_weight)
  criterion = config.loss.pixel_criterion
  G, D, vgg = models.generator, models.discriminator, models.vgg  # pylint: disable=invalid-name

  def average(per_example):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)

  def psnr_step(lr, hr):
    with tf.GradientTape() as tape:
      sr = _f32(G(lr, training=True))
      l_pix = average(pix_w * losses.pixel_loss(sr, hr, criterion))
      scaled = _scaled(g_opt, l_pix)
    _apply(g_opt, scaled, tape, G.trainable_variables)
    return {"g_loss": l_pix, "l_pix": l_pix}

  perc_w = float(config.perceptual.weight) if vgg is not None else 0.0
  gan_w = float(config.loss.gan_weight)
  layer_weights = config.perceptual.layers.to_dict()

  def gan_step(lr, hr):
    # G update with D fixed, then D update on the same SR batch (BasicSR ESRGANModel order).
    with tf.GradientTape() as g_tape:
      # Static SR shape for D's flatten head (the nearest upsampler's resize loses it).
      sr = tf.ensure_shape(_f32(G(lr, training=True)), hr.shape)
      l_pix = average(pix_w * losses.pixel_loss(sr, hr, criterion))
      g_loss = l_pix
      out = {"l_pix": l_pix}
      if vgg is not None:
        hr_feat = {k: tf.stop_gradient(v) for k, v in vgg(hr).items()}
        l_perc = average(perc_w * losses.perceptual_loss(vgg(sr), hr_feat, layer_weights))
        g_loss += l_perc
        out["l_percep"] = l_perc
      real_logits = tf.stop_gradient(_f32(D(hr, training=True)))
      fake_logits = _f32(D(sr, training=True))
      l_gan = average(gan_w * losses.ragan_generator_loss(real_logits, fake_logits))
      g_loss += l_gan
      out["l_g_gan"] = l_gan
      scaled = _scaled(g_opt, g_loss)
    _apply(g_opt, scaled, g_tape, G.trainable_variables)

    with tf.GradientTape() as d_tape:
      real_logits = _f32(D(hr, training=True))
      fake_logits = _f32(D(tf.stop_gradient(sr), training=True))
      d_loss = average(losses.ragan_discriminator_loss(real_logits, fake_logits))
      scaled = _scaled(d_opt, d_loss)
    _apply(d_opt, scaled, d_tape, D.trainable_variables)
    # Sum over replicas of the per-replica batch means / replicas = mean logits (monitoring).
    n = tf.cast(tf.shape(real_logits)[0], tf.float32) / global_batch_size
    out.update(g_loss=g_loss, d_loss=d_loss, d_real=tf.reduce_mean(real_logits) * n,
               d_fake=tf.reduce_mean(fake_logits) * n)
    return out

  return psnr_step if config.phase == "psnr" else gan_step


def make_train_step(config, strategy, models: Models, g_opt, d_opt, global_batch_size: int,
                    jit_compile: bool = False):
  """The distributed train function `(iterator, num_steps) -> metrics`.

  One `tf.function` (traced once: `num_steps` is a tensor) running `num_steps` steps in a
  `tf.range` loop; each step runs `strategy.run(replica_step)`, sums the replica losses and
  updates the EMA generator in cross-replica context.

  Args:
    config: The full config.
    strategy: The strategy the models were created under.
    models: From `create_models`.
    g_opt: G optimizer.
    d_opt: D optimizer (gan phase) or None.
    global_batch_size: Examples per step over all replicas.
    jit_compile: XLA-compile the per-replica step (not the cross-replica loop).

  Returns:
    A `tf.function` returning {name: mean over the `num_steps` steps} plus "first_bad": the
    0-based index within the call of the first step with a non-finite G or D loss, or -1.
  """
  replica_step = make_replica_step(config, models, g_opt, d_opt, global_batch_size)
  if jit_compile:
    replica_step = tf.function(replica_step, jit_compile=True)
  decay = float(config.train.ema_decay)
  gen_vars = models.generator.trainable_variables
  ema_vars = models.ema_generator.trainable_variables
  names = ["g_loss", "l_pix"] + (
      ["l_percep"] if config.phase == "gan" and models.vgg is not None else []) + (
          ["l_g_gan", "d_loss", "d_real", "d_fake"] if config.phase == "gan" else [])

  @tf.function
  def train_steps(iterator, num_steps):
    totals = tuple(tf.constant(0.0) for _ in names)
    first_bad = tf.constant(-1, tf.int32)
    for i in tf.range(num_steps):
      lr, hr = next(iterator)
      per_replica = strategy.run(replica_step, args=(lr, hr))
      step_out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                  for k in names}
      finite = tf.math.is_finite(step_out["g_loss"])
      if "d_loss" in step_out:
        finite = tf.logical_and(finite, tf.math.is_finite(step_out["d_loss"]))
      first_bad = tf.where(tf.logical_and(first_bad < 0, tf.logical_not(finite)), i, first_bad)
      totals = tuple(total + step_out[k] for total, k in zip(totals, names))
      # EMA in cross-replica context: G's mirrored values agree, so every copy gets the same.
      for ema_v, v in zip(ema_vars, gen_vars):
        ema_v.assign(decay * ema_v + (1.0 - decay) * v)
    count = tf.cast(num_steps, tf.float32)
    out = {k: total / count for k, total in zip(names, totals)}
    out["first_bad"] = first_bad
    return out

  return train_steps


# --- workdir, checkpoints, resume ----------------------------------------------------------------


def run_name(config, num_replicas: int) -> str:
  """A name from the key hyperparameters, e.g. psnr_x4_nf64nb23gc32_gt128_b16x1_1000k."""
  m, steps = config.model, int(config.train.steps)
  per_replica = config.data.batch_size // max(num_replicas, 1)
  steps_s = f"{steps // 1000}k" if steps >= 1000 and steps % 1000 == 0 else str(steps)
  return (f"{config.phase}_x{m.scale}_nf{m.num_features}nb{m.num_blocks}gc{m.growth_channels}"
          f"_gt{config.data.gt_size}_b{per_replica}x{num_replicas}_{steps_s}")


def _is_chief(strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (
      task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)


def _write_dir(base: str, strategy) -> str:
  """Multi-worker: every worker saves (collectives), only the chief into `base`."""
  if _is_chief(strategy):
    return base
  resolver = strategy.cluster_resolver
  return os.path.join(tempfile.gettempdir(),
                      f"esrgan_worker_{resolver.task_type}_{resolver.task_id}_{os.getpid()}",
                      os.path.basename(base))


def _copy_weights(target: RRDBNet, source: RRDBNet, spec: str) -> None:
  if source.arch_config() != target.arch_config():
    raise ValueError(f"train.init_from {spec!r}: architecture {source.arch_config()} differs "
                     f"from config.model {target.arch_config()}")
  target.set_weights(source.get_weights())


def restore_or_initialize(config, workdir: str, checkpoint: tf.train.Checkpoint,
                          manager: tf.train.CheckpointManager, models: Models) -> str:
  """Restores the run state. Resume order (first that applies wins):

    1. the latest checkpoint in this workdir (automatic resume after preemption/restart:
       full state, including step, optimizers, EMA, D and the data iterator);
    2. `config.train.resume`: a checkpoint prefix or another workdir (full state, e.g. to
       fork a run);
    3. `config.train.init_from`: G and EMA weights only (a PSNR run for the gan phase),
       anything `esrgan_tf.loading.load_generator` takes: workdir, .keras, .pth/.safetensors;
       step, optimizers and D start fresh;
    4. scratch (G random, EMA = G).

  Returns:
    What happened, for the log.

  Raises:
    FileNotFoundError: `resume` names nothing restorable.
    ValueError: `init_from` has a different architecture.
  """
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return f"resumed from {manager.latest_checkpoint}"
  if config.train.resume:
    path = config.train.resume
    if tf.io.gfile.isdir(path):
      path = tf.train.latest_checkpoint(os.path.join(path, workdir_lib.CHECKPOINT_DIR)) or \
          tf.train.latest_checkpoint(path)
    if not path:
      raise FileNotFoundError(f"train.resume {config.train.resume!r}: no checkpoint found")
    checkpoint.restore(path).expect_partial()
    return f"restored full state from train.resume {path}"
  if config.train.init_from:
    source = loading.load_generator(config.train.init_from)
    _copy_weights(models.generator, source, config.train.init_from)
    _copy_weights(models.ema_generator, source, config.train.init_from)
    return f"initialised G and EMA from train.init_from {config.train.init_from}"
  return "started from scratch"


# --- evaluation and summaries --------------------------------------------------------------------


def evaluate(predict_fn, pairs, config, bicubic: bool = False) -> dict:
  """PSNR/SSIM of `predict_fn` on validation pairs (`esrgan_tf.metrics.evaluate_upscaler`)."""
  from esrgan_tf import metrics  # pylint: disable=g-import-not-at-top
  crop = config.train.eval_crop_border
  crop = config.model.scale if crop < 0 else crop
  return metrics.evaluate_upscaler(predict_fn, pairs, crop_border=crop,
                                   y_channel=config.train.eval_y_channel, bicubic=bicubic)


def comparison_grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
  """bicubic | SR | HR side by side, float [0, 1] HxWx3 (bicubic: MATLAB-style imresize)."""
  from esrgan_tf import imresize  # pylint: disable=g-import-not-at-top
  scale = hr.shape[0] // lr.shape[0]
  bicubic = imresize.imresize(np.asarray(lr, np.float32), scale).numpy()
  return np.clip(np.concatenate([bicubic, sr, hr], axis=1), 0.0, 1.0)


# --- the loop ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _precision_policy(precision: str):
  if precision not in POLICIES:
    raise ValueError(f"train.precision must be one of {POLICIES}, got {precision!r}")
  previous = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy(precision)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


class _StopSignal:
  """Turns SIGTERM into a flag the loop checks between inner loops (then save + exit)."""

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: no handler, the loop runs to the end.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint and stopping.")
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def validate_config(config) -> None:
  """Raises ValueError on values the trainer cannot run with (before anything is built)."""
  if config.phase not in PHASES:
    raise ValueError(f"phase must be one of {PHASES}, got {config.phase!r}")
  t = config.train
  for key in ("steps", "log_every", "steps_per_loop", "checkpoint_every"):
    if int(t[key]) < 1:
      raise ValueError(f"train.{key} must be >= 1, got {t[key]!r}")
  if int(t.eval_every) < 0:
    raise ValueError(f"train.eval_every must be >= 0, got {t.eval_every!r}")
  if not 0.0 <= float(t.ema_decay) < 1.0:
    raise ValueError(f"train.ema_decay must be in [0, 1), got {t.ema_decay!r}")
  if t.jit_compile and config.model.upsampler == "nearest":
    # The nearest resize takes its size from tf.shape; XLA then cannot compile its gradient
    # (ResizeNearestNeighborGrad needs a compile-time size). Measured on TF 2.21 CPU.
    raise ValueError("train.jit_compile=True needs model.upsampler='depth_to_space' (XLA cannot "
                     "compile the gradient of the 'nearest' upsampler's dynamic-size resize)")
  if config.data.batch_size < 1:
    raise ValueError(f"data.batch_size must be >= 1, got {config.data.batch_size!r}")
  if config.data.gt_size % config.model.scale:
    raise ValueError(f"data.gt_size {config.data.gt_size} is not a multiple of the scale "
                     f"{config.model.scale}")


def make_dataset_fn(config, global_batch_size: int):
  """`input_context -> tf.data.Dataset` of per-replica (lr, hr) batches (`esrgan_tf.data`)."""
  from esrgan_tf import data  # pylint: disable=g-import-not-at-top

  def dataset_fn(input_context):
    batch = input_context.get_per_replica_batch_size(global_batch_size)
    return data.make_train_dataset(config.data, config.model.scale, batch,
                                   input_context=input_context, seed=config.seed)

  return dataset_fn


def train_and_evaluate(config, workdir: str, dataset_fn: Optional[Callable] = None,
                       strategy: Optional[tf.distribute.Strategy] = None) -> dict:
  """Trains `config.phase` in `workdir`, resuming if it holds a checkpoint.

  Args:
    config: A ConfigDict with the schema of configs/psnr_x4.py.
    workdir: Output directory: config.json, checkpoints/, best/, tensorboard/.
    dataset_fn: Optional `input_context -> per-replica (lr, hr) batched tf.data.Dataset`
      replacing `esrgan_tf.data.make_train_dataset` (tests, custom data).
    strategy: Optional strategy overriding `config.train.strategy`.

  Returns:
    {"history": {"step": [...], loss names: [...]} at each log point (means over the steps
     since the previous inner loop), "eval": [{"step", "psnr", "ssim"}], "final_step",
     "stopped" (True on SIGTERM), "run_name", "best_psnr", "bicubic_psnr", "models" (the
     `Models`), "train_steps" (the `tf.function`, e.g. for its tracing count)}.

  Raises:
    NonFiniteLossError: A NaN/inf loss; names the step; checkpoints stay at the last good state.
    ValueError: A bad config value.
  """
  validate_config(config)
  keras.utils.set_random_seed(config.seed)
  strategy = strategy or create_strategy(config.train.strategy, config.train.tpu_address)
  replicas = strategy.num_replicas_in_sync
  global_batch = int(config.data.batch_size)
  if global_batch % replicas:
    raise ValueError(f"data.batch_size {global_batch} is not divisible by the "
                     f"{replicas} replicas")
  name = run_name(config, replicas)
  chief = _is_chief(strategy)
  logging.info("run %s: phase %s, %d replica(s) (%s), precision %s, workdir %s", name,
               config.phase, replicas, type(strategy).__name__, config.train.precision, workdir)
  if chief:
    workdir_lib.write_config(config, workdir)

  with _precision_policy(config.train.precision), _StopSignal() as stop:
    with strategy.scope():
      models = create_models(config)
      g_opt, d_opt = create_optimizers(config, models)
      step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      best_psnr = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_psnr")
    dataset = strategy.distribute_datasets_from_function(
        dataset_fn or make_dataset_fn(config, global_batch))
    iterator = iter(dataset)
    items = dict(step=step, best_psnr=best_psnr, generator=workdir_lib.model_variables(models.generator),
                 ema_generator=workdir_lib.model_variables(models.ema_generator), g_optimizer=g_opt)
    if models.discriminator is not None:
      items.update(discriminator=workdir_lib.model_variables(models.discriminator), d_optimizer=d_opt)
    checkpoint = None
    if config.train.checkpoint_data_iterator:
      try:
        checkpoint = tf.train.Checkpoint(**items, data_iterator=iterator)
      except ValueError:
        # Multi-device/multi-worker DistributedIterators are not trackable in TF 2.21.
        logging.warning("%s cannot checkpoint its data iterator: after a restart the input "
                        "pipeline starts again from its seed.", type(strategy).__name__)
    checkpoint = checkpoint or tf.train.Checkpoint(**items)
    ckpt_dir = _write_dir(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR), strategy)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                         max_to_keep=config.train.keep_checkpoints)
    best_manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(step=step, best_psnr=best_psnr,
                            generator=workdir_lib.model_variables(models.generator),
                            ema_generator=workdir_lib.model_variables(models.ema_generator)),
        _write_dir(os.path.join(workdir, workdir_lib.BEST_DIR), strategy), max_to_keep=1)
    logging.info("%s", restore_or_initialize(config, workdir, checkpoint, manager, models))

    train_steps = make_train_step(config, strategy, models, g_opt, d_opt, global_batch,
                                  jit_compile=config.train.jit_compile)
    result = _loop(config, workdir, strategy, chief, models, g_opt, d_opt, step, best_psnr,
                   iterator, manager, best_manager, train_steps, stop)
    result["run_name"] = name
    result["train_steps"] = train_steps
    result["models"] = models
    if not chief:
      shutil.rmtree(os.path.dirname(ckpt_dir), ignore_errors=True)
    return result


def _next_event(step: int, every: int) -> int:
  return (step // every + 1) * every


def _loop(config, workdir, strategy, chief, models, g_opt, d_opt, step, best_psnr, iterator,
          manager, best_manager, train_steps, stop) -> dict:
  t = config.train
  total = int(t.steps)
  writer = (tf.summary.create_file_writer(os.path.join(workdir, workdir_lib.TENSORBOARD_DIR)) if chief
            else tf.summary.create_noop_writer())
  pairs = None
  if t.eval_every:
    from esrgan_tf import data  # pylint: disable=g-import-not-at-top
    pairs = data.load_validation_set(config.data, config.model.scale)
  predict = upscaler.keras_upscaler(models.ema_generator if t.eval_use_ema else models.generator)
  history, evals = {"step": []}, []
  result = {"history": history, "eval": evals, "stopped": False, "bicubic_psnr": None}
  progress = None
  if chief and t.progress:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=total, initial=int(step.numpy()), desc=config.phase,
                         dynamic_ncols=True)
  current = int(step.numpy())
  window_start, window_steps = time.perf_counter(), 0
  try:
    while current < total and not stop.received:
      events = [total, _next_event(current, t.log_every), _next_event(current, t.checkpoint_every),
                current + t.steps_per_loop]
      if t.eval_every:
        events.append(_next_event(current, t.eval_every))
      n = min(events) - current
      out = train_steps(iterator, tf.constant(n, tf.int32))
      first_bad = int(out["first_bad"].numpy())  # Host sync once per inner loop.
      if first_bad >= 0:
        raise NonFiniteLossError(
            f"non-finite loss at step {current + first_bad + 1} (g_loss/d_loss is NaN or inf); "
            f"stopping. Last good checkpoint: {manager.latest_checkpoint or 'none'} (kept).")
      current += n
      step.assign(current)
      window_steps += n
      if progress is not None:
        progress.update(n)
      if current % t.log_every == 0 or current == total:
        values = {k: float(v.numpy()) for k, v in out.items() if k != "first_bad"}
        elapsed = time.perf_counter() - window_start
        images_per_s = window_steps * config.data.batch_size / max(elapsed, 1e-9)
        history["step"].append(current)
        for k, v in values.items():
          history.setdefault(k, []).append(v)
        with writer.as_default(step=current):
          for k, v in values.items():
            tf.summary.scalar(f"train/{k}", v)
          tf.summary.scalar("train/lr_g", learning_rate(g_opt))
          if d_opt is not None:
            tf.summary.scalar("train/lr_d", learning_rate(d_opt))
          tf.summary.scalar("train/images_per_s", images_per_s)
        if progress is not None:
          progress.set_postfix({k: f"{v:.4g}" for k, v in values.items()
                                if k in ("l_pix", "l_percep", "l_g_gan", "d_loss")})
        else:
          logging.info("step %d/%d %s %.1f img/s", current, total,
                       " ".join(f"{k}={v:.4g}" for k, v in values.items()), images_per_s)
        window_start, window_steps = time.perf_counter(), 0
      if t.eval_every and (current % t.eval_every == 0 or current == total):
        ev = evaluate(predict, pairs, config, bicubic=result["bicubic_psnr"] is None)
        if "bicubic_mean" in ev:
          result["bicubic_psnr"] = ev["bicubic_mean"]["psnr"]
        psnr, ssim = ev["mean"]["psnr"], ev["mean"]["ssim"]
        evals.append({"step": current, "psnr": psnr, "ssim": ssim})
        logging.info("eval step %d: PSNR %.3f dB SSIM %.4f (bicubic PSNR %s)", current, psnr,
                     ssim, result["bicubic_psnr"])
        with writer.as_default(step=current):
          tf.summary.scalar("eval/psnr", psnr)
          tf.summary.scalar("eval/ssim", ssim)
          name, lr, hr = pairs[0]
          grid = comparison_grid(lr, predict(lr[None])[0], hr)
          tf.summary.image(f"eval/bicubic|SR|HR/{name}", grid[None])
        if psnr > best_psnr.numpy():
          best_psnr.assign(psnr)
          best_manager.save(checkpoint_number=current)
      if current % t.checkpoint_every == 0 or current == total or stop.received:
        manager.save(checkpoint_number=current)
  finally:
    if progress is not None:
      progress.close()
    writer.flush()
  result["stopped"] = bool(stop.received and current < total)
  result["final_step"] = current
  result["best_psnr"] = float(best_psnr.numpy())
  return result


# --- benchmarks ----------------------------------------------------------------------------------


def benchmark_step_time(config, steps: int = 10, warmup: int = 2) -> dict:
  """Times train steps of `config` (phase, precision, jit_compile, strategy) on synthetic data.

  The data is one random batch repeated (measures the step, not the input pipeline). In the
  gan phase, a random-init VGG19 stands in when the ImageNet weights are not available.

  Args:
    config: A full config; uses model, phase, data.gt_size/batch_size, train.precision,
      train.jit_compile, train.strategy, perceptual (VGG weights only if available).
    steps: Timed steps (one `tf.function` call of `steps` inner steps).
    warmup: Untimed steps first (tracing, compilation).

  Returns:
    {"phase", "precision", "jit_compile", "replicas", "batch_size", "gt_size",
     "step_time_s", "images_per_s"}.
  """
  validate_config(config)
  keras.utils.set_random_seed(config.seed)
  strategy = create_strategy(config.train.strategy, config.train.tpu_address)
  global_batch, scale = int(config.data.batch_size), config.model.scale
  gt = config.data.gt_size
  rng = np.random.default_rng(config.seed)
  hr = rng.uniform(size=(global_batch, gt, gt, config.model.out_channels)).astype(np.float32)
  lr = rng.uniform(size=(global_batch, gt // scale, gt // scale,
                         config.model.in_channels)).astype(np.float32)

  def dataset_fn(ctx):
    b = ctx.get_per_replica_batch_size(global_batch)
    return tf.data.Dataset.from_tensors((lr[:b], hr[:b])).repeat()

  with _precision_policy(config.train.precision):
    with strategy.scope():
      models = create_models(config)
      if config.phase == "gan" and config.perceptual.weight > 0 and models.vgg is None:
        # Timing only: a random-init VGG19 costs the same as the ImageNet one.
        from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
        models.vgg = VGGFeatureExtractor(config.perceptual.layers.to_dict(), weights=None)
      g_opt, d_opt = create_optimizers(config, models)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_steps = make_train_step(config, strategy, models, g_opt, d_opt, global_batch,
                                  jit_compile=config.train.jit_compile)
    train_steps(iterator, tf.constant(max(warmup, 1), tf.int32))["g_loss"].numpy()
    start = time.perf_counter()
    train_steps(iterator, tf.constant(steps, tf.int32))["g_loss"].numpy()
    elapsed = (time.perf_counter() - start) / steps
  return {"phase": config.phase, "precision": config.train.precision,
          "jit_compile": bool(config.train.jit_compile), "replicas": strategy.num_replicas_in_sync,
          "batch_size": global_batch, "gt_size": gt, "step_time_s": elapsed,
          "images_per_s": global_batch / elapsed}
