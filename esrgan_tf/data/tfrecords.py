"""Sharded TFRecords of HR images: the format `config.data.tfrecords` reads.

Each tf.train.Example holds the lossless PNG bytes of an RGB 8-bit image, its name and size
(`FEATURES`). Written by `write_tfrecords` / scripts/make_tfrecords.py, read for training by
`esrgan_tf.data.datasets.make_train_dataset` (through tf.io.gfile, so gs:// paths work).
"""

from __future__ import annotations

import io
import os

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from esrgan_tf.data import folders

# Feature keys of the TFRecord examples.
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),  # PNG bytes, RGB 8-bit
    "name": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def encode_example(name: str, image: np.ndarray) -> bytes:
  """A serialized tf.train.Example with the PNG bytes of a uint8 [H, W, 3] image."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  example = tf.train.Example(features=tf.train.Features(feature={
      "image": _bytes_feature(buf.getvalue()),
      "name": _bytes_feature(name.encode()),
      "height": _int_feature(image.shape[0]),
      "width": _int_feature(image.shape[1]),
  }))
  return example.SerializeToString()


def shard_paths(output_pattern: str, num_shards: int) -> list[str]:
  """Shard file names: PREFIX-00000-of-00004.tfrecord, ... for output_pattern PREFIX."""
  return [f"{output_pattern}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def write_tfrecords(input_dir: str, output_pattern: str, num_shards: int) -> list[str]:
  """Writes the readable images under `input_dir` into `num_shards` TFRecord files.

  Images are assigned round-robin in sorted order and re-encoded as lossless RGB PNG. Shards are
  written to temporary names and renamed at the end, so a failure leaves no partial shard.

  Args:
    input_dir: Folder of images (recursive; unreadable ones are logged and skipped).
    output_pattern: Path prefix (local or gs://); see `shard_paths`. Read them back with
      `config.data.tfrecords = PREFIX + "-*.tfrecord"`.
    num_shards: Number of files, 1 ≤ num_shards ≤ number of images.

  Returns:
    The shard paths.

  Raises:
    DataError: No readable image, bad num_shards, or an unwritable output location.
  """
  files, _ = folders.scan_images(input_dir)
  if not files:
    raise folders.DataError(f"{input_dir}: no readable image to write")
  if not 1 <= num_shards <= len(files):
    raise folders.DataError(
        f"num_shards must be between 1 and the number of images ({len(files)}), "
                    f"got {num_shards}")
  parent = os.path.dirname(output_pattern)
  if parent and not tf.io.gfile.isdir(parent):
    raise folders.DataError(f"{parent}: output directory does not exist")
  paths = shard_paths(output_pattern, num_shards)
  tmp_paths = [p + ".tmp" for p in paths]
  writers = [tf.io.TFRecordWriter(p) for p in tmp_paths]
  try:
    for i, f in enumerate(files):
      writers[i % num_shards].write(encode_example(f.key, folders.read_image_array(f.path)))
    for w in writers:
      w.close()
    for tmp, final in zip(tmp_paths, paths):
      tf.io.gfile.rename(tmp, final, overwrite=True)
  except BaseException:
    for w in writers:
      w.close()
    for tmp in tmp_paths:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)
    raise
  logging.info("Wrote %d image(s) into %d shard(s): %s", len(files), num_shards, paths[0])
  return paths


def read_tfrecords(pattern: str) -> list[tuple[str, np.ndarray]]:
  """All (name, uint8 image) of the shards matching `pattern`, in file order (for checks)."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise folders.DataError(f"{pattern!r}: no TFRecord files match")
  out = []
  for serialized in tf.data.TFRecordDataset(files):
    ex = tf.io.parse_single_example(serialized, FEATURES)
    out.append((ex["name"].numpy().decode(), tf.io.decode_png(ex["image"], channels=3).numpy()))
  return out
