"""Encoder choice and options: --codec, --crf, --preset, --encoder_option, --list_encoders.

`--codec=auto` keeps the source's codec family when its encoder is in PyAV's FFmpeg and the
output container can hold it (`PREFERRED_ENCODERS`), else libx264 where the container takes
H.264, else the container's default (VP9 for WebM). The pixel format is the source's when the
encoder takes it, else the nearest one of the same depth and chroma subsampling.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional

from esrgan_tf.inference.video.errors import VideoError

# Source codec → the encoder that keeps it (PyAV's wheels ship these).
PREFERRED_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1",
                      "vp9": "libvpx-vp9", "vp8": "libvpx-vp9", "ffv1": "ffv1"}
# Video container extensions → FFmpeg muxer; the output container is picked from these.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
              ".avi": "avi", ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts",
              ".nut": "nut", ".flv": "flv", ".ogv": "ogg", ".mpg": "mpeg", ".mpeg": "mpeg",
              ".3gp": "3gp"}
VIDEO_EXTENSIONS = tuple(CONTAINERS) + (".wmv", ".asf", ".vob", ".m2v", ".y4m", ".divx")
# Input demuxer (format.name) → output extension, for inputs whose extension is not above.
_FORMAT_EXTENSIONS = {"matroska,webm": ".mkv", "mov,mp4,m4a,3gp,3g2,mj2": ".mp4",
                      "avi": ".avi", "mpegts": ".ts", "flv": ".flv", "ogg": ".ogv",
                      "nut": ".nut", "mpeg": ".mpg", "asf": ".mkv", "yuv4mpegpipe": ".mkv"}
# Encoders whose --crf needs a zero bitrate to mean constant quality (libvpx's CQ mode).
_CRF_NEEDS_ZERO_BITRATE = ("libvpx-vp9", "libvpx")
# Encoders that print an info banner to stderr unless told not to: the option that quiets them.
_QUIET = {"libx265": ("x265-params", "log-level=error")}


@dataclasses.dataclass(frozen=True)
class EncodeSettings:
  """The encoder flags.

  Attributes:
    codec: An FFmpeg video encoder name, or "auto".
    crf: Constant rate factor (encoder default if None).
    preset: Encoder speed preset (encoder default if None).
    options: Extra encoder options as (key, value) pairs (--encoder_option k=v).
    pix_fmt: Output pixel format (default: from the source, see the module docstring).
  """

  codec: str = "auto"
  crf: Optional[float] = None
  preset: Optional[str] = None
  options: tuple[tuple[str, str], ...] = ()
  pix_fmt: Optional[str] = None

  def as_dict(self) -> dict:
    return {"codec": self.codec, "crf": self.crf, "preset": self.preset,
            "options": [list(kv) for kv in self.options], "pix_fmt": self.pix_fmt}


def parse_options(values: list[str]) -> tuple[tuple[str, str], ...]:
  """["k=v", ...] → (("k", "v"), ...).

  Raises:
    ValueError: A value without "=".
  """
  pairs = []
  for value in values or ():
    key, sep, val = value.partition("=")
    if not sep or not key:
      raise ValueError(f"--encoder_option must be KEY=VALUE, got {value!r}")
    pairs.append((key.strip(), val.strip()))
  return tuple(pairs)


def output_muxer(path: str) -> Optional[str]:
  """The muxer for an output file name, or None if its extension is not a video container."""
  return CONTAINERS.get(os.path.splitext(path)[1].lower())


def output_extension(source_path: str, source_format: str) -> str:
  """The output extension for a source: its own if a known container, else by its demuxer."""
  ext = os.path.splitext(source_path)[1].lower()
  if ext in CONTAINERS:
    return ext
  return _FORMAT_EXTENSIONS.get(source_format, ".mkv")


def muxer_codecs(muxer: str) -> set:
  """Codec names the muxer can store (avformat_query_codec through PyAV)."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(io.BytesIO(), "w", format=muxer) as probe:
    return set(probe.supported_codecs)


def video_encoders() -> list:
  """PyAV's software video encoders as av.Codec objects, sorted by name (hardware encoders,
  NVENC/QSV/AMF/VAAPI/..., need a device and are left out)."""
  import av  # pylint: disable=g-import-not-at-top
  from av.codec.codec import Capabilities  # pylint: disable=g-import-not-at-top
  found = {}
  for name in sorted(av.codecs_available):
    try:
      codec = av.Codec(name, "w")
    except Exception:  # pylint: disable=broad-except  # decoders only / unavailable
      continue
    hardware = codec.capabilities & (Capabilities.hardware | Capabilities.hybrid)
    if codec.type == "video" and codec.video_formats and not hardware:
      found.setdefault(codec.name, codec)  # "h264" and "libx264" name the same encoder
  return [found[name] for name in sorted(found)]


