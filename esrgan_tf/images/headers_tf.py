"""What encoded images declare, read inside a TF graph (the exported `upscale_bytes`).

The pure-Python counterparts are in `headers`; both must agree, esrgan-serve checking a request
with those before this graph runs. GIF: TF's decoder (giflib's DGifSlurp) decodes EVERY frame and
allocates the largest frame's width × height for each, whatever the logical screen says (TF 2.21:
a 1×1 screen whose second frame is 1024² decodes to 1024², 6,000 frames of 512² cost 1.5 GB).
`decodable` walks the block structure to the end of the first image (`_gif_first_frame`, at
most headers.GIF_MAX_STEPS steps) and hands the decoder only that prefix plus the trailer: one
frame, of the size its image descriptor declares.
"""

from __future__ import annotations

import tensorflow as tf

from esrgan_tf.images import headers


def _be(b, i, n):
  """Big-endian unsigned integer of bytes b[i:i+n] (int64)."""
  return tf.reduce_sum(b[i:i + n] * tf.constant([256**k for k in reversed(range(n))], tf.int64))


def _le(b, i, n):
  """Little-endian unsigned integer of bytes b[i:i+n] (int64)."""
  return tf.reduce_sum(b[i:i + n] * tf.constant([256**k for k in range(n)], tf.int64))


def _header_bytes(data, n=32):
  """The first `n` bytes of a scalar string as int64 [n], zero-padded if shorter."""
  head = tf.io.decode_raw(tf.strings.substr(data, 0, n), tf.uint8)
  head = tf.pad(head, [[0, n - tf.shape(head)[0]]])
  return tf.cast(tf.reshape(head, [n]), tf.int64)


def _matches(b, offset, magic: bytes):
  return tf.reduce_all(tf.equal(b[offset:offset + len(magic)],
                                tf.constant(list(magic), tf.int64)))


_GIF_TRAILER = b"\x3b"


def _gif_first_frame(data):
  """(end, height, width) of a GIF's first image, decoding nothing; end is -1 if not found.

  The structure as in `headers.gif_frames` (GIF89a spec §§17-27): the global colour table flag
  is bit 0x80 of byte 10; an image block holds its width and height at +5 and +7, its packed
  byte at +9. A step is a block header, a sub-block, or a run of up to GIF_FULL_RUN full
  255-byte sub-blocks (one gather of their length bytes).

  Args:
    data: A scalar string tensor holding a GIF.

  Returns:
    An int32 [3] tensor.
  """
  raw = tf.io.decode_raw(data, tf.uint8)
  n = tf.size(raw)
  raw = tf.concat([raw, tf.zeros([1], tf.uint8)], 0)  # gather needs an index even when n = 0.

  def at(i):
    """Bytes at positions i (any shape), -1 past the end."""
    inside = tf.logical_and(i >= 0, i < n)
    return tf.where(inside, tf.cast(tf.gather(raw, tf.clip_by_value(i, 0, n)), tf.int32), -1)

  def table(packed):
    return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0,
                    3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(packed, 7)), 0)

  def step(pos, mode, height, width):
    # mode 0: at a block; 1: in an extension's sub-blocks; 2: in the first image's; 3: found its
    # end; 4: not a GIF block structure.
    c = at(pos)
    is_ext, is_image = tf.equal(c, 0x21), tf.equal(c, 0x2C)
    w = at(pos + 5) + 256 * at(pos + 6)
    h = at(pos + 7) + 256 * at(pos + 8)
    block_pos = tf.where(is_ext, pos + 2, pos + 11 + table(at(pos + 9)))
    block_mode = tf.where(is_ext, 1, tf.where(is_image, 2, 4))
    full = tf.math.cumprod(tf.cast(tf.equal(at(pos + 256 * tf.range(headers.GIF_FULL_RUN)), 255),
                                   tf.int32))
    run = tf.reduce_sum(full)
    sub_pos = tf.where(run > 0, pos + 256 * run, pos + tf.maximum(c, 0) + 1)
    sub_mode = tf.where(run > 0, mode, tf.where(
        tf.equal(c, 0), tf.where(tf.equal(mode, 2), 3, 0), tf.where(c < 0, 4, mode)))
    at_block = tf.equal(mode, 0)
    new_size = tf.logical_and(at_block, is_image)
    return (tf.where(at_block, block_pos, sub_pos), tf.where(at_block, block_mode, sub_mode),
            tf.where(new_size, h, height), tf.where(new_size, w, width))

  start = 13 + table(at(10))
  pos, mode, height, width = tf.while_loop(
      lambda pos, mode, height, width: mode < 3, step,
      (start, tf.where(n >= 13, 0, 4), tf.constant(-1), tf.constant(-1)),
      maximum_iterations=headers.GIF_MAX_STEPS)
  found = tf.logical_and(tf.equal(mode, 3), tf.logical_and(height > 0, width > 0))
  return tf.where(found, tf.stack([pos, height, width]), tf.constant([-1, -1, -1]))


