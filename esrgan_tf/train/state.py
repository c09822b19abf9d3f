"""What a training run holds: strategy, precision policy, networks, optimizers, `TrainState`.

Everything here is built from the config (schema: configs/psnr_x4.py) and, for the networks and
optimizers, under `strategy.scope()` (tf.distribute custom-training-loop contract). The loop
(`esrgan_tf.train.loop`) and the step (`esrgan_tf.train.steps`) only use a `TrainState`.

Extension points: the generator is `esrgan_tf.models.build_generator(config.model)` (its `arch`
key: "rrdbnet" default, "srvgg"); `DISCRIMINATOR_BUILDERS` maps `config.discriminator.type` to a
function `config -> built keras.Model returning logits`.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import copy
import dataclasses
import functools
import itertools
import os

from absl import logging
import keras
import tensorflow as tf

from esrgan_tf import models as models_lib
from esrgan_tf.models import checkpoints
from esrgan_tf.models import workdir as workdir_lib
from esrgan_tf.models.discriminator import DISCRIMINATOR_TYPES, Discriminator
from esrgan_tf.models.unet_discriminator import UNetDiscriminatorSN
from esrgan_tf.train import head_config
from esrgan_tf.train.optimizer import FusedAdam

PHASES = ("psnr", "gan")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
# Keras mixed-precision policies `config.train.precision` may name (not the inference precisions
# of `esrgan_tf.core.precision`).
TRAIN_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@functools.cache
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


@contextlib.contextmanager
def precision_policy(precision: str):
  """Sets the Keras global dtype policy for building the networks; restores it on exit."""
  if precision not in TRAIN_PRECISIONS:
    raise ValueError(f"train.precision must be one of {TRAIN_PRECISIONS}, got {precision!r}")
  previous = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy(precision)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


# --- networks ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Models:
  """The networks of a run (discriminator/vgg are None in the psnr phase).

  A multi-head gan phase (`train.head_config`) has `discriminators` {head: D} for its GAN heads
  instead of `discriminator` (with `discriminator.shared` the same D under every name).
  """
  generator: keras.Model
  ema_generator: keras.Model
  discriminator: keras.Model | None = None
  vgg: keras.Model | None = None
  discriminators: dict[str, keras.Model] = dataclasses.field(default_factory=dict)

  def all_discriminators(self) -> list[keras.Model]:
    """Every distinct discriminator, in a fixed order (a shared one once)."""
    found = [self.discriminator] if self.discriminator is not None else []
    for model in self.discriminators.values():
      if all(model is not d for d in found):
        found.append(model)
    return found


def generator_spec(config) -> keras.Model:
  """An UNBUILT generator of `config.model` (no weights): for its scale, channels, arch_config.

  Lets the config checks, the run name and the data pipeline read `.scale`, `.in_channels`,
  `.out_channels` of any architecture (RRDBNet's and SRVGGNetCompact's kwargs differ).

  Raises:
    ValueError: Unknown `model.arch` or arguments the class rejects.
  """
  model_config = dict(config.model)
  arch = model_config.pop("arch", "rrdbnet")
  if arch not in models_lib.GENERATORS:
    raise ValueError(f"model.arch must be one of {sorted(models_lib.GENERATORS)}, got {arch!r}")
  return models_lib.GENERATORS[arch](**model_config)


def _vgg_style_or_patch(config) -> keras.Model:
  d_cfg, size = config.discriminator, config.data.gt_size
  channels = generator_spec(config).out_channels
  model = Discriminator(d_cfg.type, d_cfg.num_features, input_size=size,
                        num_stages=d_cfg.num_stages, spectral_norm=d_cfg.spectral_norm,
                        in_channels=channels)
  model.build((None, size, size, channels))
  return model


def _unet_sn(config) -> keras.Model:
  """Real-ESRGAN's U-Net discriminator with spectral norm (options/train_realesrgan_x4plus.yml
  network_d: num_feat 64, skip_connection True); per-pixel logits [N, H, W, 1]."""
  d_cfg, size = config.discriminator, config.data.gt_size
  model = UNetDiscriminatorSN(num_in_ch=generator_spec(config).out_channels,
                              num_feat=d_cfg.num_features,
                              skip_connection=bool(d_cfg.get("skip_connection", True)))
  model.build((None, size, size, model.num_in_ch))
  return model


# config.discriminator.type → `config -> built discriminator` (logits [N, 1], or per-pixel
# logits [N, h, w, 1]: the step averages any logit map per example). Add a type here.
DISCRIMINATOR_BUILDERS: dict[str, Callable] = {t: _vgg_style_or_patch for t in DISCRIMINATOR_TYPES}
DISCRIMINATOR_BUILDERS["unet_sn"] = _unet_sn


def _perceptual_weights_source(perceptual):
  """Resolves `config.perceptual.weights`; None means: drop the perceptual term.

  Returns:
    None, "imagenet", a Keras VGG19 weights path, or {conv name: (kernel, bias)} read from a
    torchvision VGG19 .pth ("torchvision": torchvision's vgg19-dcbb9e9d.pth from the cache of
    `esrgan_tf.weights.registry`, downloaded there once; or a path to such a file).
  """
  from esrgan_tf.models import vgg as vgg_lib  # pylint: disable=g-import-not-at-top
  source = perceptual.weights
  if source == "torchvision" or (isinstance(source, str) and source.endswith((".pth", ".pt"))):
    from esrgan_tf import weights  # pylint: disable=g-import-not-at-top
    from esrgan_tf.weights import registry as registry_lib  # pylint: disable=g-import-not-at-top
    if source == "torchvision":
      source = registry_lib.fetch(registry_lib.TORCHVISION_VGG19,
                                  registry=registry_lib.PERCEPTUAL_WEIGHTS)
    elif not os.path.isfile(source):
      raise ValueError(f"perceptual.weights: VGG19 weights file {source!r} does not exist")
    return weights.load_torchvision_vgg19(source)
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

  Call under `strategy.scope()` (and inside `precision_policy`).

  Args:
    config: The full config (uses model, phase, data.gt_size, discriminator, perceptual).

  Returns:
    A built `Models` (EMA = G).

  Raises:
    ValueError: An unknown discriminator type or a missing VGG weights file.
  """
  generator = models_lib.build_generator(config.model, name="generator")
  ema = models_lib.build_generator(config.model, name="ema_generator")
  ema.set_weights(generator.get_weights())
  models = Models(generator, ema)
  if config.phase == "gan" and head_config.is_multihead(config):
    _create_head_networks(config, models)
  elif config.phase == "gan":
    d_type = config.discriminator.type
    if d_type not in DISCRIMINATOR_BUILDERS:
      raise ValueError(f"discriminator.type must be one of {sorted(DISCRIMINATOR_BUILDERS)}, "
                       f"got {d_type!r}")
    models.discriminator = DISCRIMINATOR_BUILDERS[d_type](config)
    if config.perceptual.weight > 0:
      source = _perceptual_weights_source(config.perceptual)
      if source is not None:
        from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
        models.vgg = VGGFeatureExtractor(config.perceptual.layers.to_dict(), weights=source)
  return models


