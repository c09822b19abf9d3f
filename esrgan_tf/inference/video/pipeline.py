"""The streaming pipeline: decode → model → encode in three threads with bounded queues.

  decoder thread   demux + decode the video stream, check every frame (a decoder error or a
                   frame flagged corrupt stops the run with the file and timestamp), convert to
                   RGB with the source's colour (`colour.Converter`)
  model thread     `frames.FrameUpscaler` (tiling, pre-pad, quantization as for images)
  calling thread   RGB → the encoder's pixel format, tagged; encode into the current segment;
                   close a segment (closed GOP, manifest updated) every `checkpoint_seconds`

Each queue holds at most `queue_frames` frames, so memory is bounded by a few frames whatever
the length. TensorFlow, FFmpeg's codecs and swscale release the GIL, so the stages overlap.
Timing: a frame keeps its source pts and time base (the encoder's time base is the source's), so
the output has the same number of frames and the same timestamps, variable frame rate included;
--fps instead maps frames onto a constant-rate grid (`_FpsGrid`).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
import math
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

from esrgan_tf.inference.video import probe
from esrgan_tf.inference.video.errors import VideoError
from esrgan_tf.inference.video.job import VideoJob
from esrgan_tf.inference.video.segments import SEGMENT_MUXER, Segment, Workdir

_END = object()


@dataclasses.dataclass
class Frame:
  """A frame between the stages: source timing and pixels (RGB, then upscaled RGB)."""

  pts: int
  seconds: Fraction
  duration: Optional[int]
  rgb: Any


@dataclasses.dataclass
class Stats:
  """Counters for the progress bar."""

  done: int = 0
  total: int = 0
  model_seconds: float = 0.0
  encode_seconds: float = 0.0
  model_frames: int = 0
  encode_frames: int = 0

  @property
  def model_fps(self) -> float:
    return self.model_frames / self.model_seconds if self.model_seconds else 0.0

  @property
  def encode_fps(self) -> float:
    return self.encode_frames / self.encode_seconds if self.encode_seconds else 0.0


class _Stage(threading.Thread):
  """A worker thread whose exception is kept for the calling thread to raise."""

  def __init__(self, name: str, body: Callable[[], None], stop: threading.Event):
    super().__init__(name=name, daemon=True)
    self.body, self.stop, self.error = body, stop, None

  def run(self):
    try:
      self.body()
    except BaseException as e:  # pylint: disable=broad-except  # re-raised by the caller
      self.error = e
      self.stop.set()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
  """Puts unless stopped (returns False then); never blocks forever."""
  while not stop.is_set():
    try:
      q.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False


def _get(q: queue.Queue, stop: threading.Event, stages: list):
  """Gets, raising a stage's error as soon as one fails."""
  while True:
    for stage in stages:
      if stage.error is not None:
        raise stage.error
    try:
      return q.get(timeout=0.1)
    except queue.Empty:
      if stop.is_set() and all(s.error is None for s in stages) and q.empty():
        if not any(s.is_alive() for s in stages):
          return _END


class _Overshoot(Exception):
  """A seek for resuming landed after the resume point."""


def _decoder_error(av, before: int, decoder: str) -> Optional[str]:
  """The decoder's error log line since `before` (FFmpeg conceals some damage and only logs
  it, e.g. an FFV1 slice CRC mismatch), or None."""
  count, last = av.logging.get_last_error()
  if count > before and last and last[1] == decoder:
    return f"{decoder}: {last[2].strip()}"
  return None


def _decode_pass(job: VideoJob, seek_to: Optional[int], resume_pts: Optional[int],
                 stop: threading.Event) -> Iterator[Frame]:
  """One pass of the decoder from `seek_to` (None: the beginning); see `decode_frames`."""
  av = probe.require_av(job.src)
  video, options = job.info.video, job.options
  tb = video.time_base
  start = Fraction(options.start) if options.start is not None else None
  end = None if options.duration is None else (start or 0) + Fraction(options.duration)

  def wanted(pts: int) -> bool:
    return not ((resume_pts is not None and pts <= resume_pts)
                or (start is not None and pts * tb < start))

  with probe.open_input(job.src) as container:
    stream = container.streams[video.index]
    # Slice threads only: with frame threads a decoder logs an error packets later, and the
    # error would be reported at the wrong time (decoding is cheap next to the model).
    stream.thread_type = "SLICE"
    decoder = stream.codec_context.name
    if seek_to is not None:
      container.seek(seek_to, stream=stream, backward=True)
    last_pts, first = None, True
    for packet in container.demux(stream):
      if stop.is_set():
        return
      at = None if packet.pts is None else packet.pts * tb
      before = av.logging.get_last_error()[0]
      try:
        decoded = packet.decode()
      except av.error.FFmpegError as e:
        if packet.pts is None or wanted(packet.pts):
          raise VideoError(job.src, f"cannot decode the video packet ({e})", at) from e
        continue  # pre-roll after a seek (e.g. leading pictures of an open GOP)
      error = _decoder_error(av, before, decoder)
      if error and (packet.pts is None or wanted(packet.pts)):
        raise VideoError(job.src, f"corrupt video data ({error})", at)
      for frame in decoded:
        if frame.pts is None:
          raise VideoError(job.src, "a decoded frame has no timestamp", at)
        if first and seek_to is not None and resume_pts is not None and frame.pts > resume_pts:
          raise _Overshoot()
        first = False
        if not wanted(frame.pts):
          continue
        seconds = frame.pts * tb
        if end is not None and seconds >= end:
          return
        if frame.is_corrupt:
          raise VideoError(job.src, "corrupt video data (the decoder flagged the frame as "
                           "damaged)", seconds)
        if last_pts is not None and frame.pts <= last_pts:
          raise VideoError(job.src, f"frame timestamps go backwards ({frame.pts} after "
                           f"{last_pts})", seconds)
        last_pts = frame.pts
        yield Frame(frame.pts, seconds, frame.duration or None, job.converter.to_rgb(frame))


