"""esrgan_tf.data.realesrgan: Real-ESRGAN's degradation pipeline in tf.data."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf import SAMPLES_DIR
from esrgan_tf.data import datasets as datasets_lib
from esrgan_tf.data import degradations as dg
from esrgan_tf.data import realesrgan as rd

TRAIN_DIR = os.path.join(SAMPLES_DIR, "train")
SEED = tf.constant([5, 9], tf.int64)


def _photo(size=64):
  with Image.open(os.path.join(TRAIN_DIR, "astronaut.png")) as im:
    return np.asarray(im.convert("RGB"))[:size, :size]


def _small(**kwargs):
  """Default options on small crops (fast), overridable."""
  c = rd.default_degradation_config()
  c.crop_pad_size, c.gt_size, c.queue_size = 64, 32, 0
  c.update(kwargs)
  return c


def _all_off(**kwargs):
  off = {"blur_prob": 0.0, "resize_prob": [0, 0, 1], "noise_prob": 0.0, "jpeg_prob": 0.0,
         "second_blur_prob": 0.0, "resize_prob2": [0, 0, 1], "noise_prob2": 0.0,
         "jpeg_prob2": 0.0, "final_sinc_prob": 0.0, "gt_usm": False, "use_hflip": False}
  return _small(**{**off, **kwargs})


def test_default_config_is_real_esrgan_yml():
  c = rd.default_degradation_config()
  # options/train_realesrnet_x4plus.yml
  assert c.kernel_prob == [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
  assert (c.sinc_prob, c.blur_sigma, c.betag_range, c.betap_range) == (0.1, [0.2, 3.0],
                                                                       [0.5, 4.0], [1.0, 2.0])
  assert (c.resize_prob, c.resize_range, c.resize_prob2, c.resize_range2) == (
      [0.2, 0.7, 0.1], [0.15, 1.5], [0.3, 0.4, 0.3], [0.3, 1.2])
  assert (c.noise_range, c.poisson_scale_range, c.noise_range2, c.poisson_scale_range2) == (
      [1.0, 30.0], [0.05, 3.0], [1.0, 25.0], [0.05, 2.5])
  assert (c.second_blur_prob, c.final_sinc_prob, c.blur_sigma2) == (0.8, 0.8, [0.2, 1.5])
  assert (c.gt_size, c.queue_size, c.jpeg_range, c.jpeg_range2) == (256, 180, [30, 95], [30, 95])


def test_example_shapes_ranges_and_levels():
  out = rd.degrade_example(_photo(), SEED, _small(), 4)
  assert out["lr"].shape == (8, 8, 3) and out["gt"].shape == (32, 32, 3)
  assert out["gt_usm"].shape == (32, 32, 3)
  for v in out.values():
    assert v.dtype == tf.float32 and 0 <= float(tf.reduce_min(v)) <= float(tf.reduce_max(v)) <= 1
  lr = out["lr"].numpy() * 255
  np.testing.assert_allclose(lr, np.round(lr), atol=1e-3)  # clamp + round as Real-ESRGAN


def test_eager_equals_dataset_map_and_seed_determinism():
  config = _small(sinc_prob=0.5, final_sinc_prob=0.5)
  image = _photo()
  seeds = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
  eager = [rd.degrade_example(image, s, config, 4) for s in seeds]
  mapped = list(tf.data.Dataset.from_tensor_slices(seeds).map(
      lambda s: rd.degrade_example(image, s, config, 4), num_parallel_calls=2,
      deterministic=True).as_numpy_iterator())
  for e, m in zip(eager, mapped):
    for key in ("lr", "gt", "gt_usm"):
      np.testing.assert_allclose(e[key].numpy(), m[key], atol=1e-6)
  assert not np.array_equal(mapped[0]["lr"], mapped[1]["lr"])


def test_everything_off_is_plain_resize():
  image = _photo()
  config = _all_off(resize_modes=["bicubic"], gt_size=64)
  out = rd.degrade_example(image, SEED, config, 4)
  gt = image.astype(np.float32) / 255
  np.testing.assert_array_equal(out["gt"].numpy(), gt)
  ref = tf.image.resize(gt, [16, 16], "bicubic").numpy()
  np.testing.assert_allclose(out["lr"].numpy(), np.clip(np.round(ref * 255), 0, 255) / 255,
                             atol=1e-6)


@pytest.mark.parametrize("switch", [{"blur_prob": 1.0}, {"noise_prob": 1.0},
                                    {"jpeg_prob": 1.0}, {"second_blur_prob": 1.0},
                                    {"noise_prob2": 1.0}, {"jpeg_prob2": 1.0},
                                    {"final_sinc_prob": 1.0}, {"resize_prob": [0, 1, 0]},
                                    {"gt_usm": True}])
def test_each_stage_switches_on(switch):
  image = _photo()
  base = {"resize_modes": ["bicubic"], "gt_size": 64}
  plain = rd.degrade_example(image, SEED, _all_off(**base), 4)["lr"].numpy()
  config = _all_off(**base)
  config.update(switch)
  changed = rd.degrade_example(image, SEED, config, 4)["lr"].numpy()
  assert np.abs(changed - plain).max() > 1 / 255


def test_gt_usm_is_usm_of_gt():
  out = rd.degrade_example(_photo(), SEED, _all_off(gt_usm=True, gt_size=64), 4)
  np.testing.assert_allclose(out["gt_usm"].numpy(), dg.usm_sharp(out["gt"].numpy()), atol=2e-5)


def test_small_images_are_reflect_padded():
  out = rd.degrade_example(_photo(40), SEED, _all_off(gt_size=64), 4)["gt"].numpy()
  gt = _photo(40).astype(np.float32) / 255
  np.testing.assert_array_equal(out[:40, :40], gt)
  np.testing.assert_array_equal(out[40:, :40], np.pad(gt, ((0, 24), (0, 0), (0, 0)),
                                                      mode="reflect")[40:])


def _dataset(seed=0, **kwargs):
  config = _small(queue_size=6)
  data_config = {"train_dir": TRAIN_DIR, "train_lr_dir": "", "tfrecords": "", "cache": True,
                 "shuffle_buffer": 4}
  return rd.make_degraded_train_dataset(data_config, 4, 3, seed=seed, degradation_config=config,
                                        **kwargs)


def test_dataset_batches_are_reproducible():
  first = [b for _, b in zip(range(2), _dataset(seed=3).as_numpy_iterator())]
  again = [b for _, b in zip(range(2), _dataset(seed=3).as_numpy_iterator())]
  other = next(_dataset(seed=4).as_numpy_iterator())
  lr, hr = first[0]
  assert lr.shape == (3, 8, 8, 3) and hr.shape == (3, 32, 32, 3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(first[0][0], other[0])


def test_dataset_dict_and_sharding():
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
  batch = next(_dataset(return_gt_usm=True, input_context=context).as_numpy_iterator())
  assert set(batch) == {"lr", "hr", "gt_usm"}
  assert batch["gt_usm"].shape == batch["hr"].shape == (3, 32, 32, 3)
  assert not np.array_equal(batch["gt_usm"], batch["hr"])


def test_config_errors():
  data_config = {"train_dir": TRAIN_DIR}
  with pytest.raises(datasets_lib.DataError, match="multiples of the scale"):
    rd.make_degraded_train_dataset(data_config, 3, 2, degradation_config=_small())
  with pytest.raises(datasets_lib.DataError, match="gt_size .* <= crop_pad_size"):
    rd.make_degraded_train_dataset(data_config, 4, 2, degradation_config=_small(gt_size=128))
  with pytest.raises(datasets_lib.DataError, match="resize_modes: unknown"):
    rd.make_degraded_train_dataset(data_config, 4, 2,
                                   degradation_config=_small(resize_modes=["lanczos"]))
  with pytest.raises(datasets_lib.DataError, match="differs from the degradation gt_size"):
    rd.make_degraded_train_dataset(dict(data_config, gt_size=48), 4, 2,
                                   degradation_config=_small())
  with pytest.raises(datasets_lib.DataError, match="train_lr_dir must be empty"):
    rd.make_degraded_train_dataset(dict(data_config, train_lr_dir=TRAIN_DIR), 4, 2,
                                   degradation_config=_small())


def test_benchmark_reports_throughput():
  row = rd.benchmark_degradation_pipeline(batch_size=2, num_batches=2, warmup_batches=1,
                                          degradation_config=_small(queue_size=4))
  assert row["images_per_s"] > 0 and row["batch_size"] == 2 and row["gt_size"] == 32


def test_degradation_grid_layout():
  config = _small(crop_pad_size=32, gt_size=32)
  grid = rd.degradation_grid(_photo(48), 3, 2, 0, config, 4, zoom=2)
  # 2 rows × 2 columns of 16² tiles (8² LR × zoom 2) with 2-pixel white gutters.
  assert grid.shape == (34, 34, 3) and grid.dtype == np.float32
  np.testing.assert_array_equal(grid[16:18], 1.0)
  np.testing.assert_array_equal(grid[18:, 18:], 1.0)  # the unused 4th cell
  reference = tf.image.resize(_photo(48)[8:40, 8:40] / np.float32(255), [8, 8], "bicubic")
  np.testing.assert_allclose(grid[0:16:2, 0:16:2], np.clip(reference, 0, 1), atol=1e-6)
  assert not np.array_equal(grid[0:16, 18:34], grid[18:34, 0:16])