def _create_head_networks(config, models: Models) -> None:
  """Multi-head gan phase: a discriminator per GAN head, built for that head's target size
  (`head_config.target_size`), or one for all (`discriminator.shared`); the VGG if any head has a
  perceptual term."""
  d_type = config.discriminator.type
  if d_type not in DISCRIMINATOR_BUILDERS:
    raise ValueError(f"discriminator.type must be one of {sorted(DISCRIMINATOR_BUILDERS)}, "
                     f"got {d_type!r}")
  plan = head_config.head_losses(config)
  shared = None
  for head in (h for h in plan if h.adversarial):
    if shared is not None:
      models.discriminators[head.name] = shared
      continue
    # The builders read data.gt_size: this head's target crop.
    view = copy.deepcopy(config)
    view.data.gt_size = head_config.target_size(config, head.scale)
    models.discriminators[head.name] = DISCRIMINATOR_BUILDERS[d_type](view)
    if head_config.shared_discriminator(config):
      shared = models.discriminators[head.name]
  if any(h.trained and h.perceptual_weight > 0 for h in plan):
    source = _perceptual_weights_source(config.perceptual)
    if source is not None:
      from esrgan_tf.models.vgg import VGGFeatureExtractor  # pylint: disable=g-import-not-at-top
      models.vgg = VGGFeatureExtractor(config.perceptual.layers.to_dict(), weights=source)


def _init_heads_from_rrdbnet(target: keras.Model, source: keras.Model, spec: str) -> None:
  """A multi-head `target` from a single-output RRDBNet: the trunk and every head of the
  source's architecture (scale, upsampler); the other heads keep their initial weights."""
  loaded = []
  for head in target.head_names:
    try:
      target.load_rrdbnet(source, head)  # Checks the architecture before copying anything.
    except ValueError:
      continue
    loaded.append(head)
  if not loaded:
    raise ValueError(f"train.init_from {spec!r}: its {source.arch_config()} matches no head of "
                     f"config.model (heads {dict(target.scales)}, trunk "
                     f"nf{target.num_features} nb{target.num_blocks} gc{target.growth_channels})")
  logging.info("train.init_from %s: trunk and heads %s loaded into %s", spec, loaded,
               target.name)