def decode_frames(job: VideoJob, resume_pts: Optional[int], stop: threading.Event
                  ) -> Iterator[Frame]:
  """The source's frames in the window and after `resume_pts`, as RGB, checked.

  A resume or --start seeks to the key frame before the point and decodes from there (frames
  up to the point are decoded and skipped); if a seek lands after the resume point, the pass is
  repeated from the beginning.

  Raises:
    VideoError: A packet the decoder rejects or logs an error for, a frame it flags corrupt,
      a frame without a timestamp or out of order — naming the file and the time.
  """
  start = job.options.start
  tb = job.info.video.time_base
  seek_to = resume_pts if resume_pts is not None else (
      math.floor(Fraction(start) / tb) if start else None)
  if seek_to is not None:
    try:
      yield from _decode_pass(job, seek_to, resume_pts, stop)
      return
    except _Overshoot:
      pass
  yield from _decode_pass(job, None, resume_pts, stop)


class _FpsGrid:
  """--fps: each source frame covers the output ticks k (k/fps seconds) from its time until the
  next frame's; repeated ticks re-encode the same upscaled frame, frames between ticks are
  dropped. The first frame also covers the ticks back to floor(t·fps)."""

  def __init__(self, fps: Fraction, default_seconds: Fraction, next_tick: Optional[int]):
    self.fps, self.default, self.next_tick = fps, default_seconds, next_tick

  def ticks(self, frame: Frame, next_seconds: Optional[Fraction], tb: Fraction) -> range:
    if self.next_tick is None:
      self.next_tick = math.floor(frame.seconds * self.fps)
    if next_seconds is None:
      length = frame.duration * tb if frame.duration else self.default
      next_seconds = frame.seconds + length
    stop = max(self.next_tick, math.ceil(next_seconds * self.fps))
    ticks = range(self.next_tick, stop)
    self.next_tick = stop
    return ticks


class _SegmentWriter:
  """One encoder session into one segment file (MP4, video only)."""

  def __init__(self, job: VideoJob, work: Workdir, time_base: Fraction):
    av = probe.require_av(job.dst)
    self.job, self.work = job, work
    self.tmp, self.name = work.next_segment_path()
    self.container = av.open(self.tmp, "w", format=SEGMENT_MUXER)
    stream = self.container.add_stream(job.encoder, options=dict(job.codec_options))
    stream.width, stream.height = job.geometry.output
    stream.pix_fmt = job.pix_fmt
    stream.codec_context.time_base = time_base
    stream.time_base = time_base
    rate = job.options.fps or job.info.video.average_rate
    if rate:
      stream.codec_context.framerate = rate  # rate control; timestamps come from the frames
    job.info.video.colour.apply(stream.codec_context)
    if job.info.video.sample_aspect_ratio:
      stream.codec_context.sample_aspect_ratio = job.info.video.sample_aspect_ratio
    self.stream, self.time_base = stream, time_base
    self.frames, self.first_pts, self.last_pts = 0, None, None
    self.opened = time.monotonic()

  def encode(self, frame, source: Frame, pts: int) -> None:
    frame.pts, frame.time_base = pts, self.time_base
    try:
      self.container.mux(self.stream.encode(frame))
    except (OSError, probe.require_av().error.FFmpegError) as e:
      raise VideoError(self.job.dst, f"encoder {self.job.encoder} failed ({e})",
                       source.seconds) from e
    self.frames += 1
    self.first_pts = source.pts if self.first_pts is None else self.first_pts
    self.last_pts = source.pts

  def close(self, next_tick: Optional[int]) -> None:
    try:
      self.container.mux(self.stream.encode(None))
      self.container.close()
    except (OSError, probe.require_av().error.FFmpegError) as e:
      raise VideoError(self.job.dst, f"cannot finish segment {self.tmp} ({e})") from e
    self.work.finish_segment(self.tmp, Segment(self.name, self.frames, self.first_pts,
                                               self.last_pts, next_tick))

  def abort(self) -> None:
    try:
      self.container.close()
    except Exception:  # pylint: disable=broad-except  # already failing; the file goes anyway
      pass
    import os  # pylint: disable=g-import-not-at-top
    if os.path.exists(self.tmp):
      os.remove(self.tmp)


