"""Tests for esrgan_tf.models.SRVGGNetCompact against a numpy reference of Real-ESRGAN's network.

The reference works on PyTorch-layout weights (OIHW convs, (C,) PReLU slopes) and PyTorch's
PixelShuffle channel order, as realesrgan/archs/srvgg_arch.py defines the network; the Keras model
gets the same weights through the checkpoint import path (a .pth written with our torch writer),
so the test covers the architecture and the layout mapping together.
"""


import keras
import numpy as np
import pytest

from esrgan_tf import weights
from esrgan_tf.models import SRVGGNetCompact, build_generator, checkpoints
from esrgan_tf.weights import layouts, torch_writer


def _np_conv(x, weight, bias):
  """'same' 3×3 conv of HWC x with a torch (out, in, 3, 3) weight, float64."""
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, weight.shape[0]))
  for dy in range(3):
    for dx in range(3):
      out += padded[dy:dy + h, dx:dx + w] @ weight[:, :, dy, dx].T.astype(np.float64)
  return out + bias


def _np_pixel_shuffle(x, r):
  # torch.nn.PixelShuffle: out[c, h·r + i, w·r + j] = in[c·r² + i·r + j, h, w] (CHW); here HWC.
  h, w, c = x.shape
  x = x.reshape(h, w, c // (r * r), r, r)           # [h, w, c, i, j]
  return x.transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c // (r * r))


def _np_compact(image, state, num_conv, upscale, act_type):
  """srvgg_arch.py forward: body (conv, act)×(num_conv + 1), conv, shuffle, + nearest input."""
  out = image.astype(np.float64)
  for n in range(2 * num_conv + 3):
    if n % 2 == 0:
      out = _np_conv(out, state[f"body.{n}.weight"], state[f"body.{n}.bias"])
    elif act_type == "prelu":
      out = np.where(out >= 0, out, state[f"body.{n}.weight"] * out)
    elif act_type == "relu":
      out = np.maximum(out, 0)
    else:
      out = np.where(out >= 0, out, 0.1 * out)
  out = _np_pixel_shuffle(out, upscale)
  return out + image.repeat(upscale, axis=0).repeat(upscale, axis=1)


def _random_state(rng, nf, num_conv, upscale, prelu=True):
  state, cin = {}, 3
  for n in range(0, 2 * num_conv + 3, 2):
    cout = 3 * upscale**2 if n == 2 * num_conv + 2 else nf
    state[f"body.{n}.weight"] = rng.normal(0, 1 / np.sqrt(9 * cin), (cout, cin, 3, 3))
    state[f"body.{n}.bias"] = rng.normal(0, 0.1, cout)
    if prelu and n < 2 * num_conv + 2:
      state[f"body.{n + 1}.weight"] = rng.uniform(-0.5, 0.5, nf)
    cin = cout
  return {k: v.astype(np.float32) for k, v in state.items()}


def _write_pth(path, state, wrappers=("params",)):
  with open(path, "wb") as f:
    torch_writer.write_torch_zip(f, state, wrappers=wrappers)


def test_param_counts():
  # Conv in→nf: 9·3·nf + nf; body conv: 9·nf² + nf; PReLU: nf per activation (num_conv + 1);
  # last conv: 9·nf·3r² + 3r².
  def expected(nf, num_conv, r):
    return (27 * nf + nf) + num_conv * (9 * nf * nf + nf) + (num_conv + 1) * nf + (
        9 * nf * 3 * r * r + 3 * r * r)
  # realesr-general-x4v3 (nf 64, 32 convs): 1,792 + 32·36,928 + 33·64 + 27,696 = 1,213,296.
  general = SRVGGNetCompact(num_feat=64, num_conv=32, upscale=4)
  general.build()
  assert general.count_params() == expected(64, 32, 4) == 1_213_296
  relu = SRVGGNetCompact(num_feat=8, num_conv=3, upscale=3, act_type="relu")
  relu.build()
  assert relu.count_params() == expected(8, 3, 3) - 4 * 8  # no slopes


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
def test_matches_numpy_reference_through_pth_import(tmp_path, upscale):
  rng = np.random.default_rng(upscale)
  state = _random_state(rng, nf=8, num_conv=2, upscale=upscale)
  path = tmp_path / "compact.pth"
  _write_pth(path, state, wrappers=("params",))  # realesr-general-x4v3.pth's wrapper
  model = checkpoints.load_checkpoint(path)
  assert model.arch_config() == dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2,
                                     upscale=upscale, act_type="prelu")
  image = rng.random((5, 7, 3)).astype(np.float32)
  got = model(image[None]).numpy()[0]
  want = _np_compact(image, state, 2, upscale, "prelu")
  assert got.shape == want.shape == (5 * upscale, 7 * upscale, 3)
  assert np.abs(want - image.repeat(upscale, 0).repeat(upscale, 1)).mean() > 0.02  # the body
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("act_type", ["relu", "leakyrelu"])
def test_relu_and_leakyrelu_match_numpy(act_type):
  rng = np.random.default_rng(7)
  state = _random_state(rng, nf=8, num_conv=1, upscale=2, prelu=False)
  model = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=2, act_type=act_type)
  model.build()
  layouts.assign_state(model, state)
  image = rng.random((4, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(model(image[None]).numpy()[0],
                             _np_compact(image, state, 1, 2, act_type), atol=2e-5)


def test_layer_names_are_state_dict_keys():
  model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
  model.build()
  assert list(model.named_convs()) == ["body.0", "body.2", "body.4", "body.6"]
  assert list(model.named_prelus()) == ["body.1", "body.3", "body.5"]
  assert model.named_prelus()["body.1"].alpha.shape == (1, 1, 8)
  assert (model.in_channels, model.out_channels, model.scale) == (3, 3, 4)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_checkpoint_round_trip(tmp_path, suffix):
  keras.utils.set_random_seed(3)
  model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=3)
  model.build()
  for prelu in model.named_prelus().values():  # distinct slopes, not the 0.25 init
    prelu.alpha.assign(np.random.default_rng(0).uniform(-1, 1, prelu.alpha.shape))
  path = tmp_path / f"compact{suffix}"
  weights.save_checkpoint(model, path)
  state = weights.read_state_dict(path)
  assert state["body.1.weight"].shape == (8,) and state["body.6.weight"].shape == (27, 8, 3, 3)
  loaded = checkpoints.load_checkpoint(path)
  assert loaded.arch_config() == model.arch_config()
  for a, b in zip(loaded.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(a, b)
  # The written last conv is in PyTorch's PixelShuffle order: the numpy reference agrees.
  image = np.random.default_rng(1).random((4, 5, 3)).astype(np.float32)
  np.testing.assert_allclose(model(image[None]).numpy()[0],
                             _np_compact(image, state, 2, 3, "prelu"), atol=2e-5)


def test_keras_file_and_config_round_trip(tmp_path):
  model = build_generator(dict(arch="srvgg", num_feat=8, num_conv=1, upscale=2,
                               act_type="leakyrelu"))
  assert isinstance(model, SRVGGNetCompact)
  x = np.random.default_rng(0).random((1, 5, 3, 3)).astype(np.float32)
  path = tmp_path / "compact.keras"
  weights.save_model(model, path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, SRVGGNetCompact)
  assert loaded.arch_config() == model.arch_config()
  np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_state_dict_without_slopes_is_refused(tmp_path):
  state = _random_state(np.random.default_rng(0), nf=4, num_conv=1, upscale=2, prelu=False)
  path = tmp_path / "relu.pth"
  _write_pth(path, state)
  with pytest.raises(weights.CheckpointError, match=r"relu\.pth: .*act_type relu or leakyrelu "
                     r"cannot be inferred"):
    checkpoints.load_checkpoint(path)


def test_bad_last_conv_is_refused(tmp_path):
  state = _random_state(np.random.default_rng(0), nf=4, num_conv=1, upscale=2)
  state["body.4.weight"] = state["body.4.weight"][:9]  # 9 = 3·3 would be ×√3
  state["body.4.bias"] = state["body.4.bias"][:9]
  path = tmp_path / "odd.pth"
  _write_pth(path, state)
  with pytest.raises(weights.CheckpointError, match=r"last conv has 9 outputs"):
    checkpoints.load_checkpoint(path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(upscale=5), r"upscale must be one of \(1, 2, 3, 4\)"),
    (dict(act_type="gelu"), "act_type must be one of"),
    (dict(num_out_ch=1), r"num_out_ch \(1\) must equal num_in_ch \(3\)"),
    (dict(num_conv=-1), "num_conv must be a non-negative integer"),
])
def test_invalid_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SRVGGNetCompact(**kwargs)


