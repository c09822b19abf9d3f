"""Image encoders Pillow lacks: 16-bit colour PNG and TIFF (used by `image_io.write_image`).

Pillow 13 has no 16-bit colour mode, so it cannot write these; the formats are simple enough to
write directly from their specifications (PNG: ISO/IEC 15948; TIFF 6.0).
"""

from __future__ import annotations

import struct
from typing import Optional
import zlib

import numpy as np


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(array: np.ndarray, *, icc_profile: Optional[bytes] = None,
               compress_level: int = 6) -> bytes:
  """Encodes uint8/uint16 HxW or HxWxC (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as PNG.

  Pillow cannot write 16-bit colour PNGs, so this writes the PNG itself (PNG spec, ISO/IEC
  15948: IHDR, optional iCCP, IDAT with filter type 2 "Up" on every row, IEND).

  Args:
    array: The pixels.
    icc_profile: Optional ICC profile to embed.
    compress_level: zlib level.

  Returns:
    The PNG file bytes.

  Raises:
    ValueError: unsupported shape or dtype.
  """
  array = np.asarray(array)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or 0 in array.shape:
    raise ValueError(f"encode_png expects HxW or HxWxC with C in 1..4, got {array.shape}")
  if array.dtype == np.uint8:
    depth, data = 8, array
  elif array.dtype.kind == "u" and array.dtype.itemsize == 2:
    depth, data = 16, array.astype(">u2")
  else:
    raise ValueError(f"encode_png expects uint8 or uint16, got {array.dtype}")
  height, width, channels = array.shape
  color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
  rows = np.ascontiguousarray(data).view(np.uint8).reshape(height, -1)
  # Filter "Up" (PNG spec §9.2, type 2): byte minus the byte above, modulo 256.
  up = rows.copy()
  up[1:] -= rows[:-1]
  filtered = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1)
  out = [b"\x89PNG\r\n\x1a\n",
         _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))]
  if icc_profile:
    out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
  out.append(_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), compress_level)))
  out.append(_png_chunk(b"IEND", b""))
  return b"".join(out)


def encode_tiff16(array: np.ndarray, icc_profile: Optional[bytes]) -> bytes:
  """Little-endian TIFF 6.0 for uint16 HxWx3/HxWx4: one strip, Adobe Deflate (compression 8).

  Pillow cannot write 16-bit colour TIFFs.
  """
  height, width, channels = array.shape
  pixels = zlib.compress(np.ascontiguousarray(array.astype("<u2")).tobytes(), 6)
  entries = []  # (tag, type, count, value bytes); types: 3 SHORT, 4 LONG, 7 UNDEFINED.
  bits = struct.pack(f"<{channels}H", *([16] * channels))
  entries += [(256, 4, 1, struct.pack("<I", width)), (257, 4, 1, struct.pack("<I", height)),
              (258, 3, channels, bits), (259, 3, 1, struct.pack("<H", 8)),
              (262, 3, 1, struct.pack("<H", 2)), (273, 4, 1, None),
              (277, 3, 1, struct.pack("<H", channels)), (278, 4, 1, struct.pack("<I", height)),
              (279, 4, 1, struct.pack("<I", len(pixels))), (284, 3, 1, struct.pack("<H", 1))]
  if channels == 4:
    entries.append((338, 3, 1, struct.pack("<H", 2)))  # ExtraSamples: unassociated alpha.
  if icc_profile:
    entries.append((34675, 7, len(icc_profile), icc_profile))
  entries.sort(key=lambda e: e[0])
  ifd_size = 2 + 12 * len(entries) + 4
  extra_offset = 8 + ifd_size
  extra = b""
  offsets = {}
  for tag, _, _, value in entries:
    if value is not None and len(value) > 4:
      offsets[tag] = extra_offset + len(extra)
      extra += value + (b"\x00" if len(value) % 2 else b"")
  pixel_offset = extra_offset + len(extra)
  ifd = struct.pack("<H", len(entries))
  for tag, kind, count, value in entries:
    if tag == 273:
      value = struct.pack("<I", pixel_offset)
    field = struct.pack("<I", offsets[tag]) if tag in offsets else value.ljust(4, b"\x00")
    ifd += struct.pack("<HHI", tag, kind, count) + field
  ifd += struct.pack("<I", 0)
  return b"II*\x00" + struct.pack("<I", 8) + ifd + extra + pixels
