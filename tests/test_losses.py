"""Tests for esrgan_tf.losses against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf import losses


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
