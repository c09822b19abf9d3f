"""Safe image reading and writing for super-resolution (Pillow).

Reading (`read_image`, `decode_image_bytes`):
  * Format allowlist: PNG, JPEG, WebP, BMP, TIFF (`ALLOWED_FORMATS`). Anything else (GIF, ICO,
    PPM, ...) is refused by name, identified from the file signature only.
  * Decompression-bomb guard: the pixel count declared by the header is checked against
    `max_pixels` before any pixel data is decoded. Pillow's own global check in `Image.open` is not
    used (the plugin is opened directly), so a per-call limit needs no change to the process-wide
    `Image.MAX_IMAGE_PIXELS` (which other threads may rely on).
  * EXIF orientation is applied (`ImageOps.exif_transpose`).
  * Every failure (missing, empty, not an image, unsupported format, corrupt, truncated,
    zero-sized, too large, multi-frame) raises one `ImageError` whose message starts with the file
    name and says the cause in plain words.

Pixel modes (`LoadedImage.color` is always float32 HxWx3 in [0, 1] for the network):
  * RGB, RGBA: 8 bit; 16-bit PNG/TIFF colour is kept 16 bit. Pillow 13 has no 16-bit colour mode
    and decodes such files to 8-bit "RGB"/"RGBA" (rawmode "RGB;16B" keeps the high byte), so the
    data is decoded a second time with the opposite-endian rawmode to get the low bytes.
  * L, 1, I;16 (I;16L/I;16B): grayscale, fed to the net as RGB and written back as grayscale
    (8 or 16 bit). LA (and 16-bit gray+alpha PNG): grayscale plus a separate alpha.
  * P (palette), with or without transparency: converted to RGB or RGBA and written back as
    RGB/RGBA. Re-quantising to a palette after super-resolution would be lossy and is not done.
  * CMYK (e.g. JPEG from print workflows): converted to RGB (through its ICC profile into sRGB
    when it has one, else Pillow's naive conversion) and written as RGB.
  * Multi-frame files (animated WebP/PNG, multi-page TIFF) are refused unless
    `multi_frame="first"`, which decodes the first frame only (with a warning). The extra images
    of an MPO JPEG (camera previews) are ignored: the primary image is what every JPEG viewer shows.
    A TIFF's structure (pages, strips, tag arrays) is bounded before Pillow parses it (`headers`).

Nothing here changes Pillow's global state (`Image.MAX_IMAGE_PIXELS`, `LOAD_TRUNCATED_IMAGES`),
so reading from several threads is safe.

Writing (`write_image`) is atomic: a temporary file in the target directory, fsync, then a rename;
an existing file is never replaced unless `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import struct
import sys
from typing import BinaryIO, Optional
import zlib

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

from esrgan_tf.core import fileio
from esrgan_tf.images import encoders as codecs
from esrgan_tf.images import headers, pixels

logger = logging.getLogger(__name__)

# Pillow's default `Image.MAX_IMAGE_PIXELS`, int(1024 * 1024 * 1024 // 4 // 3) (PIL/Image.py:
# "1024*1024*1024 // 4 // 3", about a 1 GB RGB bitmap), used here as the default per-call limit.
BOMB_MAX_PIXELS = 89_478_485

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_DISPLAY_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}
# Pillow plugin formats accepted for each allowed format (a JPEG with MP data opens as "MPO").
_OPEN_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP", "BMP": "BMP",
                 "TIFF": "TIFF"}
# File extensions → format; `IMAGE_EXTENSIONS` are the names looked for in directories.
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG",
                     ".jfif": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                     ".tiff": "TIFF"}
IMAGE_EXTENSIONS = tuple(EXTENSION_FORMATS)
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
# Output formats that can store an alpha channel (Pillow reads RGBA BMP back as RGB) and 16 bits.
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
_DEEP_FORMATS = ("PNG", "TIFF")
MULTI_FRAME_MODES = ("error", "first")
ALPHA_MODES = ("bicubic", "model")

# 16-bit colour rawmodes Pillow decodes to 8 bit (high byte) -> rawmode of the same bit width
# that picks the low bytes instead ("N" = native byte order, used by the libtiff decoder).
_NATIVE = "L" if sys.byteorder == "little" else "B"
_OTHER = "B" if _NATIVE == "L" else "L"
_LOW_BYTE_RAWMODES = {}
for _base in ("RGB", "RGBA"):
  _LOW_BYTE_RAWMODES[f"{_base};16B"] = f"{_base};16L"
  _LOW_BYTE_RAWMODES[f"{_base};16L"] = f"{_base};16B"
  _LOW_BYTE_RAWMODES[f"{_base};16N"] = f"{_base};16{_OTHER}"

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError,
                  struct.error, zlib.error, Image.DecompressionBombError)


class ImageError(Exception):
  """An image could not be read or written; the message starts with the file name."""


@dataclasses.dataclass
class LoadedImage:
  """A decoded image, ready for the network and for writing back.

  Attributes:
    path: The source file path (or "<bytes>" for in-memory data).
    format: The source format, one of `ALLOWED_FORMATS`.
    mode: The Pillow mode of the file (e.g. "P", "CMYK", "I;16", "LA"). Pillow 13 reports 16-bit
      colour as "RGB"/"RGBA" (bit_depth tells them apart); 16-bit gray+alpha PNG is "LA" here.
    color: float32 HxWx3 in [0, 1] (grayscale replicated to 3 channels), or (for writing)
      uint8/uint16 already quantized by `esrgan_tf.images.pixels`, written as is where it can be.
    alpha: float32 HxW in [0, 1], or None.
    bit_depth: 8 or 16 (bits per channel when written back).
    grayscale: True if written back as grayscale (L / LA / 16-bit gray).
    icc_profile: The embedded ICC profile (None if absent or not valid for the output colours,
      e.g. a CMYK profile after conversion to RGB).
  """
  path: str
  format: str
  mode: str
  color: np.ndarray
  alpha: Optional[np.ndarray]
  bit_depth: int
  grayscale: bool = False
  icc_profile: Optional[bytes] = None

  @property
  def size(self) -> tuple[int, int]:
    """(width, height) in pixels."""
    return self.color.shape[1], self.color.shape[0]


# Integer ↔ float conversions (one rounding rule for the whole package) live in `pixels`.
to_float = pixels.to_float
from_float = pixels.from_float


# ----------------------------------------------------------------------------- reading


def _err(name: str, cause: str) -> ImageError:
  return ImageError(f"{name}: {cause}")


def _display(fmt: str) -> str:
  return _DISPLAY_NAMES.get(fmt, fmt)


def _allowed_text() -> str:
  return ", ".join(_display(f) for f in ALLOWED_FORMATS)


def check_header(name: str, fmt: str, size: tuple[int, int], max_pixels: Optional[int]) -> None:
  """Validates what a header declares, before any pixel data is decoded.

  Args:
    name: File name for messages.
    fmt: Pillow format name.
    size: (width, height) declared by the header.
    max_pixels: Largest allowed width × height; None or 0 disables the limit.

  Raises:
    ImageError: unsupported format, zero-sized image, or too many pixels.
  """
  if _OPEN_FORMATS.get(fmt) not in ALLOWED_FORMATS:
    raise _err(name, f"unsupported format {fmt} (allowed: {_allowed_text()})")
  width, height = size
  if width <= 0 or height <= 0:
    raise _err(name, f"zero-sized image ({width}×{height})")
  if max_pixels and width * height > max_pixels:
    raise _err(name, f"header declares {width}×{height} = {width * height:,} pixels, over the "
               f"limit of {max_pixels:,} (--max_pixels)")


def _identify(fp: BinaryIO, name: str) -> ImageFile.ImageFile:
  """Opens `fp` lazily with the plugin of an allowed format, refusing others by name."""
  prefix = fp.read(24)
  fp.seek(0)
  if not prefix:
    raise _err(name, "empty file (0 bytes)")
  Image.init()  # registers every plugin (idempotent); needed to name refused formats.
  for fmt in _OPEN_FORMATS:
    if fmt not in Image.OPEN:
      continue
    factory, accept = Image.OPEN[fmt]
    accepted = True if accept is None else accept(prefix)
    if not accepted or isinstance(accepted, str):
      continue
    if fmt == "PNG" and len(prefix) >= 24 and prefix[12:16] == b"IHDR":
      # Pillow rejects a zero width/height with a generic "not identified"; say it plainly.
      check_header(name, fmt, struct.unpack(">II", prefix[16:24]), None)
    fp.seek(0)
    try:
      headers.tiff_pages(fp)  # Refuses a TIFF structure Pillow would expand (None: no TIFF).
      # The factory reads the header only; unlike Image.open it applies no global pixel limit.
      return factory(fp, name)
    except _DECODE_ERRORS as e:
      raise _decode_error(name, _OPEN_FORMATS[fmt], "header", e) from e
  for fmt, (_, accept) in Image.OPEN.items():
    if fmt in _OPEN_FORMATS or accept is None:
      continue
    try:
      result = accept(prefix)
    except Exception:  # pylint: disable=broad-except  # a plugin's signature test; ignore.
      continue
    if result and not isinstance(result, str):
      raise _err(name, f"unsupported format {fmt} (allowed: {_allowed_text()})")
  raise _err(name, f"not an image (unrecognised data, starts with {prefix[:8]!r}; "
             f"allowed formats: {_allowed_text()})")


def _load(im: ImageFile.ImageFile, name: str) -> None:
  try:
    im.load()
  except Image.DecompressionBombError as e:
    raise _err(name, f"refused by Pillow's decompression-bomb check ({e})") from e
  except _DECODE_ERRORS as e:
    raise _decode_error(name, im.format, "data", e) from e


def _decode_error(name: str, fmt: str, part: str, e: Exception) -> ImageError:
  text = str(e) or type(e).__name__
  if isinstance(e, headers.HeaderError):  # A bound of ours, not corruption.
    return _err(name, text)
  if "truncated" in text.lower() or isinstance(e, EOFError):
    return _err(name, f"truncated file ({text})")
  return _err(name, f"corrupt {_display(_OPEN_FORMATS.get(fmt, fmt))} {part} ({text})")


def _rawmode(im: ImageFile.ImageFile) -> Optional[str]:
  """The single rawmode of the image's tiles (None if they differ); read before load()."""
  rawmodes = {t.args if isinstance(t.args, str) else t.args[0] for t in im.tile}
  return rawmodes.pop() if len(rawmodes) == 1 else None