def decodable(data):
  """(bytes to decode: a GIF's first image only, (height, width) declared for them or (-1, -1)).

  See `declared_size` for the fields read.
  """
  b = _header_bytes(data)
  unknown = tf.constant([-1, -1], tf.int64)
  is_png = tf.logical_and(_matches(b, 0, b"\x89PNG\r\n\x1a\n"), _matches(b, 12, b"IHDR"))
  is_jpeg = _matches(b, 0, b"\xff\xd8\xff")
  is_webp = tf.logical_and(_matches(b, 0, b"RIFF"), _matches(b, 8, b"WEBP"))
  is_gif = tf.logical_or(_matches(b, 0, b"GIF87a"), _matches(b, 0, b"GIF89a"))
  is_bmp = _matches(b, 0, b"BM")

  def png():
    return data, tf.stack([_be(b, 20, 4), _be(b, 16, 4)])

  def jpeg():
    return data, tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

  def webp():
    still = tf.equal(tf.bitwise.bitwise_and(b[20], 0x02), 0)  # VP8X flags: animation bit.
    vp8x = tf.stack([_le(b, 27, 3) + 1, _le(b, 24, 3) + 1])
    bits = _le(b, 21, 4)
    vp8l = tf.stack([(bits // 2**14) % 2**14 + 1, bits % 2**14 + 1])
    vp8 = tf.stack([_le(b, 28, 2) % 2**14, _le(b, 26, 2) % 2**14])
    return data, tf.case(
        [(tf.logical_and(_matches(b, 12, b"VP8X"), still), lambda: vp8x),
         (tf.logical_and(_matches(b, 12, b"VP8L"), tf.equal(b[20], 0x2f)), lambda: vp8l),
         (tf.logical_and(_matches(b, 12, b"VP8 "), _matches(b, 23, b"\x9d\x01\x2a")),
          lambda: vp8)],
        default=lambda: unknown)

  def gif():
    end, height, width = tf.unstack(tf.cast(_gif_first_frame(data), tf.int64))
    screen_height, screen_width = _le(b, 8, 2), _le(b, 6, 2)
    size = tf.where(end > 0, tf.stack([tf.maximum(height, screen_height),
                                       tf.maximum(width, screen_width)]), unknown)
    first = tf.strings.join([tf.strings.substr(data, 0, tf.cast(tf.maximum(end, 0), tf.int32)),
                             _GIF_TRAILER])
    return first, size

  def bmp():
    def magnitude(v):  # |signed int32| of an unsigned 32-bit value.
      return tf.abs(tf.where(v >= 2**31, v - 2**32, v))
    return data, tf.stack([magnitude(_le(b, 22, 4)), magnitude(_le(b, 18, 4))])

  return tf.case([(is_png, png), (is_jpeg, jpeg), (is_webp, webp), (is_gif, gif), (is_bmp, bmp)],
                 default=lambda: (data, unknown))


def declared_size(data):
  """(height, width) an encoded image declares, or (-1, -1) if not parsed.

  Field offsets: PNG, the IHDR chunk right after the 8-byte signature (PNG spec §11.2.2: width and
  height are 4-byte big-endian at byte 16 and 20); APNG frames are never decoded by TF (libpng
  reads the IHDR image only). JPEG: the SOF marker, read by `tf.io.extract_jpeg_shape`. WebP
  (RFC 9649): "RIFF" size "WEBP", then at byte 12 a chunk tag: "VP8X" → canvas width−1 and
  height−1 as 24-bit little-endian at bytes 24 and 27 (refused when its flags byte 20 has the
  animation bit 0x02: TF decodes every frame of an animation); "VP8L" → byte 20 is 0x2f, then 14
  bits width−1 and 14 bits height−1 little-endian from byte 21; "VP8 " → start code 9d 01 2a at
  byte 23, then 16-bit little-endian width and height (low 14 bits) at 26 and 28. GIF: the
  first image descriptor's size (`_gif_first_frame`, the only frame decoded), or the logical
  screen (16-bit little-endian at bytes 6 and 8) where larger. BMP (BITMAPINFOHEADER): "BM",
  then width and height as signed 32-bit little-endian at bytes 18 and 22 (a negative height
  means top-down rows; TF's decode_bmp takes its absolute value, and so does this, for the width
  too so that no sign trick passes the limit).

  Args:
    data: A scalar string tensor.

  Returns:
    An int64 [2] tensor.
  """
  return decodable(data)[1]
