"""ESRGAN training: `train_and_evaluate(config, workdir)`, a custom loop under `tf.distribute`.

Two phases (ESRGAN §4.1), config schema configs/psnr_x4.py:
  * "psnr": G trained with the pixel loss only (the PSNR-oriented RRDBNet).
  * "gan":  G loss = pixel·w_pix + perceptual·w_perc + RaGAN·w_gan, D loss = RaGAN; G is
            initialised from a PSNR run (`config.train.init_from`).

Layout (flax imagenet / big_vision shape):
  * `esrgan_tf.train.state`: strategy, precision policy, networks, optimizers, `TrainState`;
  * `esrgan_tf.train.steps`: the loss terms and the (distributed) train step;
  * this module: the loop and its named helpers: checkpoints and resume, logging, evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import os
import shutil
import signal
import tempfile
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from esrgan_tf.inference import engine
from esrgan_tf.inference import resolver as resolver_lib
from esrgan_tf.models import workdir as workdir_lib
from esrgan_tf.train import heads as heads_lib
from esrgan_tf.train.state import (
  PHASES,
  TrainState,
  copy_generator_weights,
  create_strategy,
  create_train_state,
  generator_spec,
  init_discriminator,
  learning_rate,
)
from esrgan_tf.train.steps import USM_SWITCHES, usm_switch

# config.data.pipeline: "bicubic" (data.datasets: MATLAB-bicubic LR, the default when absent) or
# "realesrgan" (esrgan_tf.data.realesrgan, options in config.data.degradation).
DATA_PIPELINES = ("bicubic", "realesrgan")


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN/inf; the message names the step."""


# --- config and run name -------------------------------------------------------------------------


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
  spec = generator_spec(config)
  if t.jit_compile and getattr(spec, "upsampler", None) == "nearest":
    # The nearest resize takes its size from tf.shape; XLA then cannot compile its gradient
    # (ResizeNearestNeighborGrad needs a compile-time size). Measured on TF 2.21 CPU.
    raise ValueError("train.jit_compile=True needs model.upsampler='depth_to_space' (XLA cannot "
                     "compile the gradient of the 'nearest' upsampler's dynamic-size resize)")
  if config.data.batch_size < 1:
    raise ValueError(f"data.batch_size must be >= 1, got {config.data.batch_size!r}")
  if config.data.gt_size % spec.scale:
    raise ValueError(f"data.gt_size {config.data.gt_size} is not a multiple of the scale "
                     f"{spec.scale}")
  pipeline = data_pipeline(config)
  if pipeline not in DATA_PIPELINES:
    raise ValueError(f"data.pipeline must be one of {DATA_PIPELINES}, got {pipeline!r}")
  usm = [k for k in USM_SWITCHES if usm_switch(config, k)]
  if usm and pipeline != "realesrgan":
    raise ValueError(f"loss.{'/'.join(usm)} need the USM-sharpened GT of "
                     "data.pipeline='realesrgan' (the bicubic pipeline has none)")
  if pipeline == "realesrgan":
    degradation = config.data.get("degradation", None)
    if degradation is not None and int(degradation.gt_size) != int(config.data.gt_size):
      raise ValueError(f"data.degradation.gt_size {degradation.gt_size} differs from "
                       f"data.gt_size {config.data.gt_size}")
  if config.phase == "gan" and config.discriminator.type == "unet_sn" and config.data.gt_size % 8:
    raise ValueError(f"the unet_sn discriminator needs data.gt_size a multiple of 8 (three "
                     f"stride-2 stages), got {config.data.gt_size}")
  heads_lib.validate_config(config)  # Multi-head recipes (head_config).


def data_pipeline(config) -> str:
  """`config.data.pipeline`, "bicubic" when the schema lacks it."""
  return config.data.get("pipeline", "bicubic")