def run_pipeline(job: VideoJob, upscale: Callable, work: Workdir,
                 progress: Optional[Callable[[Stats], None]] = None) -> Stats:
  """Upscales the frames not yet in `work`'s segments and writes them as new segments.

  Args:
    job: The plan.
    upscale: RGB frame → upscaled RGB frame (`frames.FrameUpscaler`).
    work: The work directory (resumed or new).
    progress: Called with the `Stats` after every encoded frame.

  Returns:
    The final `Stats`.

  Raises:
    VideoError: Decoding, model or encoding failures (finished segments are kept).
    KeyboardInterrupt: Passed on after the threads stopped (finished segments are kept).
  """
  av = probe.require_av(job.src)
  options, video = job.options, job.info.video
  stats = Stats(done=work.progress.frames, total=total_frames(job))
  resume = work.progress.resume_pts
  next_tick = work.progress.segments[-1].next_tick if work.progress.segments else None
  stop = threading.Event()
  decoded, upscaled = queue.Queue(options.queue_frames), queue.Queue(options.queue_frames)

  def decode_body():
    for frame in decode_frames(job, resume, stop):
      if not _put(decoded, frame, stop):
        return
    _put(decoded, _END, stop)

  def model_body():
    while True:
      item = _get(decoded, stop, [decoder])
      if item is _END:
        _put(upscaled, _END, stop)
        return
      began = time.perf_counter()
      item.rgb = upscale(item.rgb)
      stats.model_seconds += time.perf_counter() - began
      stats.model_frames += 1
      if not _put(upscaled, item, stop):
        return

  decoder = _Stage("video-decode", decode_body, stop)
  model = _Stage("video-model", model_body, stop)
  time_base = Fraction(1) / options.fps if options.fps else video.time_base
  grid = None
  if options.fps:
    default = Fraction(1) / video.average_rate if video.average_rate else 1 / options.fps
    grid = _FpsGrid(options.fps, default, next_tick)
  writer, pending = None, None
  previous_level = av.logging.get_level()
  av.logging.set_level(av.logging.ERROR)  # decoder errors are counted (get_last_error)
  decoder.start()
  model.start()
  try:
    while True:
      got = _get(upscaled, stop, [decoder, model])
      final = False
      if grid is not None:  # hold one frame back: its ticks end at the next frame's time
        if got is _END:
          if pending is None:
            break
          item, pending, final = pending, None, True
          ticks = grid.ticks(item, None, video.time_base)
        elif pending is None:
          pending = got
          continue
        else:
          item, pending = pending, got
          ticks = grid.ticks(item, got.seconds, video.time_base)
      elif got is _END:
        break
      else:
        item, ticks = got, [got.pts]
      writer = writer or _SegmentWriter(job, work, time_base)
      began = time.perf_counter()
      for tick in ticks:
        writer.encode(job.converter.from_rgb(item.rgb), item, tick)
      stats.encode_seconds += time.perf_counter() - began
      stats.encode_frames += 1
      stats.done += 1
      spanned = item.seconds - writer.first_pts * video.time_base
      if final or (time.monotonic() - writer.opened >= options.checkpoint_seconds
                   and spanned >= options.min_segment_seconds):
        writer.close(grid.next_tick if grid else None)
        writer = None
      if progress:
        progress(stats)
      if final:
        break
    if writer is not None:
      writer.close(grid.next_tick if grid else None)
      writer = None
    return stats
  finally:
    stop.set()
    if writer is not None:
      writer.abort()
    for stage in (decoder, model):
      stage.join(timeout=30)
    av.logging.set_level(previous_level)


def total_frames(job: VideoJob) -> int:
  """Source frames expected in the window (an estimate when the container has no count)."""
  video, options = job.info.video, job.options
  total = video.estimated_frames()
  if (options.start or options.duration) and video.average_rate:
    length = video.duration or (total / float(video.average_rate))
    span = min(length - (options.start or 0), options.duration or length)
    total = max(0, math.ceil(span * float(video.average_rate)))
  return total
