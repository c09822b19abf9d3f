"""esrgan_tf.models.RRDBNet: parameter counts, shapes, a numpy reference, serialisation."""

import keras
import numpy as np
import pytest

from esrgan_tf.models import RRDBNet

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)


def _conv_params(cin, cout):
  return 3 * 3 * cin * cout + cout


def _expected_params(nf=64, nb=23, gc=32, scale=4, upsampler="nearest", cin=3, cout=3):
  # Dense block: conv_j sees nf + (j-1)·gc channels; conv1..4 output gc, conv5 outputs nf.
  rdb = sum(_conv_params(nf + j * gc, gc) for j in range(4)) + _conv_params(nf + 4 * gc, nf)
  stages = {2: 1, 4: 2, 8: 3}[scale]
  up_out = nf if upsampler == "nearest" else 4 * nf
  return (_conv_params(cin, nf)            # conv_first
          + nb * 3 * rdb                   # body: nb RRDBs of 3 dense blocks
          + _conv_params(nf, nf)           # conv_body
          + stages * _conv_params(nf, up_out)
          + _conv_params(nf, nf)           # conv_hr
          + _conv_params(nf, cout))        # conv_last


def test_param_count_x4_nearest_matches_official_weights():
  # Dense block (nf=64, gc=32): 18,464 + 27,680 + 36,896 + 46,112 + 110,656 = 239,808.
  # 23 RRDBs × 3 blocks × 239,808 = 16,546,752; conv_first 1,792; conv_body, conv_up1,
  # conv_up2, conv_hr 36,928 each; conv_last 1,731: total 16,697,987 (Real-ESRGAN x4plus).
  model = RRDBNet(scale=4, upsampler="nearest")
  model.build((None, None, None, 3))
  assert model.count_params() == 16_697_987
  assert _expected_params() == 16_697_987


def test_param_count_x4_depth_to_space():
  # Each of the two ×2 stages has conv nf→4·nf: 3·3·64·256 + 256 = 147,712 instead of 36,928:
  # 16,697,987 + 2 × (147,712 − 36,928) = 16,919,555.
  model = RRDBNet(scale=4, upsampler="depth_to_space")
  model.build((None, None, None, 3))
  assert model.count_params() == 16_919_555
  assert _expected_params(upsampler="depth_to_space") == 16_919_555


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("upsampler", ["nearest", "depth_to_space"])
def test_output_shapes_odd_sizes(scale, upsampler):
  model = RRDBNet(scale=scale, upsampler=upsampler, **TINY)
  out = model(np.zeros((2, 13, 17, 3), np.float32))
  assert tuple(out.shape) == (2, 13 * scale, 17 * scale, 3)
  assert out.dtype == "float32"
  assert model.count_params() == _expected_params(8, 1, 4, scale, upsampler)


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale=3), "scale must be one of (1, 2, 4, 8)"),
    (dict(scale=16), "scale must be one of (1, 2, 4, 8)"),
    (dict(scale=1), "needs a trunk upscaling ×1; it must be 2, 4 or 8"),
    (dict(scale=2, input_unshuffle=3), "input_unshuffle must be one of (1, 2, 4)"),
    (dict(upsampler="bilinear"), "upsampler must be one of"),
    (dict(num_blocks=0), "num_blocks must be a positive integer"),
])
def test_invalid_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    RRDBNet(**kwargs)


def test_names_follow_basicsr_keys():
  model = RRDBNet(scale=8, upsampler="nearest", num_features=8, num_blocks=2, growth_channels=4)
  model.build()
  keys = list(model.named_convs())
  assert keys[0] == "conv_first"
  assert keys[1:16] == [f"body.0.rdb{k}.conv{j}" for k in (1, 2, 3) for j in range(1, 6)]
  assert keys[-6:] == ["conv_body", "conv_up1", "conv_up2", "conv_up3", "conv_hr", "conv_last"]
  assert len(keys) == 1 + 2 * 15 + 6
  # Every trainable weight belongs to exactly one named conv.
  assert sum(len(c.weights) for c in model.named_convs().values()) == len(model.weights)


# --- independent numpy reference ----------------------------------------------------------------

def _np_conv3x3(x, kernel, bias):
  """Direct 'same' 3×3 convolution: out[i, j] = Σ_dy,dx x[i+dy-1, j+dx-1] · W[dy, dx] + b."""
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, kernel.shape[-1]), np.float64)
  for dy in range(3):
    for dx in range(3):
      out += padded[dy:dy + h, dx:dx + w, :] @ kernel[dy, dx].astype(np.float64)
  return out + bias


def _np_lrelu(x):
  return np.where(x >= 0, x, 0.2 * x)


def _np_depth_to_space(x, block=2):
  # TF/PyTorch pixel-shuffle order: out[h·b + i, w·b + j, c] = in[h, w, (i·b + j)·C + c].
  h, w, c = x.shape
  cout = c // (block * block)
  x = x.reshape(h, w, block, block, cout).transpose(0, 2, 1, 3, 4)
  return x.reshape(h * block, w * block, cout)


