"""`perceptual.weights = "torchvision"`: torchvision's VGG19 through the hub (cache, mirror,
offline message, bounded download, hash prefix), read without torch, with ImageNet mean/std."""

import dataclasses
import hashlib
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.models import vgg as vgg_lib
from esrgan_tf.train import configs
from esrgan_tf.train import state as train_state
from esrgan_tf.weights import registry as registry_lib
from esrgan_tf.weights import torch_writer
from esrgan_tf.weights.vgg import TORCHVISION_FEATURE_INDEX

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = registry_lib.PERCEPTUAL_WEIGHTS[registry_lib.TORCHVISION_VGG19]


def _write_vgg19(path, seed=0):
  """A random VGG19 in torchvision's state-dict layout (features.N.weight/bias + classifier)."""
  rng = np.random.default_rng(seed)
  state, channels = {}, 3
  for name, index in TORCHVISION_FEATURE_INDEX.items():
    out = 64 * 2 ** min(int(name[5]) - 1, 3)  # block1 64, block2 128, block3 256, then 512
    state[f"features.{index}.weight"] = (rng.normal(size=(out, channels, 3, 3)) * np.sqrt(
        2 / (9 * channels))).astype(np.float32)
    state[f"features.{index}.bias"] = rng.normal(size=(out,)).astype(np.float32) * 0.1
    channels = out
  state["classifier.0.bias"] = np.zeros(8, np.float32)  # Ignored by the reader.
  with open(path, "wb") as f:
    torch_writer.write_torch_zip(f, state)
  return state


@pytest.fixture()
def mirror(tmp_path, monkeypatch):
  """A file:// mirror holding a random vgg19-dcbb9e9d.pth; the registry entry's hash prefix is
  set to that file's (the real file's SHA-256 starts with dcbb9e9d)."""
  folder = tmp_path / "mirror"
  folder.mkdir()
  path = folder / ENTRY.filename
  state = _write_vgg19(path)
  prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
  monkeypatch.setitem(registry_lib.PERCEPTUAL_WEIGHTS, registry_lib.TORCHVISION_VGG19,
                      dataclasses.replace(ENTRY, sha256_prefix=prefix))
  monkeypatch.setenv(registry_lib.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv(registry_lib.MIRROR_ENV, folder.as_uri())
  return folder, state


def _perceptual(weights="torchvision"):
  return ml_collections.ConfigDict({"weights": weights, "layers": {"conv1_2": 1.0}})


def test_torchvision_weights_download_once_and_load_with_imagenet_normalisation(mirror,
                                                                              tmp_path,
                                                                              monkeypatch):
  folder, state = mirror
  convs = train_state._perceptual_weights_source(_perceptual())  # pylint: disable=protected-access
  assert (tmp_path / "cache" / ENTRY.filename).is_file()
  kernel, bias = convs["block1_conv2"]
  np.testing.assert_array_equal(kernel, state["features.2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(bias, state["features.2.bias"])
  # The cached file is used next time: no mirror needed.
  (folder / ENTRY.filename).unlink()
  monkeypatch.setenv(registry_lib.MIRROR_ENV, f"http://127.0.0.1:9/{'x' * 4}")
  again = train_state._perceptual_weights_source(_perceptual())  # pylint: disable=protected-access
  np.testing.assert_array_equal(again["block1_conv2"][0], kernel)
  # The feature extractor normalises with ImageNet mean/std (BasicSR use_input_norm):
  # conv1_1 of a constant image equals Σ kernel·(x − mean)/std + bias (zero padding aside).
  extractor = vgg_lib.VGGFeatureExtractor({"conv1_1": 1.0}, weights=convs)
  assert extractor.preprocess == "torch"
  x = np.full((1, 5, 5, 3), 0.3, np.float32)
  normalised = (0.3 - np.array(vgg_lib.TORCH_IMAGENET_MEAN)) / np.array(
      vgg_lib.TORCH_IMAGENET_STD)
  k1, b1 = convs["block1_conv1"]
  want = np.einsum("hwio,i->o", k1.astype(np.float64), normalised) + b1
  np.testing.assert_allclose(extractor(tf.constant(x))["conv1_1"].numpy()[0, 2, 2], want,
                             rtol=1e-5, atol=1e-5)


def test_offline_message_names_the_url_and_the_cache_path(tmp_path, monkeypatch):
  monkeypatch.setenv(registry_lib.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv(registry_lib.MIRROR_ENV, "http://127.0.0.1:9/models")  # discard port: refused
  with pytest.raises(registry_lib.RegistryError) as e:
    train_state._perceptual_weights_source(_perceptual())  # pylint: disable=protected-access
  message = str(e.value)
  assert "Offline?" in message and "http://127.0.0.1:9/models/vgg19-dcbb9e9d.pth" in message
  assert str(tmp_path / "cache" / ENTRY.filename) in message
  assert not os.listdir(tmp_path / "cache")  # Nothing half-written.


def test_download_is_bounded_and_hash_prefix_checked(mirror, tmp_path, monkeypatch):
  folder, _ = mirror
  size = (folder / ENTRY.filename).stat().st_size
  entry = registry_lib.PERCEPTUAL_WEIGHTS[registry_lib.TORCHVISION_VGG19]
  monkeypatch.setitem(registry_lib.PERCEPTUAL_WEIGHTS, registry_lib.TORCHVISION_VGG19,
                      dataclasses.replace(entry, max_bytes=size - 1))
  with pytest.raises(registry_lib.RegistryError,
                     match=f"announces {size:,} bytes, more than this model.s file can be "
                           rf"\({size - 1:,}\)"):
    registry_lib.fetch(registry_lib.TORCHVISION_VGG19, registry=registry_lib.PERCEPTUAL_WEIGHTS)
  monkeypatch.setitem(registry_lib.PERCEPTUAL_WEIGHTS, registry_lib.TORCHVISION_VGG19,
                      dataclasses.replace(entry, sha256_prefix="dcbb9e9d"))
  with pytest.raises(registry_lib.RegistryError, match="expected dcbb9e9d...; it was deleted"):
    registry_lib.fetch(registry_lib.TORCHVISION_VGG19, registry=registry_lib.PERCEPTUAL_WEIGHTS)
  assert not os.listdir(tmp_path / "cache")


def test_a_torchvision_pth_path_is_read_the_same_way(tmp_path):
  path = tmp_path / "my_vgg19.pth"
  state = _write_vgg19(path, seed=3)
  convs = train_state._perceptual_weights_source(_perceptual(str(path)))  # pylint: disable=protected-access
  np.testing.assert_array_equal(convs["block5_conv4"][1], state["features.34.bias"])
  with pytest.raises(ValueError, match="does not exist"):
    train_state._perceptual_weights_source(_perceptual(str(tmp_path / "none.pth")))  # pylint: disable=protected-access


@pytest.mark.parametrize("name", ["esrgan_x4", "esrgan_x2", "realesrgan_x4plus"])
def test_basicsr_configs_use_torchvision_vgg19(name):
  c = configs.load_config_module(os.path.join(REPO, "configs", f"{name}.py")).get_config()
  assert c.perceptual.weights == "torchvision"
  assert c.optim.epsilon_form == "torch"
  if name.startswith("esrgan"):
    assert c.loss.ragan_form == "basicsr"


def test_registry_entry_is_pytorchs_file():
  assert ENTRY.url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
  assert ENTRY.sha256_prefix == "dcbb9e9d" and ENTRY.max_bytes > 548.1e6  # torchvision: 548.1 MB
