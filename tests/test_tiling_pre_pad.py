"""Tests for `pre_pad` in inference.tiling: reflect padding before upscaling, cropped after."""

import numpy as np
import pytest
from test_tiling import NearestUpscaler, _nearest, _psnr

from esrgan_tf.inference import tiling


def _reflect_index(length, before, after):
  """Indices of a reflect-padded axis, written out: ..., 2, 1 | 0 .. n-1 | n-2, n-3, ..."""
  assert before < length and after < length  # One reflection suffices for these tests.
  return ([before - i for i in range(before)] + list(range(length))
          + [length - 2 - i for i in range(after)])


def _hand_pre_pad(model, image, pad, sides):
  """Real-ESRGAN's RealESRGANer pre_process/post_process by hand: pad, run, crop."""
  before = pad if sides == "all" else 0
  rows = _reflect_index(image.shape[0], before, pad)
  cols = _reflect_index(image.shape[1], before, pad)
  out = model(image[rows][:, cols][None])[0]
  s = model.scale
  return out[before * s:out.shape[0] - pad * s, before * s:out.shape[1] - pad * s]


def test_reflect_index_helper_matches_its_definition():
  # The hand-written reflection that the model tests rely on: [2, 1 | 0, 1, 2, 3 | 2, 1].
  assert _reflect_index(4, 2, 2) == [2, 1, 0, 1, 2, 3, 2, 1]


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 9, 3), (37, 50, 3), (20, 9, 4)])
@pytest.mark.parametrize("tile,overlap", [(0, 0), (4, 0), (7, 3), (16, 4)])
@pytest.mark.parametrize("sides", tiling.PRE_PAD_SIDES)
def test_per_pixel_model_output_is_unchanged(shape, tile, overlap, sides):
  # A per-pixel model sees the same pixels with or without padding: any misplaced crop shows.
  image = np.random.default_rng(0).random(shape, dtype=np.float32)
  for scale, pad in ((1, 3), (3, 1), (4, 8)):
    spec = tiling.TileSpec(tile=tile, overlap=overlap, batch=3, pre_pad=pad, pre_pad_sides=sides)
    got = tiling.upscale_array(image, NearestUpscaler(scale), spec)
    assert got.shape == (shape[0] * scale, shape[1] * scale, shape[2])
    np.testing.assert_allclose(got, _nearest(image, scale), rtol=0, atol=3e-7)


def test_static_input_size_and_integer_out_with_pre_pad():
  image = np.random.default_rng(1).random((5, 30, 3), dtype=np.float32)
  model = NearestUpscaler(2, input_size=(12, 16), max_batch=1)
  out = np.zeros((10, 60, 3), np.uint8)
  tiling.upscale_array(image, model, tiling.TileSpec(tile=999, overlap=4, batch=4, pre_pad=4),
                       out=out)
  np.testing.assert_array_equal(out, np.rint(_nearest(image, 2) * 255))
  # Padded to 13 × 38: two 12-px tile rows and three 16-px tile columns.
  spec = tiling.TileSpec(tile=999, overlap=4, pre_pad=4)
  assert len(model.batches) == 6 == tiling.count_tiles(5, 30, model, spec)


@pytest.fixture(scope="module")
def tiny_net():
  import keras

  from esrgan_tf.inference.engine import keras_engine
  from esrgan_tf.models import RRDBNet
  keras.utils.set_random_seed(5)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
  model.build((None, None, None, 3))
  return keras_engine(model)


@pytest.mark.parametrize("sides", tiling.PRE_PAD_SIDES)
def test_tiny_net_equals_hand_made_pad_and_crop(tiny_net, sides):
  image = np.random.default_rng(2).random((13, 17, 3), dtype=np.float32)
  plain = tiling.upscale_array(image, tiny_net, tiling.TileSpec(tile=0, batch=4, pre_pad=0))
  for pad in (1, 5):
    got = tiling.upscale_array(image, tiny_net,
                               tiling.TileSpec(tile=0, batch=4, pre_pad=pad, pre_pad_sides=sides))
    assert got.shape == (26, 34, 3)
    np.testing.assert_array_equal(got, _hand_pre_pad(tiny_net, image, pad, sides))
    # The padding changes the border pixels (the zero padding is pushed outward) ...
    assert np.abs(got[-2:] - plain[-2:]).max() > 1e-4
  # ... and, padded on all sides, the top-left too; bottom_right leaves it as it was.
  if sides == "all":
    assert np.abs(got[:2, :2] - plain[:2, :2]).max() > 1e-4


def test_tiny_net_tiled_matches_untiled_with_pre_pad(tiny_net):
  image = np.random.default_rng(3).random((40, 52, 3), dtype=np.float32)
  untiled = tiling.upscale_array(image, tiny_net, tiling.TileSpec(tile=0, batch=4, pre_pad=6))
  # One tile as big as the padded image (52 × 64) is the untiled call, bit for bit.
  np.testing.assert_array_equal(
      tiling.upscale_array(image, tiny_net, tiling.TileSpec(tile=64, overlap=8, pre_pad=6)),
      untiled)
  tiled = tiling.upscale_array(image, tiny_net,
                               tiling.TileSpec(tile=24, overlap=12, batch=4, pre_pad=6))
  # Measured 86.1 dB (and 28.3 dB with hard cuts and no overlap): only the discarded context
  # differs, as without pre_pad (test_tiling).
  assert _psnr(tiled, untiled) > 55


@pytest.mark.parametrize("kwargs,match", [
    (dict(pre_pad=-1), "pre_pad must be ≥ 0, got -1"),
    (dict(pre_pad=2, pre_pad_sides="top"), "pre_pad sides must be one of"),
])
def test_bad_pre_pad(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tiling.TileSpec(**kwargs)
  with pytest.raises(ValueError, match=match):
    tiling.pre_pad_widths(kwargs["pre_pad"], kwargs.get("pre_pad_sides", "all"))
