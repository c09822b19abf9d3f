"""Which inputs are videos, and where their outputs go (`<name>_out.<container ext>`)."""

from __future__ import annotations

import os

from esrgan_tf.images import image_io
from esrgan_tf.inference.video import encoding, probe


def looks_like_image(path: str) -> bool:
  """True for image extensions: such files go to the image path without probing (no PyAV)."""
  return os.path.splitext(path)[1].lower() in image_io.IMAGE_EXTENSIONS


def is_video(path: str) -> bool:
  """True if `path` is a video: probed with FFmpeg's demuxers, whatever its extension.

  Image extensions are not probed. Without PyAV nothing is a video (`video_name_problem` then
  says what to install).
  """
  return not looks_like_image(path) and probe.is_video_file(path)


def video_name_problem(path: str) -> str:
  """Why a file named like a video (by extension) that `is_video` refused is not one, else "".

  Without PyAV: what to install. With it: FFmpeg found no video stream (the image reader's
  "not an image" would mislead for a corrupt clip).
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in encoding.VIDEO_EXTENSIONS:
    return ""
  if not probe.available():
    return probe.INSTALL_HINT
  return ("not a video FFmpeg can read: no video stream found (corrupt, truncated, audio-only or "
          "not a video at all)")


def output_is_file(output: str, count: int) -> bool:
  """True if `output` names the one output video rather than a directory."""
  return (count == 1 and not os.path.isdir(output) and not output.endswith(os.sep)
          and encoding.output_muxer(output) is not None)


def output_path(src: str, output: str, *, root: str | None, single: bool, suffix: str,
                scale) -> str:
  """The output file of one video.

  Args:
    src: The source video.
    output: --output (a file if `single`, else a directory).
    root: The input directory it was found in (sub-directories are kept), or None.
    single: `output` is the file itself (`output_is_file`).
    suffix: Appended to the stem ("{scale}" → `scale`).
    scale: The model's scale or --outscale.
  """
  if single:
    return output
  stem = os.path.splitext(os.path.basename(src))[0]
  ext = encoding.output_extension(src, _format_name(src))
  relative = "" if root is None else os.path.relpath(os.path.dirname(src), root)
  name = stem + suffix.replace("{scale}", str(scale)) + ext
  return os.path.normpath(os.path.join(output, relative, name))


def _format_name(path: str) -> str:
  if os.path.splitext(path)[1].lower() in encoding.CONTAINERS:
    return ""
  try:
    with probe.open_input(path) as container:
      return container.format.name
  except Exception:  # pylint: disable=broad-except  # reported when the video is processed
    return ""
