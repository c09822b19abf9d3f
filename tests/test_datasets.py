"""Training/validation data: crops, augmentation, sources, sharding, TFRecords."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf import SAMPLES_DIR
from esrgan_tf.data import datasets, folders, tfrecords
from esrgan_tf.images import imresize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
  return path


def _config(**kwargs):
  config = dict(train_dir="", train_lr_dir="", tfrecords="", val_dir="", val_lr_dir="",
                gt_size=16, batch_size=4, augment=True, cache=True, shuffle_buffer=8,
                val_max_images=0)
  config.update(kwargs)
  return config


def _solid_images(directory, levels, size=(20, 24), ext=".png"):
  """One image per grey level, so every crop tells which file it came from."""
  for level in levels:
    _save(os.path.join(directory, f"img{level:03d}{ext}"), np.full(size + (3,), level))


def _nearest_up(lr, scale):
  return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


def _find_crop(full, crop):
  size = crop.shape[0]
  for top in range(full.shape[0] - size + 1):
    for left in range(full.shape[1] - size + 1):
      if np.array_equal(full[top:top + size, left:left + size], crop):
        return top, left
  return None


# --- crops and augmentation, eager and inside Dataset.map -----------------------------------------

@pytest.mark.parametrize("in_map", [False, True])
def test_crop_and_degrade_alignment(in_map):
  hr = np.random.default_rng(0).integers(0, 256, (30, 27, 3)).astype(np.uint8)
  seeds = [tf.constant([7, i], tf.int64) for i in range(4)]
  if in_map:
    ds = tf.data.Dataset.from_tensor_slices(tf.stack(seeds))
    outs = list(ds.map(lambda s: datasets.crop_and_degrade(hr, 16, 4, s)).as_numpy_iterator())
  else:
    outs = [tuple(t.numpy() for t in datasets.crop_and_degrade(hr, 16, 4, s)) for s in seeds]
  for lr, hr_crop in outs:
    assert lr.shape == (4, 4, 3) and hr_crop.shape == (16, 16, 3)
    assert _find_crop(hr, np.round(hr_crop * 255).astype(np.uint8)) is not None
    expected = imresize.quantize(imresize.imresize(hr_crop, 0.25)).numpy()
    np.testing.assert_array_equal(lr, expected)
    np.testing.assert_allclose(lr * 255, np.round(lr * 255), atol=1e-4)  # 8-bit levels
  # Same seed → same crop; the crops are not all at one place.
  again = datasets.crop_and_degrade(hr, 16, 4, seeds[0])[1].numpy()
  np.testing.assert_array_equal(again, outs[0][1])
  assert len({_find_crop(hr, np.round(o[1] * 255).astype(np.uint8)) for o in outs}) > 1


@pytest.mark.parametrize("in_map", [False, True])
def test_crop_pair_alignment(in_map):
  scale = 4
  lr = np.random.default_rng(1).integers(0, 256, (9, 11, 3)).astype(np.uint8)
  hr = _nearest_up(lr, scale)  # HR pixel (s·y + i, s·x + j) = LR pixel (y, x)
  seeds = tf.constant([[3, i] for i in range(6)], tf.int64)
  if in_map:
    ds = tf.data.Dataset.from_tensor_slices(seeds)
    outs = list(ds.map(lambda s: datasets.crop_pair(lr, hr, 16, scale, s)).as_numpy_iterator())
  else:
    outs = [tuple(t.numpy() for t in datasets.crop_pair(lr, hr, 16, scale, s)) for s in seeds]
  positions = set()
  for lr_crop, hr_crop in outs:
    assert lr_crop.shape == (4, 4, 3) and hr_crop.shape == (16, 16, 3)
    np.testing.assert_array_equal(hr_crop, _nearest_up(lr_crop, scale))
    positions.add(_find_crop(lr, np.round(lr_crop * 255).astype(np.uint8)))
  assert None not in positions and len(positions) > 1


def _np_dihedral(image, k):
  return np.rot90(np.fliplr(image) if k >= 4 else image, k % 4)


@pytest.mark.parametrize("in_map", [False, True])
def test_dihedral_matches_numpy_and_is_applied_identically(in_map):
  lr = np.random.default_rng(2).random((3, 5, 3)).astype(np.float32)
  hr = _nearest_up(lr, 2)
  ks = tf.range(8)
  if in_map:
    got = list(tf.data.Dataset.from_tensor_slices(ks).map(
        lambda k: (datasets.dihedral(lr, k), datasets.dihedral(hr, k))).as_numpy_iterator())
  else:
    got = [(datasets.dihedral(lr, k).numpy(), datasets.dihedral(hr, k).numpy()) for k in range(8)]
  for k, (a, b) in enumerate(got):
    np.testing.assert_array_equal(a, _np_dihedral(lr, k))
    np.testing.assert_array_equal(b, _nearest_up(a, 2))
  assert len({a.tobytes() for a, _ in got}) == 8


@pytest.mark.parametrize("in_map", [False, True])
def test_augment_pair_keeps_alignment(in_map):
  lr = np.random.default_rng(3).random((4, 4, 3)).astype(np.float32)
  hr = _nearest_up(lr, 4)
  seeds = tf.constant([[1, i] for i in range(16)], tf.int64)
  if in_map:
    outs = list(tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: datasets.augment_pair(lr, hr, s)).as_numpy_iterator())
  else:
    outs = [tuple(t.numpy() for t in datasets.augment_pair(lr, hr, s)) for s in seeds]
  for a, b in outs:
    np.testing.assert_array_equal(b, _nearest_up(a, 4))
  assert len({a.tobytes() for a, _ in outs}) > 2


# --- the training dataset ------------------------------------------------------------------------

def test_train_dataset_on_samples_shapes_ranges_and_determinism():
  # A locked ConfigDict, as the trainer passes config.data.
  config = ml_collections.ConfigDict(
      _config(train_dir=os.path.join(SAMPLES_DIR, "train"), gt_size=32))
  config.lock()
  first = [b for b in datasets.make_train_dataset(config, 4, 3, seed=5).take(2)]
  for lr, hr in first:
    assert lr.dtype == tf.float32 and hr.dtype == tf.float32
    assert lr.shape == (3, 8, 8, 3) and hr.shape == (3, 32, 32, 3)
    for t in (lr, hr):
      assert 0.0 <= float(tf.reduce_min(t)) and float(tf.reduce_max(t)) <= 1.0
  again = [b for b in datasets.make_train_dataset(config, 4, 3, seed=5).take(2)]
  for (a_lr, a_hr), (b_lr, b_hr) in zip(first, again):
    np.testing.assert_array_equal(a_hr.numpy(), b_hr.numpy())
    np.testing.assert_array_equal(a_lr.numpy(), b_lr.numpy())
  no_aug = _config(train_dir=os.path.join(SAMPLES_DIR, "train"), gt_size=32, augment=False,
                   cache=False)
  lr, hr = next(iter(datasets.make_train_dataset(no_aug, 4, 2, seed=1)))
  # Unaugmented on-the-fly LR is exactly the MATLAB bicubic of the HR crop.
  np.testing.assert_array_equal(lr.numpy(),
                                imresize.quantize(imresize.imresize(hr, 0.25)).numpy())


def test_paired_dataset_batches_are_aligned(tmp_path):
  rng = np.random.default_rng(4)
  for i in range(3):
    lr = rng.integers(0, 256, (6 + i, 7, 3))
    _save(str(tmp_path / "lr" / f"im{i}x2.png"), lr)  # DIV2K-style suffix
    _save(str(tmp_path / "hr" / f"im{i}.png"), _nearest_up(lr, 2))
  config = _config(train_dir=str(tmp_path / "hr"), train_lr_dir=str(tmp_path / "lr"), gt_size=8)
  for lr, hr in datasets.make_train_dataset(config, 2, 4, seed=0).take(3):
    assert lr.shape == (4, 4, 4, 3) and hr.shape == (4, 8, 8, 3)
    for b in range(4):
      np.testing.assert_array_equal(hr[b].numpy(), _nearest_up(lr[b].numpy(), 2))


def test_paired_size_mismatch_is_reported(tmp_path):
  _save(str(tmp_path / "lr" / "a.png"), np.zeros((5, 5, 3)))
  _save(str(tmp_path / "hr" / "a.png"), np.zeros((20, 24, 3)))  # ×4 of 5×5 would be 20×20
  _save(str(tmp_path / "lr" / "b.png"), np.zeros((5, 5, 3)))
  _save(str(tmp_path / "hr" / "b.png"), np.zeros((23, 23, 3)))  # mod-crops to 20×20: fine
  config = _config(train_dir=str(tmp_path / "hr"), train_lr_dir=str(tmp_path / "lr"))
  with pytest.raises(datasets.DataError,
                     match=r"(?s)1 LR/HR pair.*hr/a\.png is 24x20.*expected HR 20x20"):
    datasets.make_train_dataset(config, 4, 2)


def test_sharding_gives_disjoint_files(tmp_path):
  levels = [10, 40, 70, 100, 130, 160]
  _solid_images(str(tmp_path), levels)
  seen = []
  for pipeline in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
    ds = datasets.make_train_dataset(_config(train_dir=str(tmp_path)), 4, 2, context, seed=0)
    found = set()
    for _, hr in ds.take(12):
      found.update(np.unique(np.round(hr.numpy() * 255).astype(int)).tolist())
    seen.append(found)
  assert seen[0].isdisjoint(seen[1])
  assert seen[0] | seen[1] == set(levels)
  assert len(seen[0]) == 3


def test_unreadable_and_small_files_are_skipped(tmp_path, caplog):
  _solid_images(str(tmp_path), [50, 90])
  _solid_images(str(tmp_path / "sub"), [200], ext=".tif")  # decoded through Pillow
  (tmp_path / "garbage.png").write_bytes(b"not an image")
  good = tmp_path / "img050.png"
  (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[:40])
  _save(str(tmp_path / "tiny.png"), np.zeros((8, 8, 3)))
  (tmp_path / "notes.txt").write_text("ignored: not an image extension")
  files, bad = folders.scan_images(str(tmp_path))
  assert sorted(os.path.basename(p) for p, _ in bad) == ["garbage.png", "truncated.jpg"]
  assert {f.key for f in files} == {"img050", "img090", "sub/img200", "tiny"}
  ds = datasets.make_train_dataset(_config(train_dir=str(tmp_path)), 4, 3, seed=1)
  found = set()
  for _, hr in ds.take(6):
    found.update(np.unique(np.round(hr.numpy() * 255).astype(int)).tolist())
  assert found == {50, 90, 200}  # tiny.png (8×8 < 16) skipped, TIFF decoded
  assert "skipped 2 unreadable image(s) of 6" in caplog.text


def test_bad_configs(tmp_path):
  with pytest.raises(datasets.DataError, match="multiple of the scale"):
    datasets.make_train_dataset(_config(train_dir=str(tmp_path), gt_size=18), 4, 2)
  with pytest.raises(datasets.DataError, match="does not exist"):
    datasets.make_train_dataset(_config(train_dir=str(tmp_path / "nope")), 4, 2)
  _save(str(tmp_path / "small.png"), np.zeros((8, 8, 3)))
  with pytest.raises(datasets.DataError, match="no readable image of at least 16x16"):
    datasets.make_train_dataset(_config(train_dir=str(tmp_path)), 4, 2)
  # No second set of defaults: every field of the config.data schema must be given.
  partial = _config(train_dir=str(tmp_path))
  del partial["cache"], partial["augment"]
  with pytest.raises(datasets.DataError, match=r"config.data lacks \['augment', 'cache'\]"):
    datasets.make_train_dataset(partial, 4, 2)
  with pytest.raises(datasets.DataError, match=r"config.data lacks \['val_max_images'\]"):
    datasets.load_validation_set({"val_dir": str(tmp_path), "val_lr_dir": ""}, 4)


# --- TFRecords -----------------------------------------------------------------------------------

def test_tfrecord_round_trip(tmp_path):
  rng = np.random.default_rng(5)
  images = {f"im{i}": rng.integers(0, 256, (17 + i, 19, 3)).astype(np.uint8) for i in range(3)}
  for name, image in images.items():
    _save(str(tmp_path / "in" / f"{name}.png"), image)
  os.makedirs(tmp_path / "out")
  paths = tfrecords.write_tfrecords(str(tmp_path / "in"), str(tmp_path / "out" / "train"), 2)
  assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002.tfrecord",
                                                  "train-00001-of-00002.tfrecord"]
  assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(p) for p in paths)
  back = dict(tfrecords.read_tfrecords(str(tmp_path / "out" / "train-*.tfrecord")))
  assert back.keys() == images.keys()
  for name, image in images.items():
    np.testing.assert_array_equal(back[name], image)


@pytest.mark.parametrize("num_shards,cache", [(1, True), (2, False)])
def test_tfrecord_training_source_and_sharding(tmp_path, num_shards, cache):
  _solid_images(str(tmp_path / "in"), [20, 60, 100, 140])
  _save(str(tmp_path / "in" / "small.png"), np.full((10, 10, 3), 250))
  os.makedirs(tmp_path / "out")
  tfrecords.write_tfrecords(str(tmp_path / "in"), str(tmp_path / "out" / "t"), num_shards)
  pattern = str(tmp_path / "out" / "t-*.tfrecord")
  seen = []
  # One shard file, two pipelines → records are sharded; two files → files are sharded
  # (and, without cache, streamed: shuffled and interleaved every epoch).
  for pipeline in range(2):
    context = tf.distribute.InputContext(2, pipeline, 2)
    ds = datasets.make_train_dataset(_config(tfrecords=pattern, cache=cache), 4, 2, context, seed=0)
    found = set()
    for lr, hr in ds.take(6):
      assert lr.shape == (2, 4, 4, 3) and hr.shape == (2, 16, 16, 3)
      found.update(np.unique(np.round(hr.numpy() * 255).astype(int)).tolist())
    seen.append(found)
  assert seen[0].isdisjoint(seen[1])
  assert seen[0] | seen[1] == {20, 60, 100, 140}  # the 10×10 image is filtered out


def test_make_tfrecords_script(tmp_path):
  _solid_images(str(tmp_path / "in"), [5, 6])
  script = os.path.join(ROOT, "scripts", "make_tfrecords.py")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  ok = subprocess.run([sys.executable, script, f"--input_dir={tmp_path / 'in'}",
                       f"--output_pattern={tmp_path / 'p'}", "--num_shards=2"],
                      capture_output=True, text=True, env=env, timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert len(tfrecords.read_tfrecords(str(tmp_path / "p-*.tfrecord"))) == 2
  with pytest.raises(datasets.DataError,
                     match=r"num_shards must be between 1 and the number of images \(2\)"):
    tfrecords.write_tfrecords(str(tmp_path / "in"), str(tmp_path / "q"), 3)
  with pytest.raises(datasets.DataError, match="output directory does not exist"):
    tfrecords.write_tfrecords(str(tmp_path / "in"), str(tmp_path / "missing" / "q"), 1)
  assert not list(tmp_path.glob("q*"))


# --- validation ----------------------------------------------------------------------------------

def test_validation_set_on_the_fly(tmp_path):
  hr = np.random.default_rng(6).integers(0, 256, (30, 26, 3))
  _save(str(tmp_path / "b.png"), hr)
  _save(str(tmp_path / "a.png"), np.full((16, 16, 3), 77))
  result = datasets.load_validation_set(_config(val_dir=str(tmp_path)), 4)
  assert [name for name, _, _ in result] == ["a", "b"]
  _, lr, hr_out = result[1]
  assert hr_out.shape == (28, 24, 3) and lr.shape == (7, 6, 3)
  np.testing.assert_allclose(hr_out * 255, hr[:28, :24], atol=1e-4)
  expected = imresize.quantize(imresize.imresize(hr[:28, :24] / 255.0, 0.25)).numpy()
  np.testing.assert_allclose(lr, expected, atol=1e-6)
  assert len(datasets.load_validation_set(_config(val_dir=str(tmp_path), val_max_images=1), 4)) == 1


def test_validation_set_paired(tmp_path):
  lr = np.random.default_rng(7).integers(0, 256, (5, 6, 3))
  _save(str(tmp_path / "lr" / "c.png"), lr)
  _save(str(tmp_path / "hr" / "c.png"), np.pad(_nearest_up(lr, 2), ((0, 1), (0, 1), (0, 0))))
  (name, lr_out, hr_out), = datasets.load_validation_set(
      _config(val_dir=str(tmp_path / "hr"), val_lr_dir=str(tmp_path / "lr")), 2)
  assert name == "c"
  np.testing.assert_allclose(lr_out * 255, lr, atol=1e-4)
  np.testing.assert_allclose(hr_out * 255, _nearest_up(lr, 2), atol=1e-4)


def test_write_failure_leaves_no_partial_shard(tmp_path, monkeypatch):
  _solid_images(str(tmp_path / "in"), [1, 2, 3])
  real = folders.read_image_array
  calls = []

  def flaky(path):
    calls.append(path)
    if len(calls) == 3:
      raise datasets.DataError(f"{path}: cannot decode image (simulated)")
    return real(path)

  monkeypatch.setattr(folders, "read_image_array", flaky)
  os.makedirs(tmp_path / "out")
  with pytest.raises(datasets.DataError, match="simulated"):
    tfrecords.write_tfrecords(str(tmp_path / "in"), str(tmp_path / "out" / "x"), 2)
  assert os.listdir(tmp_path / "out") == []


def _png_chunk(kind, payload):
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  return (struct.pack(">I", len(payload)) + kind + payload +
          struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def test_file_that_passes_the_check_but_fails_to_decode_is_dropped(tmp_path):
  import struct  # pylint: disable=g-import-not-at-top
  # Valid PNG structure and CRCs (Pillow's verify() accepts it) around garbage zlib data.
  ihdr = struct.pack(">IIBBBBB", 20, 20, 8, 2, 0, 0, 0)
  (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
                                     _png_chunk(b"IDAT", b"garbage!" * 8) +
                                     _png_chunk(b"IEND", b""))
  _solid_images(str(tmp_path), [33])
  files, bad = folders.scan_images(str(tmp_path))
  assert len(files) == 2 and not bad
  for cache in (True, False):
    ds = datasets.make_train_dataset(_config(train_dir=str(tmp_path), cache=cache), 4, 2, seed=0)
    for _, hr in ds.take(3):
      assert set(np.unique(np.round(hr.numpy() * 255).astype(int))) == {33}


def test_iterator_checkpoint_resumes_the_same_batches(tmp_path):
  # The trainer may keep the data iterator in its checkpoint (cache + stateless randomness).
  config = _config(train_dir=os.path.join(SAMPLES_DIR, "train"), gt_size=16)
  iterator = iter(datasets.make_train_dataset(config, 4, 2, seed=3))
  next(iterator)
  checkpoint = tf.train.Checkpoint(iterator=iterator)
  path = checkpoint.save(str(tmp_path / "ckpt"))
  expected = [next(iterator)[1].numpy() for _ in range(2)]
  checkpoint.restore(path)
  for want in expected:
    np.testing.assert_array_equal(next(iterator)[1].numpy(), want)


def test_jpeg_pixels_match_pillow(tmp_path):
  # Training decodes in TF, validation with Pillow: the same JPEG must give the same pixels.
  image = np.asarray(Image.open(os.path.join(SAMPLES_DIR, "val", "chelsea.png")).convert("RGB"))
  Image.fromarray(image[:32, :32]).save(tmp_path / "c.jpg", quality=90)
  config = _config(train_dir=str(tmp_path), gt_size=32, augment=False)
  _, hr = next(iter(datasets.make_train_dataset(config, 4, 1, seed=0)))
  np.testing.assert_array_equal(np.round(hr[0].numpy() * 255).astype(np.uint8),
                                folders.read_image_array(str(tmp_path / "c.jpg")))
