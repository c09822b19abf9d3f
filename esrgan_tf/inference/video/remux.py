"""The final step: the finished segments and the source's other streams into one file.

Packets are merged in decode-time order from two streams of packets: the upscaled video (the
segments, one after another) and the source's demuxer (audio, subtitles, other streams; audio is
transcoded and text subtitles converted here when `streams.plan_streams` said so). Nothing is
decoded or held beyond a packet at a time, so memory does not grow with the video's length.

Timestamps: every packet keeps its source timestamp (rescaled exactly into the output stream's
time base), shifted only by `Window.offset` for a --start preview. Joining encoder sessions can
leave a segment's first decode timestamps (B-frame delay) at or before the previous segment's
last one; those are moved just after it (never past the packet's presentation time).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
import heapq
import itertools
from typing import Iterator, Optional

from esrgan_tf.inference.video import probe, streams
from esrgan_tf.inference.video.errors import VideoError


@dataclasses.dataclass(frozen=True)
class Window:
  """The source time range that is written, and the shift applied to every timestamp.

  Attributes:
    start: Packets presented before this (seconds) are left out; None: from the beginning.
    end: Packets presented at or after this are left out; None: to the end.
    offset: Seconds subtracted from every timestamp (0 keeps the source's timing).
  """

  start: Optional[Fraction] = None
  end: Optional[Fraction] = None
  offset: Fraction = Fraction(0)

  def contains(self, seconds: Fraction) -> bool:
    return ((self.start is None or seconds >= self.start)
            and (self.end is None or seconds < self.end))

  def shift(self, ticks: Optional[int], time_base: Fraction) -> Optional[int]:
    if ticks is None or not self.offset:
      return ticks
    return ticks - round(self.offset / time_base)


@dataclasses.dataclass(frozen=True)
class VideoTrack:
  """What the remux needs about the upscaled video stream.

  Attributes:
    source_index: Its index in the source (output streams keep the source's order).
    time_base: Time base of its timestamps (the source's, or 1/fps).
    display_matrix: 9 ints (rotation/flip) or empty.
  """

  source_index: int
  time_base: Fraction
  display_matrix: tuple = ()


def _rescale(ticks: int, src: Fraction, dst: Fraction) -> int:
  return round(Fraction(ticks) * src / dst)


def _video_packets(segment_paths: list[str], stream, dst_path: str, window: Window
                   ) -> Iterator:
  """The segments' packets in order, in `stream`'s time base, shifted by the window's offset,
  decode times kept increasing."""
  av = probe.require_av(dst_path)
  last_dts = None
  for path in segment_paths:
    with av.open(path) as segment:
      source = segment.streams.video[0]
      for packet in segment.demux(source):
        if packet.size == 0 or packet.pts is None:
          continue
        pts = window.shift(_rescale(packet.pts, source.time_base, stream.time_base),
                           stream.time_base)
        dts = pts if packet.dts is None else window.shift(
            _rescale(packet.dts, source.time_base, stream.time_base), stream.time_base)
        if last_dts is not None and dts <= last_dts:
          dts = last_dts + 1
          if dts > pts:
            raise VideoError(dst_path, "cannot join the segments: decode timestamps collide "
                             f"at {float(pts * stream.time_base):.3f} s in {path} (a time base "
                             "too coarse for the encoder's B-frame delay; try --encoder_option "
                             "bframes=0)")
        last_dts = dts
        packet.pts, packet.dts, packet.time_base = pts, dts, stream.time_base
        packet.stream = stream
        yield packet


class _Converter:
  """Per-stream packet handling of the source's other streams (copy / aac / mov_text)."""

  def __init__(self, action: streams.StreamAction, source, target, window: Window):
    self.action, self.source, self.target, self.window = action, source, target, window
    self.resampler = None
    if action.action == "aac":
      av = probe.require_av()
      self.resampler = av.AudioResampler(format="fltp", layout=source.layout,
                                         rate=source.sample_rate)

  def packets(self, packet) -> list:
    """The output packets for one source packet."""
    tb = self.source.time_base
    if self.action.action == "copy":
      packet.pts = self.window.shift(packet.pts, tb)
      packet.dts = self.window.shift(packet.dts, tb)
      packet.stream = self.target
      return [packet]
    if self.action.action == "mov_text":
      from av.subtitles.subtitle import SubtitleSet  # pylint: disable=g-import-not-at-top
      out = []
      for subtitle in packet.decode():
        text = getattr(subtitle, "ass", None)
        if not text:
          continue
        duration_ms = round((packet.duration or 0) * tb * 1000)
        encoded = self.target.codec_context.encode_subtitle(
            SubtitleSet.create(text, 0, duration_ms, 0))
        encoded.pts = encoded.dts = self.window.shift(packet.pts, tb)
        encoded.duration = packet.duration
        encoded.time_base = tb
        encoded.stream = self.target
        out.append(encoded)
      return out
    out = []  # aac
    for frame in packet.decode():
      frame.pts = self.window.shift(frame.pts, frame.time_base or tb)
      for resampled in self.resampler.resample(frame):
        out += self.target.encode(resampled)
    return out

  def flush(self) -> list:
    if self.action.action != "aac":
      return []
    out = []
    for resampled in self.resampler.resample(None):
      out += self.target.encode(resampled)
    return out + list(self.target.encode(None))


def _add_streams(out, source, actions, track: VideoTrack, template, window) -> tuple:
  """Output streams in the source's order; returns (video stream, {index: _Converter})."""
  video, converters = None, {}
  for action in actions:
    stream = source.streams[action.index]
    if action.action == "upscale":
      video = out.add_stream_from_template(template)
      video.time_base = track.time_base
      streams.copy_stream_facts(stream, video, reencoded=True)
      if track.display_matrix:
        video.set_display_matrix(list(track.display_matrix))
    elif action.action == "copy":
      target = out.add_stream_from_template(stream)
      target.time_base = stream.time_base
      streams.copy_stream_facts(stream, target, reencoded=False)
      converters[action.index] = _Converter(action, stream, target, window)
    elif action.action == "aac":
      target = out.add_stream("aac", rate=stream.sample_rate, layout=stream.layout)
      target.time_base = Fraction(1, stream.sample_rate)
      streams.copy_stream_facts(stream, target, reencoded=True)
      converters[action.index] = _Converter(action, stream, target, window)
    elif action.action == "mov_text":
      stream.codec_context.open()  # the decoder's ASS header is the encoder's style table
      target = out.add_stream("mov_text")
      target.codec_context.subtitle_header = stream.codec_context.subtitle_header
      target.codec_context.time_base = Fraction(1, 1000)
      target.time_base = stream.time_base
      streams.copy_stream_facts(stream, target, reencoded=True)
      converters[action.index] = _Converter(action, stream, target, window)
    elif action.action == "attach":
      out.add_attachment(*streams.attachment_args(stream))
  return video, converters


def _chapters(source, window: Window) -> list:
  chapters = []
  for chapter in source.chapters():
    tb = chapter["time_base"] or Fraction(1, 1_000_000)
    if window.start is not None or window.end is not None:
      if not window.contains(chapter["start"] * tb) and not window.contains(chapter["end"] * tb):
        continue
    chapters.append(dict(chapter, start=max(0, window.shift(chapter["start"], tb)),
                         end=max(0, window.shift(chapter["end"], tb))))
  return chapters


def _source_packets(source, converters: dict, window: Window) -> Iterator:
  """The other streams' output packets in the source's order, within the window."""
  if not converters:
    return
  selected = [source.streams[i] for i in converters]
  for packet in source.demux(selected):
    converter = converters[packet.stream.index]
    if packet.size == 0 or packet.pts is None:
      continue
    if not window.contains(packet.pts * packet.stream.time_base):
      continue
    yield from converter.packets(packet)
  for converter in converters.values():
    yield from converter.flush()


def _decode_time(packet) -> Fraction:
  ticks = packet.dts if packet.dts is not None else packet.pts
  return Fraction(ticks or 0) * packet.time_base


def remux(src_path: str, segment_paths: list[str], dst_tmp: str, muxer: str,
          actions: list[streams.StreamAction], track: VideoTrack,
          window: Window = Window()) -> None:
  """Writes the output file (see the module docstring).

  Args:
    src_path: The source video.
    segment_paths: The finished segments, in order.
    dst_tmp: The file to write (renamed to the output by the caller).
    muxer: The output container format.
    actions: From `streams.plan_streams`.
    track: The upscaled video stream's facts.
    window: --start/--duration window and shift.

  Raises:
    VideoError: The output cannot be written (names the file).
  """
  av = probe.require_av(src_path)
  if not segment_paths:
    raise VideoError(src_path, "no video frames to write (is the --start/--duration window "
                     "past the end?)")
  try:
    with probe.open_input(src_path) as source, av.open(segment_paths[0]) as first, \
        av.open(dst_tmp, "w", format=muxer) as out:
      video, converters = _add_streams(out, source, actions, track, first.streams.video[0],
                                       window)
      out.metadata.update(streams.container_metadata(source))
      chapters = _chapters(source, window)
      if chapters:
        out.set_chapters(chapters)
      out.start_encoding()
      merged = heapq.merge(_video_packets(segment_paths, video, src_path, window),
                           _source_packets(source, converters, window), key=_decode_time)
      for batch in iter(lambda: list(itertools.islice(merged, 256)), []):
        out.mux(batch)
  except av.error.FFmpegError as e:
    raise VideoError(dst_tmp, f"cannot write the output ({e})") from e
