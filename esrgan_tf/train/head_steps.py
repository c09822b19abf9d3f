"""The multi-head training step: every trained head from one trunk pass, each with its own loss.

For a `MultiHeadRRDBNet` and the recipe of `train.head_config`:
  * targets: {scale: MATLAB bicubic of the HR batch} (`head_config.head_targets`), the HR itself
    for the largest scale S;
  * G: trunk features once; each trained head h runs on them with its `trunk_gradient` t
    (t·f + (1 − t)·stop_gradient(f): the same value, a fraction of the gradient); its loss is
    the single-head terms (`steps.generator_loss_terms`) with its weights against its target and
    its discriminator; G loss = Σ_h weight_h · loss_h, one optimizer update over the variables
    that received a gradient (untrained heads get none, nor any update);
  * D: each GAN head's discriminator on that head's real/fake pair, as the single-head step does
    (the same GAN form and pass order); D loss = Σ_h loss_h, one optimizer update over all.

Reported metrics: "g_loss", "d_loss" (sums), and per trained head "<head>/g_loss" (its loss
before `weight`), "<head>/l_pix", "<head>/l_percep", "<head>/l_g_gan" (weighted terms, as the
single-head "l_pix" ...), "<head>/d_loss", "<head>/d_real", "<head>/d_fake": TensorBoard
`train/<head>/...`. Distribution contract: as `train.steps` (per-example losses averaged over
the global batch, so replica sums are global means).
"""

from __future__ import annotations

import copy

import keras
import tensorflow as tf

from esrgan_tf.models import rrdbnet
from esrgan_tf.train import head_config, steps
from esrgan_tf.train.state import Models, TrainState


def head_terms(config, models: Models, head: head_config.HeadLoss) -> list[steps.LossTerm]:
  """The head's weighted G loss terms: `steps.generator_loss_terms` of a single-head config
  holding this head's weights, without the zero-weight terms."""
  view = copy.deepcopy(config)
  view.phase = "gan" if (head.perceptual_weight or head.gan_weight) else "psnr"
  view.loss.pixel_weight = head.pixel_weight
  view.loss.gan_weight = head.gan_weight
  view.perceptual.weight = head.perceptual_weight
  vgg = models.vgg if head.perceptual_weight else None
  terms = steps.generator_loss_terms(view, Models(models.generator, models.ema_generator,
                                                  vgg=vgg))
  return [t for t in terms if t.weight != 0]


def metric_names(config, models: Models) -> list[str]:
  """The keys the multi-head step reports, in order."""
  names = ["g_loss"]
  adversarial = []
  for head in head_config.trained_heads(config):
    names += [f"{head.name}/g_loss"] + [f"{head.name}/{t.name}"
                                        for t in head_terms(config, models, head)]
    if head.name in models.discriminators:
      adversarial.append(head.name)
  if adversarial:
    names.append("d_loss")
    names += [f"{h}/{k}" for h in adversarial for k in ("d_loss", "d_real", "d_fake")]
  return names


def head_outputs(generator, lr, heads) -> dict:
  """{head: image} of the trained `heads` from one trunk pass, each head's gradient into the
  trunk scaled by its `trunk_gradient` (input_unshuffle folding as `generator.call`)."""

  def run(x):
    features = generator.features(x)
    stopped = tf.stop_gradient(features)
    outputs = {}
    for head in heads:
      t = head.trunk_gradient
      mixed = features if t == 1 else stopped if t == 0 else t * features + (1 - t) * stopped
      outputs.update(generator.heads_from(mixed, (head.name,)))
    return outputs

  return rrdbnet.unshuffled_call(lr, generator.input_unshuffle, run,
                                 {head.name: head.scale for head in heads})


def _apply_present(optimizer, scaled_loss, tape, variables) -> None:
  """Applies the gradients that exist (untrained heads, a trunk no head moves: none)."""
  grads = tape.gradient(scaled_loss, variables)
  present = [(g, v) for g, v in zip(grads, variables) if g is not None]
  optimizer.apply([g for g, _ in present], [v for _, v in present])


def _scaled(optimizer, loss):
  """The loss to differentiate: scaled by a LossScaleOptimizer (as `train.steps`)."""
  if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss


def _per_example(x, batch):
  """[N] from [N] or [N, ...] (per-pixel GAN losses): float32 mean over the rest."""
  return tf.reduce_mean(tf.reshape(tf.cast(x, tf.float32), [batch, -1]), axis=1)


