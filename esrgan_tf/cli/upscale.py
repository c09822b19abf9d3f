r"""esrgan-upscale: upscale image files with any supported model, tiled with blended seams.

  esrgan-upscale --model=generator.keras --input=photos/,extra/*.jpg --output=results/
  esrgan-upscale --server=localhost:8500 --input=cat.png --output=cat_x4.png
  esrgan-upscale --model=realesr-general-x4v3.pth --blend_with=realesr-general-wdn-x4v3.pth \
      --blend_weight=0.5 --outscale=3.5 --input=photo.jpg --output=out/

Outputs are `<stem>_out.<ext>` in the --output directory (or --output itself for one input
file). Existing outputs are skipped, not replaced, unless --overwrite; skips are not failures.
Prints "N upscaled, M failed[, K skipped ...]"; exit 1 if any file failed or nothing matched.

File names containing commas: give each with its own --input (a value naming an existing path is
taken whole), or list them one per line in --input_list FILE. Inputs that are not regular files
(FIFOs, sockets, devices) are refused without being read.
"""

import os
import sys

from absl import flags
from tqdm import tqdm

from esrgan_tf import cli
from esrgan_tf.core import precision as precision_lib
from esrgan_tf.images import image_io
from esrgan_tf.inference import batch as batch_lib
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.inference import tiling

_INPUT = flags.DEFINE_multi_string(
    "input", None,
    "Image files, directories and globs; repeat --input for several. A value that names an "
    "existing path is taken whole (commas included); otherwise it is split on commas "
    "(--input=a.png,b.png). For names with commas use one --input each, or --input_list.")
_INPUT_LIST = flags.DEFINE_string(
    "input_list", None, "A text file with one input (file, directory or glob) per line, taken "
    "verbatim (commas and spaces kept); blank lines and lines starting with # are ignored.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file (one input file) or directory.")
_RECURSIVE = flags.DEFINE_bool("recursive", False, "Descend into sub-directories of inputs.")
_MODEL = flags.DEFINE_string("model", None, ".keras, training workdir, checkpoint, SavedModel "
                             "or .tflite (esrgan_tf.inference.resolver.load_upscaler).")
_SERVER = flags.DEFINE_string("server", None, "HOST:PORT of a TF Serving gRPC endpoint.")
_MODEL_NAME = flags.DEFINE_string("model_name", "esrgan", "Model name on --server.")
_PRECISION = flags.DEFINE_enum(
    "precision", "auto", list(precision_lib.PRECISION_FLAG_VALUES),
    "Compute precision of Keras/workdir/checkpoint models: auto = bfloat16 where the CPU has "
    "native bf16 (AVX512_BF16 / AMX-BF16), else float32. SavedModels keep their export's.")
_THREADS = flags.DEFINE_integer("num_threads", None, "CPU threads (TF intra-op / TFLite).")
_TILE = flags.DEFINE_integer("tile", tiling.DEFAULT_TILE,
                             "Tile size in input pixels; 0 = whole image at once.")
_OVERLAP = flags.DEFINE_integer("tile_overlap", tiling.DEFAULT_OVERLAP,
                                "Tile overlap in input pixels (blended).")
_PRE_PAD = flags.DEFINE_integer(
    "pre_pad", tiling.DEFAULT_PRE_PAD,
    "Reflect-pad each image by this many input pixels on every side before upscaling and crop "
    "the padding off the output (Real-ESRGAN's --pre_pad, which pads bottom/right only and "
    "defaults to 0): the model sees continued content instead of its zero padding at the "
    "image's edges. 0 = off.")
_BATCH = flags.DEFINE_integer("tile_batch", 1, "Tiles per model call (1 keeps memory lowest).")
_ALPHA = flags.DEFINE_enum("alpha", "bicubic", list(image_io.ALPHA_MODES),
                           "Alpha channel upscaling: bicubic, or through the model.")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels", None,
    "Largest input W×H, checked from the header before decoding; 0 = any. Default: sized by "
    "the output's memory (the whole output is held in memory, ~24 B per output pixel): "
    f"{batch_lib.OUTPUT_MEMORY_BUDGET >> 30} GiB of output, i.e. "
    f"{batch_lib.output_bounded_max_pixels(4):,} input pixels at ×4, "
    f"{batch_lib.output_bounded_max_pixels(2):,} at ×2.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing outputs (else skip them).")
_SUFFIX = flags.DEFINE_string("suffix", batch_lib.DEFAULT_SUFFIX,
                              "Appended to output names ('{scale}' = the model's scale).")
_FORMAT = flags.DEFINE_enum("format", None, ["png", "jpg", "webp", "bmp", "tiff"],
                            "Output format (default: the input's).")
