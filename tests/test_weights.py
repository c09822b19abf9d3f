"""Checkpoint interop (esrgan_tf.weights): readers, layouts, writers, interpolation, CLIs.

Torch files are produced by tests/weights_fixtures.py (same bytes layout as torch.save, no torch);
hostile files are in test_weights_hostile.py, real weights against ncnn in
test_ncnn_reference.py.
"""

import os
import pickletools
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import safetensors.numpy
import weights_fixtures as wf
from weights_fixtures import random_state, write_ncnn

from esrgan_tf import weights
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import resolver
from esrgan_tf.models import RRDBNet, checkpoints
from esrgan_tf.weights import layouts, torch_pickle

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)


def random_model(scale=4, seed=0, **kwargs):
  """A tiny nearest-upsampling RRDBNet with random, asymmetric weights."""
  config = {**TINY, "scale": scale, "upsampler": "nearest", **kwargs}
  model = RRDBNet(**config)
  model.build((None, None, None, config.get("in_channels", 3)))
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32)
                     for w in model.get_weights()])
  return model


def assert_same_weights(a, b):
  assert a.arch_config() == b.arch_config()
  for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
    np.testing.assert_array_equal(wa, wb)


# --- an independent forward pass in torch conventions (OIHW weights, nearest ×2) ---------------

def _np_conv(x, state, name):
  weight, bias = state[f"{name}.weight"].astype(np.float64), state[f"{name}.bias"]
  h, w, _ = x.shape
  padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros((h, w, weight.shape[0])) + bias
  for dy in range(3):
    for dx in range(3):
      out += padded[dy:dy + h, dx:dx + w] @ weight[:, :, dy, dx].T
  return out


def _lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def numpy_rrdbnet(state, image, num_blocks, num_ups):
  """BasicSR RRDBNet.forward transcribed to numpy (float64), HWC image."""
  feat = _np_conv(image, state, "conv_first")
  body = feat
  for i in range(num_blocks):
    block_in = body
    for k in (1, 2, 3):
      feats = [body]
      for j in (1, 2, 3, 4):
        feats.append(_lrelu(_np_conv(np.concatenate(feats, -1), state, f"body.{i}.rdb{k}.conv{j}")))
      body = _np_conv(np.concatenate(feats, -1), state, f"body.{i}.rdb{k}.conv5") * 0.2 + body
    body = body * 0.2 + block_in
  feat = feat + _np_conv(body, state, "conv_body")
  for u in range(1, num_ups + 1):
    feat = _lrelu(_np_conv(feat.repeat(2, 0).repeat(2, 1), state, f"conv_up{u}"))
  return _np_conv(_lrelu(_np_conv(feat, state, "conv_hr")), state, "conv_last")


def old_arch_keys(state, num_blocks, num_ups):
  """BasicSR names → the 2018 ESRGAN nn.Sequential names (independent of layouts.py)."""
  top = {"conv_first": 0, "conv_hr": 3 * num_ups + 2, "conv_last": 3 * num_ups + 4}
  top.update({f"conv_up{u}": 3 * u for u in range(1, num_ups + 1)})
  out = {}
  for key, value in state.items():
    prefix, kind = key.rsplit(".", 1)
    if prefix in top:
      out[f"model.{top[prefix]}.{kind}"] = value
    elif prefix == "conv_body":
      out[f"model.1.sub.{num_blocks}.{kind}"] = value
    else:
      _, i, rdb, conv = prefix.split(".")
      out[f"model.1.sub.{i}.RDB{rdb[3]}.{conv}.0.{kind}"] = value
  return out


def new_arch_keys(state):
  """BasicSR names → xinntao/ESRGAN RRDBNet_arch.py names."""
  names = {"conv_body": "trunk_conv", "conv_hr": "HRconv"}
  out = {}
  for key, value in state.items():
    prefix, kind = key.rsplit(".", 1)
    if prefix.startswith("body."):
      _, i, rdb, conv = prefix.split(".")
      prefix = f"RRDB_trunk.{i}.RDB{rdb[3]}.{conv}"
    elif prefix.startswith("conv_up"):
      prefix = "upconv" + prefix[len("conv_up"):]
    out[f"{names.get(prefix, prefix)}.{kind}"] = value
  return out


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("scale", [2, 8])
def test_round_trip_bit_exact(tmp_path, suffix, scale):
  model = random_model(scale=scale)
  path = str(tmp_path / f"g{suffix}")
  weights.save_checkpoint(model, path)
  loaded = checkpoints.load_checkpoint(path)
  assert_same_weights(model, loaded)
  x = np.random.default_rng(2).random((1, 5, 6, 3), np.float32)
  np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())


