r"""esrgan-beam: upscale image files on Apache Beam (Dataflow, Flink, Spark or this machine).

  esrgan-beam --model=RealESRGAN_x4plus --input='/photos/*.jpg' --output=/photos_x4/
  esrgan-beam --model=gs://my-bucket/models/x4.pth --input='gs://my-bucket/scans/**.png' \
      --output=gs://my-bucket/scans_x4/ --runner=DataflowRunner --project=my-project \
      --region=europe-west1 --temp_location=gs://my-bucket/tmp/ --setup_file=./pyproject.toml

Inputs are file patterns on any file system Beam supports (local, gs://, s3://, hdfs://;
`*` stays in one directory, `**` descends), comma-separated or one per line in --input_list; a
local directory means its images. Outputs are named as esrgan-upscale names them,
`<stem>_out.<ext>` in --output, with byte-identical contents. Existing outputs are skipped unless
--overwrite, so a rerun after a partial run does only what is missing. Files that cannot be
done (corrupt, too large, unsupported) do not fail the job: each is a JSON line {"input",
"error"} in --failures (default <output>/failures.jsonl). Prints "N upscaled, M failed[, K
skipped ...]"; exit 1 if any input failed.

Every flag that is not esrgan-beam's own is a Beam pipeline option (--runner,
--direct_num_workers, --project, --setup_file, --sdk_container_image, ...); an argument that is
neither is refused. On a cluster --model must be readable by the workers: a registry name (each
worker downloads it), a URL (gs://..., copied to each worker) or a path inside the container.
"""

import dataclasses
import logging
import os
import sys

from absl import flags

from esrgan_tf import cli
from esrgan_tf.cli import shared_flags
from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import batch as batch_lib

_INPUT = flags.DEFINE_multi_string(
    "input", None, "File patterns (local or any Beam file system: gs://, s3://, ...); "
    "comma-separated or repeated. A local directory means its image files.")
_INPUT_LIST = flags.DEFINE_string(
    "input_list", None, "A text file (local or on a Beam file system) with one pattern per "
    "line, taken verbatim; blank lines and lines starting with # are ignored.")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory or prefix (local or a URL).")
_FAILURES = flags.DEFINE_string(
    "failures", None, "JSON-lines file of the inputs that failed, {\"input\", \"error\"} per "
    "line (default: <output>/failures.jsonl; empty when nothing failed).")
_MODEL = shared_flags.define_model_flags(server=False, verb="runs")
_LARGE_MODEL = flags.DEFINE_bool(
    "large_model", False, "Load one model per machine and share it between the worker "
    "processes (Beam's share_model_across_processes) instead of one per process.")
_TILES = shared_flags.define_tile_flags()
_OUT = shared_flags.define_output_flags()


def _patterns(read_text) -> list:
  """--input values (split on commas unless a local path of that name exists, as in
  esrgan-upscale), then the lines of --input_list."""
  specs = []
  for value in _INPUT.value or ():
    specs += [value] if os.path.lexists(value) else [part for part in value.split(",") if part]
  if _INPUT_LIST.value:
    try:
      text = read_text(_INPUT_LIST.value)
    except (OSError, UnicodeDecodeError) as e:
      cli.fail(f"cannot read the input list ({e})", _INPUT_LIST.value)
    specs.extend(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
  return specs


def _check_flags(patterns: list) -> None:
  if not patterns or not _OUTPUT.value:
    raise cli.usage("--input (or --input_list) and --output are required")
  _OUT.check()


def _model_path(value):
  """A local model path made absolute (workers may start elsewhere); names and URLs unchanged."""
  if value and "://" not in value and os.path.exists(value):
    return os.path.abspath(value)
  return value


def main(argv):
  try:
    # pylint: disable=g-import-not-at-top  # Beam is an optional extra.
    from esrgan_tf.beam import handler as handler_lib
    from esrgan_tf.beam import io as beam_io
    from esrgan_tf.beam import pipeline as beam_pipeline
  except ImportError as e:
    cli.fail(f"esrgan-beam needs Apache Beam: pip install 'esrgan_tf[beam]' ({e})")
  try:
    root = beam_pipeline.create(beam_pipeline.pipeline_options(argv[1:]))
  except (ValueError, ImportError) as e:
    raise cli.usage(str(e)) from e
  patterns = _patterns(beam_io.read_text)
  _check_flags(patterns)
  spec, tiles = _MODEL.spec(), _TILES.spec()
  spec = dataclasses.replace(spec, model=_model_path(spec.model),
                             blend_with=_model_path(spec.blend_with))
  try:
    scale = handler_lib.model_scale(spec)
  except ModelError as e:
    cli.fail(e, _MODEL.given(), context="cannot load the model")
  output = beam_io.absolute(_OUTPUT.value)
  settings = beam_pipeline.Settings(
      output=output,
      failures=beam_io.absolute(_FAILURES.value) if _FAILURES.value else beam_io.join(
          output, beam_pipeline.FAILURES_NAME),
      suffix=_OUT.suffix.value.replace(
          "{scale}", str(batch_lib.naming_scale(scale, _OUT.outscale.value))),
      format=_OUT.format.value, overwrite=_OUT.overwrite.value,
      max_pixels=_OUT.max_pixels_for(scale), multi_frame=_OUT.multi_frame.value)
  options_ = batch_lib.Options(tiles=tiles, alpha=_OUT.alpha.value, outscale=_OUT.outscale.value)
  model_handler = handler_lib.UpscaleModelHandler(spec, options_, large_model=_LARGE_MODEL.value)
  try:
    outcome = beam_pipeline.run(root, patterns, settings, model_handler)
  except Exception as e:  # pylint: disable=broad-except  # the runner's, reported in one line.
    cli.fail(f"the pipeline failed ({type(e).__name__}: {e})")
  print(outcome.line())
  if outcome.state != "DONE":
    cli.fail(f"the pipeline ended in state {outcome.state}")
  if outcome.counters is None:
    return 0
  print("counters: " + ", ".join(f"{k}={v}" for k, v in outcome.counters.items()))
  if outcome.counters["failures"]:
    print(f"failures: {settings.failures}")
  return 1 if outcome.counters["failures"] else 0


def run():
  if not any(a.startswith(("--verbosity", "-v=")) or a == "-v" for a in sys.argv[1:]):
    # Beam logs every bundle's progress at INFO; its warnings stay (as cli.quiet_tensorflow).
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
  cli.run(main, __name__, known_only=True)


if __name__ == "__main__":
  run()
