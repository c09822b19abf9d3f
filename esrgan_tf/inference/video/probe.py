"""What a video file holds: PyAV's presence, container probing, the facts the pipeline needs.

`esrgan-upscale` recognises videos by opening them with FFmpeg's demuxers (`is_video_file`), not
by their extension alone; image files (by extension) never reach this module, so the image
path never imports PyAV.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
import hashlib
import importlib.util
import os
from typing import Optional

from esrgan_tf.inference.video import colour
from esrgan_tf.inference.video.errors import VideoError

INSTALL_HINT = "video needs PyAV: pip install 'esrgan_tf[video]'"
# Demuxers that read still images (FFmpeg's image2 family and animated image formats): such
# files go to the image path, not here.
_IMAGE_DEMUXERS = ("image2", "gif", "apng", "webp", "ico", "tiff")
# Bytes hashed at each end of the input for its fingerprint (with its size and mtime).
_FINGERPRINT_BYTES = 1 << 20


def available() -> bool:
  """True if PyAV is installed (without importing it)."""
  return importlib.util.find_spec("av") is not None


def require_av(path: str = "video"):
  """Imports and returns PyAV.

  Raises:
    VideoError: PyAV is not installed (says how to install it).
  """
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise VideoError(path, INSTALL_HINT) from e
  return av


@dataclasses.dataclass(frozen=True)
class VideoFacts:
  """The video stream that is upscaled.

  Attributes:
    index: Its stream index.
    codec: Decoder name ("h264", "hevc", ...).
    width, height: Frame size.
    pix_fmt: Decoded pixel format.
    time_base: The stream's time base (timestamps are kept in it).
    average_rate: Average frame rate (None if unknown).
    frames: Frame count from the container (0: unknown).
    duration: Seconds (None if unknown).
    colour: Colour tags (range, primaries, transfer, matrix, chroma siting).
    sample_aspect_ratio: SAR (None if unset).
    display_matrix: The 3×3 display matrix (rotation/flip) of the first frame, 9 ints, or ().
  """

  index: int
  codec: str
  width: int
  height: int
  pix_fmt: str
  time_base: Fraction
  average_rate: Optional[Fraction]
  frames: int
  duration: Optional[float]
  colour: colour.ColourTags
  sample_aspect_ratio: Optional[Fraction]
  display_matrix: tuple = ()

  def estimated_frames(self) -> int:
    """The container's count, else duration × average rate (0 if neither is known)."""
    if self.frames:
      return self.frames
    if self.duration and self.average_rate:
      return max(1, round(self.duration * float(self.average_rate)))
    return 0


@dataclasses.dataclass(frozen=True)
class SourceInfo:
  """A probed video file.

  Attributes:
    path: The file.
    format_name: FFmpeg demuxer name ("matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", ...).
    video: The main video stream.
  """

  path: str
  format_name: str
  video: VideoFacts


def open_input(path: str):
  """av.open(path) with errors as `VideoError`."""
  av = require_av(path)
  try:
    return av.open(path, metadata_errors="replace")
  except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
    raise VideoError(path, f"cannot open as video ({e})") from e


def main_video_stream(container):
  """The first video stream that is not cover art (attached picture), or None."""
  from av.stream import Disposition  # pylint: disable=g-import-not-at-top
  for stream in container.streams.video:
    if not stream.disposition & Disposition.attached_pic:
      return stream
  return None


def is_video_file(path: str) -> bool:
  """True if FFmpeg opens `path` as a container with a moving-picture video stream.

  False without PyAV, for unreadable files, still-image demuxers and audio-only files.
  """
  if not available() or not os.path.isfile(path):
    return False
  try:
    container = open_input(path)
  except VideoError:
    return False
  with container:
    name = container.format.name
    if name.endswith("_pipe") or any(n in _IMAGE_DEMUXERS for n in name.split(",")):
      return False
    return main_video_stream(container) is not None


def _first_frame_display_matrix(container, stream) -> tuple:
  """The display matrix side data of the first decoded frame (rotation/flips), or ()."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    for frame in container.decode(stream):
      for side in frame.side_data:
        if str(side.type).endswith("DISPLAYMATRIX"):
          return tuple(int(v) for v in np.frombuffer(bytes(side), np.int32))
      return ()
  except Exception:  # pylint: disable=broad-except  # decoding errors are the pipeline's to report
    return ()
  return ()


def probe(path: str) -> SourceInfo:
  """Opens a video and reads the facts of its main video stream.

  Raises:
    VideoError: Not a readable video, or no video stream.
  """
  with open_input(path) as container:
    stream = main_video_stream(container)
    if stream is None:
      raise VideoError(path, "no video stream")
    context = stream.codec_context
    if not context.width or not context.height or context.format is None:
      raise VideoError(path, f"video stream {stream.index} ({context.name}) has no frame size "
                       "or pixel format; FFmpeg cannot decode it")
    tags = colour.ColourTags.from_codec_context(
        context, colour.probe_chroma_location(container, stream.index))
    duration = None
    if stream.duration and stream.time_base:
      duration = float(stream.duration * stream.time_base)
    elif container.duration:
      duration = container.duration / 1_000_000  # AV_TIME_BASE
    sar = stream.sample_aspect_ratio or context.sample_aspect_ratio
    facts = VideoFacts(
        index=stream.index, codec=context.name, width=context.width, height=context.height,
        pix_fmt=context.format.name, time_base=stream.time_base,
        average_rate=stream.average_rate, frames=int(stream.frames or 0), duration=duration,
        colour=tags, sample_aspect_ratio=Fraction(sar) if sar else None,
        display_matrix=_first_frame_display_matrix(container, stream))
    return SourceInfo(path=path, format_name=container.format.name, video=facts)


def fingerprint(path: str) -> dict:
  """Identifies an input file for resuming: size, mtime and a hash of its two ends.

  Hashing the whole of a film would take minutes; a changed file almost always changes its
  size, mtime or ends (where the container's header and index live).
  """
  stat = os.stat(path)
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    digest.update(f.read(_FINGERPRINT_BYTES))
    if stat.st_size > _FINGERPRINT_BYTES:
      f.seek(max(_FINGERPRINT_BYTES, stat.st_size - _FINGERPRINT_BYTES))
      digest.update(f.read())
  return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}
