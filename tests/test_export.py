"""Tests for esrgan_tf.export.saved_model (SavedModel for TF Serving) and the esrgan-export CLI."""

import io
import json
import os
import struct
import time
import zlib

from absl import app, flags
from absl.testing import flagsaver
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf.cli import export as export_cli
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import gpu_delegate
from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.images import headers_tf
from esrgan_tf.inference import resolver
from esrgan_tf.inference.saved_model import saved_model_engine
from esrgan_tf.models import RRDBNet

UPSAMPLERS = ("depth_to_space", "nearest")


def _tiny(upsampler, scale=4):
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=scale,
                  upsampler=upsampler)
  model.build()
  return model


@pytest.fixture(scope="module", params=UPSAMPLERS)
def exported(request, tmp_path_factory):
  model = _tiny(request.param)
  base = tmp_path_factory.mktemp(f"export_{request.param}")
  path = saved_model_lib.export_saved_model(model, str(base), source="unit test")
  return model, str(base), path, tf.saved_model.load(path)


def _encode(array, fmt, **kwargs):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kwargs)
  return buf.getvalue()


def _rng_image(rng, h, w):
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected_uint8(model, images_u8):
  """Independent reference: eager model, then numpy clip/×255/round-half-even."""
  y = model(images_u8.astype(np.float32) / np.float32(255)).numpy()
  return np.clip(y, 0, 1) * 255


def _assert_uint8_matches(got, reference):
  expected = np.round(reference)
  diff = np.abs(got.astype(np.int32) - expected.astype(np.int32))
  assert diff.max() <= 1
  # Any mismatch must sit on a rounding boundary (x.5 within float noise).
  near_half = np.abs(reference - np.floor(reference) - 0.5) < 1e-3
  assert np.all((diff == 0) | near_half)


def test_layout_and_facts(exported):
  model, base, path, _ = exported
  assert path == os.path.join(base, "1")
  assert sorted(os.listdir(base)) == ["1"]  # no temp dirs left behind.
  with open(os.path.join(path, "assets.extra", "esrgan_tf.json"), encoding="utf-8") as f:
    facts = json.load(f)
  assert facts["scale"] == 4
  assert facts["arch"] == model.arch_config()
  assert facts["precision"] == "float32"
  assert facts["source"] == "unit test"
  assert set(facts["signatures"]) == {"serving_default", "upscale_float", "upscale_bytes"}


def test_signatures_match_eager(exported):
  model, _, _, loaded = exported
  assert set(loaded.signatures) == {"serving_default", "upscale_float", "upscale_bytes"}
  rng = np.random.default_rng(0)
  for shape in [(2, 12, 10, 3), (1, 7, 9, 3)]:  # H and W are dynamic.
    x = rng.random(shape, dtype=np.float32)
    got = loaded.signatures["upscale_float"](images=tf.constant(x))["upscaled"].numpy()
    np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=1e-6)
    u8 = (x * 255).astype(np.uint8)
    out = loaded.signatures["serving_default"](images=tf.constant(u8))["upscaled"].numpy()
    assert out.dtype == np.uint8 and out.shape == (shape[0], shape[1] * 4, shape[2] * 4, 3)
    _assert_uint8_matches(out, _expected_uint8(model, u8))


def test_upscale_bytes_png_and_jpeg_mixed_sizes(exported):
  model, _, _, loaded = exported
  rng = np.random.default_rng(1)
  png_image, jpeg_image = _rng_image(rng, 9, 6), _rng_image(rng, 8, 11)
  png, jpeg = _encode(png_image, "PNG"), _encode(jpeg_image, "JPEG", quality=90)
  out = loaded.signatures["upscale_bytes"](image_bytes=tf.constant([png, jpeg]))["output_bytes"]
  decoded = [np.array(Image.open(io.BytesIO(b))) for b in out.numpy()]
  assert decoded[0].shape == (36, 24, 3) and decoded[1].shape == (32, 44, 3)
  _assert_uint8_matches(decoded[0], _expected_uint8(model, png_image[None])[0])
  # JPEG: the reference input is the same bytes decoded by libjpeg through TF.
  jpeg_pixels = tf.io.decode_jpeg(jpeg, channels=3).numpy()
  _assert_uint8_matches(decoded[1], _expected_uint8(model, jpeg_pixels[None])[0])