def copy_generator_weights(target: keras.Model, source: keras.Model, spec: str) -> None:
  """`train.init_from`: source's weights into target, same class and arch_config required.

  A multi-head target also takes a single-output RRDBNet (`_init_heads_from_rrdbnet`).
  """
  if (getattr(target, "ARCH", "") == head_config.MULTIHEAD_ARCH
      and getattr(source, "ARCH", "") == "rrdbnet"):
    _init_heads_from_rrdbnet(target, source, spec)
    return
  if type(source) is not type(target) or source.arch_config() != target.arch_config():
    raise ValueError(f"train.init_from {spec!r}: architecture {type(source).__name__} "
                     f"{source.arch_config()} differs from config.model "
                     f"{type(target).__name__} {target.arch_config()}")
  target.set_weights(source.get_weights())


def init_discriminator(config, discriminator: keras.Model | None, path: str) -> None:
  """Copies a BasicSR netD checkpoint (`models.checkpoints.load_discriminator`) into the built D.

  Real-ESRGAN's finetune_realesrgan_x4plus.yml loads RealESRGAN_x4plus_netD.pth this way
  (pretrain_network_d, strict). Spectral norm's stored u and v are copied too. `path` may also
  name a published netD (`registry.DISCRIMINATORS`: "RealESRGAN_x4plus_netD").

  Raises:
    ValueError: No D (psnr phase), or the file's discriminator differs from the config's
      (class, or any weight's name/shape); names the file.
    weights.CheckpointError: Unreadable or refused file.
  """
  from esrgan_tf.weights import registry as registry_lib  # pylint: disable=g-import-not-at-top
  if discriminator is None:
    raise ValueError(f"train.init_discriminator_from {path!r}: phase {config.phase!r} has no "
                     "discriminator (use phase 'gan')")
  if path in registry_lib.DISCRIMINATORS and not os.path.exists(path):
    # A published netD, downloaded once.
    path = registry_lib.fetch(path, registry=registry_lib.DISCRIMINATORS)
  source = checkpoints.load_discriminator(
      path, skip_connection=bool(config.discriminator.get("skip_connection", True)))
  if type(source) is not type(discriminator):
    raise ValueError(f"train.init_discriminator_from {path!r}: the file holds a "
                     f"{type(source).__name__}, config.discriminator.type "
                     f"{config.discriminator.type!r} builds a {type(discriminator).__name__}")
  # Weight paths without the model's own name (as workdir.model_variables keys them).
  src = {".".join(v.path.split("/")[1:]): v for v in source.weights}
  dst = {".".join(v.path.split("/")[1:]): v for v in discriminator.weights}
  problems = sorted(set(src) ^ set(dst))
  problems += [f"{k}: file {tuple(src[k].shape)}, config {tuple(dst[k].shape)}"
               for k in sorted(set(src) & set(dst)) if tuple(src[k].shape) != tuple(dst[k].shape)]
  if problems:
    raise ValueError(f"train.init_discriminator_from {path!r}: does not match the config's "
                     f"discriminator (discriminator.num_features="
                     f"{config.discriminator.num_features}): " + "; ".join(problems[:5]))
  for key, variable in dst.items():
    variable.assign(tf.cast(src[key], variable.dtype))


# --- optimizers ----------------------------------------------------------------------------------


