r"""esrgan-eval: PSNR/SSIM of a model against HR images, with a MATLAB-bicubic baseline.

  esrgan-eval --model=generator.keras --hr=Set5/HR --scale=4 --crop_border=4 --y_channel
  esrgan-eval --model=export/ --hr=DIV2K_valid_HR --lr=DIV2K_valid_LR_bicubic/X4 --json=r.json
  esrgan-eval --model=RealESRNet_x4plus --hr=Set5/HR --report=reports/set5

--report=DIR writes DIR/index.html (metrics table, and per image a crop grid LR-bicubic | SR |
HR where SR and bicubic differ most) and DIR/table.png (esrgan_tf.evaluation.report).

Without --lr, each LR image is the MATLAB-exact bicubic ×1/scale of the HR (cropped to a
multiple of the scale), rounded to 8 bits, as benchmark LR sets are made. Metrics follow
BasicSR's conventions (esrgan_tf.evaluation.metrics), at the model's native scale (there is no
--outscale here: a resized output would not be the model's prediction).
"""

from absl import flags

from esrgan_tf import cli
from esrgan_tf.core import precision as precision_lib
from esrgan_tf.inference import tiling

_MODEL = flags.DEFINE_string("model", None, "Any model spec esrgan-upscale takes.")
_HR = flags.DEFINE_string("hr", None, "Folder of HR images (recursive).")
_LR = flags.DEFINE_string("lr", "", "Folder of matching LR images; default: bicubic of --hr.")
_SCALE = flags.DEFINE_integer("scale", None, "Upscaling factor; default: the model's.")
_CROP = flags.DEFINE_integer("crop_border", None, "Border pixels ignored; default: the scale.")
_Y = flags.DEFINE_bool("y_channel", False, "Measure on the BT.601 Y channel.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_TILE = flags.DEFINE_integer("tile", 0, "Tile size in LR pixels; 0 = whole image at once.")
_OVERLAP = flags.DEFINE_integer("tile_overlap", tiling.DEFAULT_OVERLAP,
                                "Tile overlap in LR pixels.")
_REPORT = flags.DEFINE_string("report", None, "Also write an HTML report (crops, table PNG) to "
                              "this new directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --report directory.")
_BLEND_WITH = flags.DEFINE_string(
    "blend_with", None, "Generator blended into --model (same architecture): evaluates "
    "W·model + (1−W)·blend_with, W = --blend_weight (Real-ESRGAN's -dn).")
_BLEND_WEIGHT = flags.DEFINE_float("blend_weight", None, "W in [0, 1] (needs --blend_with).")
_PRECISION = flags.DEFINE_enum(
    "precision", "auto", list(precision_lib.PRECISION_FLAG_VALUES),
    "Compute precision of Keras/workdir/checkpoint models: auto = bfloat16 where the CPU has "
    "native bf16 (AVX512_BF16 / AMX-BF16), else float32 (bf16 moves PSNR by ~0.01 dB).")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images; 0 = all.")


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not _MODEL.value or not _HR.value:
    raise cli.usage("--model and --hr are required")
  if (_BLEND_WITH.value is None) != (_BLEND_WEIGHT.value is None):
    raise cli.usage("--blend_with and --blend_weight go together")
  # pylint: disable=g-import-not-at-top  (TensorFlow after cli.run has set its log level)
  from esrgan_tf.data import datasets, folders
  from esrgan_tf.evaluation import metrics
  from esrgan_tf.evaluation import report as report_lib
  from esrgan_tf.inference import blending, resolver
  from esrgan_tf.inference import engine as engine_lib
  # pylint: enable=g-import-not-at-top
  writer = None
  try:
    folders.list_image_files(_HR.value)  # a bad folder fails before the model loads
    if _REPORT.value:
      writer = report_lib.ReportWriter(_REPORT.value, overwrite=_OVERWRITE.value)
    if _BLEND_WITH.value:
      model = engine_lib.keras_upscaler(
          blending.blend_generators(_MODEL.value, _BLEND_WITH.value, _BLEND_WEIGHT.value),
          name=blending.blend_name(_MODEL.value, _BLEND_WITH.value, _BLEND_WEIGHT.value),
          precision=precision_lib.resolve_precision(_PRECISION.value))
    else:
      model = resolver.load_upscaler(
          _MODEL.value, precision=precision_lib.resolve_precision(_PRECISION.value))
    scale = _SCALE.value or model.scale
    if scale != model.scale:
      raise cli.usage(f"--scale={scale} but {_MODEL.value} upscales ×{model.scale}")
    crop = scale if _CROP.value is None else _CROP.value
    pairs = datasets.load_validation_set(
        {"val_dir": _HR.value, "val_lr_dir": _LR.value, "val_max_images": _MAX_IMAGES.value},
        scale)
    result = metrics.evaluate_upscaler(model, pairs, crop_border=crop, y_channel=_Y.value,
                                       tile=_TILE.value, overlap=_OVERLAP.value, on_image=writer)
  except BaseException as e:
    if writer is not None:
      writer.abort()  # No partial report.
    if isinstance(e, engine_lib.ModelError):
      cli.fail(e, _MODEL.value)
    if isinstance(e, (datasets.DataError, ValueError, FileExistsError)):
      cli.fail(e)
    raise
  result.update(model=_MODEL.value, hr=_HR.value, lr=_LR.value or None, scale=scale)
  if _BLEND_WITH.value:
    result.update(blend_with=_BLEND_WITH.value, blend_weight=_BLEND_WEIGHT.value)
  if writer is not None:
    print(f"report: {writer.finish(result)}")
  print(metrics.format_table(result))
  if _JSON.value:
    try:
      metrics.save_json(_JSON.value, result)
    except OSError as e:
      cli.fail(f"cannot write the results ({e.strerror or e})", _JSON.value)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