def _decode_again(fp: BinaryIO, name: str, rawmode: str) -> Image.Image:
  """Decodes the file again with another rawmode of the same bit width."""
  fp.seek(0)
  im = _identify(fp, name)
  im.tile = [t._replace(args=rawmode if isinstance(t.args, str) else (rawmode,) + tuple(t.args[1:]))
             for t in im.tile]
  _load(im, name)
  return im


def _cmyk_to_rgb(im: Image.Image, icc: Optional[bytes], name: str) -> Image.Image:
  if icc and headers.icc_space(icc) == "CMYK":
    try:
      src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
      return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
      logger.warning("%s: CMYK ICC profile not usable (%s); naive CMYK->RGB conversion", name, e)
  return im.convert("RGB")


def _to_loaded(im: Image.Image, deep: Optional[tuple[str, Image.Image]], name: str, fmt: str,
               icc: Optional[bytes]) -> LoadedImage:
  mode = im.mode
  if deep is not None and deep[0] == "split":  # 16-bit colour: (high byte << 8) | low byte.
    hi = np.asarray(im).astype(np.uint16)
    arr = (hi << 8) | np.asarray(deep[1]).astype(np.uint16)
    return _from_channels(name, fmt, mode, arr, 16, grayscale=False, icc=icc)
  if deep is not None:  # 16-bit gray+alpha PNG, bytes (Lhi, Llo, Ahi, Alo) in R, G, B, A.
    b = np.asarray(deep[1]).astype(np.uint16)
    arr = (b[..., 0::2] << 8) | b[..., 1::2]
    return _from_channels(name, fmt, "LA", arr, 16, grayscale=True, icc=icc)
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    arr = np.asarray(im)
    if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
      raise _err(name, "32-bit integer pixels outside 0..65535 are not supported")
    return _from_channels(name, fmt, mode, arr.astype(np.uint16), 16, grayscale=True, icc=icc)
  if mode in ("1", "L"):
    return _from_channels(name, fmt, mode, np.asarray(im.convert("L")), 8, True, icc)
  if mode in ("LA", "La"):
    return _from_channels(name, fmt, mode, np.asarray(im.convert("LA")), 8, True, icc)
  if mode == "RGB":
    return _from_channels(name, fmt, mode, np.asarray(im), 8, False, icc)
  if mode in ("RGBA", "RGBa"):
    return _from_channels(name, fmt, mode, np.asarray(im.convert("RGBA")), 8, False, icc)
  if mode in ("P", "PA"):
    has_alpha = mode == "PA" or im.has_transparency_data
    rgb = im.convert("RGBA" if has_alpha else "RGB")
    return _from_channels(name, fmt, mode, np.asarray(rgb), 8, False, icc)
  if mode == "CMYK":
    rgb = _cmyk_to_rgb(im, icc, name)
    return _from_channels(name, fmt, mode, np.asarray(rgb), 8, False, None)
  if mode == "F":
    raise _err(name, "floating-point pixels (mode F) are not supported")
  try:
    rgb = im.convert("RGB")
  except (ValueError, OSError) as e:
    raise _err(name, f"unsupported pixel mode {mode}") from e
  return _from_channels(name, fmt, mode, np.asarray(rgb), 8, False, None)