def make_replica_step(config, state: TrainState, global_batch_size: int):
  """The per-replica multi-head step `(lr, hr, gt_usm=None) -> {metric: scalar}`.

  `hr` (and `gt_usm`) are at the largest head scale; every loss is this replica's share of the
  global-batch mean (`steps.make_replica_step`'s contract).
  """
  models = state.models
  G = models.generator  # pylint: disable=invalid-name
  heads = head_config.trained_heads(config)
  largest = head_config.max_scale(config)
  scales = {head.scale for head in heads}
  terms = {head.name: head_terms(config, models, head) for head in heads}
  discriminators = models.discriminators
  gan = steps.gan_loss(config)
  gan_usm = steps.usm_switch(config, "gan_gt_usm")
  g_opt, d_opt = state.g_optimizer, state.d_optimizer
  d_variables = [v for d in models.all_discriminators() for v in d.trainable_variables]

  def step(lr, hr, gt_usm=None):
    batch = tf.shape(hr)[0]
    targets = head_config.head_targets(hr, scales, largest)
    usm = head_config.head_targets(gt_usm, scales, largest) if gt_usm is not None else None

    def average(values):
      return tf.nn.compute_average_loss(_per_example(values, batch),
                                        global_batch_size=global_batch_size)

    out, srs, reals = {}, {}, {}
    with tf.GradientTape() as g_tape:
      outputs = head_outputs(G, lr, heads)
      total = []
      for head in heads:
        target = targets[head.scale]
        head_usm = usm[head.scale] if usm is not None else None
        sr = tf.ensure_shape(tf.cast(outputs[head.name], tf.float32), target.shape)
        p = steps.Predictions(sr, target, gt_usm=head_usm)
        D = discriminators.get(head.name)  # pylint: disable=invalid-name
        if D is not None:  # D fixed here: this tape updates G only.
          reals[head.name] = head_usm if gan_usm and head_usm is not None else target
          real = (tf.stop_gradient(tf.cast(D(reals[head.name], training=True), tf.float32))
                  if gan.generator_uses_real else None)
          p = steps.Predictions(sr, target, real, tf.cast(D(sr, training=True), tf.float32),
                                head_usm)
        srs[head.name] = sr
        values = {f"{head.name}/{t.name}": average(t.weight * _per_example(t.fn(p), batch))
                  for t in terms[head.name]}
        head_loss = tf.add_n(list(values.values()))
        out[f"{head.name}/g_loss"] = head_loss
        out.update(values)
        total.append(head.weight * head_loss)
      g_loss = tf.add_n(total)
      scaled = _scaled(g_opt, g_loss)
    _apply_present(g_opt, scaled, g_tape, G.trainable_variables)
    out["g_loss"] = g_loss
    if not reals:
      return out

    share = tf.cast(batch, tf.float32) / global_batch_size
    with tf.GradientTape() as d_tape:
      d_losses = []
      for name, real_images in reals.items():
        D = discriminators[name]  # pylint: disable=invalid-name
        # The single-head D step's passes, in its order (steps.make_replica_step).
        fake = tf.stop_gradient(srs[name])
        fake_for_mean = (tf.stop_gradient(tf.cast(D(fake, training=True), tf.float32))
                         if gan.fake_pass_for_mean else None)
        real_logits = tf.cast(D(real_images, training=True), tf.float32)
        fake_logits = tf.cast(D(fake, training=True), tf.float32)
        d_loss = average(gan.discriminator(real_logits, fake_logits, fake_for_mean))
        out.update({f"{name}/d_loss": d_loss,
                    f"{name}/d_real": tf.reduce_mean(real_logits) * share,
                    f"{name}/d_fake": tf.reduce_mean(fake_logits) * share})
        d_losses.append(d_loss)
      d_total = tf.add_n(d_losses)
      scaled = _scaled(d_opt, d_total)
    _apply_present(d_opt, scaled, d_tape, d_variables)
    out["d_loss"] = d_total
    return out

  return step


def make_train_step(config, strategy, state: TrainState, global_batch_size: int):
  """`steps.make_train_step` (the loop, EMA, finiteness check) around the multi-head step."""
  return steps.make_train_step(
      config, strategy, state, global_batch_size,
      replica_step=make_replica_step(config, state, global_batch_size),
      names=metric_names(config, state.models))
