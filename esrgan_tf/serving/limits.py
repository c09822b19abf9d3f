"""Request and answer bounds of `esrgan-serve`, checked before anything large is allocated.

The checks live here, shared by the gRPC and REST front ends (`validate_inputs` checks numpy
inputs against a signature, as before; the ones below come first):
  * `tensor_proto_to_array`: a gRPC `TensorProto` against its signature input (dtype, rank, every
    dim, element count, the number of values it carries) BEFORE `tf.make_ndarray` expands it: a
    one-value `float_val` with shape [1, 6000, 6000, 3] would otherwise become a 400 MB array.
  * `read_image_header` / `check_header`: the size an encoded image declares, read without
    decoding: its magic bytes first (PNG, JPEG, GIF, BMP, WebP: nothing else reaches a parser),
    then Pillow's `Image.open` with that one format's plugin (PNG/JPEG/BMP), or the block
    structure read here (every frame of a GIF, the WebP header; animated WebP is refused). The
    pixels a decoder would allocate must fit the limit: the first frame for our exports (their
    graph decodes nothing else), every GIF frame on TF's canvas for exports that decode them all.
  * `answer_bytes`: an upper bound of the answer's size (raw tensor bytes for gRPC, JSON text for
    REST), compared with the message limit before the model runs.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Callable, Optional

import grpc
import numpy as np

from esrgan_tf.images import headers
from esrgan_tf.serving.errors import ServingError

# upscale_bytes: at most this many encoded images per request (each is decoded and run one at a
# time in the graph; a request of millions of tiny strings must not probe Pillow millions of times).
MAX_IMAGES_PER_REQUEST = 64
# TF's TensorProto allows one value broadcast over the whole shape; admitted only for small
# tensors (a broadcast over a large shape is an allocation multiplier, not a real image).
MAX_BROADCAST_ELEMENTS = 4096
# Worst-case JSON text per number: Python's repr of a double is at most 24 characters
# ("-2.2250738585072014e-308"), plus one separator; integers of uint8 at most "255,".
JSON_BYTES_PER_FLOAT = 25
JSON_BYTES_PER_UINT8 = 4
# PNG worst case over raw pixels: deflate's stored blocks add 5 bytes per 65535 and each row a
# filter byte; 1 % plus a fixed 4 kB covers signature, IHDR, IEND and zlib framing.
PNG_OVERHEAD_FRACTION, PNG_OVERHEAD_BYTES = 0.01, 4096

# TensorProto value fields by dtype name (tensorflow/core/framework/tensor.proto comments).
_VALUE_FIELDS = {
    "float32": "float_val", "float64": "double_val", "float16": "half_val",
    "bfloat16": "half_val", "int32": "int_val", "int16": "int_val", "int8": "int_val",
    "uint8": "int_val", "uint16": "int_val", "int64": "int64_val", "uint32": "uint32_val",
    "uint64": "uint64_val", "bool": "bool_val", "string": "string_val",
}


def _bad(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _dtype(dtype_enum: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    return tf.as_dtype(dtype_enum)
  except TypeError:
    return None


def tensor_proto_to_array(proto, alias: str, info, *, max_pixels: int,
                          is_active: Optional[Callable[[], bool]] = None) -> np.ndarray:
  """A validated `TensorProto` as numpy, allocating only what the proto really carries.

  Args:
    proto: The request's TensorProto for input `alias`.
    alias: The input name (for messages).
    info: The signature's `TensorInfo` for it (dtype and shape).
    max_pixels: N·H·W limit of a 4-D input; any input holds at most `max_pixels`·4 elements,
      and a string input at most MAX_IMAGES_PER_REQUEST.
    is_active: Cancellation probe (unused here, kept for symmetry with the image loop).

  Returns:
    The array (strings as an object array of bytes).

  Raises:
    ServingError: INVALID_ARGUMENT naming the input and the problem.
  """
  del is_active
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  want, got = _dtype(info.dtype), _dtype(proto.dtype)
  if got is None or want is None or got != want:
    raise _bad(f"input {alias!r} must be {want.name if want else info.dtype}, got "
               f"{got.name if got else f'dtype enum {proto.dtype}'}")
  if proto.tensor_shape.unknown_rank:
    raise _bad(f"input {alias!r}: the TensorProto must give its shape")
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise _bad(f"input {alias!r}: negative dimension in shape {dims}")
  if not info.tensor_shape.unknown_rank:
    expected = [d.size for d in info.tensor_shape.dim]
    if len(dims) != len(expected):
      raise _bad(f"input {alias!r} must have rank {len(expected)}, got shape {dims}")
    for axis, (size, actual) in enumerate(zip(expected, dims)):
      if size >= 0 and size != actual:
        what = "channels" if axis == len(expected) - 1 and len(expected) == 4 else f"at dim {axis}"
        raise _bad(f"input {alias!r} must have {size} {what}, got shape {dims}")
  count = math.prod(dims)  # Python ints: no overflow whatever the dims.
  if len(dims) == 4 and dims[0] * dims[1] * dims[2] > max_pixels:
    raise _bad(f"input {alias!r}: {dims[0]}×{dims[1]}×{dims[2]} = {dims[0] * dims[1] * dims[2]} "
               f"pixels exceeds this server's limit of {max_pixels} (--max_pixels); tile the "
               "image client-side")
  limit = MAX_IMAGES_PER_REQUEST if is_image_input(alias, got.name) else 4 * max_pixels
  if count > limit:
    images = is_image_input(alias, got.name)
    raise _bad(f"input {alias!r}: shape {dims} holds {count} {'images' if images else 'values'}, "
               f"over this server's limit of {limit}"
               + (" images per request" if images else " (--max_pixels)"))
  if proto.tensor_content:
    if got == tf.string:
      raise _bad(f"input {alias!r}: a string tensor cannot use tensor_content")
    need = count * got.size
    if len(proto.tensor_content) != need:
      raise _bad(f"input {alias!r}: tensor_content has {len(proto.tensor_content)} bytes, shape "
                 f"{dims} of {got.name} needs exactly {need}")
  else:
    field = _VALUE_FIELDS.get(got.name)
    if field is None:
      raise _bad(f"input {alias!r}: dtype {got.name} is not accepted")
    values = len(getattr(proto, field))
    if values != count and not (values == 1 and count <= MAX_BROADCAST_ELEMENTS):
      raise _bad(f"input {alias!r}: {values} value(s) in {field} for shape {dims} ({count} "
                 f"elements); give one value per element (a single broadcast value only for "
                 f"up to {MAX_BROADCAST_ELEMENTS} elements)")
  try:
    return tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except  # malformed TensorProto.
    raise _bad(f"malformed input TensorProto {alias!r}: {e}") from e


def is_image_input(alias: str, dtype_name: str) -> bool:
  """Whether a signature input carries encoded images: a string input named `*_bytes` (TF
  Serving's REST convention for binary data, our upscale_bytes' `image_bytes`)."""
  return dtype_name == "string" and alias.endswith("_bytes")


# Leading bytes of the formats the exported graph decodes (TF's decode_image_op.cc
# ClassifyFileFormat), checked before any parser runs: nothing else reaches Pillow.
_MAGIC = (("PNG", b"\x89PNG\r\n\x1a\n"), ("JPEG", b"\xff\xd8\xff"), ("GIF", b"GIF87a"),
          ("GIF", b"GIF89a"), ("BMP", b"BM"))
# Pillow plugins opened for each (a JPEG with MP data opens as MPO); GIF and WebP are read here.
_PILLOW_FORMATS = {"PNG": ("PNG", {"PNG"}), "JPEG": ("JPEG", {"JPEG", "MPO"}),
                   "BMP": ("BMP", {"BMP"})}
_ACCEPTED = "PNG, JPEG, WebP, GIF or BMP"


@dataclasses.dataclass(frozen=True)
class ImageHeader:
  """What an encoded image declares, read without decoding it.

  Attributes:
    width, height: The first frame's size: what the exported graph decodes and upscales.
    frames: Frames a decoder of every frame allocates (GIF; 1 for the other formats, whose
      extra frames TF never decodes: APNG's, MPO's).
    canvas: (width, height) of each of those frames: TF's GIF decoder allocates the largest
      frame's width and height for every frame.
    screen: A GIF's logical screen (width, height): within the limit too, as in the graph.
  """

  width: int
  height: int
  frames: int = 1
  canvas: Optional[tuple] = None
  screen: Optional[tuple] = None

  def pixels(self, first_frame_only: bool) -> int:
    """Pixels decoded: the first frame only (our exports), or every frame on its canvas."""
    if first_frame_only or self.canvas is None:
      return self.width * self.height
    return self.frames * self.canvas[0] * self.canvas[1]


def read_image_header(data: bytes, where: str) -> ImageHeader:
  """What an encoded image declares: magic bytes first, then only that format's parser.

  Raises:
    ServingError: Not a PNG/JPEG/WebP/GIF/BMP, no readable header, animated WebP, or a
      header over Pillow's own decompression-bomb limit.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not isinstance(data, bytes):
    raise _bad(f"{where}: not a byte string")
  try:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
      return ImageHeader(*headers.webp_size(data))
    fmt = next((name for name, magic in _MAGIC if data.startswith(magic)), None)
    if fmt == "GIF":
      gif = headers.gif_frames(data)
      canvas = (max(w for w, _ in gif.sizes), max(h for _, h in gif.sizes))
      return ImageHeader(*gif.sizes[0], len(gif.sizes), canvas, gif.screen)
  except headers.HeaderError as e:
    raise _bad(f"{where}: {e}") from None
  if fmt is None:
    raise _bad(f"{where}: not a {_ACCEPTED} image (starts with {data[:8]!r})")
  plugin, names = _PILLOW_FORMATS[fmt]
  try:
    with Image.open(io.BytesIO(data), formats=[plugin]) as image:
      opened, size = image.format, image.size
  except Image.DecompressionBombError as e:
    raise _bad(f"{where}: the image header declares more pixels than Pillow's limit ({e})"
               ) from None
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many kinds.
    raise _bad(f"{where}: cannot read an image size from the {fmt} header "
               f"({type(e).__name__})") from None
  if opened not in names:
    raise _bad(f"{where}: {opened} images are not accepted; upscale_bytes takes {_ACCEPTED}")
  return ImageHeader(*size)


