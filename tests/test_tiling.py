"""Tests for inference.tiling: exactness on per-pixel models, partition of unity, a real net."""

import os

import numpy as np
import pytest

from esrgan_tf.inference import tiling


class NearestUpscaler:
  """Per-pixel fake model: nearest-neighbour repeat; records the batches it sees."""

  def __init__(self, scale, input_size=None, max_batch=None):
    self.scale = scale
    self.input_size = input_size
    self.max_batch = max_batch
    self.name = "nearest"
    self.batches = []

  def __call__(self, batch):
    assert batch.dtype == np.float32 and batch.ndim == 4
    if self.input_size is not None:
      assert batch.shape[1:3] == tuple(self.input_size), batch.shape
    if self.max_batch is not None:
      assert batch.shape[0] <= self.max_batch
    self.batches.append(batch.shape)
    return np.repeat(np.repeat(batch, self.scale, axis=1), self.scale, axis=2)


def _nearest(image, scale):
  return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 23, 3), (23, 1, 1), (37, 50, 3), (20, 9, 4)])
@pytest.mark.parametrize("tile,overlap", [(0, 0), (4, 0), (8, 7), (7, 3), (16, 4), (64, 16)])
@pytest.mark.parametrize("blend", [0.0, 0.5, 1.0])
def test_per_pixel_model_is_exact(shape, tile, overlap, blend):
  rng = np.random.default_rng(0)
  image = rng.random(shape, dtype=np.float32)
  for scale in (1, 3, 4):
    spec = tiling.TileSpec(tile=tile, overlap=overlap, batch=3, blend=blend, pre_pad=0)
    got = tiling.upscale_array(image, NearestUpscaler(scale), spec)
    assert got.dtype == np.float32 and got.shape == (shape[0] * scale, shape[1] * scale, shape[2])
    # Blending identical values with weights summing to 1 (±1 ulp): exact to float32 rounding.
    np.testing.assert_allclose(got, _nearest(image, scale), rtol=0, atol=3e-7)


@pytest.mark.parametrize("length", [1, 5, 64, 65, 100, 257, 1000])
@pytest.mark.parametrize("tile,overlap", [(8, 0), (8, 4), (8, 7), (32, 16), (64, 16), (256, 16)])
@pytest.mark.parametrize("blend", [0.0, 0.3, 0.5, 1.0])
def test_weights_are_a_partition_of_unity(length, tile, overlap, blend):
  for scale in (1, 2, 3, 4):
    _check_partition(length, tile, overlap, blend, scale)


def _check_partition(length, tile, overlap, blend, scale):
  tiles = tiling.axis_tiles(length, tile, overlap, scale, blend)
  total = np.zeros(length * scale, np.float64)
  for t in tiles:
    assert t.stop - t.start == min(tile, length)  # Equal-size tiles, batchable.
    assert 0 <= t.start and t.stop <= length
    assert t.start * scale <= t.lo < t.hi <= t.stop * scale  # Support inside the tile.
    assert np.all(t.weight >= 0) and np.all(t.weight <= 1)
    total[t.lo:t.hi] += t.weight
  np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)
  # Neighbours overlap by at least the requested overlap.
  for a, b in zip(tiles, tiles[1:]):
    assert a.stop - b.start >= overlap
    assert b.start > a.start


def test_weights_fade_smoothly_across_the_middle_of_the_overlap():
  # 100 px, tile 60, overlap 20: two tiles [0, 60) and [40, 100); blend 0.5 → a 10 px fade in
  # the middle of the overlap [40, 60), i.e. [45, 55); scale 1.
  first, second = tiling.axis_tiles(100, 60, 20, 1, blend=0.5)
  assert (first.start, first.stop, second.start, second.stop) == (0, 60, 40, 100)
  assert (first.lo, first.hi, second.lo, second.hi) == (0, 55, 45, 100)
  fade = second.weight[:10]
  t = (np.arange(10) + 0.5) / 10
  np.testing.assert_allclose(fade, 0.5 - 0.5 * np.cos(np.pi * t), atol=1e-7)  # Raised cosine.
  np.testing.assert_allclose(first.weight[45:], 1 - fade, atol=1e-7)
  assert np.all(first.weight[:45] == 1) and np.all(second.weight[10:] == 1)


def test_static_input_size_pads_and_crops():
  rng = np.random.default_rng(1)
  for shape in [(5, 7, 3), (30, 9, 3), (1, 40, 1)]:
    image = rng.random(shape, dtype=np.float32)
    model = NearestUpscaler(2, input_size=(12, 16), max_batch=1)
    got = tiling.upscale_array(image, model,
                               tiling.TileSpec(tile=999, overlap=4, batch=8, pre_pad=0))
    np.testing.assert_allclose(got, _nearest(image, 2), atol=3e-7)
    assert all(b == (1, 12, 16, shape[2]) for b in model.batches)
    assert len(model.batches) == tiling.count_tiles(*shape[:2], model,
                                                    tiling.TileSpec(tile=999, overlap=4, pre_pad=0))


