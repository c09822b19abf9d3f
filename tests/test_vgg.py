"""Tests for esrgan_tf.models.vgg (weights=None or a local file: nothing downloads)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import vgg_reference
import weights_fixtures as wf

from esrgan_tf import weights
from esrgan_tf.models import vgg as vgg_lib
from esrgan_tf.weights import vgg as vgg_weights


def _conv3x3_same(x, kernel, bias):
  """Reference 'same' 3×3 convolution in numpy (x [H, W, C], kernel [3, 3, C, F])."""
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, kernel.shape[-1]))
  for i in range(h):
    for j in range(w):
      out[i, j] = np.tensordot(padded[i:i + 3, j:j + 3], kernel, axes=3)
  return out + bias


def test_caffe_preprocess_matches_hand_values():
  # [0, 1] RGB (1, 0.5, 0) → BGR ×255 = (0, 127.5, 255) − (103.939, 116.779, 123.68).
  out = vgg_lib.caffe_preprocess(tf.constant([[[[1.0, 0.5, 0.0]]]])).numpy()
  np.testing.assert_allclose(out[0, 0, 0], [-103.939, 10.721, 131.32], rtol=0, atol=1e-4)


def test_pre_activation_features_and_weights_file_round_trip(tmp_path):
  reference = keras.applications.VGG19(include_top=False, weights=None,
                                       input_shape=(None, None, 3))
  path = str(tmp_path / "vgg19.weights.h5")
  reference.save_weights(path)
  extractor = vgg_lib.VGGFeatureExtractor(
      {"block1_conv1": 0.5, "block2_conv2": 1.0}, weights=path)
  assert extractor.layer_weights == {"block1_conv1": 0.5, "block2_conv2": 1.0}
  assert not extractor.trainable_weights

  rng = np.random.default_rng(0)
  images = rng.uniform(size=(1, 8, 8, 3)).astype(np.float32)
  features = extractor(images)
  assert list(features) == ["block1_conv1", "block2_conv2"]

  # block1_conv1 pre-activation = conv(caffe(x)) without ReLU, with the file's kernel; it has
  # negative values (it would not after a ReLU).
  kernel, bias = reference.get_layer("block1_conv1").get_weights()
  caffe = vgg_lib.caffe_preprocess(images).numpy()[0].astype(np.float64)
  expected = _conv3x3_same(caffe, kernel.astype(np.float64), bias)
  np.testing.assert_allclose(features["block1_conv1"][0].numpy(), expected, rtol=1e-4, atol=1e-3)
  assert (features["block1_conv1"].numpy() < 0).any()

  # ReLU(pre-activation block2_conv2) equals the Keras VGG19 layer output.
  keras_out = keras.Model(reference.input, reference.get_layer("block2_conv2").output)(caffe[None])
  np.testing.assert_allclose(tf.nn.relu(features["block2_conv2"]).numpy(), keras_out.numpy(),
                             rtol=1e-4, atol=1e-3)
  # The source model was not mutated.
  assert reference.get_layer("block2_conv2").activation is keras.activations.relu


def test_errors():
  with pytest.raises(ValueError, match="does not exist"):
    vgg_lib.VGGFeatureExtractor(weights="/nonexistent/vgg.h5")
  with pytest.raises(ValueError, match="unknown VGG19 conv layer 'block1_pool'"):
    vgg_lib.VGGFeatureExtractor({"block1_pool": 1.0})
  with pytest.raises(ValueError, match="at least one layer"):
    vgg_lib.VGGFeatureExtractor({})


def test_imagenet_weights_path_uses_keras_home(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  assert vgg_lib.imagenet_weights_path() is None
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / vgg_lib.IMAGENET_NOTOP_FILE).write_bytes(b"x")
  assert vgg_lib.imagenet_weights_path() == str(tmp_path / "models" / vgg_lib.IMAGENET_NOTOP_FILE)


def test_real_esrgan_taps_match_numpy_vgg19():
  # All five Real-ESRGAN taps (BasicSR names), pre-activation, against a float64 numpy VGG19 of
  # the same (random) weights: convs, ReLUs and 2×2 max pools from the VGG definition.
  extractor = vgg_lib.VGGFeatureExtractor(vgg_lib.REAL_ESRGAN_LAYERS, weights=None)
  conv_weights = {l.name: l.get_weights() for l in extractor.trunk if l.get_weights()}
  assert len(conv_weights) == 16  # The trunk reaches conv5_4.
  images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3))
  features = extractor(images.astype(np.float32))
  assert list(features) == ["conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"]
  expected = vgg_reference.pre_activations(conv_weights, images)
  for name, keras_name in vgg_lib.BASICSR_LAYER_NAMES.items():
    if name not in features:
      continue
    ours, theirs = features[name].numpy(), expected[keras_name]
    assert ours.shape == theirs.shape, name
    # Tolerance relative to the layer's scale (float32 accumulates over up to 16 convs).
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max() + 1e-6,
                               err_msg=name)
    assert (theirs < 0).any(), f"{name} has no negative values: not pre-activation?"


def test_basicsr_names_map_to_keras_layers():
  assert vgg_lib.BASICSR_LAYER_NAMES["conv5_4"] == "block5_conv4"
  assert vgg_lib.BASICSR_LAYER_NAMES["conv1_2"] == "block1_conv2"
  assert len(vgg_lib.BASICSR_LAYER_NAMES) == 16  # VGG19: 16 conv layers.
  assert "conv2_3" not in vgg_lib.BASICSR_LAYER_NAMES  # Block 2 has two convs.
  with pytest.raises(ValueError, match="given twice"):
    vgg_lib.VGGFeatureExtractor({"conv5_4": 1.0, "block5_conv4": 1.0})
  with pytest.raises(ValueError, match="unknown VGG19 conv layer 'conv2_3'"):
    vgg_lib.VGGFeatureExtractor({"conv2_3": 1.0})


def _torchvision_state(rng):
  """A torchvision-layout VGG19 state dict (features.N, OIHW) with random weights."""
  state, channels = {}, 3
  for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)):
    out = 64 * min(2 ** (block - 1), 8)
    for conv in range(1, convs + 1):
      index = vgg_weights.TORCHVISION_FEATURE_INDEX[f"block{block}_conv{conv}"]
      std = np.sqrt(2.0 / (9 * channels))  # He init keeps activations O(1) through 16 layers.
      state[f"features.{index}.weight"] = rng.normal(0, std, (out, channels, 3, 3)).astype(
          np.float32)
      state[f"features.{index}.bias"] = rng.normal(0, 0.1, out).astype(np.float32)
      channels = out
  return state


def test_torchvision_weights_with_torch_normalisation_match_numpy():
  # BasicSR: torchvision VGG19 weights, use_input_norm=True ((x − mean)/std), range_norm=False.
  # torchvision indices: features.0 = conv1_1, .2 = conv1_2, .5 = conv2_1, ..., .34 = conv5_4.
  assert [vgg_weights.TORCHVISION_FEATURE_INDEX[f"block{b}_conv{c}"]
          for b, c in ((1, 1), (1, 2), (2, 1), (3, 4), (5, 4))] == [0, 2, 5, 16, 34]
  rng = np.random.default_rng(7)
  state = _torchvision_state(rng)
  state["classifier.6.bias"] = np.zeros(1000, np.float32)  # The classifier is ignored.
  convs = vgg_weights.torchvision_vgg19_convs(state)
  extractor = vgg_lib.VGGFeatureExtractor({"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0},
                                          weights=convs)
  assert extractor.preprocess == "torch"
  images = rng.uniform(size=(1, 16, 16, 3))
  features = extractor(images.astype(np.float32))
  numpy_convs = {name: (state[f"features.{i}.weight"].transpose(2, 3, 1, 0),
                        state[f"features.{i}.bias"])
                 for name, i in vgg_weights.TORCHVISION_FEATURE_INDEX.items()}
  expected = vgg_reference.pre_activations(numpy_convs, images, depth=8, preprocess="torch")
  for name in ("conv1_2", "conv2_2", "conv3_4"):
    theirs = expected[vgg_lib.BASICSR_LAYER_NAMES[name]]
    np.testing.assert_allclose(features[name].numpy(), theirs, rtol=0,
                               atol=1e-4 * np.abs(theirs).max(), err_msg=name)


def test_torchvision_weights_errors(tmp_path):
  rng = np.random.default_rng(8)
  state = _torchvision_state(rng)
  del state["features.34.bias"]
  with pytest.raises(weights.CheckpointError, match=r"missing \['features\.34\.bias'\]"):
    vgg_weights.torchvision_vgg19_convs(state)
  path = tmp_path / "not_vgg.pth"
  wf.write_zip(path, wf.state_dict(wf.random_state()))
  with pytest.raises(weights.CheckpointError, match=r"not_vgg\.pth: not a torchvision VGG19"):
    weights.load_torchvision_vgg19(str(path))
  with pytest.raises(ValueError, match="lacks block1_conv1"):
    vgg_lib.VGGFeatureExtractor({"conv1_1": 1.0}, weights={})
  with pytest.raises(ValueError, match="preprocess must be"):
    vgg_lib.VGGFeatureExtractor({"conv1_1": 1.0}, preprocess="bgr")