def _np_rrdbnet(image, params, num_blocks, scale, upsampler):
  conv = lambda name, x: _np_conv3x3(x, *params[name])
  feat = conv("conv_first", image)
  body = feat
  for i in range(num_blocks):
    block_in = body
    for k in range(1, 4):
      feats = [body]
      for j in range(1, 5):
        feats.append(_np_lrelu(conv(f"body.{i}.rdb{k}.conv{j}", np.concatenate(feats, -1))))
      body = conv(f"body.{i}.rdb{k}.conv5", np.concatenate(feats, -1)) * 0.2 + body
    body = body * 0.2 + block_in
  feat = feat + conv("conv_body", body)
  for stage in range(1, {2: 1, 4: 2, 8: 3}[scale] + 1):
    if upsampler == "nearest":
      feat = _np_lrelu(conv(f"conv_up{stage}", feat.repeat(2, axis=0).repeat(2, axis=1)))
    else:
      feat = _np_lrelu(_np_depth_to_space(conv(f"conv_up{stage}", feat)))
  return conv("conv_last", _np_lrelu(conv("conv_hr", feat)))


@pytest.mark.parametrize("scale, upsampler", [(4, "nearest"), (2, "depth_to_space"),
                                              (8, "nearest")])
def test_matches_numpy_reference(scale, upsampler):
  keras.utils.set_random_seed(1)
  model = RRDBNet(scale=scale, upsampler=upsampler, num_features=8, num_blocks=2,
                  growth_channels=4)
  model.build()
  rng = np.random.default_rng(0)
  # Random weights of unit gain (std 1/sqrt(fan_in)) so every path, including the 0.1-scaled
  # body, contributes and activations stay O(1), where float32 error is ~1e-6.
  for conv in model.named_convs().values():
    std = 1.0 / np.sqrt(np.prod(conv.kernel.shape[:3]))
    conv.kernel.assign(rng.normal(0, std, conv.kernel.shape).astype(np.float32))
    conv.bias.assign(rng.normal(0, 0.1, conv.bias.shape).astype(np.float32))
  params = {name: (c.kernel.numpy(), c.bias.numpy()) for name, c in model.named_convs().items()}
  image = rng.random((5, 7, 3)).astype(np.float32)
  got = model(image[None]).numpy()[0]
  want = _np_rrdbnet(image.astype(np.float64), params, 2, scale, upsampler)
  assert got.shape == want.shape == (5 * scale, 7 * scale, 3)
  assert want.std() > 0.1  # A non-trivial output, so 1e-5 is a real tolerance.
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_conv5_has_no_activation():
  # With every body conv zero except conv5's bias = −1, a LeakyReLU after conv5 would give
  # −0.2 per block; the reference adds exactly −1 · 0.2 (residual scale) to the input.
  from esrgan_tf.models.rrdbnet import ResidualDenseBlock
  rdb = ResidualDenseBlock(num_features=2, growth_channels=2)
  rdb.build((None, None, None, 2))
  for conv in rdb.convs:
    conv.kernel.assign(np.zeros(conv.kernel.shape, np.float32))
    conv.bias.assign(np.zeros(conv.bias.shape, np.float32))
  rdb.convs[-1].bias.assign(np.full((2,), -1.0, np.float32))
  x = np.full((1, 3, 3, 2), 0.5, np.float32)
  np.testing.assert_allclose(rdb(x).numpy(), 0.5 - 0.2, atol=1e-7)


def test_body_init_is_scaled_he():
  keras.utils.set_random_seed(0)
  model = RRDBNet(num_features=64, num_blocks=1, growth_channels=32, scale=2)
  model.build()
  conv5 = model.named_convs()["body.0.rdb1.conv5"]
  fan_in = 3 * 3 * (64 + 4 * 32)
  # He normal std sqrt(2 / fan_in), scaled by 0.1 (paper supplementary §2).
  assert np.std(conv5.kernel.numpy()) == pytest.approx(0.1 * np.sqrt(2 / fan_in), rel=0.05)
  conv_first = model.named_convs()["conv_first"]
  assert np.std(conv_first.kernel.numpy()) == pytest.approx(np.sqrt(2 / 27), rel=0.15)


def test_config_round_trip_and_keras_file(tmp_path):
  model = RRDBNet(scale=2, upsampler="nearest", **TINY)
  x = np.random.default_rng(0).random((1, 6, 5, 3)).astype(np.float32)
  y = model(x).numpy()
  clone = RRDBNet.from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  path = tmp_path / "tiny.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, RRDBNet)
  assert loaded.arch_config() == model.arch_config()
  np.testing.assert_array_equal(loaded(x).numpy(), y)


def test_tf_checkpoint_saves_every_variable(tmp_path):
  # Keras 3 list attributes are invisible to tf.train.Checkpoint unless tracked explicitly.
  import tensorflow as tf
  model = RRDBNet(scale=4, upsampler="nearest", num_features=8, num_blocks=2, growth_channels=4)
  model.build()
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
  assert len(saved) == len(model.weights) == 2 * len(model.named_convs())
  clone = RRDBNet(**model.arch_config())
  clone.build()
  tf.train.Checkpoint(model=clone).read(path).assert_consumed()
  for a, b in zip(clone.weights, model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
