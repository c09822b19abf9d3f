"""esrgan-upscale's video flags and the video half of a batch (PyAV is imported only for videos).

Kept apart from `esrgan_tf.cli.upscale` so that the image flags can change without touching
these. upscale.py calls: `register_help` (in `run`), `list_encoders_requested`/`print_encoders`
(first thing in `main`), `media_extensions` (for `pipeline.expand_inputs`) and `run_videos` (after
the model is loaded; it returns the image sources left for the image path). The shared flags it
reads (--output, --suffix, --outscale, --overwrite) are looked up by name in absl's FLAGS.
"""

from __future__ import annotations

from fractions import Fraction
import os
import signal
import sys
from typing import Callable

from absl import flags

# The help text of the size rule lives with the rule (esrgan_tf.inference.video.geometry); this
# is its summary.
_SIZE_RULE = ("Output sides are rounded down to the encoder's chroma grid (even for 4:2:0); when "
              "only that rounding differs from the model's output the last column/row is "
              "cropped, otherwise the model output is resized with Lanczos.")

CODEC = flags.DEFINE_string(
    "codec", "auto", "Video encoder (videos only): auto keeps the source's family (H.264 → "
    "libx264, HEVC → libx265, AV1 → libsvtav1, VP9 → libvpx-vp9, FFV1 → ffv1) where the "
    "container holds it, else libx264; --list_encoders shows them all.")
CRF = flags.DEFINE_float("crf", None, "Video constant rate factor (encoder default if unset).")
PRESET = flags.DEFINE_string("preset", None, "Video encoder preset (e.g. slow, medium, 8).")
ENCODER_OPTION = flags.DEFINE_multi_string(
    "encoder_option", [], "KEY=VALUE passed to the video encoder (repeatable), e.g. "
    "--encoder_option=x264-params=keyint=120; unknown keys are refused.")
LIST_ENCODERS = flags.DEFINE_bool("list_encoders", False,
                                  "Print the video encoders available and exit.")
AUDIO = flags.DEFINE_enum("audio", "copy", ["copy", "aac", "none"],
                          "Audio of videos: copy (byte-identical), aac (re-encode) or none.")
FPS = flags.DEFINE_string("fps", None, "Convert videos to this constant frame rate (e.g. 24, "
                          "30000/1001): frames are repeated or dropped. Default: keep every "
                          "frame and timestamp (variable frame rate survives).")
START = flags.DEFINE_float("start", None, "Video: start this many seconds in (a preview).")
DURATION = flags.DEFINE_float("duration", None, "Video: upscale only this many seconds.")
WIDTH = flags.DEFINE_integer("width", None, "Video output width (instead of --outscale; alone "
                             "it keeps the aspect ratio). " + _SIZE_RULE)
HEIGHT = flags.DEFINE_integer("height", None, "Video output height (see --width).")
CHECKPOINT_SECONDS = flags.DEFINE_float(
    "checkpoint_seconds", 120.0, "Video: close a resumable segment after this much work "
    "(wall seconds); a crash or kill loses at most that. Rerun the same command to resume.")


def register_help() -> None:
  """Lists these flags in `esrgan-upscale --help` (absl shows the main module's key flags)."""
  for flag in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def media_extensions() -> tuple:
  """Extensions taken from directories and globs: images, plus videos when PyAV is there."""
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video import encoding, probe  # pylint: disable=g-import-not-at-top
  return image_io.IMAGE_EXTENSIONS + (encoding.VIDEO_EXTENSIONS if probe.available() else ())


def list_encoders_requested() -> bool:
  return LIST_ENCODERS.value


def print_encoders() -> int:
  from esrgan_tf.inference.video import encoding, probe  # pylint: disable=g-import-not-at-top
  if not probe.available():
    print(f"error: {probe.INSTALL_HINT}", file=sys.stderr)
    return 1
  print(encoding.list_encoders())
  return 0


def split_sources(sources: list) -> tuple[list, list, list]:
  """(image sources, video sources, [(path, problem)]) — videos found by probing.

  Files with image extensions are never probed (no PyAV import for image batches).
  """
  from esrgan_tf.inference.video import outputs  # pylint: disable=g-import-not-at-top
  images, videos, problems = [], [], []
  for source in sources:
    if outputs.looks_like_image(source.path):
      images.append(source)
    elif outputs.is_video(source.path):
      videos.append(source)
    elif outputs.video_name_problem(source.path):
      problems.append((source.path, outputs.video_name_problem(source.path)))
    else:
      images.append(source)  # the image reader names what it is not
  return images, videos, problems