def check_header(header: ImageHeader, where: str, max_pixels: int,
                 first_frame_only: bool = True) -> None:
  """Refuses a header whose decoded pixels would exceed `max_pixels`.

  Raises:
    ServingError: The first frame over the limit, or every frame of a GIF together when the
      export decodes them all.
  """
  width, height = header.width, header.height
  if header.screen is not None:  # The graph checks the larger of the screen and the frame.
    width, height = max(width, header.screen[0]), max(height, header.screen[1])
  if width < 1 or height < 1 or width * height > max_pixels:
    raise _bad(f"{where}: the header declares {width}×{height} = {width * height} pixels, over "
               f"this server's limit of {max_pixels} (--max_pixels)")
  decoded = header.pixels(first_frame_only)
  if decoded > max_pixels:
    raise _bad(f"{where}: {header.frames} frames of {header.canvas[0]}×{header.canvas[1]} would "
               f"be decoded, {decoded} pixels, over this server's limit of {max_pixels} "
               "(--max_pixels; exports of this esrgan_tf version decode the first frame only)")


def image_header_size(data: bytes, where: str, max_pixels: int,
                      first_frame_only: bool = True) -> tuple[int, int]:
  """(width, height) of the image the graph upscales, once `check_header` passed.

  Raises:
    ServingError: As `read_image_header` and `check_header`.
  """
  header = read_image_header(data, where)
  check_header(header, where, max_pixels, first_frame_only)
  return header.width, header.height