def _from_channels(name, fmt, mode, arr, bit_depth, grayscale, icc) -> LoadedImage:
  """uint8/uint16 HxW, HxWx2 (gray+alpha), HxWx3 or HxWx4 -> LoadedImage."""
  if arr.ndim == 2:
    arr = arr[..., None]
  channels = arr.shape[-1]
  values = to_float(arr)
  alpha = values[..., -1] if channels in (2, 4) else None
  color = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=-1)
  if icc is not None and headers.icc_space(icc) != ("GRAY" if grayscale else "RGB"):
    icc = None
  return LoadedImage(path=name, format=fmt, mode=mode, color=np.ascontiguousarray(color),
                     alpha=None if alpha is None else np.ascontiguousarray(alpha),
                     bit_depth=bit_depth, grayscale=grayscale, icc_profile=icc)


def _read(fp: BinaryIO, name: str, max_pixels: Optional[int], multi_frame: str) -> LoadedImage:
  if multi_frame not in MULTI_FRAME_MODES:
    raise ValueError(f"multi_frame must be one of {MULTI_FRAME_MODES}, got {multi_frame!r}")
  im = _identify(fp, name)
  check_header(name, im.format, im.size, max_pixels)
  fmt = _OPEN_FORMATS[im.format]
  try:
    frames = headers.tiff_pages(fp) or (getattr(im, "n_frames", 1) if im.format != "MPO" else 1)
  except _DECODE_ERRORS as e:
    raise _decode_error(name, fmt, "data", e) from e
  if frames > 1:
    if multi_frame == "error":
      raise _err(name, f"{frames} frames (animated or multi-page); pass multi_frame=\"first\" "
                 "(--multi_frame=first) to upscale the first frame only")
    logger.warning("%s: %d frames; upscaling the first frame only", name, frames)
  icc = im.info.get("icc_profile")
  rawmode = _rawmode(im)
  _load(im, name)
  deep = None  # 16-bit colour or gray+alpha, which Pillow decodes to 8 bits.
  if rawmode in _LOW_BYTE_RAWMODES:
    deep = ("split", _decode_again(fp, name, _LOW_BYTE_RAWMODES[rawmode]))
  elif rawmode == "LA;16B":  # Same 32 bits per pixel as 8-bit "RGBA": (Lhi, Llo, Ahi, Alo).
    deep = ("la16", _decode_again(fp, name, "RGBA"))
  try:
    oriented = ImageOps.exif_transpose(im)
    if deep is not None:
      deep = (deep[0], ImageOps.exif_transpose(deep[1]))
  except _DECODE_ERRORS as e:  # A broken EXIF block should not lose the picture.
    logger.warning("%s: EXIF orientation not applied (%s)", name, e)
    oriented = im
  try:
    return _to_loaded(oriented, deep, name, fmt, icc)
  except (ValueError, OSError) as e:  # a Pillow conversion this mode does not support
    raise _err(name, f"cannot convert pixel mode {im.mode} ({e})") from e


