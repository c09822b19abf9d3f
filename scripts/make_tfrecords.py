"""Packs a folder of HR images into sharded TFRecords for `config.data.tfrecords`.

  python scripts/make_tfrecords.py --input_dir=DIV2K_train_HR --output_pattern=gs://b/div2k \
      --num_shards=16
  # then: --config.data.tfrecords='gs://b/div2k-*.tfrecord'

Each example holds the lossless PNG bytes of the RGB image, its name and size. Unreadable
images are logged and skipped.
"""

import sys

from absl import app, flags

from esrgan_tf.data import folders, tfrecords

_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Folder of images (recursive).")
_OUTPUT_PATTERN = flags.DEFINE_string(
    "output_pattern", None, "Output prefix: shards are PREFIX-00000-of-0000N.tfrecord.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Number of shard files.")
flags.mark_flags_as_required(["input_dir", "output_pattern"])


def main(argv):
  del argv
  try:
    paths = tfrecords.write_tfrecords(_INPUT_DIR.value, _OUTPUT_PATTERN.value, _NUM_SHARDS.value)
  except folders.DataError as e:
    sys.exit(f"make_tfrecords: {e}")
  print(f"Wrote {len(paths)} shard(s); train with "
        f"--config.data.tfrecords='{_OUTPUT_PATTERN.value}-*.tfrecord'")


if __name__ == "__main__":
  app.run(main)
