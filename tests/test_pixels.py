"""Tests of images.pixels: one float → integer rule; numpy = TF; SavedModel = esrgan-upscale."""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.images import pixels
from esrgan_tf.inference import batch, tiling
from esrgan_tf.inference import engine as engine_lib


def _exact_halves(levels):
  """float32 values v with float32(v) * 255 == k + 0.5 exactly, for each k found (searched)."""
  found = {}
  for k in levels:
    v = np.float32((k + 0.5) / 255)
    for candidate in (v, np.nextafter(v, np.float32(0)), np.nextafter(v, np.float32(1))):
      if np.float32(candidate) * np.float32(255) == np.float32(k + 0.5):
        found[k] = np.float32(candidate)
        break
  return found


def test_rule_by_hand():
  np.testing.assert_array_equal(pixels.to_float(np.array([0, 51, 255], np.uint8)),
                                np.array([0, 0.2, 1], np.float32))
  np.testing.assert_allclose(pixels.to_float(np.array([0, 13107, 65535], np.uint16)),
                             [0, 0.2, 1], rtol=0, atol=1e-7)
  # Clip, NaN → 0; 0.5·255 = 127.5 → 128 (even), 0.5·65535 = 32767.5 → 32768 (even).
  x = np.array([-0.3, 0.0, 0.5, 1.0, 7.0, np.nan], np.float32)
  np.testing.assert_array_equal(pixels.from_float(x, 8), [0, 0, 128, 255, 255, 0])
  np.testing.assert_array_equal(pixels.from_float(x, 16), [0, 0, 32768, 65535, 65535, 0])
  assert pixels.from_float(x, 8).dtype == np.uint8
  assert pixels.from_float(x, 16).dtype == np.uint16
  every16 = np.arange(65536, dtype=np.uint16)
  np.testing.assert_array_equal(pixels.from_float(pixels.to_float(every16), 16), every16)
  every8 = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(pixels.from_float(pixels.to_float(every8), 8), every8)
  with pytest.raises(TypeError, match="uint8 or uint16"):
    pixels.to_float(np.zeros(3, np.float32))
  with pytest.raises(ValueError, match="bit_depth must be 8 or 16"):
    pixels.from_float(x, 12)


def test_exact_halves_round_to_even():
  halves = _exact_halves([2, 3, 100, 101, 253, 254])
  assert len(halves) >= 4, halves  # enough exact .5 cases for the test to mean something
  values = np.array(list(halves.values()), np.float32)
  expected = [k + (k % 2) for k in halves]  # k + .5 → the even neighbour
  np.testing.assert_array_equal(pixels.from_float(values), expected)
  np.testing.assert_array_equal(pixels.from_float_tf(tf.constant(values)).numpy(), expected)


def test_numpy_and_tf_agree_everywhere():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.uniform(-0.1, 1.1, 200_000).astype(np.float32),
                      np.array(list(_exact_halves(range(255)).values()), np.float32),
                      np.array([np.nan, np.inf, -np.inf, 0.0, 1.0], np.float32)])
  for depth in (8, 16):
    np.testing.assert_array_equal(pixels.from_float(x, depth),
                                  pixels.from_float_tf(tf.constant(x), depth).numpy())


def _constant_output(model, bias):
  """Makes `model` output `bias` everywhere: conv_last gets a zero kernel and this bias."""
  kernel, _ = model.conv_last.get_weights()
  model.conv_last.set_weights([np.zeros_like(kernel), np.asarray(bias, np.float32)])
  return model


def _savedmodel_vs_png(tmp_path, model, image):
  base = tmp_path / "export"
  version = saved_model_lib.export_saved_model(model, str(base), source="test")
  served = tf.saved_model.load(version).signatures["serving_default"](
      images=tf.constant(image[None]))["upscaled"].numpy()[0]
  src, dst = tmp_path / "in.png", tmp_path / "out.png"
  Image.fromarray(image).save(src)
  whole = batch.Options(tiles=tiling.TileSpec(tile=0, pre_pad=0))  # SavedModels do not pre-pad.
  batch.upscale_file(str(src), str(dst), engine_lib.keras_engine(model), whole)
  with Image.open(dst) as written:
    return served, np.asarray(written)


def test_savedmodel_uint8_equals_upscale_png_bit_for_bit(tmp_path, tiny_generator):
  image = np.random.default_rng(1).integers(0, 256, (11, 9, 3), np.uint8)
  served, written = _savedmodel_vs_png(tmp_path, tiny_generator(seed=3), image)
  assert served.dtype == np.uint8 and served.shape == (22, 18, 3)
  np.testing.assert_array_equal(served, written)


def test_savedmodel_and_png_round_exact_halves_to_even(tmp_path, tiny_generator):
  halves = _exact_halves([2, 3, 100, 101, 253, 254])
  ks = [k for k in (3, 101, 254, 2, 100, 253) if k in halves][:3]
  assert len(ks) == 3, halves
  served, written = _savedmodel_vs_png(
      tmp_path, _constant_output(tiny_generator(), [halves[k] for k in ks]),
      np.random.default_rng(2).integers(0, 256, (5, 4, 3), np.uint8))
  expected = np.broadcast_to(np.array([k + (k % 2) for k in ks], np.uint8), (10, 8, 3))
  np.testing.assert_array_equal(served, expected)
  np.testing.assert_array_equal(written, expected)


def test_join_planes_by_hand():
  color = np.array([[[0.0, 0.5, 1.0]]], np.float32)  # 0.5·255 = 127.5 → 128 (half to even)
  alpha = np.array([[2 / 255 + 0.5 / 255]], np.float32)  # 2.5 → 2 (half to even)
  np.testing.assert_array_equal(pixels.join_planes(color, alpha, 8), [[[0, 128, 255, 2]]])
  quantized = np.array([[[7, 8, 9]]], np.uint8)
  assert pixels.join_planes(quantized, None, 8) is quantized  # written as is, no copy
  np.testing.assert_array_equal(pixels.join_planes(quantized, alpha, 8), [[[7, 8, 9, 2]]])
  assert pixels.join_planes(color, None, 16).tolist() == [[[0, 32768, 65535]]]  # 32767.5 → even