def read_image(path: str | os.PathLike, *, max_pixels: Optional[int] = BOMB_MAX_PIXELS,
               multi_frame: str = "error") -> LoadedImage:
  """Reads an image file safely (see the module docstring for formats and modes).

  Args:
    path: The file to read.
    max_pixels: Largest width × height accepted, checked from the header before decoding;
      None or 0 disables the check.
    multi_frame: "error" (refuse animated/multi-page files) or "first" (frame 0, warned).

  Returns:
    The decoded `LoadedImage`.

  Raises:
    ImageError: the file is missing, not a regular file, empty, not an image, of an unsupported
      format, corrupt, truncated, zero-sized, over `max_pixels`, or multi-frame (if "error").
    ValueError: for a bad `multi_frame` value.
  """
  name = os.fspath(path)
  try:
    fp = fileio.open_regular(name)
  except FileNotFoundError as e:
    raise _err(name, "no such file") from e
  except IsADirectoryError as e:
    raise _err(name, "is a directory, not an image file") from e
  except fileio.NotRegularFileError as e:
    raise _err(name, f"is {e.kind}, not a regular file; refused without reading it") from e
  except OSError as e:
    raise _err(name, f"cannot open ({e.strerror or e})") from e
  with fp:
    return _read(fp, name, max_pixels, multi_frame)