def make_dataset_fn(config, global_batch_size: int):
  """`input_context -> tf.data.Dataset` of per-replica batches: (lr, hr) from `data.datasets`
  ("bicubic"), or {"lr", "hr" (the plain GT), "gt_usm"} from `data.realesrgan`."""
  scale = heads_lib.data_scale(config)
  if data_pipeline(config) == "realesrgan":
    from esrgan_tf.data import realesrgan  # pylint: disable=g-import-not-at-top

    def degraded_fn(input_context):
      batch = input_context.get_per_replica_batch_size(global_batch_size)
      return realesrgan.make_degraded_train_dataset(
          config.data, scale, batch, input_context=input_context, seed=config.seed,
          degradation_config=config.data.get("degradation", None), return_gt_usm=True)

    return degraded_fn
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top

  def dataset_fn(input_context):
    batch = input_context.get_per_replica_batch_size(global_batch_size)
    return datasets.make_train_dataset(config.data, scale, batch,
                                   input_context=input_context, seed=config.seed)

  return dataset_fn


def run_name(config, num_replicas: int) -> str:
  """A name from the key hyperparameters, e.g. psnr_x4_nf64nb23gc32_gt128_b16x1_1000k.

  Compact generators: psnr_x4_srvgg_nf64nc32_prelu_... .
  """
  m, steps, spec = config.model, int(config.train.steps), generator_spec(config)
  per_replica = config.data.batch_size // max(num_replicas, 1)
  steps_s = f"{steps // 1000}k" if steps >= 1000 and steps % 1000 == 0 else str(steps)
  if m.get("arch", "rrdbnet") == "srvgg":
    arch = f"srvgg_nf{spec.num_feat}nc{spec.num_conv}_{spec.act_type}"
  else:
    arch = f"nf{spec.num_features}nb{spec.num_blocks}gc{spec.growth_channels}"
  return (f"{config.phase}_{heads_lib.scale_tag(config, spec)}_{arch}"
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


# --- checkpoints and resume ----------------------------------------------------------------------


@dataclasses.dataclass
class Checkpoints:
  """The full-state checkpoints (`checkpoints/`) and the best-eval ones (`best/`) of a run."""
  manager: tf.train.CheckpointManager
  best: tf.train.CheckpointManager
  scratch_dir: str | None = None  # Non-chief workers' throwaway copy, removed at the end.

  def save(self, step: int) -> None:
    self.manager.save(checkpoint_number=step)

  def save_best(self, step: int) -> None:
    self.best.save(checkpoint_number=step)

  def cleanup(self) -> None:
    if self.scratch_dir:
      shutil.rmtree(self.scratch_dir, ignore_errors=True)


def create_checkpoints(config, workdir: str, state: TrainState, iterator, strategy
                       ) -> Checkpoints:
  """Checkpoint managers over `state` (and the data iterator when it is trackable)."""
  items = state.checkpoint_items()
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
  best_dir = _write_dir(os.path.join(workdir, workdir_lib.BEST_DIR), strategy)
  return Checkpoints(
      tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=config.train.keep_checkpoints),
      tf.train.CheckpointManager(tf.train.Checkpoint(**state.best_items()), best_dir,
                                 max_to_keep=1),
      scratch_dir=None if _is_chief(strategy) else os.path.dirname(ckpt_dir))


