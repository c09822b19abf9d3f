r"""esrgan-eval: PSNR/SSIM of a model against HR images, with a MATLAB-bicubic baseline.

  esrgan-eval --model=generator.keras --hr=Set5/HR --scale=4 --crop_border=4 --y_channel
  esrgan-eval --model=export/ --hr=DIV2K_valid_HR --lr=DIV2K_valid_LR_bicubic/X4 --json=r.json

Without --lr, each LR image is the MATLAB-exact bicubic ×1/scale of the HR (cropped to a
multiple of the scale), rounded to 8 bits, as benchmark LR sets are made. Metrics follow
BasicSR's conventions (esrgan_tf.metrics).
"""

import sys

from absl import app
from absl import flags

from esrgan_tf import cli
from esrgan_tf import data
from esrgan_tf import metrics
from esrgan_tf import loading
from esrgan_tf import precision as precision_lib
from esrgan_tf import upscaler as upscaler_lib

_MODEL = flags.DEFINE_string("model", None, "Any model esrgan_tf.loading.load_upscaler takes.")
_HR = flags.DEFINE_string("hr", None, "Folder of HR images (recursive).")
_LR = flags.DEFINE_string("lr", "", "Folder of matching LR images; default: bicubic of --hr.")
_SCALE = flags.DEFINE_integer("scale", None, "Upscaling factor; default: the model's.")
_CROP = flags.DEFINE_integer("crop_border", None, "Border pixels ignored; default: the scale.")
_Y = flags.DEFINE_bool("y_channel", False, "Measure on the BT.601 Y channel.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_TILE = flags.DEFINE_integer("tile", 0, "Tile size in LR pixels; 0 = whole image at once.")
_OVERLAP = flags.DEFINE_integer("tile_overlap", 16, "Tile overlap in LR pixels.")
_PRECISION = flags.DEFINE_enum(
    "precision", "auto", list(precision_lib.PRECISION_FLAG_VALUES),
    "Compute precision of Keras/workdir/checkpoint models: auto = bfloat16 where the CPU has "
    "native bf16 (AVX512_BF16 / AMX-BF16), else float32 (bf16 moves PSNR by ~0.01 dB).")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images; 0 = all.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _MODEL.value or not _HR.value:
    raise app.UsageError("--model and --hr are required")
  try:
    data.list_image_files(_HR.value)  # a bad folder fails before the model loads
    model = loading.load_upscaler(_MODEL.value,
                                  precision=precision_lib.resolve_precision(_PRECISION.value))
    scale = _SCALE.value or model.scale
    if scale != model.scale:
      raise ValueError(f"--scale={scale} but {_MODEL.value} upscales ×{model.scale}")
    crop = scale if _CROP.value is None else _CROP.value
    pairs = data.load_validation_set(
        {"val_dir": _HR.value, "val_lr_dir": _LR.value, "val_max_images": _MAX_IMAGES.value},
        scale)
    result = metrics.evaluate_upscaler(model, pairs, crop_border=crop, y_channel=_Y.value,
                                       tile=_TILE.value, overlap=_OVERLAP.value)
  except (upscaler_lib.ModelError, data.DataError, ValueError) as e:
    sys.exit(f"esrgan-eval: {e}")
  result.update(model=_MODEL.value, hr=_HR.value, lr=_LR.value or None, scale=scale)
  print(metrics.format_table(result))
  if _JSON.value:
    metrics.save_json(_JSON.value, result)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
