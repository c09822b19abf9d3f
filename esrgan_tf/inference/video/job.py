"""Everything decided about one video before any frame is decoded: the `VideoJob`.

`plan_job` probes the source, picks the container, encoder, pixel format and output size,
checks the encoder options and decides the fate of every other stream, so that a bad setting
fails at once (naming the file) and warnings about dropped or converted streams come first.
`identity` is what a resumed run must match (`segments.Workdir`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from esrgan_tf.inference import batch as image_pipeline
from esrgan_tf.inference.video import (
  colour,
  encoding,
  geometry,
  probe,
  streams,
)
from esrgan_tf.inference.video.errors import VideoError
from esrgan_tf.inference.video.options import VideoOptions


@dataclasses.dataclass(frozen=True)
class VideoJob:
  """One video's plan.

  Attributes:
    src, dst: Input and output files.
    info: The probed source.
    muxer: The output container format.
    encoder: The video encoder.
    pix_fmt: The encoder's pixel format.
    codec_options: Encoder options (crf, preset, ..., chroma siting).
    geometry: Frame sizes.
    converter: Frames ↔ RGB with the source's colour.
    actions: One per source stream (`streams.plan_streams`).
    options: The video options.
  """

  src: str
  dst: str
  info: probe.SourceInfo
  muxer: str
  encoder: str
  pix_fmt: str
  codec_options: dict
  geometry: geometry.Geometry
  converter: colour.Converter
  actions: tuple
  options: VideoOptions

  def warnings(self) -> list[str]:
    """Lines about streams that are converted or dropped."""
    return [f"{self.src}: {a.describe()}" for a in self.actions if a.note]


def plan_job(src: str, dst: str, scale: int, options: VideoOptions) -> VideoJob:
  """Plans the upscaling of `src` into `dst` (see the module docstring).

  Args:
    src: The source video.
    dst: The output file; its extension names the container.
    scale: The model's scale.
    options: Video options.

  Raises:
    VideoError: Unreadable input, unknown container or encoder, bad options.
  """
  muxer = encoding.output_muxer(dst)
  if muxer is None:
    raise VideoError(dst, f"unknown video container extension (use one of "
                     f"{', '.join(sorted(encoding.CONTAINERS))})")
  info = probe.probe(src)
  video = info.video
  encoder = encoding.choose_codec(options.encode, video.codec, muxer, src)
  try:
    pix_fmt = encoding.choose_pix_fmt(encoder, video.pix_fmt, options.encode.pix_fmt)
    sizes = geometry.plan((video.width, video.height), scale, pix_fmt, options.size)
  except ValueError as e:
    raise VideoError(src, str(e)) from e
  converter = colour.Converter(video.pix_fmt, pix_fmt, video.colour, path=src)
  codec_options = encoding.encoder_options(encoder, options.encode)
  codec_options.update(video.colour.codec_options())
  encoding.check_options(encoder, codec_options, src)
  with probe.open_input(src) as container:
    actions = tuple(streams.plan_streams(container, video.index, muxer, options.audio))
  return VideoJob(src=src, dst=dst, info=info, muxer=muxer, encoder=encoder, pix_fmt=pix_fmt,
                  codec_options=codec_options, geometry=sizes, converter=converter,
                  actions=actions, options=options)


def _model_identity(engine: Any) -> dict:
  name = str(getattr(engine, "name", "model"))
  identity = {"name": name, "scale": int(engine.scale)}
  info = getattr(engine, "info", None) or {}
  identity["info"] = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool,
                                                                       dict, list, type(None)))}
  if os.path.exists(name):
    stat = os.stat(name)
    identity["file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
  return identity


def identity(job: VideoJob, engine: Any, image_options: image_pipeline.Options) -> dict:
  """What a resumed run must match: input, model, tiling, encoder and video settings."""
  import av  # pylint: disable=g-import-not-at-top
  fingerprint = probe.fingerprint(job.src)
  return {
      "input": {"path": os.path.abspath(job.src), **fingerprint},
      "model": _model_identity(engine),
      "tiles": {"tile": image_options.tiles.tile, "overlap": image_options.tiles.overlap,
                "batch": image_options.tiles.batch, "pre_pad": image_options.tiles.pre_pad},
      "video": job.options.identity(),
      "encoder": {"name": job.encoder, "pix_fmt": job.pix_fmt, "options": job.codec_options,
                  "output_size": list(job.geometry.output), "pyav": av.__version__},
  }
