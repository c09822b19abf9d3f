"""Training and validation data: HR folders, paired LR/HR folders, sharded TFRecords.

Training pipeline (`make_train_dataset`):

  sources → decode → [cache] → shuffle → repeat → random crop (+ MATLAB-bicubic LR)
  → dihedral augmentation → batch(drop_remainder) → [colour augmentation] → prefetch

Colour augmentation (`color_augment`, options `color`; `data.augment`) recolours each batch
with the stateless seed (seed·1000 + input pipeline + 1, batch index).

* HR folder (`train_dir`): LR made on the fly: crop gt_size×gt_size HR first, then MATLAB-exact
  bicubic ×1/s (`esrgan_tf.images.imresize`) rounded to 8-bit levels, as MATLAB returns for uint8
  images (what benchmark LR PNGs contain).
* Paired folders (`train_dir` + `train_lr_dir`): matched by relative path without extension
  (an LR stem may carry DIV2K's `x{scale}` suffix); the LR crop is taken at a random (x, y) and
  the HR crop at (s·x, s·y).
* TFRecords (`tfrecords`, a glob of shards written by `esrgan_tf.data.tfrecords.write_tfrecords` /
  `scripts/make_tfrecords.py`): read with `TFRecordDataset` (tf.io.gfile underneath), so gs://
  paths work; LR made on the fly.

Unreadable files: folder sources are checked up front with Pillow (header + `verify()`, no full
decode; it also gives the sizes needed to skip too-small images and to check paired sizes).
Each bad file is logged with its reason and skipped, and the count is logged. A file that passes
that check but still fails to decode (e.g. corrupt compressed data behind valid chunk CRCs) is
dropped by `ignore_errors(log_warning=True)` after decoding. Images smaller than `gt_size` are
skipped with a warning (for TFRecords: at read time, from the stored size; TFRecord sources are
never counted or scanned up front, so they suit datasets bigger than memory with cache=False,
where shard files are reshuffled every epoch and interleaved).

Decoding happens in TF (`tf.io.decode_image`: PNG, BMP, WebP, GIF; JPEG with the accurate IDCT,
so pixels equal Pillow's); TIFF, which TF cannot decode, goes through Pillow in a
`tf.numpy_function` (GIL-bound: prefer cache=True or PNG for TIFF datasets). The iterator of the
returned dataset can be saved in a `tf.train.Checkpoint`.

Randomness is stateless: each element gets the seed (pipeline seed, element index), so a given
`seed` reproduces the same batches whatever the parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence
import random
import sys

from absl import logging
import numpy as np
import tensorflow as tf

from esrgan_tf.data import folders as folders_lib
from esrgan_tf.data import tfrecords
from esrgan_tf.data.folders import (
  DataError,
  ImageFile,
  drop_small,
  pair_images,
  read_image_array,
  scan_images,
)
from esrgan_tf.images import imresize as imresize_lib

# Shuffle buffer (elements) when config.data.shuffle_buffer is 0; capped by the image count.
_DEFAULT_SHUFFLE_BUFFER = 1000
# The `config.data` fields (schema: configs/psnr_x4.py) each entry point reads; no defaults here.
TRAIN_FIELDS = ("train_dir", "train_lr_dir", "tfrecords", "gt_size", "augment", "cache",
                "shuffle_buffer")
VALIDATION_FIELDS = ("val_dir", "val_lr_dir", "val_max_images")


def _check_fields(data_config, fields) -> None:
  missing = [k for k in fields if k not in data_config]
  if missing:
    raise DataError(f"config.data lacks {missing} (schema: configs/psnr_x4.py)")


# --- decoding ------------------------------------------------------------------------------------

def _make_decoder(files: Sequence[ImageFile]):
  """path, tf_decodable → uint8 [H, W, 3]; in-graph unless some files need Pillow."""
  need_tf = any(f.tf_decodable for f in files)
  need_pil = not all(f.tf_decodable for f in files)

  def tf_decode(path):
    contents = tf.io.read_file(path)
    # TF's default JPEG IDCT is the fast, inexact one (up to ±5 levels off libjpeg's default,
    # which Pillow and MATLAB use); ask for the accurate one so that train and eval pixels agree.
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, dtype=tf.uint8,
                                   expand_animations=False))

  def pil_decode(path):
    return tf.numpy_function(folders_lib.pil_decode, [path], tf.uint8, stateful=False)

  def decode(path, tf_decodable):
    if need_tf and need_pil:
      image = tf.cond(tf_decodable, lambda: tf_decode(path), lambda: pil_decode(path))
    elif need_tf:
      image = tf_decode(path)
    else:
      image = pil_decode(path)
    image = tf.ensure_shape(image, [None, None, 3])
    return image

  return decode


# --- augmentation and cropping ----------------------------------------------------------------

def dihedral(image: tf.Tensor, k) -> tf.Tensor:
  """One of the 8 symmetries of the square: flip left-right if k >= 4, then rotate 90°·(k % 4).

  Args:
    image: [H, W, C].
    k: int in [0, 8) (Python or scalar tensor).

  Returns:
    The transformed image ([W, H, C] for odd rotations).
  """
  k = tf.convert_to_tensor(k, tf.int32)
  flipped = tf.cond(k >= 4, lambda: tf.image.flip_left_right(image), lambda: image)
  return tf.image.rot90(flipped, k % 4)


def _random_int(seed, maxval):
  return tf.random.stateless_uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)


def crop_and_degrade(hr: tf.Tensor, gt_size: int, scale: int, seed) -> tuple[tf.Tensor, tf.Tensor]:
  """Random gt_size HR crop and its MATLAB-bicubic LR (8-bit levels), both float32 [0, 1].

  Args:
    hr: uint8 [H, W, 3] with H, W >= gt_size.
    gt_size: HR crop size, a multiple of `scale`.
    scale: Downscaling factor.
    seed: Stateless seed, int [2].

  Returns:
    (lr [gt/s, gt/s, 3], hr [gt, gt, 3]).
  """
  hr = tf.convert_to_tensor(hr)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  shape = tf.shape(hr)
  top = _random_int(seeds[0], shape[0] - gt_size + 1)
  left = _random_int(seeds[1], shape[1] - gt_size + 1)
  hr = tf.cast(hr[top:top + gt_size, left:left + gt_size], tf.float32) / 255.0
  hr = tf.ensure_shape(hr, [gt_size, gt_size, 3])
  lr = imresize_lib.quantize(imresize_lib.imresize(hr, 1.0 / scale))
  return lr, hr


def crop_pair(lr: tf.Tensor, hr: tf.Tensor, gt_size: int, scale: int, seed
              ) -> tuple[tf.Tensor, tf.Tensor]:
  """Random aligned crops of a paired LR/HR image: LR at (x, y), HR at (s·x, s·y).

  Args:
    lr: uint8 [h, w, 3] with h, w >= gt_size / scale.
    hr: uint8 [H, W, 3] with H >= s·h, W >= s·w.
    gt_size: HR crop size, a multiple of `scale`.
    scale: The factor between the two.
    seed: Stateless seed, int [2].

  Returns:
    (lr [gt/s, gt/s, 3], hr [gt, gt, 3]) float32 [0, 1].
  """
  lq_size = gt_size // scale
  lr, hr = tf.convert_to_tensor(lr), tf.convert_to_tensor(hr)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  shape = tf.shape(lr)
  top = _random_int(seeds[0], shape[0] - lq_size + 1)
  left = _random_int(seeds[1], shape[1] - lq_size + 1)
  lr = lr[top:top + lq_size, left:left + lq_size]
  hr = hr[scale * top:scale * top + gt_size, scale * left:scale * left + gt_size]
  lr = tf.ensure_shape(tf.cast(lr, tf.float32) / 255.0, [lq_size, lq_size, 3])
  hr = tf.ensure_shape(tf.cast(hr, tf.float32) / 255.0, [gt_size, gt_size, 3])
  return lr, hr


def augment_pair(lr: tf.Tensor, hr: tf.Tensor, seed) -> tuple[tf.Tensor, tf.Tensor]:
  """Applies the same random dihedral transform (`dihedral`) to LR and HR."""
  k = _random_int(seed, 8)
  return dihedral(lr, k), dihedral(hr, k)


# --- sources -------------------------------------------------------------------------------------

def _shard(items: list, input_context, what: str) -> list:
  if input_context is None or input_context.num_input_pipelines <= 1:
    return items
  shard = items[input_context.input_pipeline_id::input_context.num_input_pipelines]
  if not shard:
    raise DataError(f"{what}: {len(items)} item(s) cannot be sharded over "
                    f"{input_context.num_input_pipelines} input pipelines")
  return shard


def folder_source(data_config, scale: int, gt_size: int, input_context):
  """(dataset of source elements, decode fn → dict, count)."""
  train_dir = data_config["train_dir"]
  lr_dir = data_config["train_lr_dir"]
  hr_files, _ = scan_images(train_dir)
  if lr_dir:
    lr_files, _ = scan_images(lr_dir)
    pairs = pair_images(hr_files, lr_files, scale)
    lq_size = gt_size // scale
    kept = [(lr, hr) for lr, hr in pairs if min(lr.height, lr.width) >= lq_size]
    for lr, _ in pairs:
      if min(lr.height, lr.width) < lq_size:
        logging.warning("Skipping %s: %dx%d is smaller than the %d LR crop", lr.path, lr.width,
                        lr.height, lq_size)
    kept = _shard(kept, input_context, train_dir)
    decode = _make_decoder([f for pair in kept for f in pair])
    elements = tf.data.Dataset.from_tensor_slices((
        [lr.path for lr, _ in kept], [lr.tf_decodable for lr, _ in kept],
        [hr.path for _, hr in kept], [hr.tf_decodable for _, hr in kept]))

    def decode_pair(lr_path, lr_tf, hr_path, hr_tf):
      return {"lr": decode(lr_path, lr_tf), "hr": decode(hr_path, hr_tf)}

    return elements, decode_pair, len(kept)

  files = drop_small(hr_files, gt_size, train_dir)
  if not files:
    raise DataError(f"{train_dir}: no readable image of at least {gt_size}x{gt_size}")
  files = _shard(files, input_context, train_dir)
  decode = _make_decoder(files)
  elements = tf.data.Dataset.from_tensor_slices(
      ([f.path for f in files], [f.tf_decodable for f in files]))
  return elements, lambda path, native: {"hr": decode(path, native)}, len(files)


def tfrecord_source(pattern: str, gt_size: int, input_context, stream: bool, seed: int):
  """Records of the shards matching `pattern`, without counting them (no pass over the data).

  With `stream` (no cache) the shard files are shuffled every epoch and interleaved, and the
  returned dataset is already infinite.
  """
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise DataError(f"{pattern!r}: no TFRecord files match")
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  if len(files) < num_pipelines:
    # Fewer files than pipelines: shard records, in the same file order on every pipeline.
    records = tf.data.TFRecordDataset(files).shard(num_pipelines,
                                                   input_context.input_pipeline_id)
  else:
    files = _shard(files, input_context, pattern)
    if stream:
      records = tf.data.Dataset.from_tensor_slices(files).shuffle(
          len(files), seed=seed, reshuffle_each_iteration=True).repeat().interleave(
              tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
      records = tf.data.TFRecordDataset(files)

  def big_enough(serialized):
    ex = tf.io.parse_single_example(serialized, tfrecords.FEATURES)
    ok = tf.logical_and(ex["height"] >= gt_size, ex["width"] >= gt_size)
    if tf.logical_not(ok):  # autograph turns this into a tf.cond: warn about each skipped record
      tf.print("WARNING: skipping TFRecord image", ex["name"], "smaller than", gt_size,
               output_stream=sys.stderr)
    return ok

  def decode(serialized):
    ex = tf.io.parse_single_example(serialized, tfrecords.FEATURES)
    image = tf.io.decode_png(ex["image"], channels=3, dtype=tf.uint8)
    return {"hr": tf.ensure_shape(image, [None, None, 3])}

  return records.filter(big_enough), decode, None


# --- the training dataset --------------------------------------------------------------------

def decoded_images(data_config, scale: int, gt_size: int, input_context, seed: int
                   ) -> tf.data.Dataset:
  """The infinite, shuffled stream of decoded training images ({"hr"} or {"lr", "hr"} uint8).

  The part of the input pipeline before cropping, shared with the Real-ESRGAN pipeline
  (`esrgan_tf.data.realesrgan`): TFRecord shards or a folder, sharded by input pipeline,
  decoded once and cached (`cache`) or streamed, shuffled with `shuffle_buffer`.
  """
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  pattern = data_config["tfrecords"]
  cache = bool(data_config["cache"])
  if pattern:
    elements, decode, count = tfrecord_source(pattern, gt_size, input_context, not cache, seed)
  else:
    elements, decode, count = folder_source(data_config, scale, gt_size, input_context)
    logging.info("Training data: %d image(s) for input pipeline %d", count, pipeline_id)

  buffer = int(data_config["shuffle_buffer"]) or _DEFAULT_SHUFFLE_BUFFER
  buffer = max(1, min(buffer, count) if count else buffer)
  autotune = tf.data.AUTOTUNE

  if cache:
    ds = elements.map(decode, num_parallel_calls=autotune, deterministic=True)
    # Safety net for files that pass the up-front check but fail to decode (logged, skipped).
    ds = ds.ignore_errors(log_warning=True).cache()
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  else:
    ds = elements.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(decode, num_parallel_calls=autotune, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)
  return ds


def make_train_dataset(data_config, scale: int, batch_size: int, input_context=None,
                       seed: int | None = None) -> tf.data.Dataset:
  """The training `tf.data.Dataset` of (lr, hr) float32 batches in [0, 1].

  Args:
    data_config: `config.data` (train_dir, train_lr_dir, tfrecords, gt_size, augment, cache,
      shuffle_buffer, and optionally color_augment and color; see the shared config schema).
    scale: Upscaling factor (config.model.scale).
    batch_size: Batch size of this pipeline (per replica under a strategy).
    input_context: A `tf.distribute.InputContext` (from
      `strategy.distribute_datasets_from_function`): images are sharded by
      `input_pipeline_id` over `num_input_pipelines`.
    seed: Makes shuffling, crops and augmentation reproducible; None = a random seed.

  Returns:
    An infinite dataset of (lr [B, gt/s, gt/s, 3], hr [B, gt, gt, 3]) float32.

  Raises:
    DataError: Bad gt_size/scale, missing or empty sources, paired size mismatches.
  """
  _check_fields(data_config, TRAIN_FIELDS)
  gt_size = int(data_config["gt_size"])
  scale = int(scale)
  if scale < 1 or gt_size <= 0 or gt_size % scale:
    raise DataError(f"gt_size ({gt_size}) must be a positive multiple of the scale ({scale})")
  if batch_size < 1:
    raise DataError(f"batch_size must be >= 1, got {batch_size}")
  if seed is None:
    seed = random.randrange(2 ** 31)
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  ds = decoded_images(data_config, scale, gt_size, input_context, seed)
  augment = bool(data_config["augment"])
  pipeline_seed = tf.constant(seed * 1000 + pipeline_id, tf.int64)

  def make_example(index, example):
    seeds = tf.random.experimental.stateless_split(tf.stack([pipeline_seed, index]), 2)
    if "lr" in example:
      lr, hr = crop_pair(example["lr"], example["hr"], gt_size, scale, seeds[0])
    else:
      lr, hr = crop_and_degrade(example["hr"], gt_size, scale, seeds[0])
    if augment:
      lr, hr = augment_pair(lr, hr, seeds[1])
    return lr, hr

  autotune = tf.data.AUTOTUNE
  ds = ds.enumerate().map(make_example, num_parallel_calls=autotune, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  if data_config.get("color_augment", False):
    from esrgan_tf.data import augment  # pylint: disable=g-import-not-at-top  (imports data)
    ds = augment.color_augmented_dataset(ds, seed * 1000 + pipeline_id + 1,
                                         **augment.options(data_config))
  return ds.prefetch(autotune)


# --- validation ----------------------------------------------------------------------------------

def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom/right so that H and W are multiples of `scale` (BasicSR `mod_crop`)."""
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
  """MATLAB-bicubic ×1/scale of a [0, 1] float image, rounded to 8-bit levels (numpy)."""
  lr = imresize_lib.quantize(imresize_lib.imresize(np.asarray(hr, np.float32), 1.0 / scale))
  return lr.numpy()