def _png_header_only(width, height):
  """A PNG signature and IHDR declaring width×height, then garbage instead of image data."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
  chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
  return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00garbage" * 4


def test_upscale_bytes_rejects_large_declared_size_and_garbage(exported):
  _, _, _, loaded = exported
  fn = loaded.signatures["upscale_bytes"]
  # 100000² declared pixels would be 30 GB decoded: refused from the header, before decoding
  # (the bytes after the IHDR are garbage, so a decode attempt would fail differently).
  with pytest.raises(tf.errors.InvalidArgumentError, match="declared size"):
    fn(image_bytes=tf.constant([_png_header_only(100_000, 100_000)]))
  with pytest.raises(tf.errors.InvalidArgumentError):
    fn(image_bytes=tf.constant([b"this is not an image"]))
  with pytest.raises(tf.errors.InvalidArgumentError):
    fn(image_bytes=tf.constant([b""]))


@pytest.mark.parametrize("fmt, kwargs, tag", [
    ("PNG", {}, None),
    ("JPEG", {"quality": 80}, None),
    ("WEBP", {"quality": 80}, b"VP8 "),
    ("WEBP", {"lossless": True}, b"VP8L"),
    ("WEBP", {"lossless": True, "exif": b"Exif\x00\x00MM"}, b"VP8X"),
    ("GIF", {}, None),
    ("BMP", {}, None),
])
def test_declared_size_from_headers(fmt, kwargs, tag):
  data = _encode(np.zeros((37, 53, 3), np.uint8), fmt, **kwargs)
  if tag:
    assert data[12:16] == tag  # the WebP variant under test.
  np.testing.assert_array_equal(headers_tf.declared_size(tf.constant(data)).numpy(), [37, 53])


def test_declared_size_unknown_for_other_formats():
  for data in [_encode(np.zeros((5, 4, 3), np.uint8), "TIFF"), b"", b"RIFF\x00\x00\x00\x00WEBP"]:
    np.testing.assert_array_equal(headers_tf.declared_size(tf.constant(data)).numpy(), [-1, -1])


def test_pixel_limit_on_every_signature():
  # The module unsaved (traced eagerly) is the same graph code; a small limit of 100 pixels.
  module = saved_model_lib.ExportModule(_tiny("depth_to_space"), max_pixels=100)
  big = np.zeros((1, 11, 10, 3), np.uint8)  # 110 pixels.
  with pytest.raises(tf.errors.InvalidArgumentError, match="limit of 100"):
    module.serving_default(tf.constant(big))
  with pytest.raises(tf.errors.InvalidArgumentError, match="limit of 100"):
    module.upscale_float(tf.constant(big, tf.float32))
  for fmt in ("JPEG", "WEBP", "GIF", "BMP"):
    with pytest.raises(tf.errors.InvalidArgumentError, match="declared size"):
      module.upscale_bytes(tf.constant([_encode(big[0], fmt)]))
  ok = module.upscale_bytes(tf.constant([_encode(big[0, :10], "PNG")]))["output_bytes"]
  assert np.array(Image.open(io.BytesIO(ok.numpy()[0]))).shape == (40, 40, 3)


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
  def broken_save(*args, **kwargs):
    os.makedirs(args[1], exist_ok=True)  # a half-written directory, then the failure.
    with open(os.path.join(args[1], "saved_model.pb"), "wb") as f:
      f.write(b"partial")
    raise OSError("disk full")

  monkeypatch.setattr(tf.saved_model, "save", broken_save)
  with pytest.raises(OSError, match="disk full"):
    saved_model_lib.export_saved_model(_tiny("nearest"), str(tmp_path / "base"))
  assert os.listdir(tmp_path / "base") == []


def test_bad_arguments(tmp_path):
  model = _tiny("nearest")
  with pytest.raises(ValueError, match="precision"):
    saved_model_lib.export_saved_model(model, str(tmp_path), precision="float16")
  with pytest.raises(ValueError, match="version"):
    saved_model_lib.export_saved_model(model, str(tmp_path), version=-1)
  with pytest.raises(ValueError, match="max_pixels"):
    saved_model_lib.export_saved_model(model, str(tmp_path), max_pixels=0)
  assert os.listdir(tmp_path) == []


def test_load_rejects_dirs_that_are_not_ours(tmp_path):
  with pytest.raises(ModelError, match="not a SavedModel directory"):
    saved_model_engine(str(tmp_path))
  foreign = tmp_path / "foreign" / "1"
  module = tf.Module()
  module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, str(foreign), signatures=module.f.get_concrete_function())
  with pytest.raises(ModelError, match="not an esrgan_tf export"):
    saved_model_engine(str(tmp_path / "foreign"))


def test_bfloat16_export(tmp_path):
  model = _tiny("nearest")
  path = saved_model_lib.export_saved_model(model, str(tmp_path), precision="bfloat16")
  up = saved_model_engine(path, precision=None)
  assert up.info["precision"] == "bfloat16"
  x = np.random.default_rng(3).random((1, 8, 8, 3), dtype=np.float32)
  got = up(x)
  assert got.dtype == np.float32
  # bf16 keeps 8 mantissa bits (relative step 2^-8 ≈ 0.004): close to, but not equal to, fp32.
  # Measured: max error 0.87 % of the output's peak (0.051 of 5.86); the same net at scale 2
  # gives 0.56–1.22 % over 6 random inits (test_upscaler); bound 3 %.
  reference = model(x).numpy()
  error = np.abs(got - reference).max()
  assert 0 < error < 0.03 * max(1.0, np.abs(reference).max())
  reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
  dtypes = {name: dtype for name, dtype in reader.get_variable_to_dtype_map().items()
            if "/.ATTRIBUTES/VARIABLE_VALUE" in name}
  assert len(dtypes) == len(model.weights)
  assert set(dtypes.values()) == {tf.bfloat16}  # half the size of the float32 export.


def test_cli_exports_both_formats_then_next_version(tmp_path, capsys):
  model = _tiny("depth_to_space", scale=2)
  keras_path = str(tmp_path / "g.keras")
  model.save(keras_path)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  out = str(tmp_path / "exports")
  tflite_name = "esrgan_x2_16x12_fp16.tflite"
  with flagsaver.flagsaver(model=keras_path, export_dir=out, format="both",
                           tflite_input_size="16x12", tflite_quantize="fp16"):
    export_cli.main(["esrgan-export"])
  assert sorted(os.listdir(out)) == ["1", tflite_name]
  loaded = tf.saved_model.load(os.path.join(out, "1"))
  static = loaded.signatures["upscale_static"].structured_input_signature[1]["images"]
  assert static.shape.as_list() == [1, 16, 12, 3]
  assert gpu_delegate.check_gpu_compatibility(os.path.join(out, tflite_name)) == []

  with flagsaver.flagsaver(model=keras_path, export_dir=out):  # next free version.
    export_cli.main(["esrgan-export"])
  assert sorted(os.listdir(out)) == ["1", "2", tflite_name]  # and no temp dirs.
  capsys.readouterr()
  with flagsaver.flagsaver(model=keras_path, export_dir=out, version=1):
    with pytest.raises(SystemExit) as exit_info:  # a runtime failure: error line, status 1
      export_cli.main(["esrgan-export"])
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "version 1 already exists" in err and "--overwrite" in err
  with flagsaver.flagsaver(model=keras_path, export_dir=out, tflite_input_size="16"):
    with pytest.raises(app.UsageError, match="HxW") as usage:  # a usage error: status 2
      export_cli.main(["esrgan-export"])
  assert usage.value.exitcode == 2

  up = resolver.load_engine(out)  # the resolver → saved_model_engine → latest.
  assert up.name == os.path.join(out, "2") and up.scale == 2
  assert up.info["arch"] == model.arch_config()
  x = np.random.default_rng(2).random((2, 6, 5, 3), dtype=np.float32)
  np.testing.assert_allclose(up(x), model(x).numpy(), rtol=0, atol=1e-6)


def _gif_bomb(width, height):
  """A GIF whose logical screen declares width×height, with a 1×1 frame (a few hundred bytes)."""
  buf = io.BytesIO()
  Image.new("P", (1, 1)).save(buf, "GIF")
  data = bytearray(buf.getvalue())
  data[6:10] = struct.pack("<HH", width, height)
  return bytes(data)


def _bmp_bomb(width, height):
  """A BMP info header declaring width×height (signed), followed by 64 bytes of pixels."""
  header = struct.pack("<2sIHHI", b"BM", 14 + 40 + 64, 0, 0, 54)
  info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 64, 2835, 2835, 0, 0)
  return header + info + b"\x00" * 64


@pytest.mark.parametrize("data", [_gif_bomb(15000, 15000), _bmp_bomb(15000, 15000),
                                  _bmp_bomb(15000, -15000), _bmp_bomb(-15000, 15000)],
                         ids=["gif", "bmp", "bmp-top-down", "bmp-negative-width"])
def test_gif_and_bmp_bombs_refused_from_the_header_in_graph(data):
  # 15000² = 225 Mpx (675 MB decoded); refused by the declared size before tf.io.decode_image.
  module = saved_model_lib.ExportModule(_tiny("depth_to_space"), max_pixels=100)
  assert abs(headers_tf.declared_size(tf.constant(data)).numpy()).tolist() == [15000, 15000]
  started = time.monotonic()
  with pytest.raises(tf.errors.InvalidArgumentError, match="declared size"):
    module.upscale_bytes(tf.constant([data]))
  assert time.monotonic() - started < 10


def test_bytes_without_a_size_header_are_refused_before_decoding():
  module = saved_model_lib.ExportModule(_tiny("depth_to_space"), max_pixels=100)
  tiff = _encode(np.zeros((5, 4, 3), np.uint8), "TIFF")
  with pytest.raises(tf.errors.InvalidArgumentError, match="no size in its header"):
    module.upscale_bytes(tf.constant([tiff]))