def video_options(outscale, overwrite: bool):
  """The `VideoOptions` of the flags.

  Raises:
    ValueError: Inconsistent flags (the message names them).
  """
  from esrgan_tf.inference.video import encoding, geometry  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video.options import VideoOptions  # pylint: disable=g-import-not-at-top
  fps = None
  if FPS.value:
    try:
      fps = Fraction(FPS.value)
    except (ValueError, ZeroDivisionError) as e:
      raise ValueError(f"--fps must be a number or a fraction like 30000/1001, got "
                       f"{FPS.value!r}") from e
  settings = encoding.EncodeSettings(codec=CODEC.value, crf=CRF.value, preset=PRESET.value,
                                     options=encoding.parse_options(ENCODER_OPTION.value))
  size = geometry.SizeRequest(outscale=outscale, width=WIDTH.value, height=HEIGHT.value)
  return VideoOptions(encode=settings, size=size, audio=AUDIO.value, fps=fps, start=START.value,
                      duration=DURATION.value, checkpoint_seconds=CHECKPOINT_SECONDS.value,
                      overwrite=overwrite)


def _sigterm_as_interrupt():
  """SIGTERM raises KeyboardInterrupt in the main thread (finished segments are kept)."""
  def handler(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt(f"signal {signum}")
  try:
    return signal.signal(signal.SIGTERM, handler)
  except ValueError:  # not the main thread
    return None


def _progress_factory(tqdm):
  def factory(path, total, done):
    bar = tqdm(total=total or None, initial=done, desc=os.path.basename(path), unit="frame",
               disable=None, dynamic_ncols=True)

    def progress(stats):
      bar.update(stats.done - bar.n)
      bar.set_postfix_str(f"model {stats.model_fps:.2f} f/s, encode {stats.encode_fps:.1f} f/s",
                          refresh=False)
      if total and stats.done >= total:
        bar.close()

    progress.bar = bar
    return progress
  return factory


def run_videos(sources: list, plan_images: Callable, model, image_options, summary,
               report: Callable[[str], None]) -> list:
  """The videos of a batch: found by probing, output paths planned, upscaled into `summary`.

  Args:
    sources: `pipeline.Source`s of the batch.
    plan_images: image sources → their `pipeline.Job`s (to avoid output collisions).
    model: The loaded model.
    image_options: The image path's `pipeline.Options` (tiling shared with videos).
    summary: A `pipeline.Summary` receiving the videos' outcomes.
    report: Receives failure/skip lines.

  Returns:
    The image sources (the rest of the batch).

  Raises:
    app.UsageError: Inconsistent video flags (only checked when there are videos).
    KeyboardInterrupt: Ctrl-C or SIGTERM (finished segments kept).
  """
  from esrgan_tf.cli import usage  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video import outputs  # pylint: disable=g-import-not-at-top
  images, videos, problems = split_sources(sources)
  for path, problem in problems:
    summary.failed.append((path, f"{path}: {problem}"))
    report(f"FAILED {path}: {problem}")
  if not videos:
    return images
  values = flags.FLAGS
  try:
    vid_options = video_options(values.outscale, values.overwrite)
  except ValueError as e:
    raise usage(str(e)) from e
  single = outputs.output_is_file(values.output, len(sources))
  scale = f"{values.outscale:g}" if values.outscale else model.scale
  taken = {os.path.realpath(job.dst) for job in plan_images(images) if job.dst}
  jobs = []
  for source in videos:
    dst = outputs.output_path(source.path, values.output, root=source.root, single=single,
                              suffix=values.suffix, scale=scale)
    key = os.path.realpath(dst)
    if key in taken or key == os.path.realpath(source.path):
      problem = f"output {dst} collides with another input or output; set --suffix or --output"
      summary.failed.append((source.path, f"{source.path}: {problem}"))
      report(f"FAILED {source.path}: {problem}")
      continue
    taken.add(key)
    jobs.append((source.path, dst))
  upscale_videos(jobs, model, image_options, vid_options, summary, report)
  return images


def upscale_videos(jobs: list, model, image_options, vid_options, summary,
                   report: Callable[[str], None]) -> None:
  """Upscales video jobs ((src, dst) pairs) into `summary` (a pipeline.Summary).

  A failure is reported with its file and time, and the batch goes on; an interrupt (Ctrl-C,
  SIGTERM) stops the batch after saying how to resume.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference.video import segments  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video.errors import VideoError  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference.video.upscale import upscale_video  # pylint: disable=g-import-not-at-top
  previous = _sigterm_as_interrupt()
  try:
    for src, dst in jobs:
      if not vid_options.overwrite and os.path.lexists(dst):
        summary.skipped.append(src)
        report(f"skipped {src}: {dst} exists (--overwrite to replace it)")
        continue
      try:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        upscale_video(src, dst, model, image_options, vid_options, report=report,
                      progress_factory=_progress_factory(tqdm))
      except VideoError as e:
        summary.failed.append((src, str(e)))
        work = segments.workdir_for(dst)
        kept = f" (finished segments kept in {work}; rerun to resume)" if os.path.isdir(
            work) else ""
        report(f"FAILED {e}{kept}")
      except KeyboardInterrupt:
        work = segments.workdir_for(dst)
        report(f"interrupted: {src}: finished segments are kept in {work}; rerun the same "
               "command to resume")
        raise
      else:
        summary.upscaled.append(dst)
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