def decode_image_bytes(data: bytes, *, max_pixels: Optional[int] = BOMB_MAX_PIXELS,
                       name: str = "<bytes>", multi_frame: str = "error") -> LoadedImage:
  """Like `read_image` for encoded bytes in memory (e.g. a request body).

  Args:
    data: The encoded image.
    max_pixels: As in `read_image`.
    name: Used at the start of error messages.
    multi_frame: As in `read_image`.

  Returns:
    The decoded `LoadedImage` (its `path` is `name`).

  Raises:
    ImageError: as `read_image`.
  """
  return _read(io.BytesIO(bytes(data)), name, max_pixels, multi_frame)


# ----------------------------------------------------------------------------- encoding


def _output_format(path: str, format: Optional[str]) -> str:
  if format:
    fmt = format.upper().lstrip(".")
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in ALLOWED_FORMATS:
      raise _err(path, f"unsupported output format {format} (allowed: {_allowed_text()})")
    return fmt
  ext = os.path.splitext(path)[1].lower()
  if ext not in EXTENSION_FORMATS:
    raise _err(path, f"cannot choose an output format from the extension {ext or '(none)'!r} "
               f"(allowed: {_allowed_text()}); pass a format")
  return EXTENSION_FORMATS[ext]


def _encode(fp: BinaryIO, img: LoadedImage, fmt: str, quality: int, name: str) -> None:
  """Writes `img` to the open file `fp` in format `fmt` (see `write_image`)."""
  color, alpha, depth = img.color, img.alpha, img.bit_depth
  composite = alpha is not None and fmt not in _ALPHA_FORMATS
  if depth == 16 and fmt not in _DEEP_FORMATS:
    logger.warning("%s: %s is 8 bit; 16-bit image written as 8 bit", name, _display(fmt))
    depth = 8
  gray = img.grayscale and fmt != "WEBP"  # WebP has no grayscale mode.
  if color.dtype.kind == "u" and (composite or gray or color.dtype != pixels.integer_dtype(depth)):
    color = to_float(color)  # Needs float maths or another depth.
  if composite:
    logger.warning("%s: %s cannot store alpha; composited over white", name, _display(fmt))
    a = alpha[..., None]
    color, alpha = color * a + (1.0 - a), None
  if gray:
    # ITU-R 601-2 luma, as Pillow's convert("L").
    color = (color @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  planes = pixels.join_planes(color, alpha, depth)
  space = headers.icc_space(img.icc_profile)
  icc = img.icc_profile if space == ("GRAY" if gray else "RGB") else None
  channels = planes.shape[-1]
  if depth == 16 and (channels > 1 or fmt == "PNG"):
    if fmt == "PNG":
      fp.write(codecs.encode_png(planes, icc_profile=icc))
      return
    if channels == 2:  # 16-bit gray+alpha TIFF: stored as 16-bit RGBA.
      planes = planes[..., [0, 0, 0, 1]]
    fp.write(codecs.encode_tiff16(planes, icc))
    return
  # uint16 HxW -> "I;16"; uint8 HxW, HxWx2, HxWx3, HxWx4 -> "L", "LA", "RGB", "RGBA".
  pil = Image.fromarray(planes if channels > 1 else planes[..., 0])
  options = {}
  if icc:
    options["icc_profile"] = icc
  if fmt in ("JPEG", "WEBP"):
    options["quality"] = quality
  if fmt == "TIFF":
    options["compression"] = "tiff_deflate"
  pil.save(fp, format=fmt, **options)


def write_image(path: str | os.PathLike, img: LoadedImage, *, overwrite: bool = False,
                format: Optional[str] = None, quality: int = 95) -> str:
  """Writes `img` atomically; an existing file is replaced only with `overwrite=True`.

  The output keeps the source kind where the format allows: grayscale stays grayscale (8 or 16
  bit), 16-bit stays 16-bit in PNG and TIFF, alpha is kept in PNG, WebP and TIFF. Palette and
  CMYK sources are written as RGB/RGBA. Formats that cannot hold the data lose it with a logged
  warning: JPEG/BMP alpha is composited over white, 16 bit becomes 8 bit in JPEG, WebP and BMP;
  WebP has no grayscale and stores gray as RGB.

  Args:
    path: Destination file.
    img: The image (e.g. from `inference.batch.upscale_loaded`).
    overwrite: Replace an existing file.
    format: Output format ("PNG", "JPEG"/"JPG", "WEBP", "BMP", "TIFF"/"TIF"); by default from
      the extension of `path`.
    quality: JPEG/WebP quality.

  Returns:
    The path written.

  Raises:
    ImageError: unsupported format, the file exists without `overwrite`, or an OS error
      (missing directory, no permission, disk full); no partial or temporary file is left.
  """
  path = os.fspath(path)
  fmt = _output_format(path, format)
  if os.path.isdir(path):
    raise _err(path, "is a directory")
  if not overwrite and os.path.lexists(path):
    raise _err(path, "exists; pass --overwrite to replace it")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise _err(path, f"directory {directory} does not exist")
  try:
    fileio.atomic_write(path, lambda fp: _encode(fp, img, fmt, quality, path),
                        overwrite=overwrite)
  except ImageError:
    raise
  except FileExistsError as e:  # appeared while we encoded
    raise _err(path, "exists; pass --overwrite to replace it") from e
  except OSError as e:
    raise _err(path, f"cannot write ({e.strerror or e})") from e
  except (ValueError, TypeError, KeyError) as e:
    raise _err(path, f"cannot encode as {_display(fmt)} ({e})") from e
  return path
