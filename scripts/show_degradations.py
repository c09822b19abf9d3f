"""Writes a grid of Real-ESRGAN-degraded LRs of one photo, to tune the degradation ranges by eye.

  python scripts/show_degradations.py --output=/tmp/degradations.png [--image=photo.png]
      [--num=16 --columns=4 --seed=0 --scale=4 --crop_pad_size=400 --zoom=2]

Tile 0 (top left) is the plain bicubic downscale of the centre crop, for reference; the others
are `esrgan_tf.data.realesrgan.degrade` of it with seeds (seed, 1..num-1) and the default
options of Real-ESRGAN's train_realesrnet_x4plus.yml.
"""

import os
import sys

from absl import app, flags

_IMAGE = flags.DEFINE_string("image", None, "Photo (default: the bundled samples/val/chelsea.png).")
_OUTPUT = flags.DEFINE_string("output", None, "Output PNG.", required=True)
_NUM = flags.DEFINE_integer("num", 16, "Number of tiles (the first is the bicubic reference).")
_COLUMNS = flags.DEFINE_integer("columns", 4, "Tiles per row.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the degradations.")
_SCALE = flags.DEFINE_integer("scale", 4, "Downscaling factor.")
_CROP = flags.DEFINE_integer("crop_pad_size", 400, "Centre crop (reflect-padded if larger).")
_ZOOM = flags.DEFINE_integer("zoom", 2, "Pixel-repeat enlargement of each tile.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing output file.")


def main(argv):
  del argv
  from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
  from esrgan_tf.data import realesrgan as rd  # pylint: disable=g-import-not-at-top
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  if _NUM.value < 1 or _COLUMNS.value < 1 or _ZOOM.value < 1:
    sys.exit("--num, --columns and --zoom must be >= 1")
  if os.path.exists(_OUTPUT.value) and not _OVERWRITE.value:
    sys.exit(f"{_OUTPUT.value}: exists (pass --overwrite to replace it)")
  path = _IMAGE.value or os.path.join(SAMPLES_DIR, "val", "chelsea.png")
  try:
    photo = image_io.read_image(path)
  except image_io.ImageError as e:
    sys.exit(str(e))
  config = rd.default_degradation_config()
  config.crop_pad_size = _CROP.value
  config.gt_size = min(config.gt_size, _CROP.value)
  try:
    rd.validate_config(config, _SCALE.value)
  except rd.data_lib.DataError as e:
    sys.exit(f"bad options: {e}")
  grid = rd.degradation_grid(photo.color, _NUM.value, _COLUMNS.value, _SEED.value, config,
                             _SCALE.value, _ZOOM.value)
  out = image_io.LoadedImage(path="<grid>", format="PNG", mode="RGB", color=grid, alpha=None,
                            bit_depth=8)
  try:
    image_io.write_image(_OUTPUT.value, out, overwrite=_OVERWRITE.value)
  except image_io.ImageError as e:
    sys.exit(str(e))
  print(f"wrote {_OUTPUT.value}: {grid.shape[1]}x{grid.shape[0]}, {_NUM.value} tiles of {path}")


if __name__ == "__main__":
  app.run(main)