def check_images(array: np.ndarray, alias: str, max_pixels: int,
                 is_active: Optional[Callable[[], bool]] = None,
                 first_frame_only: bool = True) -> list[tuple[int, int]]:
  """Header sizes of a string input's images; their decoded pixels must fit `max_pixels`.

  Raises:
    ServingError: Too many images, a refused header, the sum over the limit, or CANCELLED when
      `is_active` turns False during the loop.
  """
  items = array.reshape(-1)
  if items.size > MAX_IMAGES_PER_REQUEST:
    raise _bad(f"input {alias!r}: {items.size} images in one request, over the limit of "
               f"{MAX_IMAGES_PER_REQUEST}")
  sizes, total = [], 0
  for index, item in enumerate(items):
    if is_active is not None and not is_active():
      raise ServingError(grpc.StatusCode.CANCELLED, "the client cancelled or its deadline passed")
    where = f"input {alias!r} image {index}"
    header = read_image_header(item, where)
    check_header(header, where, max_pixels, first_frame_only)
    total += header.pixels(first_frame_only)
    if total > max_pixels:
      raise _bad(f"input {alias!r}: the encoded images declare {total} pixels in total (first "
                 f"{index + 1}), over this server's limit of {max_pixels} (--max_pixels)")
    sizes.append((header.width, header.height))
  return sizes


