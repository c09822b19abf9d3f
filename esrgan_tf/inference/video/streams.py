"""Every other stream of the source: what becomes of it, and its metadata on the output.

`plan_streams` decides, per source stream, before any work starts (so that warnings come
first):
  * audio: "copy" (packets byte for byte), "aac" (--audio=aac: decoded and re-encoded) or
    "drop" (--audio=none);
  * subtitles: "copy"; text subtitles the container cannot hold (SubRip/ASS/WebVTT in MP4) are
    converted to "mov_text"; others it cannot hold are dropped with a warning naming them;
  * attachments (Matroska fonts, cover images): "attach" where the container has attachments
    (Matroska), else dropped with a warning;
  * other video streams (cover art, second angles) and data streams: "copy" if the container can
    hold them, else dropped with a warning.
The copies keep their metadata (language, title, ... — PyAV's add_stream_from_template does not
copy `metadata`) and dispositions (default, forced, hearing impaired, ...).
"""

from __future__ import annotations

import dataclasses

from esrgan_tf.inference.video import encoding

# Text subtitle codecs FFmpeg decodes to ASS events, which the mov_text encoder takes.
TEXT_SUBTITLES = ("subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text")
# Muxers that store attachment streams.
_ATTACHMENT_MUXERS = ("matroska", "webm")
# Matroska statistics tags (mkvmerge's, FFmpeg's DURATION): stale after re-encoding; the muxer
# writes its own.
_STATISTICS_TAGS = ("BPS", "DURATION", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES")
# Container tags describing the old file itself, rewritten by the muxer.
_CONTAINER_TAGS_DROPPED = ("encoder", "major_brand", "minor_version", "compatible_brands")


@dataclasses.dataclass(frozen=True)
class StreamAction:
  """What happens to one source stream.

  Attributes:
    index: The source stream index.
    kind: "video", "audio", "subtitle", "attachment", "data".
    codec: The source codec name.
    action: "upscale" (the main video), "copy", "aac", "mov_text", "attach" or "drop".
    note: Why (for drops and conversions), shown to the user.
  """

  index: int
  kind: str
  codec: str
  action: str
  note: str = ""

  def describe(self) -> str:
    return f"stream {self.index} ({self.kind}, {self.codec}): {self.note}"


def _label(stream) -> str:
  language = stream.metadata.get("language")
  title = stream.metadata.get("title")
  return "".join([f" [{language}]" if language else "", f" '{title}'" if title else ""])


def plan_streams(container, main_index: int, muxer: str, audio: str) -> list[StreamAction]:
  """One `StreamAction` per source stream (see the module docstring)."""
  storable = encoding.muxer_codecs(muxer)
  actions = []
  for stream in container.streams:
    context = getattr(stream, "codec_context", None)
    kind, codec = stream.type, (context.name if context is not None else "") or "unknown"
    label = _label(stream)
    if stream.index == main_index:
      actions.append(StreamAction(stream.index, kind, codec, "upscale"))
    elif kind == "audio":
      if audio == "none":
        actions.append(StreamAction(stream.index, kind, codec, "drop", f"dropped{label} "
                                    "(--audio=none)"))
      elif audio == "aac" or codec not in storable:
        why = "--audio=aac" if audio == "aac" else f"{muxer} cannot hold {codec}"
        actions.append(StreamAction(stream.index, kind, codec, "aac",
                                    f"re-encoded to AAC{label} ({why})"))
      else:
        actions.append(StreamAction(stream.index, kind, codec, "copy"))
    elif kind == "subtitle":
      if codec in storable:
        actions.append(StreamAction(stream.index, kind, codec, "copy"))
      elif codec in TEXT_SUBTITLES and "mov_text" in storable:
        actions.append(StreamAction(stream.index, kind, codec, "mov_text",
                                    f"converted to mov_text{label} ({muxer} cannot hold "
                                    f"{codec})"))
      else:
        actions.append(StreamAction(stream.index, kind, codec, "drop",
                                    f"dropped{label}: {muxer} cannot hold {codec} subtitles; "
                                    "use .mkv to keep them"))
    elif kind == "attachment":
      if muxer in _ATTACHMENT_MUXERS:
        actions.append(StreamAction(stream.index, kind, codec, "attach"))
      else:
        name = stream.metadata.get("filename", "")
        actions.append(StreamAction(stream.index, kind, codec, "drop",
                                    f"attachment {name!r} dropped: {muxer} has no attachments; "
                                    "use .mkv to keep it"))
    elif codec in storable:
      actions.append(StreamAction(stream.index, kind, codec, "copy"))
    else:
      actions.append(StreamAction(stream.index, kind, codec, "drop",
                                  f"dropped{label}: {muxer} cannot hold {codec}"))
  return actions


def stream_metadata(source, *, reencoded: bool) -> dict:
  """The tags to give the output copy of `source` (statistics dropped when re-encoded)."""
  tags = dict(source.metadata)
  if reencoded:
    for key in list(tags):
      if key.upper().split("-")[0] in _STATISTICS_TAGS or key.startswith("_STATISTICS"):
        del tags[key]
    tags.pop("encoder", None)
    tags.pop("ENCODER", None)
  return tags


def copy_stream_facts(source, target, *, reencoded: bool) -> None:
  """Metadata (language, title, ...) and disposition of `source` onto `target`."""
  for key, value in stream_metadata(source, reencoded=reencoded).items():
    target.metadata[key] = value
  if source.metadata.get("language") and hasattr(target, "language"):
    try:
      target.language = source.metadata["language"]
    except (AttributeError, TypeError):
      pass  # read-only in this PyAV: the metadata tag above carries it
  target.disposition = source.disposition


def container_metadata(source) -> dict:
  """The source container's tags for the output (those describing the old file dropped)."""
  return {k: v for k, v in source.metadata.items()
          if k.lower() not in _CONTAINER_TAGS_DROPPED}


def attachment_args(stream) -> tuple[str, str, bytes]:
  """(file name, MIME type, data) of an attachment stream."""
  name = stream.metadata.get("filename") or f"attachment_{stream.index}"
  mimetype = stream.metadata.get("mimetype") or getattr(stream, "mimetype", None) or \
      "application/octet-stream"
  return name, mimetype, bytes(stream.data)