def load_validation_set(data_config, scale: int
                        ) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """Full validation images, deterministic (sorted by name).

  Args:
    data_config: `config.data` (val_dir, val_lr_dir, val_max_images).
    scale: Upscaling factor.

  Returns:
    [(name, lr float32 [h, w, 3], hr float32 [s·h, s·w, 3])] in [0, 1]. HR is cropped to a
    multiple of the scale; LR is the given paired image or the MATLAB bicubic of the HR.

  Raises:
    DataError: Missing folder, no readable image, paired size mismatches.
  """
  _check_fields(data_config, VALIDATION_FIELDS)
  val_dir = data_config["val_dir"]
  lr_dir = data_config["val_lr_dir"]
  limit = int(data_config["val_max_images"])
  hr_files, _ = scan_images(val_dir)
  if not hr_files:
    raise DataError(f"{val_dir}: no readable validation image")
  if lr_dir:
    lr_files, _ = scan_images(lr_dir)
    items = [(hr.key, lr.path, hr.path) for lr, hr in pair_images(hr_files, lr_files, scale)]
  else:
    items = [(hr.key, None, hr.path) for hr in hr_files
             if min(hr.height, hr.width) >= scale]
  if limit > 0:
    items = items[:limit]
  result = []
  for name, lr_path, hr_path in items:
    hr = mod_crop(read_image_array(hr_path), scale).astype(np.float32) / 255.0
    if lr_path is None:
      lr = degrade(hr, scale)
    else:
      lr = read_image_array(lr_path).astype(np.float32) / 255.0
      hr = hr[:scale * lr.shape[0], :scale * lr.shape[1]]
    result.append((name, lr, hr))
  return result
