"""The esrgan-beam pipeline: file patterns in; upscaled files and a dead-letter file out.

    Match ─► GroupByOutputName ─► Read ─► Upscale (keyed RunInference) ─► Write
      │            │                │           │                            │
      └────────────┴────────────────┴───────────┴─► failures ─► failures.jsonl (JSON lines)

  * Match: every pattern through `FileSystems.match` (what Beam's MatchFiles/MatchAll do per
    pattern), any file system Beam has (local, gs://, s3://, hdfs://). As in esrgan-upscale,
    matches of a wildcard pattern (or of a directory) are kept only with an image extension, a
    pattern naming one file is always tried, and a pattern that matches nothing is a failure
    record, not a crash and not silence.
  * GroupByOutputName: each input keyed by its output path (`esrgan_tf.inference.batch.output_name`
    under --output, the names esrgan-upscale gives) and by its own path, then a GroupByKey. This
    is the pipeline's reshuffle (without one, everything after Match is fused with it and runs
    where the matching ran: one worker); grouping by output name, rather than by random key,
    also gives esrgan-upscale's plan checks at any scale: the same file matched twice is done
    once, two inputs with one output name and an output that would replace an input are
    failures (the first input by name keeps the output).
  * Read: an existing output is skipped (counted) unless --overwrite, so a rerun does only what
    is missing; then `image_io.read_image` (local) or `image_io.decode_image_bytes` (other file
    systems): format allowlist and header pixel limit before any decoding.
  * Upscale: `RunInference` with `UpscaleModelHandler`, keyed by the task.
  * Write: `image_io.write_image` into a local temporary file (the same encoder, so the same
    bytes as esrgan-upscale), then `io.publish`: a temporary name beside the output and a rename.
  * Failures: each step's dead-letter output (`with_exception_handling`) becomes a record
    {"input", "error"} (the error as esrgan-upscale prints it), counted, sorted and written as
    JSON lines; the job itself succeeds.

Counters (namespace "esrgan_beam"): images, input_pixels, output_bytes, failures, skipped,
model_loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from typing import Any, Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from esrgan_tf.beam import handler as handler_lib
from esrgan_tf.beam import io
from esrgan_tf.images import image_io
from esrgan_tf.inference import batch

NAMESPACE = handler_lib.NAMESPACE
FAILURES_NAME = "failures.jsonl"
COUNTERS = ("images", "input_pixels", "output_bytes", "failures", "skipped", "model_loads")
_IMAGES = Metrics.counter(NAMESPACE, "images")
_INPUT_PIXELS = Metrics.counter(NAMESPACE, "input_pixels")
_OUTPUT_BYTES = Metrics.counter(NAMESPACE, "output_bytes")
_FAILURES = Metrics.counter(NAMESPACE, "failures")
_SKIPPED = Metrics.counter(NAMESPACE, "skipped")
_GLOB_CHARS = "*?["
# GroupByOutputName values: the input writes this key, or the key is itself an input.
_WRITES, _IS_INPUT = "writes", "is_input"
_FAILED = "failed"


class InputError(Exception):
  """An input pattern or plan problem; the message starts with the input."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """Where outputs go and how files are read and written.

  Attributes:
    output: The output directory or prefix (local path or URL).
    failures: The JSON-lines dead-letter file.
    suffix: Appended to output stems ("{scale}" already replaced).
    format: Output format ("png", "jpg", ...), None: the input's.
    overwrite: Replace existing outputs (else they are skipped).
    max_pixels: Largest input W×H (from the header, before decoding); None or 0: any.
    multi_frame: "error" or "first" (`image_io.read_image`).
  """

  output: str
  failures: str
  suffix: str = batch.DEFAULT_SUFFIX
  format: Optional[str] = None
  overwrite: bool = False
  max_pixels: Optional[int] = image_io.BOMB_MAX_PIXELS
  multi_frame: str = "error"


@dataclasses.dataclass(frozen=True)
class Task:
  """One input and its output path."""

  src: str
  dst: str


@dataclasses.dataclass(frozen=True)
class Outcome:
  """A finished run: the runner's final state and the job's counters (None: the runner reports
  no metrics)."""

  state: str
  counters: Optional[dict]

  def line(self) -> str:
    """"N upscaled, M failed[, K skipped ...]", as esrgan-upscale's last line."""
    if self.counters is None:
      return f"pipeline {self.state}; this runner reports no counters (see --failures)"
    text = f"{self.counters['images']} upscaled, {self.counters['failures']} failed"
    if self.counters["skipped"]:
      text += f", {self.counters['skipped']} skipped (output exists; --overwrite to replace)"
    return text


# ----------------------------------------------------------------------------- steps


