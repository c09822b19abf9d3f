"""Tests for esrgan_tf.train.losses against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf
import vgg_reference

from esrgan_tf.models import vgg as vgg_lib
from esrgan_tf.train import losses


def test_pixel_losses_per_example():
  sr = np.array([[[[1.0], [2.0]]], [[[0.0], [0.0]]]], np.float32)  # [2, 1, 2, 1]
  hr = np.array([[[[0.0], [4.0]]], [[[3.0], [-1.0]]]], np.float32)
  # l1: (|1| + |−2|)/2 = 1.5, (3 + 1)/2 = 2;  l2: (1 + 4)/2 = 2.5, (9 + 1)/2 = 5.
  np.testing.assert_allclose(losses.pixel_loss(sr, hr, "l1").numpy(), [1.5, 2.0])
  np.testing.assert_allclose(losses.pixel_loss(sr, hr, "l2").numpy(), [2.5, 5.0])
  # bfloat16 inputs are computed in float32.
  assert losses.pixel_loss(tf.cast(sr, tf.bfloat16), hr).dtype == tf.float32
  with pytest.raises(ValueError, match="criterion"):
    losses.pixel_loss(sr, hr, "huber")


def test_perceptual_loss_weighted_per_example():
  sr = {"a": np.ones([2, 1, 1, 2], np.float32), "b": np.zeros([2, 2, 1, 1], np.float32)}
  hr = {"a": np.array([[[[1, 3]]], [[[0, 0]]]], np.float32),
        "b": np.array([[[[2]], [[0]]], [[[0]], [[-4]]]], np.float32)}
  # example 0: 0.5·mean(|0|, |−2|) + 2·mean(|−2|, 0) = 0.5·1 + 2·1 = 2.5
  # example 1: 0.5·mean(1, 1)     + 2·mean(0, 4)    = 0.5   + 4   = 4.5
  out = losses.perceptual_loss(sr, hr, {"a": 0.5, "b": 2.0})
  np.testing.assert_allclose(out.numpy(), [2.5, 4.5])


# Worked example. Logits real C(x_r) = [2, 0], fake C(x_f) = [1, −3]: E[C(x_f)] = −1,
# E[C(x_r)] = 1. With BCE(z, 1) = softplus(−z), BCE(z, 0) = softplus(z), softplus(z) = ln(1+e^z):
#   D, ex. 0: ½[softplus(−(2 − (−1))) + softplus(1 − 1)]  = ½[0.0485874 + 0.6931472] = 0.3708673
#   D, ex. 1: ½[softplus(−(0 − (−1))) + softplus(−3 − 1)] = ½[0.3132617 + 0.0181499] = 0.1657058
#   G, ex. 0: ½[softplus(2 + 1) + softplus(−(1 − 1))]     = ½[3.0485874 + 0.6931472] = 1.8708673
#   G, ex. 1: ½[softplus(0 + 1) + softplus(−(−3 − 1))]    = ½[1.3132617 + 4.0181499] = 2.6657058
REAL, FAKE = [[2.0], [0.0]], [[1.0], [-3.0]]


def test_ragan_losses_match_hand_computation():
  np.testing.assert_allclose(losses.ragan_discriminator_loss(REAL, FAKE).numpy(),
                             [0.3708673, 0.1657058], rtol=1e-6)
  np.testing.assert_allclose(losses.ragan_generator_loss(REAL, FAKE).numpy(),
                             [1.8708673, 2.6657058], rtol=1e-6)
  # The softplus values above, independently.
  assert abs(math.log1p(math.exp(-3)) - 0.0485874) < 1e-7


def test_global_batch_average():
  # Two of four examples on this replica: the sum divides by the GLOBAL batch, 4.
  per_example = losses.ragan_discriminator_loss(REAL, FAKE)
  avg = tf.nn.compute_average_loss(per_example, global_batch_size=4)
  np.testing.assert_allclose(avg.numpy(), (0.3708673 + 0.1657058) / 4, rtol=1e-6)


def test_ragan_generator_gradient_flows_through_both_terms():
  real = tf.constant([2.0, 0.0])
  fake = tf.Variable([1.0, -3.0])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.ragan_generator_loss(real, fake))
  grad = tape.gradient(loss, fake).numpy()
  # d/dfake_j of Σ_i ½ softplus(r_i − mean f) + ½ softplus(−(f_i − mean r)):
  #   −½·Σ_i σ(r_i − m_f)/2 − ½·σ(−(f_j − m_r)).
  sig = lambda z: 1 / (1 + math.exp(-z))
  common = -0.5 * (sig(2 + 1) + sig(0 + 1)) / 2
  expected = [common - 0.5 * sig(-(1 - 1)), common - 0.5 * sig(-(-3 - 1))]
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


# Vanilla GAN (BasicSR GANLoss "vanilla": BCE with logits, real → 1, fake → 0), same logits as
# above, real [2, 0], fake [1, −3]:
#   D, ex. 0: softplus(−2) + softplus(1)  = 0.1269280 + 1.3132617 = 1.4401897
#   D, ex. 1: softplus(0) + softplus(−3)  = 0.6931472 + 0.0485874 = 0.7417345
#   G, ex. 0: softplus(−1) = 0.3132617;  G, ex. 1: softplus(3) = 3.0485874


def test_vanilla_gan_losses_match_hand_computation():
  np.testing.assert_allclose(losses.vanilla_discriminator_loss(REAL, FAKE).numpy(),
                             [1.4401897, 0.7417345], rtol=1e-6)
  np.testing.assert_allclose(losses.vanilla_generator_loss(FAKE).numpy(),
                             [0.3132617, 3.0485874], rtol=1e-6)
  np.testing.assert_allclose(losses.ragan_generator_loss(REAL, FAKE).numpy(),
                             [1.8708673, 2.6657058], rtol=1e-6)
  np.testing.assert_allclose(losses.ragan_discriminator_loss(REAL, FAKE).numpy(),
                             [0.3708673, 0.1657058], rtol=1e-6)


def _softplus(z):
  return np.log1p(np.exp(z))


def test_gan_losses_on_per_pixel_logits_average_per_example():
  # U-Net discriminator logits [N, H, W, 1]: BasicSR takes means over all elements; per example
  # that is the mean over the example's pixels (the global-batch average then matches).
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(3, 2, 4, 1)), rng.normal(size=(3, 2, 4, 1))
  vanilla_d = _softplus(-real).mean(axis=(1, 2, 3)) + _softplus(fake).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(losses.vanilla_discriminator_loss(real, fake).numpy(), vanilla_d,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.vanilla_generator_loss(fake).numpy(),
                             _softplus(-fake).mean(axis=(1, 2, 3)), rtol=1e-5)
  # RaGAN: the relativistic mean is over every pixel of the replica's batch.
  rel_real, rel_fake = real - fake.mean(), fake - real.mean()
  ragan_d = 0.5 * (_softplus(-rel_real) + _softplus(rel_fake)).mean(axis=(1, 2, 3))
  ragan_g = 0.5 * (_softplus(rel_real) + _softplus(-rel_fake)).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(losses.ragan_discriminator_loss(real, fake).numpy(), ragan_d,
                             rtol=1e-5)
  np.testing.assert_allclose(losses.ragan_generator_loss(real, fake).numpy(), ragan_g, rtol=1e-5)
  # The global average equals BasicSR's mean over all elements of the whole batch.
  total = tf.nn.compute_average_loss(losses.vanilla_generator_loss(fake), global_batch_size=3)
  np.testing.assert_allclose(float(total), _softplus(-fake).mean(), rtol=1e-5)


def test_vanilla_discriminator_gradient_pushes_real_up_and_fake_down():
  real, fake = tf.Variable([[0.5], [-1.0]]), tf.Variable([[0.0], [2.0]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.vanilla_discriminator_loss(real, fake))
  g_real, g_fake = tape.gradient(loss, [real, fake])
  sig = lambda z: 1 / (1 + np.exp(-z))
  # d softplus(−r)/dr = −σ(−r); d softplus(f)/df = σ(f).
  np.testing.assert_allclose(g_real.numpy()[:, 0], -sig(-np.array([0.5, -1.0])), rtol=1e-5)
  np.testing.assert_allclose(g_fake.numpy()[:, 0], sig(np.array([0.0, 2.0])), rtol=1e-5)


def test_real_esrgan_perceptual_loss_against_numpy_vgg():
  # Σ_l w_l · mean|φ_l(sr) − φ_l(hr)| with Real-ESRGAN's five pre-activation layers and weights,
  # φ from a float64 numpy VGG19 of the same (random) weights.
  layers = vgg_lib.REAL_ESRGAN_LAYERS
  extractor = vgg_lib.VGGFeatureExtractor(layers, weights=None)
  conv_weights = {l.name: l.get_weights() for l in extractor.trunk if l.get_weights()}
  rng = np.random.default_rng(3)
  hr = rng.uniform(size=(2, 32, 32, 3))
  sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
  f_sr, f_hr = (vgg_reference.pre_activations(conv_weights, x) for x in (sr, hr))
  terms = {name: weight * np.abs(f_sr[vgg_lib.BASICSR_LAYER_NAMES[name]]
                                 - f_hr[vgg_lib.BASICSR_LAYER_NAMES[name]]).mean(axis=(1, 2, 3))
           for name, weight in layers.items()}
  expected = sum(terms.values())
  out = losses.perceptual_loss(extractor(sr.astype(np.float32)), extractor(hr.astype(np.float32)),
                               layers)
  np.testing.assert_allclose(out.numpy(), expected, rtol=2e-3)
  # Each layer contributes (a dropped or unweighted layer would change the sum by > 2e-3).
  assert min(terms[n].min() / expected.min() for n in layers) > 2e-3
  with pytest.raises(ValueError, match="perceptual criterion"):
    losses.perceptual_loss({}, {}, layers, criterion="fro")