def test_pth_layout_is_what_torch_writes(tmp_path):
  """BasicSR wrappers, stored 64-byte-aligned records, only weights_only-admitted globals."""
  model = random_model()
  path = str(tmp_path / "g.pth")
  weights.save_checkpoint(model, path)
  raw = open(path, "rb").read()
  with zipfile.ZipFile(path) as archive:
    infos = archive.infolist()
    names = [i.filename for i in infos]
    pickled = archive.read("archive/data.pkl")
  assert names[:2] == ["archive/data.pkl", "archive/byteorder"] and "archive/version" in names
  for info in infos:
    assert info.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
  globals_used = {arg for op, arg, _ in pickletools.genops(pickled) if op.name == "GLOBAL"}
  assert globals_used == {"collections OrderedDict", "torch._utils _rebuild_tensor_v2",
                          "torch FloatStorage"}
  with torch_pickle.read_torch_checkpoint(path) as checkpoint:
    assert list(checkpoint.obj) == ["params_ema", "params"]
    expected = layouts.model_state(model)
    for wrapper in ("params_ema", "params"):
      got = {k: checkpoint.array(v) for k, v in checkpoint.obj[wrapper].items()}
      assert list(got) == list(expected)
      for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_safetensors_read_by_the_reference_library(tmp_path):
  model = random_model()
  path = str(tmp_path / "g.safetensors")
  weights.save_checkpoint(model, path)
  reference = safetensors.numpy.load_file(path)
  expected = layouts.model_state(model)
  assert set(reference) == set(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(reference[key], value)
  assert reference["conv_first.weight"].shape == (8, 3, 3, 3)  # torch (out, in, kh, kw)


def test_writers_refuse_depth_to_space_and_existing_files(tmp_path):
  model = RRDBNet(**TINY, upsampler="depth_to_space")
  model.build()
  with pytest.raises(weights.CheckpointError, match="depth_to_space.*no PyTorch counterpart"):
    weights.save_checkpoint(model, str(tmp_path / "g.pth"))
  assert not os.listdir(tmp_path)
  target = tmp_path / "g.safetensors"
  target.write_bytes(b"keep")
  with pytest.raises(weights.CheckpointError, match="exists"):
    weights.save_model(random_model(), str(target))
  assert target.read_bytes() == b"keep"
  with pytest.raises(weights.CheckpointError, match="must end with"):
    weights.save_model(random_model(), str(tmp_path / "g.onnx"))


# --- readers and layouts -------------------------------------------------------------------------

def test_import_matches_numpy_reference_forward(tmp_path):
  """Layout mapping and OIHW→HWIO conversion checked against a numpy transcription."""
  state = random_state(num_blocks=2, num_ups=2)
  path = tmp_path / "realesrgan.pth"
  module_prefixed = wf.state_dict({f"module.{k}": v for k, v in state.items()})
  wf.write_zip(path, {"params_ema": module_prefixed}, folder="realesrgan")
  model = checkpoints.load_checkpoint(str(path))
  assert model.arch_config() == dict(in_channels=3, out_channels=3, num_features=8,
                                     num_blocks=2, growth_channels=4, scale=4,
                                     upsampler="nearest")
  image = np.random.default_rng(3).random((5, 7, 3)).astype(np.float32)
  expected = numpy_rrdbnet(state, image.astype(np.float64), num_blocks=2, num_ups=2)
  np.testing.assert_allclose(model(image[None]).numpy()[0], expected, atol=2e-5)


@pytest.mark.parametrize("num_ups", [1, 2, 3])
def test_esrgan_old_arch_legacy_format(tmp_path, num_ups):
  """The 2018 release: legacy torch serialization, nn.Sequential names, x2/x4/x8."""
  state = random_state(num_blocks=2, num_ups=num_ups, seed=num_ups)
  path = tmp_path / "RRDB_ESRGAN.pth"
  path.write_bytes(wf.legacy_bytes(wf.state_dict(old_arch_keys(state, 2, num_ups))))
  model = checkpoints.load_checkpoint(str(path))
  assert model.scale == 2 ** num_ups and model.num_blocks == 2
  got = layouts.model_state(model)
  for key, value in state.items():
    np.testing.assert_array_equal(got[key], value)


def test_esrgan_new_arch(tmp_path):
  state = random_state(num_blocks=3, num_ups=2)
  path = tmp_path / "new.pth"
  wf.write_zip(path, wf.state_dict(new_arch_keys(state)))
  model = checkpoints.load_checkpoint(str(path))
  assert model.num_blocks == 3
  got = layouts.model_state(model)
  for key, value in state.items():
    np.testing.assert_array_equal(got[key], value)


def test_params_ema_preferred_over_params(tmp_path):
  ema, raw = random_state(seed=1), random_state(seed=2)
  path = tmp_path / "net_g.pth"
  wf.write_zip(path, {"params": wf.state_dict(raw), "params_ema": wf.state_dict(ema)})
  got = layouts.model_state(checkpoints.load_checkpoint(str(path)))
  np.testing.assert_array_equal(got["conv_last.weight"], ema["conv_last.weight"])


def test_torch_dtypes_strides_offsets_byteorder(tmp_path):
  """float16/float64 storages, transposed and offset views, a big-endian zip."""
  rng = np.random.default_rng(4)
  base = rng.normal(size=(6, 5)).astype(np.float32)
  half = rng.normal(size=(3, 4)).astype(np.float16)
  store = wf.tensor(base, "0").storage
  views = {
      "transposed": wf.Tensor(store, 0, (5, 6), (1, 5)),
      "offset_slice": wf.Tensor(store, 7, (2, 3), (5, 1)),
      "half": wf.tensor(half, "1"),
      "double": wf.tensor(base.astype(np.float64), "2"),
      "scalar": wf.Tensor(store, 4, (), ()),
  }
  expected = {"transposed": base.T, "offset_slice": base[1:3, 2:5], "half": half,
              "double": base.astype(np.float64), "scalar": base.ravel()[4]}
  for name, byteorder in (("little.pth", b"little"), ("none.pth", None)):
    wf.write_zip(tmp_path / name, views, byteorder=byteorder)
  (tmp_path / "legacy.pth").write_bytes(wf.legacy_bytes(views))
  big = {k: wf.Tensor(wf.Storage(v.storage.key, v.storage.type_name, v.storage.numel,
                                 _byteswap(v.storage)), v.offset, v.size, v.stride)
         for k, v in views.items()}
  wf.write_zip(tmp_path / "big.pth", big, byteorder=b"big")
  for name in ("little.pth", "none.pth", "legacy.pth", "big.pth"):
    with torch_pickle.read_torch_checkpoint(str(tmp_path / name)) as checkpoint:
      for key, value in expected.items():
        got = checkpoint.array(checkpoint.obj[key])
        assert got.dtype == np.asarray(value).dtype and got.dtype.isnative, (name, key)
        np.testing.assert_array_equal(got, value, err_msg=f"{name}:{key}")


def _byteswap(storage):
  itemsize = {"FloatStorage": 4, "HalfStorage": 2, "DoubleStorage": 8}[storage.type_name]
  return np.frombuffer(storage.data, f"<u{itemsize}").byteswap().tobytes()


def test_pixel_unshuffle_x2plus_loads(tmp_path):
  state = random_state(in_ch=12)  # Real-ESRGAN x2plus: pixel-unshuffle ×2 before conv_first
  path = tmp_path / "RealESRGAN_x2plus.pth"
  wf.write_zip(path, {"params_ema": wf.state_dict(state)})
  model = checkpoints.load_checkpoint(str(path))  # numerics: tests/test_rrdbnet_unshuffle.py
  assert (model.scale, model.input_unshuffle, model.in_channels) == (2, 2, 3)


def test_unrecognised_layout_lists_keys(tmp_path):
  path = tmp_path / "resnet.safetensors"
  safetensors.numpy.save_file({f"layer{i}.weight": np.zeros(2, np.float32) for i in range(12)},
                              str(path))
  with pytest.raises(weights.CheckpointError, match=r"resnet.safetensors: not a recognised "
                     r"RRDBNet state dict .*found 12 keys: layer0.weight.*, \.\.\."):
    checkpoints.load_checkpoint(str(path))


def test_inconsistent_checkpoints_refused(tmp_path):
  state = random_state()
  bad_shape = dict(state, **{"conv_hr.weight": np.zeros((8, 8, 1, 1), np.float32)})
  nan = dict(state, **{"conv_hr.bias": np.full(8, np.nan, np.float32)})
  missing = {k: v for k, v in state.items() if k != "conv_body.bias"}
  cases = [(bad_shape, r"conv_hr: weight \(8, 8, 1, 1\)"), (nan, "NaN"),
           (missing, r"missing \['conv_body.bias'\]")]
  for i, (bad, message) in enumerate(cases):
    path = str(tmp_path / f"bad{i}.safetensors")
    safetensors.numpy.save_file(bad, path)
    with pytest.raises(weights.CheckpointError, match=message):
      checkpoints.load_checkpoint(path)


# --- ncnn ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fp16", [False, True])
def test_ncnn_pair(tmp_path, fp16):
  state = random_state(num_blocks=1, num_ups=2, gc=3)  # odd fp16 sizes exercise the padding
  write_ncnn(tmp_path / "x4", state, num_blocks=1, num_ups=2, fp16=fp16)
  for name in ("x4.param", "x4.bin"):
    model = checkpoints.load_checkpoint(str(tmp_path / name))
    assert model.growth_channels == 3 and model.scale == 4
    got = layouts.model_state(model)
    for key, value in state.items():
      expected = value.astype(np.float16).astype(np.float32) if fp16 and "weight" in key else value
      np.testing.assert_array_equal(got[key], expected)
  os.remove(tmp_path / "x4.bin")
  with pytest.raises(weights.CheckpointError, match=r"needs .*x4.bin beside it"):
    checkpoints.load_checkpoint(str(tmp_path / "x4.param"))


# --- resolver, interpolation, CLIs ---------------------------------------------------------------

def test_every_model_flag_resolves_checkpoints(tmp_path):
  model = random_model()
  for suffix in (".pth", ".safetensors"):
    path = str(tmp_path / f"g{suffix}")
    weights.save_checkpoint(model, path)
    assert_same_weights(model, resolver.load_generator(path))
  bad = tmp_path / "junk.pth"
  bad.write_bytes(b"not a checkpoint at all")
  with pytest.raises(ModelError, match="junk.pth: not a PyTorch checkpoint"):
    resolver.load_generator(str(bad))


def test_interpolate_is_the_convex_combination():
  a, b = random_model(seed=1), random_model(seed=2)
  for alpha in (0.0, 0.8, 1.0):
    mixed = weights.interpolate(a, b, alpha)
    for wm, wa, wb in zip(mixed.get_weights(), a.get_weights(), b.get_weights(), strict=True):
      expected = ((1 - alpha) * wa.astype(np.float64) + alpha * wb.astype(np.float64)).astype(
          np.float32)
      np.testing.assert_array_equal(wm, expected)
  with pytest.raises(ValueError, match=r"different architectures \(a vs b: num_blocks: 1 vs 2\)"):
    weights.interpolate(a, random_model(num_blocks=2), 0.5)
  with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
    weights.interpolate(a, b, 1.5)


def _cli(module, *args):
  code = f"import sys; from esrgan_tf.cli.{module} import run; sys.argv[1:] = {list(args)!r}; run()"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        timeout=300, check=False)