def restore_or_initialize(config, workdir: str, state: TrainState,
                          checkpoints: Checkpoints) -> str:
  """Restores the run state. Resume order (first that applies wins):

    1. the latest checkpoint in this workdir (automatic resume after preemption/restart:
       full state, including step, optimizers, EMA, D and the data iterator); refused if
       the workdir's config.json has another phase/model/discriminator;
    2. `config.train.resume`: a checkpoint prefix or another workdir (full state, e.g. to
       fork a run);
    3. `config.train.init_from`: G and EMA weights only (a PSNR run for the gan phase),
       anything `resolver.load_generator` takes: workdir, .keras, .pth/.safetensors;
       and/or `config.train.init_discriminator_from`: D weights from a BasicSR netD
       .pth/.safetensors (Real-ESRGAN fine-tuning); step and optimizers start fresh;
    4. scratch (G random, EMA = G).

  Returns:
    What happened, for the log.

  Raises:
    workdir.WorkdirMismatchError: The workdir was trained with another architecture.
    FileNotFoundError: `resume` names nothing restorable.
    ValueError: `init_from` / `init_discriminator_from` has a different architecture.
  """
  latest = checkpoints.manager.latest_checkpoint
  if latest:
    workdir_lib.check_resumable(config, workdir)
    checkpoints.manager.checkpoint.restore(latest).assert_existing_objects_matched()
    return f"resumed from {latest}"
  if config.train.resume:
    path = config.train.resume
    if tf.io.gfile.isdir(path):
      path = tf.train.latest_checkpoint(os.path.join(path, workdir_lib.CHECKPOINT_DIR)) or \
          tf.train.latest_checkpoint(path)
    elif not tf.io.gfile.exists(path + ".index"):  # A prefix names PREFIX.index + data shards.
      path = None
    if not path:
      raise FileNotFoundError(f"train.resume {config.train.resume!r}: no checkpoint found")
    checkpoints.manager.checkpoint.restore(path).expect_partial()
    return f"restored full state from train.resume {path}"
  done = []
  if config.train.init_from:
    source = resolver_lib.load_generator(config.train.init_from)
    for target in (state.models.generator, state.models.ema_generator):
      copy_generator_weights(target, source, config.train.init_from)
    done.append(f"initialised G and EMA from train.init_from {config.train.init_from}")
  d_path = config.train.get("init_discriminator_from", "")
  if d_path:
    init_discriminator(config, state.models.discriminator, d_path)
    done.append(f"initialised D from train.init_discriminator_from {d_path}")
  return "; ".join(done) or "started from scratch"


# --- evaluation and logging ----------------------------------------------------------------------


def evaluate(predict_fn, pairs, config, bicubic: bool = False, scale: int | None = None) -> dict:
  """PSNR/SSIM (+ NIQE: train.eval_niqe) of `predict_fn` on validation pairs (`metrics`).

  `scale` (for the default crop border) defaults to the config's generator's.
  """
  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
  crop = config.train.eval_crop_border
  scale = generator_spec(config).scale if scale is None else scale
  crop = scale if crop < 0 else crop
  return metrics.evaluate(predict_fn, pairs, crop_border=crop,
                          y_channel=config.train.eval_y_channel, bicubic=bicubic,
                          niqe=bool(config.train.get("eval_niqe", False)))


def comparison_grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
  """bicubic | SR | HR side by side, float [0, 1] HxWx3 (bicubic: MATLAB-style imresize)."""
  from esrgan_tf.images import imresize  # pylint: disable=g-import-not-at-top
  scale = hr.shape[0] // lr.shape[0]
  bicubic = imresize.imresize(np.asarray(lr, np.float32), scale).numpy()
  return np.clip(np.concatenate([bicubic, sr, hr], axis=1), 0.0, 1.0)


class Evaluator:
  """Evaluates the EMA (or raw) generator on the validation set; keeps the best checkpoint."""

  def __init__(self, config, state: TrainState):
    from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
    self.config = config
    models = state.models
    self.scale = int(models.generator.scale)
    self.pairs = datasets.load_validation_set(config.data, self.scale)
    self.predict = engine.keras_engine(
        models.ema_generator if config.train.eval_use_ema else models.generator)
    self.bicubic_psnr = None
    self.history = []

  def __call__(self, step: int, state: TrainState, checkpoints: Checkpoints, writer) -> None:
    """eval_step: PSNR/SSIM at `step`, summaries and an image grid; saves a new best."""
    ev = evaluate(self.predict, self.pairs, self.config, bicubic=self.bicubic_psnr is None,
                  scale=self.scale)
    if "bicubic_mean" in ev:
      self.bicubic_psnr = ev["bicubic_mean"]["psnr"]
    psnr, ssim = ev["mean"]["psnr"], ev["mean"]["ssim"]
    self.history.append({"step": step, **ev["mean"]})  # psnr, ssim (+ niqe: lower is better)
    logging.info("eval step %d: PSNR %.3f dB SSIM %.4f (bicubic PSNR %s)", step, psnr, ssim,
                 self.bicubic_psnr)
    with writer.as_default(step=step):
      for name, value in ev["mean"].items():
        tf.summary.scalar(f"eval/{name}", value)
      name, lr, hr = self.pairs[0]
      grid = comparison_grid(lr, self.predict(lr[None])[0], hr)
      tf.summary.image(f"eval/bicubic|SR|HR/{name}", grid[None])
    if psnr > state.best_psnr.numpy():
      state.best_psnr.assign(psnr)
      checkpoints.save_best(step)


