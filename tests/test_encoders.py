"""Tests of images.encoders: the 16-bit PNG/TIFF encoders, read back by Pillow/image_io."""

import io

import numpy as np
from PIL import Image
import pytest

from esrgan_tf.images import encoders, image_io, pixels

RNG = np.random.default_rng(99)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encode_png_roundtrip(dtype, channels):
  a = RNG.integers(0, np.iinfo(dtype).max + 1, (5, 3, channels)).astype(dtype)
  data = encoders.encode_png(a)
  img = image_io.decode_image_bytes(data)
  assert img.bit_depth == (16 if dtype == np.uint16 else 8)
  depth = img.bit_depth
  planes = [img.color[..., :1] if channels <= 2 else img.color]
  if img.alpha is not None:
    planes.append(img.alpha[..., None])
  np.testing.assert_array_equal(pixels.from_float(np.concatenate(planes, -1), depth), a)
  if dtype == np.uint8 or channels == 1:  # Pillow decodes these exactly by itself.
    with Image.open(io.BytesIO(data)) as ref:
      np.testing.assert_array_equal(np.asarray(ref).reshape(a.shape), a)
  with pytest.raises(ValueError, match="uint8 or uint16"):
    encoders.encode_png(a.astype(np.float32))
