"""The per-video settings (the CLI's video flags) in one frozen object."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Optional

from esrgan_tf.inference.video.encoding import EncodeSettings
from esrgan_tf.inference.video.geometry import SizeRequest

AUDIO_MODES = ("copy", "aac", "none")
# Default wall time between resumable checkpoints (a segment is closed, a new GOP starts): at
# most this much work is lost to a crash. Segments also span at least MIN_SEGMENT_SECONDS of
# video so that slow models do not make every frame a key frame.
CHECKPOINT_SECONDS = 120.0
MIN_SEGMENT_SECONDS = 1.0
# Frames waiting between the decoder, the model and the encoder (each queue): memory is bounded
# by about 2·QUEUE_FRAMES frames whatever the video's length.
QUEUE_FRAMES = 4


@dataclasses.dataclass(frozen=True)
class VideoOptions:
  """How a video is upscaled and written (beside the tiling options images share).

  Attributes:
    encode: Encoder choice and options.
    size: --outscale / --width / --height.
    audio: "copy" (byte-identical packets), "aac" (re-encoded) or "none" (dropped).
    fps: Constant output frame rate (an explicit conversion; frames are repeated or dropped),
      or None to keep every source frame and timestamp.
    start: Seconds into the source to start at (None: the beginning).
    duration: Seconds to upscale from `start` (None: to the end).
    checkpoint_seconds: Wall time after which the current segment is closed.
    min_segment_seconds: Video time a segment spans at least (except the last).
    queue_frames: Frames buffered between the pipeline's stages.
    overwrite: Replace an existing output, and discard a previous run's work for other
      settings (work for the same settings is resumed).
  """

  encode: EncodeSettings = EncodeSettings()
  size: SizeRequest = SizeRequest()
  audio: str = "copy"
  fps: Optional[Fraction] = None
  start: Optional[float] = None
  duration: Optional[float] = None
  checkpoint_seconds: float = CHECKPOINT_SECONDS
  min_segment_seconds: float = MIN_SEGMENT_SECONDS
  queue_frames: int = QUEUE_FRAMES
  overwrite: bool = False

  def __post_init__(self):
    if self.audio not in AUDIO_MODES:
      raise ValueError(f"--audio must be one of {AUDIO_MODES}, got {self.audio!r}")
    if self.fps is not None and not self.fps > 0:
      raise ValueError(f"--fps must be positive, got {self.fps}")
    if self.start is not None and self.start < 0:
      raise ValueError(f"--start must be ≥ 0, got {self.start}")
    if self.duration is not None and not self.duration > 0:
      raise ValueError(f"--duration must be positive, got {self.duration}")
    if self.queue_frames < 1:
      raise ValueError(f"queue_frames must be ≥ 1, got {self.queue_frames}")

  def identity(self) -> dict:
    """The settings that change the output (what a resumed run must match)."""
    return {"encode": self.encode.as_dict(), "size": dataclasses.asdict(self.size),
            "audio": self.audio, "fps": None if self.fps is None else str(self.fps),
            "start": self.start, "duration": self.duration}