def lr_schedule(base_lr: float, milestones, gamma: float):
  """Step-wise decay: base·γ^k after the k-th milestone, with BasicSR's step convention.

  BasicSR (`MultiStepRestartLR`, stepped by `update_learning_rate` before each iteration) runs
  iterations 1..m at the old rate and iteration m + 1 at the decayed one. A Keras optimizer
  evaluates the schedule at its `iterations` count, i.e. 0 for the first update, so update m + 1
  sees iterations = m; `PiecewiseConstantDecay` keeps values[i] for x <= boundaries[i], hence the
  boundaries are the milestones minus one.

  Raises:
    ValueError: Milestones not strictly increasing positive integers.
  """
  milestones = [int(m) for m in milestones]
  if not milestones:
    return base_lr
  if milestones[0] < 1 or any(b <= a for a, b in itertools.pairwise(milestones)):
    raise ValueError(f"optim.milestones must be increasing positive steps, got {milestones}")
  values = [base_lr * gamma ** i for i in range(len(milestones) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay([m - 1 for m in milestones], values)


def create_optimizers(config, models: Models):
  """Adam optimizers for G (and D), with step-wise LR decay, built for their variables.

  Call under `strategy.scope()`. Building before the first distributed step creates the slot
  variables in cross-replica context (the tf.distribute contract for Keras 3 optimizers).

  Args:
    config: Uses config.optim (g_lr, d_lr, milestones, gamma, beta1, beta2, epsilon_form) and
      config.train.precision (mixed_float16 wraps in LossScaleOptimizer).
    models: From `create_models`.

  Returns:
    (g_optimizer, d_optimizer or None).
  """
  o = config.optim

  def make(lr, variables, name):
    # ε = 1e-8: torch.optim.Adam's default, which BasicSR's ESRGAN options keep; where it is
    # added (optim.epsilon_form): "torch" gives torch's update exactly, "keras" (the default
    # when the config lacks the key) Keras' ε-hat form (train/optimizer.py).
    # FusedAdam: Keras' Adam maths in one kernel per variable (train/optimizer.py: measured reason).
    opt = FusedAdam(lr_schedule(lr, o.milestones, o.gamma), beta_1=o.beta1, beta_2=o.beta2,
                    epsilon=1e-8, epsilon_form=o.get("epsilon_form", "keras"), name=name)
    if config.train.precision == "mixed_float16":
      opt = keras.mixed_precision.LossScaleOptimizer(opt, name=f"{name}_loss_scale")
    opt.build(variables)
    return opt

  g_opt = make(o.g_lr, models.generator.trainable_variables, "g_adam")
  d_opt = None
  discriminators = models.all_discriminators()
  if discriminators:
    # One Adam over every discriminator (multi-head: one per GAN head): Adam's state is per
    # variable, so this equals one optimizer per discriminator with the same schedule.
    d_opt = make(o.d_lr, [v for d in discriminators for v in d.trainable_variables], "d_adam")
  return g_opt, d_opt


def learning_rate(optimizer) -> float:
  """The rate of the optimizer's next update (schedule at its iteration count)."""
  inner = getattr(optimizer, "inner_optimizer", optimizer)
  lr = inner.learning_rate
  return float(lr.numpy() if hasattr(lr, "numpy") else lr)


# --- the state -----------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainState:
  """Everything a checkpoint holds: networks, optimizers, step and best eval PSNR.

  `step` counts completed training steps; `best_psnr` is the best eval PSNR so far (-inf
  before the first evaluation). The EMA generator is `models.ema_generator`.
  """
  models: Models
  g_optimizer: keras.optimizers.Optimizer
  d_optimizer: keras.optimizers.Optimizer | None
  step: tf.Variable
  best_psnr: tf.Variable

  def checkpoint_items(self) -> dict:
    """The objects of the full-state checkpoint (name → trackable)."""
    items = {"step": self.step, "best_psnr": self.best_psnr,
             "generator": workdir_lib.model_variables(self.models.generator),
             "ema_generator": workdir_lib.model_variables(self.models.ema_generator),
             "g_optimizer": self.g_optimizer}
    if self.models.discriminator is not None:
      items.update(discriminator=workdir_lib.model_variables(self.models.discriminator),
                   d_optimizer=self.d_optimizer)
    if self.models.discriminators:
      items.update(_head_discriminator_items(self.models.discriminators),
                   d_optimizer=self.d_optimizer)
    return items

  def best_items(self) -> dict:
    """The objects of the best-eval checkpoint (generator weights only)."""
    items = self.checkpoint_items()
    return {k: items[k] for k in ("step", "best_psnr", "generator", "ema_generator")}


def _head_discriminator_items(discriminators: dict) -> dict:
  """discriminator_<head> per GAN head; one shared discriminator: "discriminator"."""
  distinct = {id(d) for d in discriminators.values()}
  if len(distinct) == 1 and len(discriminators) > 1:
    return {"discriminator": workdir_lib.model_variables(next(iter(discriminators.values())))}
  return {f"discriminator_{head}": workdir_lib.model_variables(d)
          for head, d in discriminators.items()}


def create_train_state(config) -> TrainState:
  """Networks, optimizers, step = 0, best_psnr = -inf. Call under `strategy.scope()`.

  Args:
    config: The full config.

  Returns:
    A `TrainState` whose networks follow `config.train.precision` (set while building).
  """
  with precision_policy(config.train.precision):
    models = create_models(config)
    g_opt, d_opt = create_optimizers(config, models)
  return TrainState(models, g_opt, d_opt,
                    step=tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
                    best_psnr=tf.Variable(-float("inf"), dtype=tf.float64, trainable=False,
                                          name="best_psnr"))
