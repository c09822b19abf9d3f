"""What encoded images declare, read from their structure without decoding anything.

Decoders allocate what a file declares, and some declare more than their header shows: TF's GIF
decoder allocates the largest frame's width × height for every frame whatever the logical screen
says, Pillow turns every array of a TIFF directory into Python objects (a 36 MB file of 4 M
strips cost 1.35 GB). These readers walk the structure with bounded work first:
  * `gif_frames`: every GIF frame's size, and the steps the exported graph's own walk to the end
    of the first image takes (GIF_MAX_STEPS), for esrgan-serve;
  * `webp_size`: a still WebP's size (animated ones are refused), for esrgan-serve;
  * `tiff_pages`: a TIFF's page count, refusing more than MAX_TIFF_PAGES pages, MAX_TIFF_BLOCKS
    strips or tiles a page, or MAX_TIFF_VALUES values in a tag, for esrgan-upscale's reader;
  * `icc_space`: the colour space an ICC profile declares.
Pure Python over bytes: no Pillow, no TensorFlow. Errors are `HeaderError` (a ValueError).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Optional

# The exported graph decodes a GIF's first image only, found by walking its blocks in at most
# GIF_MAX_STEPS steps: a block header, a data sub-block, or a run of up to GIF_FULL_RUN full
# 255-byte sub-blocks (how giflib, Pillow and ImageMagick write image data: 1,024 steps then reach
# 64 MB of it; a photo's first frame needs tens, ~0.1 ms each). esrgan-serve counts the same.
GIF_MAX_STEPS = 1024
GIF_FULL_RUN = 256
# GIF data sub-blocks walked at most over all frames (a GIF of 1 M full 255-byte sub-blocks is
# 255 MB; tiny sub-blocks only make the walk slow).
GIF_MAX_SUBBLOCKS = 1 << 20
# TIFF bounds, checked from the directories' entry headers before Pillow reads any array. libtiff
# writes strips of ~8 kB (TIFFDefaultStripSize), one row each for wide images: an 89 Mpx image
# then has ~10,000 strips; 131,072 admit 1-row strips up to that height and keep Pillow's tile
# list (~300 B a strip) under 40 MB. Tag arrays (other than bytes and text) cost ~36 B a value.
MAX_TIFF_PAGES = 4096
MAX_TIFF_BLOCKS = 1 << 17
MAX_TIFF_VALUES = 1 << 20
MAX_TIFF_ENTRIES = 1 << 20  # Directory entries walked over all pages.


class HeaderError(ValueError):
  """A structure that is malformed, or declares more than the readers accept."""


@dataclasses.dataclass(frozen=True)
class GifFrames:
  """A GIF's frames: `sizes` [(width, height)] in order, the logical `screen` (width, height),
  and `first_steps`, the exported graph's walk steps to the end of the first image."""

  sizes: list
  screen: tuple
  first_steps: int


def _gif_table(packed: int) -> int:
  """Bytes of the colour table a GIF packed byte announces (flag 0x80, 3·2^(1 + bits 0-2))."""
  return 3 * 2 ** (1 + (packed & 7)) if packed & 0x80 else 0


def _gif_subblocks(data: bytes, pos: int) -> tuple[int, int, int]:
  """(position after the zero length, graph steps, sub-blocks) of a sub-block chain."""
  steps = blocks = 0
  while pos < len(data) and data[pos]:
    if data[pos] == 255:  # The graph skips up to GIF_FULL_RUN full sub-blocks in one step.
      run = 0
      while run < GIF_FULL_RUN and pos < len(data) and data[pos] == 255:
        pos, run = pos + 256, run + 1
      blocks += run
    else:
      pos, blocks = pos + data[pos] + 1, blocks + 1
    steps += 1
    if blocks > GIF_MAX_SUBBLOCKS:
      break
  return pos + 1, steps + 1, blocks


def gif_frames(data: bytes) -> GifFrames:
  """Every frame's size from the block structure (GIF89a spec §§17-27), decoding nothing.

  After the 6-byte signature and the 7-byte logical screen descriptor (width, height, packed
  byte: global colour table) come blocks: 0x21 extension (label, then sub-blocks), 0x2C image
  (left, top, width, height as 16-bit little-endian, packed byte: local colour table, LZW code
  size, sub-blocks), and the 0x3B trailer (TF's decoder also takes a file that lacks it).
  Sub-blocks are a length byte and that many bytes, ended by a zero length.

  Raises:
    HeaderError: Not a block structure, a frame of zero size, no frame, more than
      GIF_MAX_SUBBLOCKS sub-blocks, or a first image the graph's walk would not finish.
  """
  if len(data) < 13:
    raise HeaderError(f"a GIF of {len(data)} bytes has no screen descriptor")
  pos = 13 + _gif_table(data[10])
  sizes: list = []
  steps = walked = 0
  while pos < len(data) and data[pos] != 0x3B:
    block = data[pos]
    if block == 0x21:
      pos += 2
    elif block == 0x2C and pos + 10 <= len(data):
      width, height = struct.unpack_from("<HH", data, pos + 5)
      if width < 1 or height < 1:
        raise HeaderError(f"GIF frame {len(sizes)} is {width}×{height}")
      sizes.append((width, height))
      pos += 10 + _gif_table(data[pos + 9]) + 1
    else:
      raise HeaderError(f"not a GIF block (byte {block:#04x} at offset {pos})")
    pos, block_steps, blocks = _gif_subblocks(data, pos)
    walked += blocks
    if walked > GIF_MAX_SUBBLOCKS:
      raise HeaderError(f"a GIF of more than {GIF_MAX_SUBBLOCKS} data blocks is refused")
    if len(sizes) <= 1:
      steps += 1 + block_steps
      if steps > GIF_MAX_STEPS:
        raise HeaderError(f"the first GIF image does not end within "
                          f"{GIF_MAX_STEPS} blocks (all that upscale_bytes reads)")
  if not sizes:
    raise HeaderError("a GIF without any image")
  return GifFrames(sizes, struct.unpack_from("<HH", data, 6), steps)