def test_batches_respect_batch_and_max_batch():
  image = np.random.default_rng(2).random((50, 50, 3), dtype=np.float32)
  model = NearestUpscaler(2, max_batch=2)
  progress = []
  tiling.upscale_array(image, model, tiling.TileSpec(tile=16, overlap=4, batch=5, pre_pad=0),
                       progress=lambda done, total: progress.append((done, total)))
  total = tiling.count_tiles(50, 50, model, tiling.TileSpec(tile=16, overlap=4, pre_pad=0))
  assert total == 16  # ceil((50 - 4) / 12) = 4 per axis.
  assert [b[0] for b in model.batches] == [2] * 8
  assert progress[-1] == (total, total) and len(progress) == 8
  model = NearestUpscaler(2)
  tiling.upscale_array(image, model, tiling.TileSpec(tile=16, overlap=4, batch=5, pre_pad=0))
  assert [b[0] for b in model.batches] == [5, 5, 5, 1]


def test_integer_out_is_clipped_and_rounded():
  image = np.array([[[-0.2], [0.5]], [[0.999], [1.7]]], np.float32)
  out = np.zeros((4, 4, 1), np.uint8)
  result = tiling.upscale_array(image, NearestUpscaler(2),
                                tiling.TileSpec(tile=1, overlap=0, batch=4, pre_pad=0), out=out)
  assert result is out
  np.testing.assert_array_equal(out[::2, ::2, 0], [[0, 128], [255, 255]])
  # 0.999 · 65535 = 65469.47 → 65469; 0.5 · 65535 = 32767.5 → 32768 (half to even).
  out16 = np.zeros((4, 4, 1), np.uint16)
  tiling.upscale_array(image, NearestUpscaler(2), tiling.TileSpec(tile=0, batch=4, pre_pad=0),
                       out=out16)
  np.testing.assert_array_equal(out16[::2, ::2, 0], [[0, 32768], [65469, 65535]])


@pytest.mark.parametrize("kwargs,match", [
    (dict(tile=8, overlap=8), "overlap"),
    (dict(tile=8, overlap=9), "overlap"),
    (dict(tile=-1), "≥ 0"),
    (dict(batch=0), "batch"),
    (dict(blend=1.5), "blend"),
])
def test_bad_tile_specs(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tiling.TileSpec(**kwargs)


def test_wrong_out_shape():
  image = np.zeros((10, 10, 3), np.float32)
  with pytest.raises(ValueError, match="out has shape"):
    tiling.upscale_array(image, NearestUpscaler(2), out=np.zeros((3, 3, 3), np.float32))


def test_static_size_smaller_than_overlap_and_bad_shapes():
  image = np.zeros((10, 10, 3), np.float32)
  with pytest.raises(ValueError, match="fixed input size"):
    tiling.upscale_array(image, NearestUpscaler(2, input_size=(8, 8)),
                         tiling.TileSpec(overlap=8, batch=4, pre_pad=0))
  with pytest.raises(ValueError, match="H, W, C"):
    tiling.upscale_array(np.zeros((10, 10), np.float32), NearestUpscaler(2),
                         tiling.TileSpec(batch=4, pre_pad=0))

  class WrongScale(NearestUpscaler):
    def __call__(self, batch):
      return np.repeat(batch, 3, axis=1)

  with pytest.raises(ValueError, match="returned shape"):
    tiling.upscale_array(image, WrongScale(2),
                         tiling.TileSpec(tile=4, overlap=1, batch=4, pre_pad=0))


def _psnr(a, b):
  a = np.rint(np.clip(a, 0, 1) * 255)
  b = np.rint(np.clip(b, 0, 1) * 255)
  mse = np.mean((a - b) ** 2)
  return np.inf if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def tiny_net():
  import keras

  from esrgan_tf.inference.engine import keras_engine
  from esrgan_tf.models import RRDBNet
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
  model.build((None, None, None, 3))
  return keras_engine(model)


def test_tiny_net_tiled_matches_untiled(tiny_net):
  from PIL import Image

  import esrgan_tf
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  image = np.asarray(photo, np.float32)[:72, :90] / 255
  untiled = tiny_net(image[None])[0]
  whole = tiling.TileSpec(tile=0, pre_pad=0)
  assert np.array_equal(tiling.upscale_array(image, tiny_net, whole), untiled)
  for overlap in (8, 12):
    tiled = tiling.upscale_array(image, tiny_net,
                                 tiling.TileSpec(tile=32, overlap=overlap, batch=4, pre_pad=0))
    # Measured 92.3 dB (overlap 8) and 67.8 dB (overlap 12) after uint8 rounding.
    assert _psnr(tiled, untiled) > 55
  # Without overlap the zero-padding edge effect shows as seams (measured 28.4 dB).
  seams = tiling.upscale_array(image, tiny_net,
                               tiling.TileSpec(tile=32, overlap=0, batch=4, blend=0.0, pre_pad=0))
  assert _psnr(seams, untiled) < 40


def test_memory_is_output_plus_one_band():
  import tracemalloc  # numpy reports its allocations to tracemalloc.
  image = np.random.default_rng(4).random((400, 48, 3), dtype=np.float32)
  out = np.zeros((1600, 192, 3), np.uint8)
  tracemalloc.start()
  try:
    tiling.upscale_array(image, NearestUpscaler(4),
                         tiling.TileSpec(tile=16, overlap=4, batch=3, pre_pad=0), out=out)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  np.testing.assert_array_equal(out, np.rint(_nearest(image, 4) * 255))
  # One band is ~(16 + 2) · 4 output rows of 192·3 float32 (~170 kB) plus a batch of tiles; a
  # whole-image float32 accumulator would be 3.7 MB.
  band = 18 * 4 * 192 * 3 * 4
  assert peak < 8 * band, peak  # Measured: 0.73 MB (bound 1.3 MB).
