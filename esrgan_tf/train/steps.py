"""The training step: loss terms from the config, one replica's update, the distributed loop.

ESRGAN §3.2–3.4 and BasicSR `ESRGANModel.optimize_parameters`:
  * psnr phase: G loss = w_pix·pixel;
  * gan phase:  G loss = w_pix·pixel + w_perc·Σ_l w_l·perceptual_l + w_gan·GAN_G (D fixed), then
    D loss = GAN_D on the same SR batch (gradient stopped), i.e. G update first, D second.

Real-ESRGAN (`realesrgan/models/realesrgan_model.py` optimize_parameters): with the degradation
pipeline a batch also holds `gt_usm`, the USM-sharpened GT; `config.loss.l1_gt_usm`,
`percep_gt_usm` and `gan_gt_usm` make the pixel term, the perceptual term and D's real input
use it instead of the plain GT (absent = False; train_realesrgan_x4plus.yml: True, True, False).

Extension points (all chosen by the config, nothing else changes):
  * `generator_loss_terms` lists the weighted terms of the G loss; a new term is one more
    `LossTerm` (its name becomes a history/TensorBoard key).
  * `GAN_LOSSES` maps a GAN formulation name to its (generator, discriminator) per-example loss
    functions of (real_logits, fake_logits); `gan_loss(config)` picks one (`gan_type`, and for
    "ragan" `config.loss.ragan_form`: `RAGAN_FORMS`).

Distribution contract (tf.distribute custom-training-loop guide): every loss is per example and
averaged with `tf.nn.compute_average_loss(global_batch_size=...)`, so the SUM over replicas is
the global-batch mean; one `tf.function` runs `num_steps` steps in a `tf.range` loop.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import NamedTuple

import keras
import tensorflow as tf

from esrgan_tf.train import losses
from esrgan_tf.train.state import TrainState


class GanLoss(NamedTuple):
  """Per-example losses for G, of (real_logits, fake_logits), and for D, of (real_logits,
  fake_logits, fake_logits_for_mean).

  `generator_uses_real`: whether G's loss reads D(real); if not, the G step does not run D on
  the real batch (one D call fewer, and one spectral-norm power iteration fewer, as BasicSR).
  `fake_pass_for_mean`: the D step first runs D on the fake batch once more, for the fake
  mean (BasicSR's ESRGANModel: its D's batch-norm statistics and spectral-norm vectors see five
  passes per step, in the order real, fake | fake, real, fake); else D's third argument is None.
  """
  generator: Callable
  discriminator: Callable
  generator_uses_real: bool = True
  fake_pass_for_mean: bool = False


def _vanilla_generator(real_logits, fake_logits):
  del real_logits  # The standard GAN's G term only sees D(G(x)).
  return losses.vanilla_generator_loss(fake_logits)


def _two_argument(fn):
  """A D loss of (real, fake) as one of (real, fake, fake_for_mean) that ignores the third."""
  return lambda real_logits, fake_logits, fake_logits_for_mean=None: fn(real_logits, fake_logits)


# ESRGAN's relativistic average GAN (eq. 1–2), in the paper's form; Real-ESRGAN's vanilla GAN
# (BasicSR GANLoss gan_type "vanilla", train_realesrgan_x4plus.yml).
GAN_LOSSES = {
    "ragan": GanLoss(losses.ragan_generator_loss, _two_argument(losses.ragan_discriminator_loss)),
    "vanilla": GanLoss(_vanilla_generator, _two_argument(losses.vanilla_discriminator_loss),
                       generator_uses_real=False),
}
DEFAULT_GAN_TYPE = "ragan"
# config.loss.ragan_form: "paper" differentiates D's loss through both batch means (ESRGAN eq. 1,
# the older mmsr code); "basicsr" detaches them and adds BasicSR's extra fake pass
# (`losses.ragan_discriminator_loss_detached`). G's loss is the same in both (D(real) is
# gradient-free for G either way). Absent from a config: "paper" (this code's earlier behaviour).
RAGAN_FORMS = {
    "paper": GAN_LOSSES["ragan"],
    "basicsr": GanLoss(losses.ragan_generator_loss, losses.ragan_discriminator_loss_detached,
                       fake_pass_for_mean=True),
}
DEFAULT_RAGAN_FORM = "paper"


def gan_type(config) -> str:
  """`config.loss.gan_type` when the schema has it, else ESRGAN's "ragan".

  Raises:
    ValueError: An unknown type.
  """
  name = config.loss.gan_type if "gan_type" in config.loss else DEFAULT_GAN_TYPE
  if name not in GAN_LOSSES:
    raise ValueError(f"loss.gan_type must be one of {sorted(GAN_LOSSES)}, got {name!r}")
  return name


def ragan_form(config) -> str:
  """`config.loss.ragan_form` when the schema has it, else "paper".

  Raises:
    ValueError: An unknown form.
  """
  form = config.loss.get("ragan_form", DEFAULT_RAGAN_FORM)
  if form not in RAGAN_FORMS:
    raise ValueError(f"loss.ragan_form must be one of {sorted(RAGAN_FORMS)}, got {form!r}")
  return form


def gan_loss(config) -> GanLoss:
  """The `GanLoss` of the config: `gan_type`, and for "ragan" its `ragan_form`."""
  name = gan_type(config)
  return RAGAN_FORMS[ragan_form(config)] if name == "ragan" else GAN_LOSSES[name]


@dataclasses.dataclass(frozen=True)
class Predictions:
  """What the G loss terms see: SR and HR batches, and D's logits on both (gan phase).

  `gt_usm` is the USM-sharpened HR (the HR itself when the pipeline has none); real_logits is
  None when the GAN loss does not use D(real) in the G step.
  """
  sr: tf.Tensor
  hr: tf.Tensor
  real_logits: tf.Tensor = None
  fake_logits: tf.Tensor = None
  gt_usm: tf.Tensor = None


USM_SWITCHES = ("l1_gt_usm", "percep_gt_usm", "gan_gt_usm")


def usm_switch(config, name: str) -> bool:
  """`config.loss.<name>` (one of USM_SWITCHES), False when the schema lacks it."""
  return bool(config.loss.get(name, False))


def _target(p: Predictions, use_usm: bool) -> tf.Tensor:
  return p.gt_usm if use_usm and p.gt_usm is not None else p.hr


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """A weighted G loss term: `weight · fn(predictions)`, fn per example ([N] or [N, ...])."""
  name: str
  weight: float
  fn: Callable[[Predictions], tf.Tensor]


def _f32(x):
  return tf.cast(x, tf.float32)


def _per_example(x, batch):
  """[N] per-example values from [N] or [N, ...] (e.g. per-pixel GAN losses): mean over the rest."""
  return tf.reduce_mean(tf.reshape(_f32(x), [batch, -1]), axis=1)


def generator_loss_terms(config, models) -> list[LossTerm]:
  """The weighted terms of the G loss of `config.phase` (weights from config.loss/perceptual)."""
  criterion = config.loss.pixel_criterion
  l1_usm, percep_usm = usm_switch(config, "l1_gt_usm"), usm_switch(config, "percep_gt_usm")
  terms = [LossTerm("l_pix", float(config.loss.pixel_weight),
                    lambda p: losses.pixel_loss(p.sr, _target(p, l1_usm), criterion))]
  if config.phase == "psnr":
    return terms
  vgg = models.vgg
  if vgg is not None:
    layer_weights = config.perceptual.layers.to_dict()
    # BasicSR PerceptualLoss criterion ("l1" in ESRGAN and Real-ESRGAN).
    percep_criterion = config.perceptual.get("criterion", "l1")

    def perceptual(p):
      hr_features = {k: tf.stop_gradient(v) for k, v in vgg(_target(p, percep_usm)).items()}
      return losses.perceptual_loss(vgg(p.sr), hr_features, layer_weights, percep_criterion)

    terms.append(LossTerm("l_percep", float(config.perceptual.weight), perceptual))
  g_gan = gan_loss(config).generator
  terms.append(LossTerm("l_g_gan", float(config.loss.gan_weight),
                        lambda p: g_gan(p.real_logits, p.fake_logits)))
  return terms


def metric_names(config, models) -> list[str]:
  """The keys a train step reports, in order."""
  names = ["g_loss"] + [t.name for t in generator_loss_terms(config, models)]
  return names + (["d_loss", "d_real", "d_fake"] if config.phase == "gan" else [])


def _scaled(optimizer, loss):
  """The loss to differentiate (call inside the tape): scaled by a LossScaleOptimizer."""
  if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss


def _apply(optimizer, scaled_loss, tape, variables):
  # LossScaleOptimizer.apply unscales the gradients and skips the step if they are not finite.
  optimizer.apply(tape.gradient(scaled_loss, variables), variables)


def make_replica_step(config, state: TrainState, global_batch_size: int):
  """The per-replica train step `(lr, hr, gt_usm=None) -> {metric name: scalar}` of the phase.

  Each returned loss is this replica's share (sum over its examples / global batch), so the
  SUM over replicas is the global-batch mean; d_real/d_fake likewise sum to the mean logits.
  """
  G, D = state.models.generator, state.models.discriminator  # pylint: disable=invalid-name
  g_opt, d_opt = state.g_optimizer, state.d_optimizer
  terms = generator_loss_terms(config, state.models)
  gan = gan_loss(config)
  gan_usm = usm_switch(config, "gan_gt_usm")

  def step(lr, hr, gt_usm=None):
    batch = tf.shape(hr)[0]
    gan_real = gt_usm if gan_usm and gt_usm is not None else hr

    def average(values):
      return tf.nn.compute_average_loss(_per_example(values, batch),
                                        global_batch_size=global_batch_size)

    with tf.GradientTape() as g_tape:
      # Static SR shape for a flatten head (the nearest upsampler's resize loses it).
      sr = tf.ensure_shape(_f32(G(lr, training=True)), hr.shape)
      p = Predictions(sr, hr, gt_usm=gt_usm)
      if D is not None:  # D is fixed here: only G's variables are updated by this tape.
        real = (tf.stop_gradient(_f32(D(gan_real, training=True)))
                if gan.generator_uses_real else None)
        p = Predictions(sr, hr, real, _f32(D(sr, training=True)), gt_usm)
      out = {t.name: average(t.weight * _per_example(t.fn(p), batch)) for t in terms}
      g_loss = tf.add_n(list(out.values()))
      scaled = _scaled(g_opt, g_loss)
    _apply(g_opt, scaled, g_tape, G.trainable_variables)
    out["g_loss"] = g_loss
    if D is None:
      return out

    with tf.GradientTape() as d_tape:
      fake = tf.stop_gradient(sr)
      fake_for_mean = (tf.stop_gradient(_f32(D(fake, training=True)))
                       if gan.fake_pass_for_mean else None)
      real_logits = _f32(D(gan_real, training=True))
      fake_logits = _f32(D(fake, training=True))
      d_loss = average(gan.discriminator(real_logits, fake_logits, fake_for_mean))
      scaled = _scaled(d_opt, d_loss)
    _apply(d_opt, scaled, d_tape, D.trainable_variables)
    share = tf.cast(batch, tf.float32) / global_batch_size
    out.update(d_loss=d_loss, d_real=tf.reduce_mean(real_logits) * share,
               d_fake=tf.reduce_mean(fake_logits) * share)
    return out

  return step


def update_ema(ema_variables, variables, decay: float) -> None:
  """ema ← decay·ema + (1 − decay)·θ (BasicSR `model_ema`), after each G update."""
  for ema_v, v in zip(ema_variables, variables):
    ema_v.assign(decay * ema_v + (1.0 - decay) * v)


def make_train_step(config, strategy, state: TrainState, global_batch_size: int, *,
                    replica_step: Callable | None = None, names: list[str] | None = None):
  """The distributed train function `(iterator, num_steps) -> metrics`.

  One `tf.function` (traced once: `num_steps` is a tensor) running `num_steps` steps in a
  `tf.range` loop; each step runs `strategy.run(replica_step)`, sums the replica losses and
  updates the EMA generator in cross-replica context (G's mirrored values agree, so every copy
  of the EMA gets the same value).

  Args:
    config: The full config (train.jit_compile XLA-compiles the per-replica step).
    strategy: The strategy the state was created under.
    state: From `create_train_state`.
    global_batch_size: Examples per step over all replicas.
    replica_step: The per-replica step (default `make_replica_step`'s; the multi-head trainer,
      `train.head_steps`, passes its own).
    names: The metric names `replica_step` returns (default `metric_names`'), "g_loss" (and
      "d_loss" when it has a discriminator) among them.

  Returns:
    A `tf.function` returning {name: mean over the `num_steps` steps} plus "first_bad": the
    0-based index within the call of the first step with a non-finite G or D loss, or -1.
  """
  if replica_step is None:
    replica_step = make_replica_step(config, state, global_batch_size)
  if config.train.jit_compile:
    replica_step = tf.function(replica_step, jit_compile=True)
  decay = float(config.train.ema_decay)
  gen_vars = state.models.generator.trainable_variables
  ema_vars = state.models.ema_generator.trainable_variables
  names = metric_names(config, state.models) if names is None else names
  checked = [k for k in ("g_loss", "d_loss") if k in names]

  @tf.function
  def train_steps(iterator, num_steps):
    totals = tuple(tf.constant(0.0) for _ in names)
    first_bad = tf.constant(-1, tf.int32)
    for i in tf.range(num_steps):
      batch = next(iterator)
      # (lr, hr) tuples, or the degradation pipeline's {"lr", "hr", "gt_usm"} dicts.
      args = (batch["lr"], batch["hr"], batch["gt_usm"]) if isinstance(batch, dict) else batch
      per_replica = strategy.run(replica_step, args=tuple(args))
      step_out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                  for k in names}
      finite = tf.reduce_all([tf.math.is_finite(step_out[k]) for k in checked])
      first_bad = tf.where(tf.logical_and(first_bad < 0, tf.logical_not(finite)), i, first_bad)
      totals = tuple(total + step_out[k] for total, k in zip(totals, names))
      update_ema(ema_vars, gen_vars, decay)
    count = tf.cast(num_steps, tf.float32)
    out = {k: total / count for k, total in zip(names, totals)}
    out["first_bad"] = first_bad
    return out

  return train_steps