@pytest.mark.slow
def test_import_and_interpolate_clis(tmp_path):
  """esrgan-import to .keras, then esrgan-interpolate between two checkpoints to .pth."""
  a, b = random_model(seed=1), random_model(seed=2)
  weights.save_checkpoint(a, str(tmp_path / "psnr.pth"))
  weights.save_checkpoint(b, str(tmp_path / "gan.safetensors"))
  result = _cli("import_checkpoint", f"--checkpoint={tmp_path / 'psnr.pth'}",
                f"--output={tmp_path / 'psnr.keras'}")
  assert result.returncode == 0, result.stderr
  assert_same_weights(a, resolver.load_generator(str(tmp_path / "psnr.keras")))
  result = _cli("interpolate", f"--a={tmp_path / 'psnr.keras'}",
                f"--b={tmp_path / 'gan.safetensors'}", "--alpha=0.8",
                f"--output={tmp_path / 'interp.pth'}")
  assert result.returncode == 0, result.stderr
  assert_same_weights(weights.interpolate(a, b, 0.8),
                      checkpoints.load_checkpoint(str(tmp_path / "interp.pth")))
  (tmp_path / "evil.pth").write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
  result = _cli("import_checkpoint", f"--checkpoint={tmp_path / 'evil.pth'}",
                f"--output={tmp_path / 'evil.keras'}")
  assert result.returncode != 0 and "not a PyTorch checkpoint" in result.stderr
  assert not (tmp_path / "evil.keras").exists()


def test_torch_pickle_named_bin_is_read_as_torch(tmp_path):
  state = random_state()
  wf.write_zip(tmp_path / "pytorch_model.bin", wf.state_dict(state))
  got = layouts.model_state(checkpoints.load_checkpoint(str(tmp_path / "pytorch_model.bin")))
  np.testing.assert_array_equal(got["conv_first.weight"], state["conv_first.weight"])


def test_old_rebuild_functions_and_parameters(tmp_path):
  """torch < 0.4 `_rebuild_tensor` and `nn.Parameter` (`_rebuild_parameter`) entries."""
  state = random_state()
  tensors = wf.state_dict(state)
  for i, t in enumerate(tensors.values()):
    t.rebuild = ("_rebuild_tensor", "_rebuild_parameter")[i % 2]
  (tmp_path / "old.pth").write_bytes(wf.legacy_bytes(tensors))
  got = layouts.model_state(checkpoints.load_checkpoint(str(tmp_path / "old.pth")))
  for key, value in state.items():
    np.testing.assert_array_equal(got[key], value)