def _is_image_name(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in image_io.IMAGE_EXTENSIONS


def normalize_pattern(pattern: str) -> str:
  """A local directory becomes `dir/*` (its images, as esrgan-upscale reads a directory); local
  paths become absolute (the workers' working directory may differ)."""
  if io.is_local(pattern) and os.path.isdir(pattern):
    pattern = os.path.join(pattern, "*")
  return io.absolute(pattern)


def match_pattern(pattern: str) -> Iterator[str]:
  """The files a pattern names (wildcard matches filtered to image extensions), sorted.

  Raises:
    InputError: Nothing matches.
  """
  wildcard = any(c in pattern for c in _GLOB_CHARS) or pattern.endswith("/")
  found = FileSystems.match([pattern])[0].metadata_list
  paths = sorted(m.path for m in found if not wildcard or _is_image_name(m.path))
  if not paths:
    raise InputError(f"{pattern}: " + ("pattern matches no image files" if wildcard
                                       else "no such file or directory"))
  yield from paths


def output_path(src: str, settings: Settings) -> str:
  return FileSystems.join(settings.output, batch.output_name(src, settings.suffix,
                                                             settings.format))


def name_entries(src: str, settings: Settings) -> list:
  """(output path, (WRITES, src)) and (src, (IS_INPUT, src)) for GroupByOutputName."""
  return [(output_path(src, settings), (_WRITES, src)), (src, (_IS_INPUT, src))]


def plan_group(group) -> Iterator[Any]:
  """One group of GroupByOutputName → the Task writing that path, failures for the others."""
  path, entries = group
  entries = list(entries)
  writers = sorted({src for kind, src in entries if kind == _WRITES})
  if not writers:
    return
  if any(kind == _IS_INPUT for kind, _ in entries):
    for src in writers:
      yield beam.pvalue.TaggedOutput(_FAILED, _record(
          src, f"{src}: output {path} would replace an input; set --suffix or another --output"))
    return
  yield Task(writers[0], path)
  for src in writers[1:]:
    yield beam.pvalue.TaggedOutput(_FAILED, _record(
        src, f"{src}: output {path} would also be written for {writers[0]}; rename one or use "
        "--suffix/--format"))


def read_task(task: Task, settings: Settings) -> Iterator[Any]:
  """(task, decoded image), or nothing when the output exists and may not be replaced.

  Raises:
    ImageError: Unreadable, unsupported, over --max_pixels (checked from the header), ...
  """
  if not settings.overwrite and FileSystems.exists(task.dst):
    _SKIPPED.inc()
    return
  max_pixels = settings.max_pixels or None
  if io.is_local(task.src):
    img = image_io.read_image(task.src, max_pixels=max_pixels, multi_frame=settings.multi_frame)
  else:
    f = FileSystems.open(task.src, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
      data = f.read()
    finally:
      f.close()
    img = image_io.decode_image_bytes(data, name=task.src, max_pixels=max_pixels,
                                     multi_frame=settings.multi_frame)
  yield task, img


def write_result(item, settings: Settings) -> str:
  """Encodes an upscaled image as esrgan-upscale does and publishes it atomically.

  Returns:
    The output path.

  Raises:
    ImageError: The image cannot be encoded in the output format.
    OSError, BeamIOError: The file system's errors (no partial file is left under the name).
  """
  task, result = item
  with tempfile.TemporaryDirectory(prefix="esrgan_beam_") as tmp:
    local = os.path.join(tmp, FileSystems.split(task.dst)[1])
    try:
      image_io.write_image(local, result.inference, format=settings.format)
    except image_io.ImageError as e:  # Name the real destination, not the local scratch file.
      raise image_io.ImageError(str(e).replace(local, task.dst)) from e
    size = io.publish(local, task.dst)
  width, height = result.example.size
  _IMAGES.inc()
  _INPUT_PIXELS.inc(width * height)
  _OUTPUT_BYTES.inc(size)
  return task.dst


# ----------------------------------------------------------------------------- failures


def _record(src: str, error: str) -> dict:
  return {"input": src, "error": error}


def _exception_text(exc_type: type, traceback_lines: list) -> str:
  """str(exception), from the dead letter's formatted traceback (its last "Type: text" part)."""
  name = exc_type.__qualname__
  if exc_type.__module__ not in ("builtins", "__main__"):
    name = f"{exc_type.__module__}.{name}"
  for line in reversed(traceback_lines):
    if line.startswith(f"{name}: "):
      return line[len(name) + 2:].rstrip("\n")
  return ""


def dead_letter_record(src: str, error_info) -> dict:
  """A failure record from `with_exception_handling`'s (type, repr, traceback) for input `src`.

  Our errors (`ImageError`, `InputError`) start with the file name already; others are written
  "<input>: <Type>: <message>", as esrgan-upscale reports them.
  """
  exc_type, _, traceback_lines = error_info
  text = _exception_text(exc_type, traceback_lines)
  if issubclass(exc_type, (image_io.ImageError, InputError)):
    return _record(src, text)
  return _record(src, f"{src}: {exc_type.__name__}: {text}")


def _count(record: dict) -> dict:
  _FAILURES.inc()
  return record


def _json_lines(records: list) -> list:
  return [json.dumps(r, ensure_ascii=False)
          for r in sorted(records, key=lambda r: (r["input"], r["error"]))]


# ----------------------------------------------------------------------------- pipeline


def build(root: beam.Pipeline, patterns: list, settings: Settings,
          model_handler: handler_lib.UpscaleModelHandler) -> None:
  """Adds the steps to `root` (see the module docstring).

  Args:
    root: The pipeline.
    patterns: Input file patterns (`normalize_pattern` applied).
    settings: Outputs and reading.
    model_handler: The model.
  """
  files, bad_patterns = (
      root | "Patterns" >> beam.Create(patterns)
      | "Match" >> beam.FlatMap(match_pattern).with_exception_handling())
  planned = (
      files | "KeyByOutputName" >> beam.FlatMap(name_entries, settings)
      | "GroupByOutputName" >> beam.GroupByKey()
      | "Plan" >> beam.FlatMap(plan_group).with_outputs(_FAILED, main="tasks"))
  images, bad_reads = planned.tasks | "Read" >> beam.FlatMap(
      read_task, settings).with_exception_handling()
  upscaled, dead = images | "Upscale" >> RunInference(
      KeyedModelHandler(model_handler)).with_exception_handling()
  _, bad_writes = upscaled | "Write" >> beam.Map(write_result, settings).with_exception_handling()
  failures = (
      bad_patterns | "MatchStepFailures" >> beam.MapTuple(dead_letter_record),
      planned[_FAILED],
      bad_reads | "ReadStepFailures" >> beam.MapTuple(
          lambda task, info: dead_letter_record(task.src, info)),
      dead.failed_inferences | "UpscaleStepFailures" >> beam.FlatMapTuple(
          lambda batch_, info: [dead_letter_record(task.src, info) for task, _ in batch_]),
      bad_writes | "WriteStepFailures" >> beam.MapTuple(
          lambda item, info: dead_letter_record(item[0].src, info)))
  _ = (failures | "AllFailures" >> beam.Flatten() | "Count" >> beam.Map(_count)
       | "Collect" >> beam.combiners.ToList() | "Sort" >> beam.FlatMap(_json_lines)
       | "WriteFailuresFile" >> beam.io.WriteToText(settings.failures, shard_name_template="",
                                                num_shards=1))


def counters(result) -> Optional[dict]:
  """The job's counters by name (summed over steps; committed values where the runner has them),
  or None from a runner without metrics."""
  found = dict.fromkeys(COUNTERS, 0)
  try:
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
  except NotImplementedError:
    return None
  for metric in query["counters"]:
    value = metric.committed if metric.committed is not None else metric.attempted
    found[metric.key.metric.name] = found.get(metric.key.metric.name, 0) + (value or 0)
  return found


def pipeline_options(args: list) -> PipelineOptions:
  """Beam's pipeline options from the arguments that are not esrgan-beam's own flags.

  Beam itself drops an argument it does not know with a logged warning; a mistyped flag would
  then be silently ignored, so it is an error here.

  Raises:
    ValueError: An argument that no Beam pipeline option takes.
  """
  options = PipelineOptions(args)
  parsers = []

  def keep(parser):  # The parser Beam builds from every PipelineOptions subclass.
    parser.exit_on_error = False  # A bad value raises instead of printing Beam's whole usage.
    parsers.append(parser)

  try:
    options.get_all_options(add_extra_args_fn=keep)
    _, unknown = parsers[0].parse_known_args(args)
  except argparse.ArgumentError as e:
    raise ValueError(str(e)) from e
  if unknown:
    raise ValueError(f"unknown arguments {unknown}: neither esrgan-beam's flags (--helpfull) "
                     "nor Beam pipeline options")
  return options


def create(options: PipelineOptions, runner=None) -> beam.Pipeline:
  """The pipeline object for `options` (its --runner), or on `runner` (tests: an FnApiRunner).

  Raises:
    ValueError, ImportError: An unknown runner, or one whose extra is not installed.
  """
  return beam.Pipeline(runner=runner, options=options)


def run(root: beam.Pipeline, patterns: list, settings: Settings,
        model_handler: handler_lib.UpscaleModelHandler) -> Outcome:
  """Builds the pipeline on `root`, runs it to the end and returns its counters.

  Args:
    root: From `create`.
    patterns: Input file patterns.
    settings: Outputs and reading.
    model_handler: The model.

  Returns:
    The `Outcome`.
  """
  build(root, [normalize_pattern(p) for p in patterns], settings, model_handler)
  result = root.run()
  state = result.wait_until_finish()
  return Outcome(state=str(state), counters=counters(result))