_BLEND_WITH = flags.DEFINE_string(
    "blend_with", None, "Generator to blend into --model (same architecture): runs "
    "W·model + (1−W)·blend_with, W = --blend_weight (Real-ESRGAN's -dn).")
_BLEND_WEIGHT = flags.DEFINE_float("blend_weight", None, "W in [0, 1], the weight of --model "
                                   "in the blend (needs --blend_with).")
_OUTSCALE = flags.DEFINE_float("outscale", None, "Final scale F: the model output is resized "
                               "with Lanczos to (int(w·F), int(h·F)); default the model's scale.")
_MULTI_FRAME = flags.DEFINE_enum("multi_frame", "error", list(image_io.MULTI_FRAME_MODES),
                                 "Animated/multi-page inputs: fail, or upscale the first frame.")


def _err(line):
  tqdm.write(line, file=sys.stderr)  # Keeps the progress bars intact.


def _input_specs() -> list:
  """--input values (split on commas unless they name an existing path), then --input_list."""
  specs = []
  for value in _INPUT.value or ():
    if os.path.lexists(value):
      specs.append(value)
    else:
      specs.extend(part for part in value.split(",") if part)
  if _INPUT_LIST.value:
    try:
      with open(_INPUT_LIST.value, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    except (OSError, UnicodeDecodeError) as e:
      cli.fail(f"cannot read the input list ({e})", _INPUT_LIST.value)
    specs.extend(line for line in lines if line.strip() and not line.startswith("#"))
  return specs


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  specs = _input_specs()
  if not specs or not _OUTPUT.value:
    raise cli.usage("--input (or --input_list) and --output are required")
  if _MAX_PIXELS.value is not None and _MAX_PIXELS.value < 0:
    raise cli.usage(f"--max_pixels must be ≥ 0, got {_MAX_PIXELS.value}")
  if bool(_MODEL.value) == bool(_SERVER.value):
    raise cli.usage("give exactly one of --model and --server")
  if _TILE.value < 0 or _OVERLAP.value < 0 or _BATCH.value < 1:
    raise cli.usage("--tile and --tile_overlap must be ≥ 0 and --tile_batch ≥ 1")
  if _PRE_PAD.value < 0:
    raise cli.usage(f"--pre_pad must be ≥ 0, got {_PRE_PAD.value}")
  if _TILE.value and _OVERLAP.value >= _TILE.value:
    raise cli.usage(f"--tile_overlap={_OVERLAP.value} must be smaller than --tile={_TILE.value}")
  if (_BLEND_WITH.value is None) != (_BLEND_WEIGHT.value is None):
    raise cli.usage("--blend_with and --blend_weight go together")
  if _BLEND_WITH.value and not _MODEL.value:
    raise cli.usage("--blend_with needs --model (weights are blended locally)")
  if _OUTSCALE.value is not None and not _OUTSCALE.value > 0:
    raise cli.usage(f"--outscale must be positive, got {_OUTSCALE.value}")
  sources, problems = batch_lib.expand_inputs(specs, recursive=_RECURSIVE.value)
  for spec, problem in problems:
    _err(f"FAILED {spec}: {problem}")
  if not sources:
    print(f"0 upscaled, {len(problems)} failed: no input images")
    return 1
  try:
    model = batch_lib.load_model(model=_MODEL.value, server=_SERVER.value,
                                model_name=_MODEL_NAME.value,
                                precision=precision_lib.resolve_precision(_PRECISION.value),
                                num_threads=_THREADS.value, blend_with=_BLEND_WITH.value,
                                blend_weight=_BLEND_WEIGHT.value)
  except engine_lib.ModelError as e:
    cli.fail(e, _MODEL.value or _SERVER.value, context="cannot load the model")
  options = batch_lib.Options(
      tile=_TILE.value, overlap=_OVERLAP.value, batch=_BATCH.value, alpha=_ALPHA.value,
      max_pixels=(batch_lib.output_bounded_max_pixels(model.scale) if _MAX_PIXELS.value is None
                  else _MAX_PIXELS.value), multi_frame=_MULTI_FRAME.value,
      overwrite=_OVERWRITE.value, format=_FORMAT.value, outscale=_OUTSCALE.value,
      pre_pad=_PRE_PAD.value)
  scale = f"{_OUTSCALE.value:g}" if _OUTSCALE.value else model.scale
  jobs = batch_lib.plan_outputs(sources, _OUTPUT.value, scale=scale, suffix=_SUFFIX.value,
                               format=_FORMAT.value)
  summary = batch_lib.upscale_files(
      tqdm(jobs, desc="files", unit="file", disable=None), model, options, report=_err,
      progress_factory=batch_lib.tile_progress_bar)
  summary.failed[:0] = problems
  print(summary.line())
  return 1 if summary.failed else 0


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