class Reporter:
  """Train metrics to the history, TensorBoard and the console (progress bar or log lines)."""

  def __init__(self, config, workdir: str, chief: bool, initial_step: int):
    self.config = config
    self.writer = (tf.summary.create_file_writer(
        os.path.join(workdir, workdir_lib.TENSORBOARD_DIR)) if chief
                   else tf.summary.create_noop_writer())
    self.history = {"step": []}
    self.progress = None
    if chief and config.train.progress:
      from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
      self.progress = tqdm.tqdm(total=int(config.train.steps), initial=initial_step,
                                desc=config.phase, dynamic_ncols=True)
    self._start, self._steps = time.perf_counter(), 0

  def steps_done(self, n: int) -> None:
    self._steps += n
    if self.progress is not None:
      self.progress.update(n)

  def log(self, step: int, out: dict, state: TrainState) -> None:
    """Records the means since the last inner loop, learning rates and throughput."""
    values = {k: float(v.numpy()) for k, v in out.items() if k != "first_bad"}
    elapsed = time.perf_counter() - self._start
    images_per_s = self._steps * self.config.data.batch_size / max(elapsed, 1e-9)
    self.history["step"].append(step)
    for k, v in values.items():
      self.history.setdefault(k, []).append(v)
    with self.writer.as_default(step=step):
      for k, v in values.items():
        tf.summary.scalar(f"train/{k}", v)
      tf.summary.scalar("train/lr_g", learning_rate(state.g_optimizer))
      if state.d_optimizer is not None:
        tf.summary.scalar("train/lr_d", learning_rate(state.d_optimizer))
      tf.summary.scalar("train/images_per_s", images_per_s)
    if self.progress is not None:
      self.progress.set_postfix({k: f"{v:.4g}" for k, v in values.items()
                                 if k in ("l_pix", "l_percep", "l_g_gan", "d_loss")})
    else:
      logging.info("step %d/%d %s %.1f img/s", step, self.config.train.steps,
                   " ".join(f"{k}={v:.4g}" for k, v in values.items()), images_per_s)
    self._start, self._steps = time.perf_counter(), 0

  def close(self) -> None:
    if self.progress is not None:
      self.progress.close()
    self.writer.flush()


# --- the loop ------------------------------------------------------------------------------------


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


def _due(step: int, every: int, total: int) -> bool:
  return step % every == 0 or step == total


