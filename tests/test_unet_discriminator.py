"""Tests for esrgan_tf.models.unet_discriminator and models.spectral_norm against numpy."""

import discriminator_reference as ref
import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.models import SpectralNorm, UNetDiscriminatorSN, checkpoints
from esrgan_tf.models import unet_discriminator as unet_lib
from esrgan_tf.weights import discriminator as d_weights


def _unet(state, skip_connection=True):
  return checkpoints.build_discriminator(d_weights.read_discriminator(state),
                                         skip_connection=skip_connection)


def test_parameter_count_matches_real_esrgan():
  # UNetDiscriminatorSN(num_in_ch=3, num_feat=64): trainable parameters (u, v are torch buffers).
  #   conv0 3→64 3×3 + bias:  3·64·9 + 64      =     1,792
  #   conv1 64→128 4×4:       64·128·16         =   131,072
  #   conv2 128→256 4×4:      128·256·16        =   524,288
  #   conv3 256→512 4×4:      256·512·16        = 2,097,152
  #   conv4 512→256 3×3:      512·256·9         = 1,179,648
  #   conv5 256→128 3×3:      256·128·9         =   294,912
  #   conv6 128→64 3×3:       128·64·9          =    73,728
  #   conv7, conv8 64→64 3×3: 2·64·64·9         =    73,728
  #   conv9 64→1 3×3 + bias:  64·9 + 1          =       577
  #   total                                     = 4,376,897
  # Non-trainable u (out) and v (in·kh·kw) of conv1..conv8: 128+1024 + 256+2048 + 512+4096 +
  # 256+4608 + 128+2304 + 64+1152 + 64+576 + 64+576 = 17,856.
  d = UNetDiscriminatorSN(3, 64)
  d.build((None, None, None, 3))
  assert sum(int(np.prod(w.shape)) for w in d.trainable_weights) == 4_376_897
  assert sum(int(np.prod(w.shape)) for w in d.non_trainable_weights) == 17_856


