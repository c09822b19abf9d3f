"""The Python API's input kinds and options on a tiny model (the real-weights tests: test_api.py).

The reference is esrgan-upscale's own file pipeline on the same pixels saved as a file: a PIL
image must come back exactly as the CLI writes that file.
"""

import io

import numpy as np
from PIL import Image
import pytest

import esrgan_tf
from esrgan_tf.inference import batch, resolver

TILES = esrgan_tf.TileSpec(tile=8, overlap=2, pre_pad=2)


@pytest.fixture(scope="module")
def up(tiny_keras_model):
  return esrgan_tf.load(tiny_keras_model(2), precision="float32", tiles=TILES)


def _cli(up, image: Image.Image, tmp_path, fmt: str = "TIFF") -> Image.Image:
  src, dst = tmp_path / f"in.{fmt.lower()}", tmp_path / f"out.{fmt.lower()}"
  image.save(src, format=fmt)
  batch.upscale_file(str(src), str(dst), up.engine,
                     batch.Options(tiles=up.tiles, max_pixels=None, overwrite=True))
  return Image.open(dst)


@pytest.mark.parametrize("mode", ["I", "I;16", "LA", "La", "RGBa", "CMYK", "P", "1"])
def test_pil_modes_come_back_as_esrgan_upscale_writes_them(up, tmp_path, mode):
  rng = np.random.default_rng(5)
  base = Image.fromarray(rng.integers(0, 256, (7, 9, 4), np.uint8), "RGBA")
  image = {"I": lambda: Image.fromarray(rng.integers(0, 65536, (7, 9)).astype(np.int32), "I"),
           "I;16": lambda: Image.fromarray(rng.integers(0, 65536, (7, 9)).astype(np.uint16))
           }.get(mode, lambda: base.convert(mode))()
  got = up.upscale(image)
  want = _cli(up, image.convert(mode[:-1] + "A") if mode in ("La", "RGBa") else image, tmp_path)
  assert got.size == (18, 14)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_exif_orientation_is_applied_as_for_files(up):
  image = Image.fromarray(np.random.default_rng(6).integers(0, 256, (6, 10, 3), np.uint8))
  exif = image.getexif()
  exif[0x0112] = 6  # rotate 90° clockwise to display
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", exif=exif, quality=95)
  got = up.upscale(Image.open(io.BytesIO(buffer.getvalue())))
  assert got.size == (12, 20)  # the displayed (rotated) 6×10, upscaled ×2


def test_bad_inputs(up):
  with pytest.raises(ValueError, match="mode F"):
    up.upscale(Image.fromarray(np.zeros((4, 4), np.float32), "F"))
  with pytest.raises(ValueError, match="NaN or infinite"):
    up.upscale(np.full((4, 4, 3), np.inf, np.float32))


def test_big_endian_uint16_equals_native(up):
  native = np.random.default_rng(7).integers(0, 65536, (5, 6, 3)).astype(np.uint16)
  got = up.upscale(native.astype(">u2"))
  assert got.dtype == np.uint16
  np.testing.assert_array_equal(got, up.upscale(native))


def test_upscale_file_equals_the_cli_pipeline(up, tmp_path):
  image = Image.fromarray(np.random.default_rng(8).integers(0, 256, (9, 7, 3), np.uint8))
  image.save(tmp_path / "a.png")
  written = up.upscale_file(str(tmp_path / "a.png"), str(tmp_path / "a_out.png"))
  np.testing.assert_array_equal(np.asarray(Image.open(written)),
                                np.asarray(_cli(up, image, tmp_path, "PNG")))


def test_load_takes_a_model_spec_and_overrides(tiny_keras_model):
  spec = resolver.ModelSpec(model=tiny_keras_model(2))
  up = esrgan_tf.load(spec, precision="float32")
  assert up.spec.precision == "float32" and up.spec.model == spec.model


def test_per_call_precision_keeps_the_head(tmp_path):
  from esrgan_tf.models import MultiHeadRRDBNet  # pylint: disable=g-import-not-at-top
  model = MultiHeadRRDBNet(num_features=8, num_blocks=1, growth_channels=4,
                           heads=[{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}])
  model.build()
  model.save(tmp_path / "multi.keras")
  up = esrgan_tf.load(str(tmp_path / "multi.keras"), head="x4", precision="float32")
  image = np.zeros((6, 6, 3), np.uint8)
  assert up.upscale(image).shape == (24, 24, 3)
  assert up.upscale(image, precision="bfloat16").shape == (24, 24, 3)


def test_per_call_precision_of_a_saved_model_is_the_export_s(tiny_generator, tmp_path):
  from esrgan_tf.export import saved_model  # pylint: disable=g-import-not-at-top
  path = saved_model.export_saved_model(tiny_generator(2), str(tmp_path))
  up = esrgan_tf.load(path, precision="float32", tiles=TILES)
  image = np.random.default_rng(9).integers(0, 256, (6, 5, 3), np.uint8)
  np.testing.assert_array_equal(up.upscale(image, precision="bfloat16"), up.upscale(image))
  assert len(up._engines) == 1  # pylint: disable=protected-access  (not loaded again)


def test_from_preset_dtype_name_and_clashes():
  import os  # pylint: disable=g-import-not-at-top

  from esrgan_tf.weights.errors import CheckpointError  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(__file__), "data", "torch", "rrdbnet_x4_nf8nb1gc4.pth")
  plain = esrgan_tf.models.RRDBNet.from_preset(path)
  bf16 = esrgan_tf.models.RRDBNet.from_preset(path, dtype="bfloat16", name="mine")
  assert bf16.name == "mine" and bf16.dtype_policy.name == "bfloat16"
  for a, b in zip(plain.weights, bf16.weights):  # the same weights, rounded to bfloat16
    np.testing.assert_array_equal(np.asarray(a.numpy(), "bfloat16"), b.numpy())
  with pytest.raises(CheckpointError, match="the file sets scale=4; do not pass scale"):
    esrgan_tf.models.RRDBNet.from_preset(path, scale=2)
