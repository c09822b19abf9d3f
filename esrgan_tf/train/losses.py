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


def perceptual_loss(sr_features: Mapping, hr_features: Mapping, layer_weights: Mapping,
                    criterion: str = "l1"):
  """Weighted sum over layers of the per-example mean |φ_l(sr) − φ_l(hr)| (ESRGAN §3.3, L1).

  BasicSR's PerceptualLoss (basicsr/losses/basic_loss.py) with style_weight 0:
  Σ_l w_l · criterion(φ_l(sr), φ_l(hr)), each criterion a mean over the layer's elements; the
  Real-ESRGAN weights are `esrgan_tf.models.vgg.REAL_ESRGAN_LAYERS`. The caller multiplies by
  perceptual_weight.

  Args:
    sr_features: {layer: [N, h, w, c]} from `VGGFeatureExtractor` on the SR batch.
    hr_features: The same for the HR batch (stop the gradient on it at the call site).
    layer_weights: {layer: weight}.
    criterion: "l1" (ESRGAN, Real-ESRGAN) or "l2".

  Returns:
    float32 [N].

  Raises:
    ValueError: On an unknown criterion or empty layer_weights.
  """
  if criterion not in PIXEL_CRITERIA:
    raise ValueError(f"perceptual criterion must be one of {PIXEL_CRITERIA}, got {criterion!r}")
  if not layer_weights:
    raise ValueError("perceptual_loss needs at least one layer weight")
  total = None
  for name, weight in layer_weights.items():
    term = weight * pixel_loss(sr_features[name], hr_features[name], criterion)
    total = term if total is None else total + term
  return total


def _bce_logits(logits, label: float):
  return tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.fill(tf.shape(logits), label), logits=logits)


def _logits_2d(logits):
  """[N], [N, 1] or per-pixel [N, H, W, 1] logits → float32 [N, P]."""
  logits = _f32(logits)
  return tf.reshape(logits, [tf.shape(logits)[0], -1])


def ragan_discriminator_loss(real_logits, fake_logits):
  """Relativistic average discriminator loss (ESRGAN eq. 1–2), per example.

  With C(x) the discriminator logit and D_Ra(x_r, x_f) = σ(C(x_r) − E_{x_f}[C(x_f)]):
    L_D = −½ log D_Ra(x_r, x_f) − ½ log(1 − D_Ra(x_f, x_r)),
  computed as sigmoid cross-entropy on the relativistic logits. The ½ averages the real and
  fake terms as BasicSR does (the paper writes their sum); the ESRGAN loss weights (5e-3) were
  tuned with this averaging.

  The expectation E[·] is the mean over the batch *this replica* sees (as BasicSR under DDP;
  over all pixels too for per-pixel logits, as BasicSR's torch.mean(fake_d_pred)):
  it keeps the step free of an extra cross-replica reduction, but it means the GAN losses of
  a 2-replica run differ slightly from a 1-replica run with the same global batch.

  Args:
    real_logits: C(x_r), [N], [N, 1] or per-pixel [N, H, W, 1] (averaged per example).
    fake_logits: C(x_f), same shape (x_f = G(x_lr), gradient stopped for the D update).

  Returns:
    float32 [N].
  """
  real, fake = _logits_2d(real_logits), _logits_2d(fake_logits)
  return tf.reduce_mean(0.5 * (_bce_logits(real - tf.reduce_mean(fake), 1.0)
                               + _bce_logits(fake - tf.reduce_mean(real), 0.0)), axis=1)


def ragan_discriminator_loss_detached(real_logits, fake_logits, fake_logits_for_mean=None):
  """The relativistic average discriminator loss in BasicSR's form, per example.

  BasicSR's ESRGANModel (basicsr/models/esrgan_model.py, the D update) computes the same values
  as `ragan_discriminator_loss` but DETACHES the other side's batch mean in each term:
    ½·BCE(C(x_r) − sg(E[C(x_f)]), 1) + ½·BCE(C(x_f) − sg(E[C(x_r)]), 0)
  (sg: stop gradient), so D's gradient has no term through the means (and the gradient of D's
  last bias is not identically zero, as it is in the paper's form, where a shift of every logit
  cancels in both differences). It takes the fake mean from a separate forward pass of the
  fake batch (`fake_logits_for_mean`; its values equal `fake_logits`' in train mode).

  Args:
    real_logits: C(x_r), [N], [N, 1] or per-pixel [N, H, W, 1].
    fake_logits: C(x_f), same shape.
    fake_logits_for_mean: The separate pass's C(x_f) for E[C(x_f)]; None = `fake_logits`.

  Returns:
    float32 [N].
  """
  real, fake = _logits_2d(real_logits), _logits_2d(fake_logits)
  fake_ref = fake if fake_logits_for_mean is None else _logits_2d(fake_logits_for_mean)
  fake_mean = tf.stop_gradient(tf.reduce_mean(fake_ref))
  real_mean = tf.stop_gradient(tf.reduce_mean(real))
  return tf.reduce_mean(0.5 * (_bce_logits(real - fake_mean, 1.0)
                               + _bce_logits(fake - real_mean, 0.0)), axis=1)


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
  real, fake = _logits_2d(real_logits), _logits_2d(fake_logits)
  return tf.reduce_mean(0.5 * (_bce_logits(real - tf.reduce_mean(fake), 0.0)
                               + _bce_logits(fake - tf.reduce_mean(real), 1.0)), axis=1)


def vanilla_discriminator_loss(real_logits, fake_logits):
  """Standard GAN discriminator loss, per example: BCE(C(x_r), 1) + BCE(C(x_f), 0).

  BasicSR GANLoss(gan_type="vanilla") is BCEWithLogitsLoss (mean over all elements) against
  target 1 (real) or 0 (fake); Real-ESRGAN's D step backpropagates l_d_real and l_d_fake
  separately, so their gradients add: the sum, without the ½ of the RaGAN loss. GANLoss applies
  loss_weight only to the generator (is_disc=True skips it): use no weight here.

  Args:
    real_logits: C(x_r): [N], [N, 1] or per-pixel [N, H, W, 1] (U-Net discriminator).
    fake_logits: C(G(x_lr)), same shape, gradient stopped with respect to G.

  Returns:
    float32 [N]: the per-example means over pixels of both terms, summed.
  """
  return (_mean_per_example(_bce_logits(_logits_2d(real_logits), 1.0))
          + _mean_per_example(_bce_logits(_logits_2d(fake_logits), 0.0)))


def vanilla_generator_loss(fake_logits):
  """Standard (non-saturating) GAN generator loss, per example: BCE(C(G(x_lr)), 1).

  BasicSR: cri_gan(fake_g_pred, target_is_real=True, is_disc=False), then × loss_weight (0.1
  in Real-ESRGAN), which the caller applies.

  Args:
    fake_logits: C(G(x_lr)): [N], [N, 1] or per-pixel [N, H, W, 1].

  Returns:
    float32 [N] (mean over pixels).
  """
  return _mean_per_example(_bce_logits(_logits_2d(fake_logits), 1.0))
