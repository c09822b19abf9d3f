"""`upscale_video`: one video file in, one upscaled video file out (resumable).

plan (`job.plan_job`) → work directory (`segments.Workdir`: new, or resumed after a crash) →
frames (`pipeline.run_pipeline` with `frames.FrameUpscaler`) → final remux (`remux.remux`) into a
temporary file renamed to the output (`fileio.atomic_path`), then the work directory goes.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
import os
from typing import Any, Callable, Optional

from esrgan_tf.core import fileio
from esrgan_tf.inference import batch as image_pipeline
from esrgan_tf.inference.video import job as job_lib
from esrgan_tf.inference.video import remux, segments
from esrgan_tf.inference.video.errors import VideoError
from esrgan_tf.inference.video.frames import FrameUpscaler
from esrgan_tf.inference.video.options import VideoOptions
from esrgan_tf.inference.video.pipeline import Stats, run_pipeline, total_frames


@dataclasses.dataclass(frozen=True)
class Result:
  """What `upscale_video` did.

  Attributes:
    path: The output file.
    frames: Video frames written (source frames; with --fps, output frames may differ).
    resumed_frames: Frames that a previous run had finished.
    segments: Segments joined.
    warnings: Streams converted or dropped.
  """

  path: str
  frames: int
  resumed_frames: int
  segments: int
  warnings: tuple = ()


def _window(options: VideoOptions) -> remux.Window:
  if options.start is None and options.duration is None:
    return remux.Window()
  start = Fraction(options.start or 0)
  end = None if options.duration is None else start + Fraction(options.duration)
  return remux.Window(start=start, end=end, offset=start)


def upscale_video(src: str, dst: str, engine: Any, image_options: image_pipeline.Options,
                  options: VideoOptions = VideoOptions(), *,
                  report: Callable[[str], None] = print,
                  progress_factory: Optional[Callable[[str, int, int], Callable[[Stats], None]]]
                  = None) -> Result:
  """Upscales a video file (see the module docstring).

  Args:
    src: The source video.
    dst: The output file (its extension names the container; its directory must exist).
    engine: The model (`esrgan_tf.inference.engine.Engine`).
    image_options: Tiling options shared with images (tile, overlap, tile batch, pre-pad).
    options: Video options.
    report: Receives warnings and resume notices.
    progress_factory: Called as (src, total frames, frames already done) → a callback taking
      `Stats` after each frame.

  Returns:
    The `Result`.

  Raises:
    VideoError: Any failure, naming the file (and the time in the video where known); the
      finished segments stay in the work directory for a rerun to resume.
  """
  if os.path.lexists(dst) and not options.overwrite:
    raise VideoError(dst, "exists (--overwrite to replace it)")
  job = job_lib.plan_job(src, dst, int(engine.scale), options)
  for line in job.warnings():
    report(f"warning: {line}")
  work = segments.Workdir.open(dst, job_lib.identity(job, engine, image_options),
                               restart=options.overwrite)
  resumed = work.progress.frames
  if resumed:
    report(f"{src}: resuming after {resumed} finished frames ({len(work.progress.segments)} "
           f"segments in {work.path})")
  if not work.progress.display_matrix and job.info.video.display_matrix:
    work.progress.display_matrix = list(job.info.video.display_matrix)
  if not work.progress.complete:
    upscale = FrameUpscaler(engine, image_options, job.geometry)
    progress = None
    if progress_factory is not None:
      progress = progress_factory(src, total_frames(job), resumed)
    run_pipeline(job, upscale, work, progress)
    work.mark_complete()
  track = remux.VideoTrack(
      source_index=job.info.video.index,
      time_base=(Fraction(1) / options.fps) if options.fps else job.info.video.time_base,
      display_matrix=tuple(work.progress.display_matrix))
  try:
    with fileio.atomic_path(dst, overwrite=options.overwrite) as tmp:
      remux.remux(src, work.segment_paths(), tmp, job.muxer, list(job.actions), track,
                  _window(options))
  except OSError as e:
    raise VideoError(dst, f"cannot write the output ({e}); the finished segments are kept in "
                     f"{work.path}") from e
  frames = work.progress.frames
  count = len(work.progress.segments)
  work.remove()
  return Result(path=dst, frames=frames, resumed_frames=resumed, segments=count,
                warnings=tuple(job.warnings()))