def _encoder_line(codec) -> str:
  formats = [f.name for f in codec.video_formats]
  shown = ", ".join(formats[:6]) + (", ..." if len(formats) > 6 else "")
  kind = "lossy" if codec.lossy else "lossless"
  return f"  {codec.name:<16} {kind:<8} {codec.long_name} [{shown}]"


def list_encoders() -> str:
  """The text of `esrgan-upscale --list_encoders`: name, lossy or not, pixel formats."""
  encoders = video_encoders()
  usual = [c for c in encoders if c.name in set(PREFERRED_ENCODERS.values()) | {"libx264"}]
  lines = ["Usual choices (--codec=NAME; auto keeps the source's family):"]
  lines += [_encoder_line(c) for c in usual]
  lines += ["", "Every video encoder of this PyAV build:"]
  lines += [_encoder_line(c) for c in encoders]
  return "\n".join(lines)


def choose_codec(settings: EncodeSettings, source_codec: str, muxer: str, path: str) -> str:
  """The encoder name for `--codec` (see the module docstring).

  Raises:
    VideoError: An unknown encoder, or one the container cannot hold.
  """
  import av  # pylint: disable=g-import-not-at-top
  storable = muxer_codecs(muxer)
  if settings.codec != "auto":
    try:
      codec = av.Codec(settings.codec, "w")
    except Exception as e:  # pylint: disable=broad-except  # UnknownCodecError, ValueError
      raise VideoError(path, f"unknown encoder --codec={settings.codec} "
                       "(see esrgan-upscale --list_encoders)") from e
    if codec.type != "video":
      raise VideoError(path, f"--codec={settings.codec} is not a video encoder")
    if codec.name not in storable:
      raise VideoError(path, f"the {muxer} container cannot hold {codec.name}; choose another "
                       "--codec or output extension")
    return codec.name
  available = av.codecs_available
  preferred = PREFERRED_ENCODERS.get(source_codec)
  for name in (preferred, "libx264"):
    if name and name in available and name in storable:
      return name
  with av.open(io.BytesIO(), "w", format=muxer) as probe:
    return av.Codec(probe.default_video_codec, "w").name


def choose_pix_fmt(encoder: str, source_fmt: str, requested: Optional[str] = None) -> str:
  """The encoder's pixel format: `requested`, the source's, or the nearest of the same depth.

  Raises:
    ValueError: `requested` is not one the encoder takes.
  """
  import av  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference.video import colour  # pylint: disable=g-import-not-at-top
  formats = [f.name for f in av.Codec(encoder, "w").video_formats or ()]
  if requested:
    if formats and requested not in formats:
      raise ValueError(f"{encoder} does not take pix_fmt {requested} (takes {formats})")
    return requested
  if not formats or source_fmt in formats:
    return source_fmt
  depth = colour.format_depth(source_fmt)
  src = av.VideoFormat(source_fmt, 64, 64)
  sub = (src.chroma_width(64), src.chroma_height(64)) if not src.is_rgb else (64, 64)

  def score(name):
    fmt = av.VideoFormat(name, 64, 64)
    fmt_sub = (fmt.chroma_width(64), fmt.chroma_height(64)) if not fmt.is_rgb else (64, 64)
    colours = len([c for c in fmt.components if not c.is_alpha])
    alpha = colours < len(fmt.components)
    return (colours < 3, colour.format_depth(name) != depth, fmt_sub != sub, alpha, fmt.is_rgb,
            name)

  return min(formats, key=score)


def encoder_options(encoder: str, settings: EncodeSettings) -> dict:
  """The codec options for `--crf`, `--preset` and `--encoder_option` (later ones win)."""
  options = {}
  if settings.crf is not None:
    options["crf"] = f"{settings.crf:g}"
    if encoder in _CRF_NEEDS_ZERO_BITRATE:
      options["b"] = "0"
  if settings.preset is not None:
    options["preset"] = settings.preset
  options.update(dict(settings.options))
  if encoder in _QUIET:
    key, quiet = _QUIET[encoder]
    options[key] = f"{quiet}:{options[key]}" if options.get(key) else quiet
  return options


def check_options(encoder: str, options: dict, path: str) -> None:
  """Refuses options the encoder does not know (FFmpeg would ignore them silently).

  Raises:
    VideoError: An unknown option, naming the encoder.
  """
  import av  # pylint: disable=g-import-not-at-top
  context = av.CodecContext.create(encoder, "w")
  known = {o.name for o in context.supported_options.generic}
  known |= {o.name for o in context.supported_options.private}
  unknown = sorted(set(options) - known - {"chroma_sample_location"})
  if unknown:
    raise VideoError(path, f"encoder {encoder} has no option {', '.join(unknown)} "
                     "(check --crf/--preset/--encoder_option)")