def test_bilinear_upsampling_matches_torch_formula():
  # Hand values of F.interpolate([0, 1], scale 2, bilinear, align_corners=False): source
  # coordinates max((d + ½)/2 − ½, 0) = 0, 0.25, 0.75, 1.25 → 0, 0.25, 0.75, 1 (edge repeated).
  row = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
  np.testing.assert_allclose(ref.upsample_bilinear_x2(row)[0, 0, :, 0], [0, 0.25, 0.75, 1])
  x = np.random.default_rng(0).normal(size=(2, 3, 5, 4))
  out = unet_lib.upsample_bilinear_x2(tf.constant(x, tf.float32)).numpy()
  assert out.shape == (2, 6, 10, 4)
  np.testing.assert_allclose(out, ref.upsample_bilinear_x2(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("skip_connection", [True, False])
def test_inference_matches_numpy_with_stored_u_v(skip_connection):
  state = ref.random_unet_state(num_feat=4, seed=1)
  d = _unet(state, skip_connection)
  x = np.random.default_rng(2).uniform(-1, 1, (2, 16, 24, 3))
  expected, _ = ref.unet_forward({k: v.astype(np.float64) for k, v in state.items()}, x,
                                 skip_connection=skip_connection)
  out = d(x.astype(np.float32), training=False)
  assert out.shape == (2, 16, 24, 1) and out.dtype == tf.float32
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
  # Inference leaves u and v alone (torch's eval mode).
  np.testing.assert_array_equal(d.conv3.vector_u.numpy(), state["conv3.weight_u"])


def test_training_call_does_one_power_iteration_like_torch():
  state = ref.random_unet_state(num_feat=4, seed=3)
  d = _unet(state)
  x = np.random.default_rng(4).uniform(-1, 1, (1, 8, 8, 3))
  state64 = {k: v.astype(np.float64) for k, v in state.items()}
  expected, updated = ref.unet_forward(state64, x, training=True)
  out = d(x.astype(np.float32), training=True).numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  # The stored vectors are torch's updated u and v (v permuted from (in, kh, kw) to (kh, kw, in)).
  exported = d_weights.discriminator_state(d)
  for name in ("conv1", "conv4", "conv8"):
    np.testing.assert_allclose(exported[f"{name}.weight_u"], updated[f"{name}.weight_u"],
                               atol=1e-5)
    np.testing.assert_allclose(exported[f"{name}.weight_v"], updated[f"{name}.weight_v"],
                               atol=1e-5)
  # A first training call differs from inference with the initial vectors: σ changed.
  before, _ = ref.unet_forward(state64, x)
  assert np.abs(before - expected).max() > 1e-3


def test_spectral_norm_gradient_flows_through_sigma():
  # f = Σ c ⊙ (x W/σ), σ = vᵀ W u (Keras layout W: (in, out), u, v fixed in inference).
  # df/dW = xᵀc/σ − f/σ · v uᵀ. Keras' own SpectralNormalization has no second term.
  rng = np.random.default_rng(5)
  layer = SpectralNorm(keras.layers.Dense(3, use_bias=False))
  layer.build((None, 4))
  w = rng.normal(size=(4, 3))
  u, v = ref.normalize(rng.normal(size=3)), ref.normalize(rng.normal(size=4))
  layer.layer.kernel.assign(w.astype(np.float32))
  layer.vector_u.assign(u.astype(np.float32))
  layer.vector_v.assign(v.astype(np.float32))
  x, c = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
  with tf.GradientTape() as tape:
    f = tf.reduce_sum(c.astype(np.float32) * layer(x.astype(np.float32)))
  grad = tape.gradient(f, layer.layer.kernel).numpy()
  sigma = v @ w @ u
  f_ref = np.sum(c * (x @ w / sigma))
  np.testing.assert_allclose(float(f), f_ref, rtol=1e-5)
  np.testing.assert_allclose(grad, x.T @ c / sigma - f_ref / sigma * np.outer(v, u), rtol=1e-4,
                             atol=1e-5)
  # The trainable kernel is W itself (torch's weight_orig), never overwritten by W/σ.
  layer(x.astype(np.float32), training=True)
  np.testing.assert_array_equal(layer.layer.kernel.numpy(), w.astype(np.float32))


def test_spectral_norm_power_iteration_converges_to_largest_singular_value():
  rng = np.random.default_rng(6)
  layer = SpectralNorm(keras.layers.Conv2D(5, 3))
  layer.build((None, 6, 6, 2))
  for _ in range(60):
    layer(np.zeros((1, 6, 6, 2), np.float32), training=True)
  kernel = layer.layer.kernel.numpy().reshape(-1, 5)
  np.testing.assert_allclose(float(layer.sigma()), np.linalg.svd(kernel, compute_uv=False)[0],
                             rtol=1e-4)
  assert isinstance(layer, keras.layers.SpectralNormalization)
  del rng
  with pytest.raises(TypeError, match="wraps Conv2D or Dense"):
    SpectralNorm(keras.layers.Embedding(4, 2))


def test_mixed_precision_logits_are_float32():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    d = UNetDiscriminatorSN(3, 4)
    out = d(tf.random.uniform([1, 8, 8, 3]), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert out.dtype == tf.float32 and out.shape == (1, 8, 8, 1)
  assert np.isfinite(out.numpy()).all()


def test_config_round_trip_and_errors():
  d = UNetDiscriminatorSN(1, 4, skip_connection=False)
  clone = UNetDiscriminatorSN.from_config(d.get_config())
  assert (clone.num_in_ch, clone.num_feat, clone.skip_connection) == (1, 4, False)
  with pytest.raises(ValueError, match="multiples of 8"):
    d(tf.zeros([1, 12, 16, 1]))
  with pytest.raises(ValueError, match=r"expected \[N, H, W, 1\]"):
    d(tf.zeros([1, 16, 16, 3]))
  with pytest.raises(ValueError, match="num_feat must be a positive integer"):
    UNetDiscriminatorSN(3, 0)


def test_keras_file_round_trip_keeps_u_v(tmp_path):
  d = UNetDiscriminatorSN(3, 2)
  x = np.random.default_rng(9).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  d(x, training=True)  # Moves u and v away from their initial values.
  path = str(tmp_path / "d.keras")
  d.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded.conv5, SpectralNorm)
  np.testing.assert_array_equal(loaded.conv5.vector_v.numpy(), d.conv5.vector_v.numpy())
  np.testing.assert_array_equal(loaded(x).numpy(), d(x).numpy())
