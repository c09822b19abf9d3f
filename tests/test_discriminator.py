"""Tests for esrgan_tf.models.discriminator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.models.discriminator import Discriminator


def test_vgg_parameter_count_matches_basicsr_vgg128():
  # BasicSR VGGStyleDiscriminator(num_in_ch=3, num_feat=64), 128×128 input. Per stage i with
  # f = 64·min(2^i, 8) and c the input channels: 3×3 conv 9·c·f (+f bias at i = 0 only),
  # 4×4 stride-2 conv 16·f², a BN after each conv except conv0_0 (2f trainable + 2f moving).
  #   stage0 (c=3,f=64):   1,792 + 65,536 + 256               =    67,584
  #   stage1 (64→128):    73,728 + 262,144 + 2·512            =   336,896
  #   stage2 (128→256):  294,912 + 1,048,576 + 2·1,024        = 1,345,536
  #   stage3 (256→512): 1,179,648 + 4,194,304 + 2·2,048       = 5,378,048
  #   stage4 (512→512): 2,359,296 + 4,194,304 + 2·2,048       = 6,557,696
  #   linear1 512·4·4·100 + 100 = 819,300; linear2 101.   Total  14,505,161
  # of which BN moving stats 2·(64 + 2·(128 + 256 + 512 + 512)) = 5,760 are torch buffers:
  # trainable 14,499,401, BasicSR's parameter count.
  d = Discriminator("vgg", 64, input_size=128)
  d.build((None, 128, 128, 3))
  assert d.count_params() == 14_505_161
  assert sum(int(np.prod(w.shape)) for w in d.trainable_weights) == 14_499_401


def test_vgg_logits_shape_and_input_size_validation():
  d = Discriminator("vgg", 4, input_size=32)
  out = d(tf.random.uniform([3, 32, 32, 3]), training=True)
  assert out.shape == (3, 1) and out.dtype == tf.float32
  with pytest.raises(ValueError, match=r"takes 32×32 inputs"):
    d(tf.zeros([1, 64, 64, 3]))
  for bad in (0, 4, 48, 100):
    with pytest.raises(ValueError, match="input_size must be 4·2\\^k"):
      Discriminator("vgg", 4, input_size=bad)


def test_logits_are_unbounded():
  # A sigmoid head would confine outputs to (0, 1); logits of a random net on large inputs are not.
  d = Discriminator("patch", 4, num_stages=2)
  out = d(tf.random.uniform([8, 16, 16, 3], -50.0, 50.0)).numpy()
  assert (out < 0).any() or (out > 1).any()


def test_patch_takes_any_size_and_spectral_norm_wraps_layers():
  d = Discriminator("patch", 4, num_stages=2, spectral_norm=True)
  for shape in ([2, 24, 40, 3], [1, 17, 9, 3]):
    assert d(tf.random.uniform(shape), training=True).shape == (shape[0], 1)
  wrapped = [l for l in d._flatten_layers() if isinstance(l, keras.layers.SpectralNormalization)]
  assert len(wrapped) == 2 * 2 + 1  # two convs per stage + the 1×1 head.
  assert not any(isinstance(l, keras.layers.BatchNormalization) for l in d._flatten_layers())


def test_bad_arguments():
  with pytest.raises(ValueError, match="type must be one of"):
    Discriminator("unet")
  with pytest.raises(ValueError, match="num_features"):
    Discriminator("patch", 0)
  with pytest.raises(ValueError, match="expected \\[N, H, W, 3\\]"):
    Discriminator("patch", 4)(tf.zeros([1, 8, 8, 1]))