def _steps_until_next_event(step: int, train_config) -> int:
  """Steps of the next inner loop: up to the next log, eval, checkpoint or the end."""
  t = train_config
  events = [int(t.steps), step + int(t.steps_per_loop)]
  events += [(step // every + 1) * every
             for every in (t.log_every, t.checkpoint_every, t.eval_every) if every]
  return min(events) - step


def _check_finite(out: dict, step: int, checkpoints: Checkpoints) -> None:
  first_bad = int(out["first_bad"].numpy())  # Host sync once per inner loop.
  if first_bad >= 0:
    raise NonFiniteLossError(
        f"non-finite loss at step {step + first_bad + 1} (g_loss/d_loss is NaN or inf); "
        f"stopping. Last good checkpoint: {checkpoints.manager.latest_checkpoint or 'none'} "
        "(kept).")


def _global_batch_size(config, strategy) -> int:
  global_batch, replicas = int(config.data.batch_size), strategy.num_replicas_in_sync
  if global_batch % replicas:
    raise ValueError(f"data.batch_size {global_batch} is not divisible by the "
                     f"{replicas} replicas")
  return global_batch


def train_and_evaluate(config, workdir: str, dataset_fn: Callable | None = None,
                       strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains `config.phase` in `workdir`, resuming if it holds a checkpoint.

  config.json is written after the state is restored, so a refused or failed restart leaves the
  workdir as it was (still loadable with `--model=WORKDIR`).

  Args:
    config: A ConfigDict with the schema of configs/psnr_x4.py.
    workdir: Output directory: config.json, checkpoints/, best/, tensorboard/.
    dataset_fn: Optional `input_context -> per-replica (lr, hr) batched tf.data.Dataset`
      replacing `esrgan_tf.data.datasets.make_train_dataset` (tests, custom data).
    strategy: Optional strategy overriding `config.train.strategy`.

  Returns:
    {"history": {"step": [...], loss names: [...]} at each log point (means over the steps
     since the previous inner loop), "eval": [{"step", "psnr", "ssim"}], "final_step",
     "stopped" (True on SIGTERM), "run_name", "best_psnr", "bicubic_psnr", "models" (the
     `Models`), "state" (the `TrainState`), "train_steps" (the `tf.function`)}.

  Raises:
    NonFiniteLossError: A NaN/inf loss; names the step; checkpoints stay at the last good state.
    workdir.WorkdirMismatchError: `workdir` holds a run of another phase/architecture.
    ValueError: A bad config value.
  """
  validate_config(config)
  keras.utils.set_random_seed(config.seed)
  strategy = strategy or create_strategy(config.train.strategy, config.train.tpu_address)
  global_batch = _global_batch_size(config, strategy)
  name, chief = run_name(config, strategy.num_replicas_in_sync), _is_chief(strategy)
  logging.info("run %s: phase %s, %d replica(s) (%s), precision %s, workdir %s", name,
               config.phase, strategy.num_replicas_in_sync, type(strategy).__name__,
               config.train.precision, workdir)
  with strategy.scope():
    state = create_train_state(config)
  iterator = iter(strategy.distribute_datasets_from_function(
      dataset_fn or make_dataset_fn(config, global_batch)))
  checkpoints = create_checkpoints(config, workdir, state, iterator, strategy)
  logging.info("%s", restore_or_initialize(config, workdir, state, checkpoints))
  if chief:
    workdir_lib.write_config(config, workdir)
  train_steps = heads_lib.make_train_step(config, strategy, state, global_batch)
  try:
    result = _train_loop(config, workdir, state, train_steps, iterator, checkpoints, chief)
  finally:
    checkpoints.cleanup()
  result.update(run_name=name, train_steps=train_steps, models=state.models, state=state)
  return result


def _train_loop(config, workdir, state, train_steps, iterator, checkpoints, chief) -> dict:
  """Inner loops of `train_steps` between events (log, eval, checkpoint, SIGTERM, the end)."""
  t, total = config.train, int(config.train.steps)
  current = int(state.step.numpy())
  reporter = Reporter(config, workdir, chief, current)
  evaluator = heads_lib.make_evaluator(config, state, Evaluator) if t.eval_every else None
  with _StopSignal() as stop:
    try:
      while current < total and not stop.received:
        n = _steps_until_next_event(current, t)
        out = train_steps(iterator, tf.constant(n, tf.int32))
        _check_finite(out, current, checkpoints)
        current += n
        state.step.assign(current)
        reporter.steps_done(n)
        if _due(current, t.log_every, total):
          reporter.log(current, out, state)
        if evaluator is not None and _due(current, t.eval_every, total):
          evaluator(current, state, checkpoints, reporter.writer)
        if _due(current, t.checkpoint_every, total) or stop.received:
          checkpoints.save(current)
    finally:
      reporter.close()
  return {"history": reporter.history, "eval": evaluator.history if evaluator else [],
          "stopped": bool(stop.received and current < total), "final_step": current,
          "best_psnr": float(state.best_psnr.numpy()),
          "bicubic_psnr": evaluator.bicubic_psnr if evaluator else None}
