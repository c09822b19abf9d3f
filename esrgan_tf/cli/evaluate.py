r"""esrgan-eval: PSNR/SSIM of a model against HR images, with a MATLAB-bicubic baseline.

  esrgan-eval --model=generator.keras --hr=Set5/HR --scale=4 --crop_border=4 --y_channel
  esrgan-eval --model=export/ --hr=DIV2K_valid_HR --lr=DIV2K_valid_LR_bicubic/X4 --json=r.json
  esrgan-eval --model=RealESRNet_x4plus --hr=Set5/HR --report=reports/set5

  esrgan-eval --model=RealESRGAN_x4plus --lr=my_photos --report=reports/mine   # no HR: NIQE

Without --hr, --lr is a folder of photos with no ground truth: each is scored by NIQE (no
reference, lower = more natural; BasicSR's `calculate_niqe`, esrgan_tf.evaluation.niqe) for the
model's output and for MATLAB bicubic, per image and mean. --niqe adds NIQE to a --hr run.

--report=DIR writes DIR/index.html (metrics table, and per image a crop grid LR-bicubic | SR |
HR where SR and bicubic differ most) and DIR/table.png (esrgan_tf.evaluation.report).

A multi-head model (one trunk, several outputs) is evaluated head by head, each at its own scale
(--scale keeps the heads of that scale; --lr needs heads of one scale): one table per head,
--json holds {"heads": {name: result}}, --report writes DIR/<head>/. --head=NAME evaluates one
head, --blend_heads=psnr:0.3,gan:0.7 a blend of heads of one scale.

Without --lr, each LR image is the MATLAB-exact bicubic ×1/scale of the HR (cropped to a
multiple of the scale), rounded to 8 bits, as benchmark LR sets are made. Metrics follow
BasicSR's conventions (esrgan_tf.evaluation.metrics), at the model's native scale (there is no
--outscale here: a resized output would not be the model's prediction).
"""

import os

from absl import flags

from esrgan_tf import cli
from esrgan_tf.cli import shared_flags
from esrgan_tf.core.errors import ModelError

_MODEL = shared_flags.define_model_flags(server=False, threads=False, verb="evaluates",
                                         precision_note=" (bf16 moves PSNR by ~0.01 dB)")
_TILES = shared_flags.define_tile_flags(tile_default=0, batch=False, pre_pad=False)
_HR = flags.DEFINE_string("hr", None, "Folder of HR images (recursive); without it, --lr photos "
                          "are scored by NIQE (no reference).")
_LR = flags.DEFINE_string("lr", "", "Folder of matching LR images; default: bicubic of --hr. "
                          "Without --hr: the photos to score by NIQE.")
_NIQE = flags.DEFINE_bool("niqe", False, "With --hr: also score NIQE (no reference) of the SR and "
                          "bicubic outputs (~1 s per megapixel).")
_SCALE = flags.DEFINE_integer("scale", None, "Upscaling factor; default: the model's.")
_CROP = flags.DEFINE_integer("crop_border", None, "Border pixels ignored; default: the scale.")
_Y = flags.DEFINE_bool("y_channel", False, "Measure on the BT.601 Y channel.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_REPORT = flags.DEFINE_string("report", None, "Also write an HTML report (crops, table PNG) to "
                              "this new directory.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --report directory.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images; 0 = all.")


def _load_models(resolver, spec) -> dict:
  """{head or None: Engine} to evaluate (see the module docstring)."""
  models = resolver.load_engines(spec)
  if None in models or not _SCALE.value:
    return models
  return {head: model for head, model in models.items() if model.scale == _SCALE.value}


def _check_scales(models: dict, name: str) -> None:
  """--scale and --lr against the models' scales (usage errors)."""
  scales = sorted({model.scale for model in models.values()})
  if not models:  # --scale filtered every head out
    raise cli.usage(f"--scale={_SCALE.value} but no head of {name} upscales ×{_SCALE.value}")
  if None in models and _SCALE.value and _SCALE.value != scales[0]:
    raise cli.usage(f"--scale={_SCALE.value} but {name} upscales ×{scales[0]}")
  if _LR.value and len(scales) > 1:
    raise cli.usage(f"--lr holds LR images of one scale, but the heads of {name} upscale "
                    f"×{', ×'.join(map(str, scales))}; choose one with --head or --scale")


def _evaluate(model, spec, tiles, writer, datasets, metrics, folders) -> dict:
  scale = model.scale
  crop = scale if _CROP.value is None else _CROP.value
  tiles = None if tiles.whole else tiles
  if _HR.value:
    pairs = datasets.load_validation_set(
        {"val_dir": _HR.value, "val_lr_dir": _LR.value, "val_max_images": _MAX_IMAGES.value},
        scale)
    result = metrics.evaluate(model, pairs, crop_border=crop, y_channel=_Y.value, tiles=tiles,
                              on_image=writer, niqe=_NIQE.value)
  else:
    result = metrics.evaluate_no_reference(model, _lr_photos(folders), crop_border=crop,
                                           tiles=tiles, on_image=writer)
  result.update(model=spec.model, hr=_HR.value or None, lr=_LR.value or None, scale=scale)
  if spec.blend_with:
    result.update(blend_with=spec.blend_with, blend_weight=spec.blend_weight)
  for key in ("head", "blend_heads"):
    if key in model.info:
      result[key] = model.info[key]
  return result


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not (_HR.value or _LR.value):
    raise cli.usage("--hr (or, to score by NIQE without reference, --lr) is required")
  spec, tiles = _MODEL.spec(), _TILES.spec()
  # pylint: disable=g-import-not-at-top  (TensorFlow after cli.run has set its log level)
  from esrgan_tf.data import datasets, folders
  from esrgan_tf.evaluation import metrics
  from esrgan_tf.evaluation import report as report_lib
  from esrgan_tf.inference import resolver
  # pylint: enable=g-import-not-at-top
  writers, results = {}, {}
  try:
    folders.list_image_files(_HR.value or _LR.value)  # fails before the model loads
    models = _load_models(resolver, spec)
    _check_scales(models, spec.name)
    for head, model in models.items():
      if _REPORT.value:
        directory = _REPORT.value if head is None else os.path.join(_REPORT.value, head)
        writers[head] = report_lib.ReportWriter(directory, overwrite=_OVERWRITE.value)
      results[head] = _evaluate(model, spec, tiles, writers.get(head), datasets, metrics,
                                folders)
  except BaseException as e:
    for writer in writers.values():
      writer.abort()  # No partial report.
    if isinstance(e, ModelError):
      cli.fail(e, _MODEL.given())
    if isinstance(e, (datasets.DataError, ValueError, FileExistsError)):
      cli.fail(e)
    raise
  for head, result in results.items():
    if head is not None:
      print(f"head {head} (×{result['scale']}):")
    if head in writers:
      print(f"report: {writers[head].finish(result)}")
    print(metrics.format_table(result))
  output = results[None] if None in results else {"model": spec.model, "heads": results}
  if _JSON.value:
    try:
      metrics.save_json(_JSON.value, output)
    except OSError as e:
      cli.fail(f"cannot write the results ({e.strerror or e})", _JSON.value)


def _lr_photos(folders):
  """(name, float [0, 1] RGB) of the --lr folder (unreadable files logged and skipped)."""
  files, _ = folders.scan_images(_LR.value)
  if _MAX_IMAGES.value > 0:
    files = files[:_MAX_IMAGES.value]
  for f in files:
    yield f.key, folders.read_image_array(f.path).astype("float32") / 255.0


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