def webp_size(data: bytes) -> tuple[int, int]:
  """(width, height) in a still WebP's header (RFC 9649 §2.5-2.7; VP8 key frame: RFC 6386 §9.1).

  Raises:
    HeaderError: Animated (VP8X flags bit 0x02), or no size where the format puts it.
  """
  chunk = data[12:16]
  if chunk == b"VP8X" and len(data) >= 30:
    if data[20] & 0x02:
      raise HeaderError("animated WebP is not accepted (upscale_bytes decodes still images; "
                        "send one frame)")
    return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
  if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
    bits = int.from_bytes(data[21:25], "little")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
  if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
    return (int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF)
  raise HeaderError("cannot read a size from the WebP header")


# TIFF 6.0 §2 (and BigTIFF): byte order "II"/"MM", 42 (classic: 4-byte offsets, 12-byte entries
# with a 4-byte count) or 43 (BigTIFF: 8-byte offsets, 20-byte entries with an 8-byte count); a
# directory (IFD) is an entry count, entries (tag, type, count, value or offset) and the next
# directory's offset.
_TIFF_BLOCK_TAGS = {273: "StripOffsets", 279: "StripByteCounts", 324: "TileOffsets",
                    325: "TileByteCounts"}
_TIFF_BYTE_TYPES = {1, 2, 6, 7}  # BYTE, ASCII, SBYTE, UNDEFINED: kept as bytes/str by Pillow.


def _tiff_directory(table: bytes, order: str, big: bool, page: int) -> None:
  """Checks one directory's entries (their counts only)."""
  size = 20 if big else 12
  for index in range(len(table) // size):
    entry = table[index * size:(index + 1) * size]
    tag, kind = struct.unpack(order + "HH", entry[:4])
    (values,) = struct.unpack(order + ("Q" if big else "I"), entry[4:12 if big else 8])
    if tag in _TIFF_BLOCK_TAGS and values > MAX_TIFF_BLOCKS:
      raise HeaderError(f"TIFF page {page} has {values:,} {_TIFF_BLOCK_TAGS[tag]}, over the "
                        f"limit of {MAX_TIFF_BLOCKS:,}")
    if kind not in _TIFF_BYTE_TYPES and values > MAX_TIFF_VALUES:
      raise HeaderError(f"TIFF page {page}: tag {tag} holds {values:,} values, over the limit "
                        f"of {MAX_TIFF_VALUES:,}")


def tiff_pages(fp: BinaryIO) -> Optional[int]:
  """A TIFF's page count from its directory chain (None if `fp` is no TIFF); position kept.

  Raises:
    HeaderError: A truncated header, a looping chain, or more pages, strips/tiles, values in
      a tag or directory entries than accepted.
  """
  position = fp.tell()
  try:
    fp.seek(0)
    head = fp.read(16)
    if head[:4] not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
      return None
    order, big = ("<" if head[:2] == b"II" else ">"), head[2:4] in (b"+\0", b"\0+")
    if len(head) < (16 if big else 8):
      raise HeaderError(f"truncated file ({len(head)}-byte TIFF header)")
    (offset,) = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])
    pages, entries, seen = 0, 0, set()
    while offset:
      if offset in seen:
        raise HeaderError(f"TIFF page {pages + 1} points back to an earlier one (a loop)")
      if pages == MAX_TIFF_PAGES:
        raise HeaderError(f"TIFF of more than {MAX_TIFF_PAGES:,} pages")
      seen.add(offset)
      fp.seek(offset)
      raw = fp.read(8 if big else 2)
      if len(raw) < (8 if big else 2):
        break  # A truncated chain: Pillow reports it when it reads that page.
      (count,) = struct.unpack(order + ("Q" if big else "H"), raw)
      entries += count
      if entries > MAX_TIFF_ENTRIES:
        raise HeaderError(f"TIFF with more than {MAX_TIFF_ENTRIES:,} directory entries")
      size, width = (20, 8) if big else (12, 4)
      table = fp.read(count * size + width)
      pages += 1
      _tiff_directory(table[:count * size], order, big, pages)
      tail = table[count * size:]
      offset = struct.unpack(order + ("Q" if big else "I"), tail)[0] if len(tail) == width else 0
    return pages
  finally:
    fp.seek(position)


def icc_space(icc: Optional[bytes]) -> Optional[str]:
  """The data colour space an ICC profile declares (ICC.1:2010 §7.2.6: header bytes 16..19)."""
  if not icc or len(icc) < 20:
    return None
  return icc[16:20].decode("latin-1").strip().upper()
