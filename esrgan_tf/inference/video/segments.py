"""Resumable output: closed-GOP video segments plus a manifest, next to the final file.

While a video is upscaled, its new video stream is written as a series of segment files in a
work directory beside the output, `.<output name>.parts/`:

  manifest.json     input fingerprint, model and settings, and the finished segments
  seg_00000.mp4     one independent encoder session each (so it starts with a key frame and
  seg_00001.mp4     no frame refers to another segment: a closed GOP), video only
  seg_00002.mp4.tmp the segment being written (discarded by the next run)

A segment file is renamed into place only when its encoder has been flushed and the file closed,
and only then is it added to the manifest (written atomically): a crash, Ctrl-C, SIGTERM or
SIGKILL at any moment loses at most the segment in progress. Rerunning the same command reads
the manifest, refuses if the input or any setting differs, and continues after the last finished
timestamp. When every frame is done, `remux` joins the segments with the source's other streams
into a temporary file that is renamed to the output; the work directory is removed last.

MP4 is the segment container because it keeps any time base (Matroska rounds to milliseconds)
and holds every encoder this package offers; the final container is the user's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Optional

from esrgan_tf.core import fileio
from esrgan_tf.inference.video.errors import VideoError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SEGMENT_MUXER = "mp4"
SEGMENT_SUFFIX = ".mp4"


def workdir_for(dst: str) -> str:
  """The work directory of an output file: `.<name>.parts` in the same directory."""
  directory, name = os.path.split(os.path.abspath(dst))
  return os.path.join(directory, f".{name}.parts")


@dataclasses.dataclass(frozen=True)
class Segment:
  """A finished segment.

  Attributes:
    file: Its file name in the work directory.
    frames: Frames encoded in it.
    first_pts: Source pts of its first frame (source time base).
    last_pts: Source pts of its last frame (the "last finished timestamp" after it).
    next_tick: With --fps: the next output frame number; else None.
  """

  file: str
  frames: int
  first_pts: int
  last_pts: int
  next_tick: Optional[int] = None


@dataclasses.dataclass
class Progress:
  """What the manifest records besides the identity: finished segments and stream facts."""

  segments: list = dataclasses.field(default_factory=list)
  complete: bool = False
  display_matrix: list = dataclasses.field(default_factory=list)

  @property
  def frames(self) -> int:
    return sum(s.frames for s in self.segments)

  @property
  def resume_pts(self) -> Optional[int]:
    return self.segments[-1].last_pts if self.segments else None


class Workdir:
  """The work directory of one output (see the module docstring)."""

  def __init__(self, dst: str, identity: dict):
    self.dst = dst
    self.path = workdir_for(dst)
    self.identity = identity
    self.progress = Progress()

  # --- opening ------------------------------------------------------------------------------

  @classmethod
  def open(cls, dst: str, identity: dict, *, restart: bool = False) -> "Workdir":
    """Starts a new work directory, or resumes the one a previous run left.

    Args:
      dst: The final output file.
      identity: {"input": fingerprint, "settings": ...}; JSON-serialisable.
      restart: Discard a previous run's work for another input or other settings instead of
        refusing (--overwrite); work for the same input and settings is still resumed.

    Returns:
      The `Workdir`, with `progress` read from the manifest when resuming.

    Raises:
      VideoError: A previous run's work is there for another input or other settings (the
        message lists what differs), or its manifest is unreadable.
    """
    work = cls(dst, json.loads(json.dumps(identity)))  # normalised as the manifest stores it
    manifest = os.path.join(work.path, MANIFEST)
    if not os.path.exists(manifest):
      if os.path.isdir(work.path):
        shutil.rmtree(work.path)  # a run killed before its first manifest: nothing to keep
      os.makedirs(work.path)
      work.save()
      return work
    try:
      with open(manifest, encoding="utf-8") as f:
        stored = json.load(f)
      if stored.get("version") != MANIFEST_VERSION:
        raise ValueError(f"manifest version {stored.get('version')}")
      progress = Progress(
          segments=[Segment(**s) for s in stored["segments"]], complete=stored["complete"],
          display_matrix=list(stored.get("display_matrix", [])))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise VideoError(dst, f"cannot resume: the manifest {manifest} is unreadable ({e}); "
                       "delete that directory or use --overwrite to start again") from e
    differences = _differences(stored["identity"], work.identity)
    if differences and restart:
      shutil.rmtree(work.path)
      return cls.open(dst, identity)
    if differences:
      raise VideoError(dst, "cannot resume: a previous run with another input or other "
                       f"settings left {work.path} (differs: {', '.join(differences)}); rerun "
                       "with the same input and settings, or use --overwrite to start again")
    work.progress = progress
    work.discard_partial()
    return work

  def discard_partial(self) -> None:
    """Removes segment files not in the manifest (the one a killed run was writing)."""
    keep = {s.file for s in self.progress.segments} | {MANIFEST}
    for name in os.listdir(self.path):
      if name not in keep:
        os.remove(os.path.join(self.path, name))

  # --- writing ------------------------------------------------------------------------------

  def save(self) -> None:
    """Writes the manifest atomically."""
    data = {"version": MANIFEST_VERSION, "identity": self.identity,
            "segments": [dataclasses.asdict(s) for s in self.progress.segments],
            "complete": self.progress.complete,
            "display_matrix": list(self.progress.display_matrix)}
    fileio.write_bytes(os.path.join(self.path, MANIFEST), json.dumps(data, indent=1) + "\n",
                       overwrite=True)

  def next_segment_path(self) -> tuple[str, str]:
    """(temporary path to write, final file name) of the next segment."""
    name = f"seg_{len(self.progress.segments):05d}{SEGMENT_SUFFIX}"
    return os.path.join(self.path, name + ".tmp"), name

  def finish_segment(self, tmp: str, segment: Segment) -> None:
    """Moves a closed segment into place, then records it in the manifest."""
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(self.path, segment.file))
    self.progress.segments.append(segment)
    self.save()

  def mark_complete(self) -> None:
    self.progress.complete = True
    self.save()

  def segment_paths(self) -> list[str]:
    return [os.path.join(self.path, s.file) for s in self.progress.segments]

  def remove(self) -> None:
    shutil.rmtree(self.path, ignore_errors=True)


def _differences(old, new, prefix: str = "") -> list[str]:
  """Dotted keys whose values differ between two JSON-like dicts."""
  if isinstance(old, dict) and isinstance(new, dict):
    found = []
    for key in sorted(set(old) | set(new)):
      found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
    return found
  return [] if old == new else [prefix.rstrip(".")]