def test_blend_is_interpolate():
  # Real-ESRGAN's -dn: W·A + (1 − W)·B == interpolate(B, A, W) == interpolate(A, B, 1 − W).
  a, b = (build_generator(dict(arch="srvgg", num_feat=4, num_conv=1, upscale=2)) for _ in "ab")
  for m, seed in ((a, 1), (b, 2)):
    m.set_weights([np.random.default_rng(seed).normal(size=w.shape) for w in m.get_weights()])
  blended = weights.interpolate(b, a, 0.3)
  assert isinstance(blended, SRVGGNetCompact)
  for got, wa, wb in zip(blended.get_weights(), a.get_weights(), b.get_weights()):
    np.testing.assert_allclose(got, 0.3 * wa + 0.7 * wb, rtol=1e-6, atol=1e-7)
  other = build_generator(dict(arch="srvgg", num_feat=4, num_conv=2, upscale=2))
  with pytest.raises(ValueError, match=r"different architectures \(a vs b: num_conv: 1 vs 2\)"):
    weights.interpolate(a, other, 0.5)
  from esrgan_tf.models import RRDBNet
  rrdb = RRDBNet(num_features=4, num_blocks=1, growth_channels=2, scale=2)
  with pytest.raises(ValueError, match=r"a is SRVGGNetCompact, b is RRDBNet"):
    weights.interpolate(a, rrdb, 0.5)