def answer_bytes(output_info, dtype_name: str, *, scale: int, batch_shape=None,
                 image_sizes=None, json: bool = False) -> int:
  """Upper bound of one output's size in the answer.

  Args:
    output_info: The signature's TensorInfo of the output (its channel dim, if fixed).
    dtype_name: Its dtype name ("float32", "uint8", "string").
    scale: The model's upscaling factor.
    batch_shape: (N, H, W, C) of the 4-D input, for tensor outputs.
    image_sizes: [(width, height)] of the input images, for a string (PNG) output.
    json: Size as REST JSON text (numbers as text, bytes as base64) instead of raw bytes.

  Returns:
    Bytes.
  """
  if dtype_name == "string":
    total = 0
    for width, height in image_sizes or ():
      raw = (scale * width * 4 + 1) * scale * height  # RGBA rows plus filter bytes: the maximum.
      png = int(raw * (1 + PNG_OVERHEAD_FRACTION)) + PNG_OVERHEAD_BYTES
      total += (4 * ((png + 2) // 3) + 16) if json else png
    return total
  n, h, w, c = batch_shape
  dims = [d.size for d in output_info.tensor_shape.dim] if output_info is not None else []
  channels = dims[-1] if dims and dims[-1] > 0 else c
  elements = n * scale * h * scale * w * channels
  if not json:
    return elements * np.dtype(dtype_name).itemsize
  per = JSON_BYTES_PER_UINT8 if dtype_name == "uint8" else JSON_BYTES_PER_FLOAT
  return elements * per + 2 * elements // max(channels, 1) + 64  # + brackets per pixel.


def _dtype_name(dtype_enum: int) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.as_dtype(dtype_enum).name


def _array_dtype_name(array: np.ndarray) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if array.dtype.kind in "OSU":
    return "string"
  try:
    return tf.as_dtype(array.dtype).name
  except TypeError:
    return str(array.dtype)


def validate_inputs(signature_name: str, signature, inputs: dict, max_pixels: int,
                    is_active: Optional[Callable[[], bool]] = None,
                    first_frame_only: bool = True) -> list:
  """Checks numpy inputs against the signature and `max_pixels`.

  `first_frame_only`: the export decodes only the first frame of an encoded image (else every
  GIF frame is counted).

  Returns:
    The header (width, height) of every encoded image input, in order.

  Raises:
    ServingError: INVALID_ARGUMENT naming the input and the problem.
  """
  expected = set(signature.inputs)
  given = set(inputs)
  if expected != given:
    raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"signature {signature_name!r} takes inputs {sorted(expected)}; missing "
        f"{sorted(expected - given)}, unexpected {sorted(given - expected)}")
  sizes: list = []
  for alias, info in signature.inputs.items():
    array = inputs[alias]
    want, got = _dtype_name(info.dtype), _array_dtype_name(array)
    if want != got:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"input {alias!r} of signature {signature_name!r} must be {want}, "
                         f"got {got}")
    if not info.tensor_shape.unknown_rank:
      dims = [d.size for d in info.tensor_shape.dim]
      if array.ndim != len(dims):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {alias!r} of signature {signature_name!r} must have rank {len(dims)} "
            f"(shape {_shape_text(dims)}), got shape {list(array.shape)}")
      for axis, (size, actual) in enumerate(zip(dims, array.shape)):
        if size >= 0 and size != actual:
          what = "channels" if axis == len(dims) - 1 and len(dims) == 4 else f"dim {axis}"
          raise ServingError(
              grpc.StatusCode.INVALID_ARGUMENT,
              f"input {alias!r} of signature {signature_name!r} must have {size} {what} "
              f"(shape {_shape_text(dims)}), got shape {list(array.shape)}")
    if array.ndim == 4:
      pixels = int(array.shape[0]) * int(array.shape[1]) * int(array.shape[2])
      if pixels > max_pixels:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {alias!r}: {array.shape[0]}×{array.shape[1]}×{array.shape[2]} = {pixels} "
            f"pixels exceeds this server's limit of {max_pixels} (--max_pixels); tile "
            "the image client-side")
    if is_image_input(alias, got):
      sizes += check_images(array, alias, max_pixels, is_active, first_frame_only)
  return sizes


def estimate_answer(scale, signature, wanted, inputs, image_sizes,
                    json_answer) -> Optional[int]:
  """Upper bound of the answer's bytes (all `wanted` outputs), or None if not estimable."""
  batch = next((a.shape for a in inputs.values()
                if isinstance(a, np.ndarray) and a.ndim == 4), None)
  total = 0
  for key in wanted:
    info = signature.outputs[key]
    dtype = _dtype_name(info.dtype)
    if dtype != "string" and batch is None:
      return None
    total += answer_bytes(info, dtype, scale=scale,
                          batch_shape=tuple(int(d) for d in batch) if batch else None,
                          image_sizes=image_sizes, json=json_answer)
  return total


def nbytes(array) -> int:
  """Bytes of an output array (for object arrays, of its byte strings)."""
  if isinstance(array, np.ndarray) and array.dtype.kind == "O":
    return sum(len(x) if isinstance(x, bytes) else 0 for x in array.reshape(-1))
  return int(np.asarray(array).nbytes)


def _shape_text(dims) -> str:
  return "[" + ", ".join("?" if d < 0 else str(d) for d in dims) + "]"
