"""Hand-made image files for tests (written in tmp_path; no binaries in git).

Independent of images.image_io's encoders: the PNG writer here uses filter type 1 (Sub) and the
TIFF writer is big-endian, where the package writes filter 2 (Up) and little-endian TIFFs.
"""

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(array: np.ndarray) -> bytes:
  """uint8/uint16 HxW or HxWxC (C = 1, 2, 3, 4) -> PNG bytes, every row with filter 1 (Sub)."""
  if array.ndim == 2:
    array = array[..., None]
  height, width, channels = array.shape
  depth = 16 if array.dtype == np.uint16 else 8
  rows = np.ascontiguousarray(array.astype(">u2" if depth == 16 else np.uint8))
  rows = rows.view(np.uint8).reshape(height, -1).astype(np.int32)
  bpp = channels * depth // 8
  left = np.concatenate([np.zeros((height, bpp), np.int32), rows[:, :-bpp]], axis=1)
  sub = ((rows - left) % 256).astype(np.uint8)  # PNG spec §9.2: Sub(x) = Raw(x) - Raw(x - bpp).
  data = np.concatenate([np.ones((height, 1), np.uint8), sub], axis=1).tobytes()
  color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
  return (b"\x89PNG\r\n\x1a\n"
          + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
          + png_chunk(b"IDAT", zlib.compress(data)) + png_chunk(b"IEND", b""))


def header_only_png(width: int, height: int) -> bytes:
  """A valid PNG signature and IHDR declaring width×height (RGB 8 bit) with a tiny IDAT."""
  return (b"\x89PNG\r\n\x1a\n"
          + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
          + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


def tiff16_big_endian(array: np.ndarray) -> bytes:
  """uint16 HxWx3 -> uncompressed big-endian ("MM") RGB TIFF, 16 bits per sample."""
  height, width, channels = array.shape
  pixels = np.ascontiguousarray(array.astype(">u2")).tobytes()
  bits_offset = 8
  pixel_offset = bits_offset + 2 * channels
  ifd_offset = pixel_offset + len(pixels)
  entries = [  # (tag, type 3 SHORT / 4 LONG, count, value or offset)
      (256, 4, 1, width), (257, 4, 1, height), (258, 3, channels, bits_offset),
      (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, pixel_offset), (277, 3, 1, channels),
      (278, 4, 1, height), (279, 4, 1, len(pixels)), (284, 3, 1, 1)]
  ifd = struct.pack(">H", len(entries))
  for tag, kind, count, value in entries:
    field = struct.pack(">HH", value, 0) if kind == 3 and count == 1 else struct.pack(">I", value)
    ifd += struct.pack(">HHI", tag, kind, count) + field
  ifd += struct.pack(">I", 0)
  return (b"MM\x00*" + struct.pack(">I", ifd_offset) + struct.pack(f">{channels}H",
          *([16] * channels)) + pixels + ifd)


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


def rgb_image(height: int, width: int, seed: int = 0) -> Image.Image:
  """A random RGB Pillow image (uint8 noise)."""
  return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                                              dtype=np.uint8))


def touch(path, data: bytes = b"") -> str:
  """Writes `data` to `path` (parents created); returns the path as str."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def listing(directory) -> list:
  """Sorted names in `directory` ([] if it does not exist)."""
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []
