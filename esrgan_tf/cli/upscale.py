r"""esrgan-upscale: upscale images and videos with any supported model, tiled with blended seams.

  esrgan-upscale --model=generator.keras --input=photos/,extra/*.jpg --output=results/
  esrgan-upscale --server=localhost:8500 --input=cat.png --output=cat_x4.png
  esrgan-upscale --model=realesr-general-x4v3.pth --blend_with=realesr-general-wdn-x4v3.pth \
      --blend_weight=0.5 --outscale=3.5 --input=photo.jpg --output=out/
  esrgan-upscale --model=multihead.keras --head=x2 --input=photo.jpg --output=out/
  esrgan-upscale --model=runs/psnr_gan/ --blend_heads=psnr:0.3,gan:0.7 --input=photo.jpg \
      --output=out/
  esrgan-upscale --model=realesr-animevideov3 --input=clip.mkv --output=out/   # `video` extra

Outputs are `<stem>_out.<ext>` in the --output directory (or --output itself for one input
file); a video keeps its container's extension (an --output file name picks the container), its
tracks, timing and colour, and an interrupted video resumes when the same command is rerun.
Existing outputs are skipped, not replaced, unless --overwrite; skips are not failures.
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
from esrgan_tf.cli import shared_flags, video_flags
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import batch as batch_lib

_INPUT = flags.DEFINE_multi_string(
    "input", None,
    "Image and video files, directories and globs; repeat --input for several. A value that "
    "names an existing path is taken whole (commas included); otherwise it is split on commas "
    "(--input=a.png,b.png). For names with commas use one --input each, or --input_list.")
_INPUT_LIST = flags.DEFINE_string(
    "input_list", None, "A text file with one input (file, directory or glob) per line, taken "
    "verbatim (commas and spaces kept); blank lines and lines starting with # are ignored.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file (one input file) or directory.")
_RECURSIVE = flags.DEFINE_bool("recursive", False, "Descend into sub-directories of inputs.")
_MODEL = shared_flags.define_model_flags(verb="runs")
_TILES = shared_flags.define_tile_flags()
_OUT = shared_flags.define_output_flags()


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
  if video_flags.list_encoders_requested():
    return video_flags.print_encoders()
  specs = _input_specs()
  if not specs or not _OUTPUT.value:
    raise cli.usage("--input (or --input_list) and --output are required")
  _OUT.check()
  model_spec, tiles = _MODEL.spec(), _TILES.spec()
  sources, problems = batch_lib.expand_inputs(specs, recursive=_RECURSIVE.value,
                                             extensions=video_flags.media_extensions())
  for source, problem in problems:
    _err(f"FAILED {source}: {problem}")
  if not sources:
    print(f"0 upscaled, {len(problems)} failed: no input images")
    return 1
  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
  try:
    model = resolver.load_engine(model_spec)
  except ModelError as e:
    cli.fail(e, _MODEL.given(), context="cannot load the model")
  options = _OUT.options(tiles, model.scale)
  scale = batch_lib.naming_scale(model.scale, _OUT.outscale.value)

  def plan(images):
    return batch_lib.plan_outputs(images, _OUTPUT.value, scale=scale, suffix=_OUT.suffix.value,
                                 format=_OUT.format.value)

  videos = batch_lib.Summary()  # Videos first (found by probing), then the images.
  try:
    sources = video_flags.run_videos(sources, plan, model, options, videos, _err)
  except KeyboardInterrupt:
    return 130
  jobs = plan(sources) if sources else []
  summary = batch_lib.upscale_files(
      tqdm(jobs, desc="files", unit="file", disable=None), model, options, report=_err,
      progress_factory=batch_lib.tile_progress_bar)
  summary.failed[:0] = problems + videos.failed
  summary.upscaled[:0] = videos.upscaled
  summary.skipped[:0] = videos.skipped
  print(summary.line())
  return 1 if summary.failed else 0


def run():
  video_flags.register_help()
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
