"""Pixel-unshuffle RRDBNets (BasicSR's scale 2 / scale 1 form: RealESRGAN_x2plus, x1 models).

The numpy reference follows basicsr/archs/rrdbnet_arch.py + Real-ESRGAN's RealESRGANer: reflect-pad
the image at the bottom/right to a multiple of the factor (mod_pad), torch's pixel_unshuffle
(channel c·r² + i·r + j), the ×4 RRDB trunk (tests.test_rrdbnet's reference), crop. Weights are in
the PyTorch layout and reach the Keras model through the .safetensors import path.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_rrdbnet import _np_rrdbnet

from esrgan_tf import weights
from esrgan_tf.models import RRDBNet, checkpoints
from esrgan_tf.weights import layouts, safetensors_io

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)


def _np_pixel_unshuffle(x, r):
  # torch.nn.functional.pixel_unshuffle: out[c·r² + i·r + j, h, w] = in[c, h·r + i, w·r + j].
  h, w, c = x.shape
  x = x.reshape(h // r, r, w // r, r, c)            # [h, i, w, j, c]
  return x.transpose(0, 2, 4, 1, 3).reshape(h // r, w // r, c * r * r)


def _np_unshuffle_rrdbnet(image, state, factor, scale):
  h, w, _ = image.shape
  pad_h, pad_w = (-h) % factor, (-w) % factor
  x = np.pad(image.astype(np.float64), ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
  params = {k[:-len(".weight")]: (v.transpose(2, 3, 1, 0), state[k[:-len("weight")] + "bias"])
            for k, v in state.items() if k.endswith(".weight")}
  out = _np_rrdbnet(_np_pixel_unshuffle(x, factor), params, 1, scale * factor, "nearest")
  return out[:h * scale, :w * scale]


def _random_torch_state(factor, seed):
  """A BasicSR-layout state dict with random unit-gain weights."""
  reference = RRDBNet(scale=4, upsampler="nearest", in_channels=3 * factor**2,
                      out_channels=3, **TINY)
  reference.build()
  rng = np.random.default_rng(seed)
  state = {}
  for name, conv in reference.named_convs().items():
    kh, kw, cin, cout = conv.kernel.shape
    state[f"{name}.weight"] = rng.normal(0, 1 / np.sqrt(9 * cin), (cout, cin, kh, kw))
    state[f"{name}.bias"] = rng.normal(0, 0.1, cout)
  return {k: v.astype(np.float32) for k, v in state.items()}


def _write(path, state):
  with open(path, "wb") as f:
    safetensors_io.write_safetensors(f, state)


@pytest.mark.parametrize("factor, scale", [(2, 2), (4, 1)])
def test_import_infers_layout_and_matches_numpy(tmp_path, factor, scale):
  state = _random_torch_state(factor, seed=factor)
  path = tmp_path / f"x{scale}.safetensors"
  _write(path, state)
  model = checkpoints.load_checkpoint(path)
  assert model.arch_config() == dict(in_channels=3, out_channels=3, scale=scale,
                                     upsampler="nearest", input_unshuffle=factor, **TINY)
  rng = np.random.default_rng(0)
  for h, w in ((8, 12), (7, 9), (1, 3)):  # multiples, odd sizes, smaller than the factor
    image = rng.random((h, w, 3)).astype(np.float32)
    want = _np_unshuffle_rrdbnet(image, state, factor, scale) if min(h, w) > factor else None
    got = model(image[None]).numpy()[0]
    assert got.shape == (h * scale, w * scale, 3)
    if want is not None:
      assert want.std() > 0.1
      np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_dynamic_and_static_padding_agree():
  # Static shapes pad with tf.pad(REFLECT) (MIRROR_PAD in TFLite), dynamic ones gather reflected
  # indices: both are numpy's "reflect" whenever the pad is smaller than the side.
  keras.utils.set_random_seed(0)
  model = RRDBNet(scale=1, upsampler="nearest", input_unshuffle=4, **TINY)
  model.build()
  dynamic = tf.function(model, input_signature=[tf.TensorSpec([None, None, None, 3])])
  image = np.random.default_rng(1).random((2, 9, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(dynamic(image).numpy(), model(image).numpy(), atol=1e-6)
  # 1-pixel-wide input: periodic reflection repeats the only column.
  thin = image[:, :, :1]
  assert dynamic(thin).shape == (2, 9, 1, 3)
  np.testing.assert_allclose(dynamic(thin).numpy(),
                             model(np.repeat(thin, 4, axis=2)).numpy()[:, :, :1], atol=1e-6)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_checkpoint_writes_torch_channel_order(tmp_path, suffix):
  state = _random_torch_state(2, seed=5)
  source = tmp_path / "in.safetensors"
  _write(source, state)
  model = checkpoints.load_checkpoint(source)
  out = tmp_path / f"out{suffix}"
  weights.save_checkpoint(model, out)
  written = weights.read_state_dict(out)
  assert written.keys() == state.keys()
  for key, value in state.items():
    np.testing.assert_array_equal(written[key], value)


def test_keras_file_round_trip_keeps_the_layout(tmp_path):
  model = RRDBNet(scale=2, upsampler="nearest", input_unshuffle=2, **TINY)
  x = np.random.default_rng(0).random((1, 5, 7, 3)).astype(np.float32)
  y = model(x).numpy()
  path = tmp_path / "x2plus.keras"
  weights.save_model(model, path)
  loaded = keras.models.load_model(path)
  assert loaded.arch_config() == model.arch_config()
  assert loaded.arch_config()["input_unshuffle"] == 2
  np.testing.assert_array_equal(loaded(x).numpy(), y)
  # The two ×2 layouts coexist: the default ×2 has no unshuffle and a 3-channel conv_first.
  plain = RRDBNet(scale=2, upsampler="nearest", **TINY)
  plain.build()
  assert "input_unshuffle" not in plain.arch_config()
  assert plain.named_convs()["conv_first"].kernel.shape[2] == 3
  assert loaded.named_convs()["conv_first"].kernel.shape[2] == 12


def test_shuffle_permutation_matches_tf():
  # keras channels = torch channels[p] for space_to_depth vs torch's pixel_unshuffle.
  x = np.random.default_rng(0).random((4, 6, 3))
  torch_order = _np_pixel_unshuffle(x, 2)
  tf_order = tf.nn.space_to_depth(x[None], 2).numpy()[0]
  np.testing.assert_array_equal(tf_order, torch_order[..., layouts.shuffle_permutation(3, 2)])


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_upscaling_of_odd_sizes(scale):
  # Tiles of 6 px are not multiples of the factor either: each is padded inside the model.
  from esrgan_tf.inference import engine, tiling
  model = RRDBNet(scale=scale, upsampler="nearest", input_unshuffle={1: 4, 2: 2}[scale], **TINY)
  model.build()
  runner = engine.keras_engine(model)
  image = np.random.default_rng(0).random((13, 11, 3)).astype(np.float32)
  tiled = tiling.upscale_array(image, runner,
                               tiling.TileSpec(tile=6, overlap=2, batch=4, pre_pad=0))
  whole = runner(image[None])[0]
  assert tiled.shape == whole.shape == (13 * scale, 11 * scale, 3)
  assert np.all(np.isfinite(tiled))
  # One tile covering the image is the whole-image result, padding and crop included.
  np.testing.assert_array_equal(
      tiling.upscale_array(image, runner, tiling.TileSpec(tile=16, overlap=2, pre_pad=0)), whole)
