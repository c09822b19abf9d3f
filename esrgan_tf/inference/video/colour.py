"""Colour: decoded frames ↔ the RGB arrays the model sees, with the source's matrix and range.

The model runs on RGB; video is (almost always) Y'CbCr. Both directions use the SOURCE's
colour tags, so the output is read back exactly as the input was:

  * 8-bit Y'CbCr ↔ rgb24 goes through FFmpeg's swscale with the source's matrix and range given
    explicitly (an untagged conversion is BT.601 limited: a BT.709 HD source would come back with
    shifted colours).
  * Deeper Y'CbCr (yuv420p10le, HDR10, ...) ↔ 16-bit RGB is computed here in numpy from the
    matrix below; swscale only resamples the chroma planes (to and from 4:4:4 at 16 bits, an
    exact bit shift). swscale's own 16-bit RGB path has a gain error: 10-bit limited-range white
    (940) decodes to 65283 instead of 65535 and 65535 encodes to 943, with or without
    SWS_ACCURATE_RND (PyAV 18.1, FFmpeg 8 libswscale 9.5; the exploration is in the notes).
  * RGB and grey sources convert with swscale (no matrix).

The output frames carry the source's range, primaries, transfer and matrix tags; the encoder's
codec context gets the same (and the chroma siting) from `ColourTags.apply`.

Matrix coefficients (Kr, Kb) per AVColorSpace value (libavutil/pixfmt.h numbering): ITU-R
BT.709-6, BT.601-7 (BT470BG and SMPTE170M), SMPTE 240M, FCC (Title 47 CFR 73.682) and BT.2020-2
non-constant luminance, as in libavutil/csp.c. An unspecified matrix is taken as BT.601, what
swscale assumes, so that untagged sources come back as they went in.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from esrgan_tf.images import pixels
from esrgan_tf.inference.video.errors import VideoError

# AVColorSpace → (Kr, Kb).
MATRICES = {
    1: (0.2126, 0.0722),  # BT.709
    2: (0.299, 0.114),  # unspecified: BT.601 as swscale
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470 BG (BT.601 625 lines)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525 lines)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
}
MATRIX_NAMES = {0: "RGB", 1: "BT.709", 2: "unspecified", 4: "FCC", 5: "BT.470BG",
                6: "SMPTE 170M", 7: "SMPTE 240M", 8: "YCgCo", 9: "BT.2020 NCL",
                10: "BT.2020 CL", 11: "SMPTE 2085", 14: "ICtCp"}
# AVColorSpace → swscale's SWS_CS_* (libswscale/swscale.h), what PyAV's reformat() takes.
_SWS_COLORSPACE = {1: 1, 2: 5, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}
# AVColorRange.
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
# AVChromaLocation names (libavutil/pixdesc.c) as the "chroma_sample_location" codec option.
CHROMA_LOCATIONS = ("left", "center", "topleft", "top", "bottomleft", "bottom")


@dataclasses.dataclass(frozen=True)
class ColourTags:
  """The colour description of a video stream (FFmpeg's enum values).

  Attributes:
    range: AVColorRange (0 unspecified, 1 limited "tv", 2 full "pc").
    primaries: AVColorPrimaries.
    trc: AVColorTransferCharacteristic.
    space: AVColorSpace (the Y'CbCr matrix).
    chroma_location: An AVChromaLocation name ("left", "topleft", ...) or "" if unknown.
  """

  range: int = RANGE_UNSPECIFIED
  primaries: int = 2
  trc: int = 2
  space: int = 2
  chroma_location: str = ""

  @classmethod
  def from_codec_context(cls, context, chroma_location: str = "") -> "ColourTags":
    return cls(range=int(context.color_range), primaries=int(context.color_primaries),
               trc=int(context.color_trc), space=int(context.colorspace),
               chroma_location=chroma_location)

  def apply(self, context) -> None:
    """Sets the tags on an encoder's codec context (chroma siting: `codec_options`)."""
    self.tag(context)

  def codec_options(self) -> dict:
    """The encoder option for the chroma siting (PyAV has no attribute for it)."""
    return {"chroma_sample_location": self.chroma_location} if self.chroma_location else {}

  def tag(self, frame) -> None:
    """Writes the tags onto a frame (what the encoder and the muxer read), or onto a codec
    context: PyAV names the four attributes alike on both."""
    frame.color_range = self.range
    frame.color_primaries = self.primaries
    frame.color_trc = self.trc
    frame.colorspace = self.space

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def format_depth(pix_fmt: str) -> int:
  """Bits per component of a pixel format (the deepest component)."""
  import av  # pylint: disable=g-import-not-at-top
  return max(c.bits for c in av.VideoFormat(pix_fmt).components)


def _is_yuv(pix_fmt: str) -> bool:
  import av  # pylint: disable=g-import-not-at-top
  fmt = av.VideoFormat(pix_fmt)
  return not fmt.is_rgb and len([c for c in fmt.components if not c.is_alpha]) >= 3


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
  """(luma offset, luma span, chroma offset, chroma span) in n-bit codes.

  Limited range (ITU-R BT.709/BT.2020): Y = 16·2^(n−8) + 219·2^(n−8)·Y',
  C = 128·2^(n−8) + 224·2^(n−8)·C'. Full range: Y = (2^n − 1)·Y', C = 2^(n−1) + (2^n − 1)·C'.
  """
  if full:
    peak = float((1 << bits) - 1)
    return 0.0, peak, float(1 << (bits - 1)), peak
  step = float(1 << (bits - 8))
  return 16 * step, 219 * step, 128 * step, 224 * step


def yuv_to_rgb(planes: np.ndarray, bits: int, space: int, full: bool) -> np.ndarray:
  """Y'CbCr codes → R'G'B' in [0, 1] (float32, not clipped).

  Args:
    planes: [H, W, 3] n-bit codes (any numeric dtype) in the order Y, Cb, Cr.
    bits: The codes' bit depth n.
    space: AVColorSpace (a key of `MATRICES`).
    full: Full range codes.
  """
  kr, kb = MATRICES[space]
  kg = 1.0 - kr - kb
  y_off, y_span, c_off, c_span = _levels(bits, full)
  y = (planes[..., 0].astype(np.float64) - y_off) / y_span
  cb = (planes[..., 1].astype(np.float64) - c_off) / c_span
  cr = (planes[..., 2].astype(np.float64) - c_off) / c_span
  r = y + 2.0 * (1.0 - kr) * cr
  b = y + 2.0 * (1.0 - kb) * cb
  g = (y - kr * r - kb * b) / kg
  return np.stack([r, g, b], axis=-1).astype(np.float32)


def rgb_to_yuv(rgb: np.ndarray, bits: int, space: int, full: bool) -> np.ndarray:
  """R'G'B' in [0, 1] ([H, W, 3]) → [H, W, 3] n-bit Y'CbCr codes (uint16, rounded, clipped)."""
  kr, kb = MATRICES[space]
  kg = 1.0 - kr - kb
  y_off, y_span, c_off, c_span = _levels(bits, full)
  rgb = rgb.astype(np.float64)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  y = kr * r + kg * g + kb * b
  cb = (b - y) / (2.0 * (1.0 - kb))
  cr = (r - y) / (2.0 * (1.0 - kr))
  codes = np.stack([y_off + y_span * y, c_off + c_span * cb, c_off + c_span * cr], axis=-1)
  return np.clip(np.rint(codes), 0, (1 << bits) - 1).astype(np.uint16)


@dataclasses.dataclass(frozen=True)
class Converter:
  """Decoded frames → RGB arrays, and RGB arrays → frames in the encoder's pixel format.

  Attributes:
    src_format: The decoder's pixel format.
    dst_format: The encoder's pixel format.
    tags: The source's colour tags (used both ways and written on the output frames).
    path: The source file (for messages).
  """

  src_format: str
  dst_format: str
  tags: ColourTags
  path: str = "video"

  def __post_init__(self):
    for fmt in (self.src_format, self.dst_format):
      if _is_yuv(fmt) and self.tags.space not in MATRICES:
        name = MATRIX_NAMES.get(self.tags.space, str(self.tags.space))
        raise VideoError(self.path, f"unsupported colour matrix {name} (supported: BT.601, "
                         "BT.709, BT.2020 NCL, SMPTE 240M, FCC, unspecified)")

  @property
  def rgb_bits(self) -> int:
    """8 (uint8 RGB arrays) for sources of up to 8 bits, else 16 (uint16)."""
    return 8 if format_depth(self.src_format) <= 8 else 16

  @property
  def _full(self) -> bool:
    return self.tags.range == RANGE_FULL or self.src_format.startswith("yuvj")

  def _sws(self) -> dict:
    """The source's matrix and range, as swscale takes them."""
    return {"colorspace": _SWS_COLORSPACE.get(self.tags.space, 5),
            "range": RANGE_FULL if self._full else RANGE_LIMITED}

  def to_rgb(self, frame) -> np.ndarray:
    """A decoded frame → [H, W, 3] uint8 (8-bit sources) or uint16 RGB."""
    rgb_format = "rgb24" if self.rgb_bits == 8 else "rgb48le"
    if not _is_yuv(self.src_format):
      return frame.to_ndarray(format=rgb_format)
    sws = self._sws()
    if self.rgb_bits == 8:
      return frame.reformat(format=rgb_format, src_colorspace=sws["colorspace"],
                            src_color_range=sws["range"]).to_ndarray()
    bits = format_depth(self.src_format)
    wide = frame.reformat(format="yuv444p16le", src_colorspace=sws["colorspace"],
                          dst_colorspace=sws["colorspace"], src_color_range=sws["range"],
                          dst_color_range=sws["range"])
    codes = wide.to_ndarray().astype(np.uint32) >> (16 - bits)  # [H, W, 3]: Y, Cb, Cr
    return pixels.from_float(yuv_to_rgb(codes, bits, self.tags.space, self._full), 16)

  def from_rgb(self, rgb: np.ndarray):
    """[H, W, 3] uint8/uint16 RGB → a tagged frame in `dst_format` (no pts set)."""
    import av  # pylint: disable=g-import-not-at-top
    rgb = np.ascontiguousarray(rgb)
    rgb_format = "rgb24" if rgb.dtype == np.uint8 else "rgb48le"
    bits = format_depth(self.dst_format)
    if not _is_yuv(self.dst_format) or (rgb.dtype == np.uint8 and bits <= 8):
      sws = self._sws()
      frame = av.VideoFrame.from_ndarray(rgb, format=rgb_format).reformat(
          format=self.dst_format, dst_colorspace=sws["colorspace"],
          dst_color_range=sws["range"])
    else:
      codes = rgb_to_yuv(pixels.to_float(rgb), bits, self.tags.space, self._full)
      codes <<= np.uint16(16 - bits)
      wide = av.VideoFrame.from_ndarray(codes, format="yuv444p16le")
      sws = self._sws()
      wide.colorspace, wide.color_range = self.tags.space, sws["range"]
      frame = wide.reformat(format=self.dst_format, src_colorspace=sws["colorspace"],
                            dst_colorspace=sws["colorspace"], src_color_range=sws["range"],
                            dst_color_range=sws["range"])
    self.tag(frame)
    return frame

  def tag(self, frame) -> None:
    """The source's tags on an output frame (full range for yuvj sources as they came)."""
    tags = self.tags
    if tags.range == RANGE_UNSPECIFIED and _is_yuv(self.dst_format):
      tags = dataclasses.replace(tags, range=RANGE_FULL if self._full else RANGE_UNSPECIFIED)
    tags.tag(frame)


def chroma_location_from_dump(dump: str, stream_index: int) -> str:
  """The chroma siting FFmpeg prints for stream `stream_index` in a verbose format dump.

  avcodec_string() lists it (at AV_LOG_VERBOSE) inside the pixel format's parentheses, e.g.
  "Stream #0:0: Video: h264 (High), yuv420p(tv, bt709, progressive, left), 1920x1080".
  """
  for line in dump.splitlines():
    if f"Stream #0:{stream_index}" in line and "Video:" in line:
      for detail in line.split("(")[1:]:
        words = [w.strip(" )") for w in detail.split(",")]
        found = [w for w in words if w in CHROMA_LOCATIONS]
        if found:
          return found[0]
  return ""


def probe_chroma_location(container, stream_index: int) -> str:
  """Reads the chroma siting of a video stream (PyAV does not expose it; see above).

  Raises the libav log level to VERBOSE for the one dump and puts PyAV's levels back.
  """
  import av.logging  # pylint: disable=g-import-not-at-top
  previous = av.logging.get_level()
  try:
    av.logging.set_level(av.logging.VERBOSE)
    av.logging.set_libav_level(av.logging.VERBOSE)
    dump = container.dumps_format()
  finally:
    av.logging.set_libav_level(av.logging.INFO)
    av.logging.set_level(previous)
  return chroma_location_from_dump(dump, stream_index)
