"""The one error type of the video package: names the file and, where known, the timestamp."""

from __future__ import annotations

from typing import Optional


def format_time(seconds: float) -> str:
  """Seconds → "HH:MM:SS.mmm" (the form players and FFmpeg show)."""
  sign = "-" if seconds < 0 else ""
  millis = round(abs(seconds) * 1000)
  hours, rest = divmod(millis, 3_600_000)
  minutes, rest = divmod(rest, 60_000)
  return f"{sign}{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


class VideoError(Exception):
  """A video could not be read, upscaled or written.

  The message starts with the file name and, when the problem is at a known place in the
  stream, the timestamp: "clip.mkv: at 00:01:02.345: corrupt video packet (...)".

  Attributes:
    path: The file concerned.
    seconds: Presentation time of the problem in the source, or None.
  """

  def __init__(self, path: str, problem: str, seconds: Optional[float] = None):
    where = "" if seconds is None else f"at {format_time(seconds)}: "
    super().__init__(f"{path}: {where}{problem}")
    self.path = path
    self.seconds = seconds
    self.problem = problem
