"""Tests for esrgan_tf.export.tflite: conversion, the GPU-delegate check, and the LiteRT runner."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import esrgan_tf
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import gpu_delegate, saved_model, tflite
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import resolver
from esrgan_tf.inference.saved_model import saved_model_engine
from esrgan_tf.inference.tflite import tflite_engine
from esrgan_tf.models import RRDBNet

UPSAMPLERS = ("depth_to_space", "nearest")
SIZE = (24, 32)  # static input (H, W) of the converted models.


def _psnr(a, b):
  """PSNR in dB on the [0, 1] scale, NOT clipped: a random-init net's outputs leave [0, 1] and
  clipping would hide the differences there."""
  mse = np.mean((a.astype(np.float64) - b) ** 2)
  return 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def photo():
  """A crop of the bundled real photo at the static size, float32 [1, H, W, 3] in [0, 1]."""
  image = np.asarray(Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png"))
                     .convert("RGB"), np.float32) / 255
  return image[None, 100:100 + SIZE[0], 100:100 + SIZE[1]]


@pytest.fixture(scope="module", params=UPSAMPLERS)
def converted(request, tmp_path_factory):
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, upsampler=request.param)
  model.build()
  out = tmp_path_factory.mktemp(f"tflite_{request.param}")
  paths = {q: tflite.convert(model, str(out / f"m_{q}.tflite"), input_size=SIZE, quantize=q)
           for q in ("none", "fp16")}
  return model, paths


def test_gpu_check_passes_fp32_and_fp16(converted):
  _, paths = converted
  for path in paths.values():
    assert gpu_delegate.check_gpu_compatibility(path) == []
    with open(path, "rb") as f:
      assert gpu_delegate.check_gpu_compatibility(f.read()) == []


def test_fp32_matches_saved_model_and_fp16_is_close(converted, photo, tmp_path):
  model, paths = converted
  saved = saved_model_engine(
      saved_model.export_saved_model(model, str(tmp_path)))
  fp32 = tflite_engine(paths["none"], num_threads=1)
  assert (fp32.input_size, fp32.max_batch, fp32.scale) == (SIZE, 1, 4)
  reference = saved(photo)
  got32 = fp32(photo)
  assert got32.shape == (1, SIZE[0] * 4, SIZE[1] * 4, 3)
  np.testing.assert_allclose(got32, reference, rtol=0, atol=1e-4)
  got16 = tflite_engine(paths["fp16"])(photo)
  assert _psnr(got16, got32) >= 40


def test_fp16_file_is_smaller(converted):
  _, paths = converted
  # Weights dominate even the tiny net's file; fp16 halves them (graph overhead remains).
  assert os.path.getsize(paths["fp16"]) < 0.8 * os.path.getsize(paths["none"])


def test_dynamic_range_int8_converts_and_runs(photo, tmp_path):
  # nf=16: the converter only quantizes weights of ≥ 1024 elements; 3·3·16·8 = 1152.
  model = RRDBNet(num_features=16, num_blocks=1, growth_channels=8)
  model.build()
  path = tflite.convert(model, str(tmp_path / "int8.tflite"), input_size=SIZE,
                        quantize="dynamic")
  schema = gpu_delegate._schema()  # pylint: disable=protected-access
  with open(path, "rb") as f:
    parsed = schema.ModelT.InitFromPackedBuf(f.read(), 0)
  int8 = [t for t in parsed.subgraphs[0].tensors if t.type == schema.TensorType.INT8]
  assert len(int8) >= 15  # the body and upsampling convs' weights.
  got = tflite_engine(path)(photo)
  assert np.all(np.isfinite(got))
  assert _psnr(got, model(photo).numpy()) >= 25


def test_runner_pads_smaller_images_and_refuses_larger(converted):
  model, paths = converted
  up = tflite_engine(paths["none"])
  rng = np.random.default_rng(0)
  small = rng.random((2, 10, 7, 3), dtype=np.float32)
  got = up(small)
  assert got.shape == (2, 40, 28, 3)
  # Reference: the eager model on the edge-padded static-size image, cropped.
  padded = np.pad(small, ((0, 0), (0, SIZE[0] - 10), (0, SIZE[1] - 7), (0, 0)), mode="edge")
  np.testing.assert_allclose(got, model(padded).numpy()[:, :40, :28], rtol=0, atol=1e-4)
  with pytest.raises(ValueError, match="at most 24×32"):
    up(np.zeros((1, SIZE[0] + 1, SIZE[1], 3), np.float32))


def test_loaded_through_the_resolver(converted):
  _, paths = converted
  up = resolver.load_engine(resolver.ModelSpec(model=paths["none"], num_threads=2))
  assert up.input_size == SIZE and up.max_batch == 1 and up.info["num_threads"] == 2


def test_tiling_runs_any_image_size_through_the_static_model(converted):
  from esrgan_tf.inference import tiling  # pylint: disable=g-import-not-at-top
  model, paths = converted
  lite = tflite_engine(paths["none"])
  # The same tiling geometry through the eager model is the reference.
  eager = engine_lib.keras_engine(model)
  eager.input_size, eager.max_batch = SIZE, 1
  image = np.random.default_rng(1).random((41, 70, 3), dtype=np.float32)
  got = tiling.upscale_array(image, lite, tiling.TileSpec(overlap=8, batch=4, pre_pad=0))
  assert got.shape == (164, 280, 3)
  want = tiling.upscale_array(image, eager, tiling.TileSpec(overlap=8, pre_pad=0))
  np.testing.assert_allclose(got, want, atol=1e-4)


def _convert_fn(fn, spec):
  f = tf.function(fn, input_signature=[spec])
  return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()


def test_gpu_check_names_incompatible_ops():
  # ARG_MAX and an int64 → float32 CAST are outside the delegate's set (the TF Analyzer's
  # gpu_compatibility=True passes this model in TF 2.21: tensorflow#77042).
  data = _convert_fn(lambda x: tf.cast(tf.expand_dims(tf.argmax(x, axis=-1), -1), tf.float32) + x,
                     tf.TensorSpec([1, 8, 8, 3], tf.float32))
  problems = gpu_delegate.check_gpu_compatibility(data)
  assert any("ARG_MAX" in p and "op #" in p for p in problems), problems
  assert any("CAST" in p for p in problems), problems


def test_gpu_check_names_dynamic_shapes_and_shape_op():
  data = _convert_fn(lambda x: x * tf.cast(tf.shape(x)[1], tf.float32),
                     tf.TensorSpec([1, None, None, 3], tf.float32))
  problems = gpu_delegate.check_gpu_compatibility(data)
  assert any("SHAPE: not supported" in p for p in problems), problems
  assert any("dynamic shape [1, -1, -1, 3]" in p for p in problems), problems


def test_convert_refuses_incompatible_and_writes_nothing(tmp_path, monkeypatch):
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
  model.build()
  monkeypatch.setattr(gpu_delegate, "check_gpu_compatibility",
                      lambda data: ["subgraph 0: op #3 FAKE: injected"])
  with pytest.raises(tflite.GpuIncompatibleError, match="op #3 FAKE"):
    tflite.convert(model, str(tmp_path / "m.tflite"), input_size=(8, 8))
  assert os.listdir(tmp_path) == []


def test_bad_inputs(tmp_path):
  bogus = tmp_path / "bogus.tflite"
  bogus.write_bytes(b"not a flatbuffer at all")
  with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
    gpu_delegate.check_gpu_compatibility(str(bogus))
  with pytest.raises(ModelError, match="bogus.tflite"):
    tflite_engine(str(bogus))
  with pytest.raises(ModelError, match="no such file"):
    tflite_engine(str(tmp_path / "missing.tflite"))
  with pytest.raises(ValueError, match="quantize"):
    tflite.convert_to_bytes(None, input_size=(8, 8), quantize="int4")
  existing = tmp_path / "exists.tflite"
  existing.write_bytes(b"x")
  with pytest.raises(FileExistsError, match="exists.tflite: exists \\(pass overwrite=True"):
    tflite.convert(None, str(existing), input_size=(8, 8))
