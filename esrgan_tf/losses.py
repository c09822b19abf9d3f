"""ESRGAN losses, per example.

Every function returns a float32 vector [N] (one value per example, averaged over pixels and
channels first). The trainer then averages over the GLOBAL batch with
`tf.nn.compute_average_loss(per_example, global_batch_size=...)`, which is what makes the
gradients of N replicas sum to those of one replica with the whole batch (tf.distribute
custom-training-loop contract). Never `reduce_mean` over the batch inside a replica.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

PIXEL_CRITERIA = ("l1", "l2")


def _f32(x):
  return tf.cast(x, tf.float32)


def _mean_per_example(x):
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def pixel_loss(sr, hr, criterion: str = "l1"):
  """Per-example mean absolute (l1) or squared (l2) error.

  Args:
    sr: Super-resolved batch [N, H, W, C] (any float dtype; computed in float32).
    hr: Ground truth, same shape.
    criterion: "l1" or "l2".

  Returns:
    float32 [N].

  Raises:
    ValueError: On an unknown criterion.
  """
  if criterion not in PIXEL_CRITERIA:
    raise ValueError(f"pixel criterion must be one of {PIXEL_CRITERIA}, got {criterion!r}")
  diff = _f32(sr) - _f32(hr)
  return _mean_per_example(tf.abs(diff) if criterion == "l1" else tf.square(diff))


def perceptual_loss(sr_features: Mapping, hr_features: Mapping, layer_weights: Mapping):
  """Weighted sum over layers of the per-example mean |φ_l(sr) − φ_l(hr)| (ESRGAN §3.3, L1).

  Args:
    sr_features: {layer: [N, h, w, c]} from `VGGFeatureExtractor` on the SR batch.
    hr_features: The same for the HR batch (stop the gradient on it at the call site).
    layer_weights: {layer: weight}.

  Returns:
    float32 [N].
  """
  total = None
  for name, weight in layer_weights.items():
    term = weight * _mean_per_example(tf.abs(_f32(sr_features[name]) - _f32(hr_features[name])))
    total = term if total is None else total + term
  return total


def _bce_logits(logits, label: float):
  return tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.fill(tf.shape(logits), label), logits=logits)


def _flat_logits(logits):
  return tf.reshape(_f32(logits), [-1])


def ragan_discriminator_loss(real_logits, fake_logits):
  """Relativistic average discriminator loss (ESRGAN eq. 1–2), per example.

  With C(x) the discriminator logit and D_Ra(x_r, x_f) = σ(C(x_r) − E_{x_f}[C(x_f)]):
    L_D = −½ log D_Ra(x_r, x_f) − ½ log(1 − D_Ra(x_f, x_r)),
  computed as sigmoid cross-entropy on the relativistic logits. The ½ averages the real and
  fake terms as BasicSR does (the paper writes their sum); the ESRGAN loss weights (5e-3) were
  tuned with this averaging.

  The expectation E[·] is the mean over the batch *this replica* sees (as BasicSR under DDP):
  it keeps the step free of an extra cross-replica reduction, but it means the GAN losses of
  a 2-replica run differ slightly from a 1-replica run with the same global batch.

  Args:
    real_logits: C(x_r), [N] or [N, 1].
    fake_logits: C(x_f), same shape (x_f = G(x_lr), gradient stopped for the D update).

  Returns:
    float32 [N].
  """
  real, fake = _flat_logits(real_logits), _flat_logits(fake_logits)
  return 0.5 * (_bce_logits(real - tf.reduce_mean(fake), 1.0)
                + _bce_logits(fake - tf.reduce_mean(real), 0.0))


def ragan_generator_loss(real_logits, fake_logits):
  """Relativistic average generator loss (ESRGAN eq. 2, the symmetric form), per example.

    L_G = −½ log(1 − D_Ra(x_r, x_f)) − ½ log D_Ra(x_f, x_r).
  The generator gets gradients from both the real and the fake term. Same batch-mean
  convention as `ragan_discriminator_loss`.

  Args:
    real_logits: C(x_r), [N] or [N, 1] (gradient-free w.r.t. G anyway).
    fake_logits: C(G(x_lr)), same shape.

  Returns:
    float32 [N].
  """
  real, fake = _flat_logits(real_logits), _flat_logits(fake_logits)
  return 0.5 * (_bce_logits(real - tf.reduce_mean(fake), 0.0)
                + _bce_logits(fake - tf.reduce_mean(real), 1.0))
