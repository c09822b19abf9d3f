"""`.safetensors` files: an own header-checking reader and a writer (the `safetensors` package).

Format (https://github.com/huggingface/safetensors, README "Format"): an unsigned little-endian
64-bit header length N, N bytes of UTF-8 JSON `{name: {"dtype", "shape", "data_offsets": [begin,
end]}, "__metadata__": {str: str}}`, then the byte buffer; offsets are relative to the buffer,
tensors are little-endian, C order, and must tile the buffer without holes or overlaps.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from esrgan_tf.weights.errors import CheckpointError

MAX_HEADER_BYTES = 100_000_000  # the safetensors reference implementation's limit
# JSON values in a header (~8 per tensor: dtype, shape dims, two offsets), counted by their
# separators before parsing: a header of 16 M tiny values would cost ~40 B of Python objects
# each; 1 M of them admit 100,000 tensors.
MAX_HEADER_VALUES = 1 << 20
# safetensors dtype name -> numpy dtype ("BF16" is widened to float32 by hand).
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def _bad(path: str, problem: str) -> CheckpointError:
  return CheckpointError(f"{path}: invalid safetensors file: {problem}")


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Reads every tensor, validating the header against the file first.

  Args:
    path: A .safetensors file.

  Returns:
    name -> native-endian numpy array (BF16 as float32).

  Raises:
    CheckpointError: Malformed header, offsets outside the buffer or inconsistent with the shape,
      holes/overlaps, or an unknown dtype.
  """
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(8)
      if len(head) < 8:
        raise _bad(path, f"{size} bytes is too short for a header")
      n = int.from_bytes(head, "little")
      if n > MAX_HEADER_BYTES or 8 + n > size:
        raise _bad(path, f"header length {n} exceeds the file ({size} bytes) or the limit")
      header_bytes = f.read(n)
      buffer = f.read()
  except OSError as e:
    raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
  values = header_bytes.count(b",") + header_bytes.count(b":") + 1
  if values > MAX_HEADER_VALUES:
    raise _bad(path, f"header holds about {values} JSON values, more than {MAX_HEADER_VALUES}")
  try:
    header = json.loads(header_bytes.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _bad(path, f"header is not JSON ({e})") from None
  except RecursionError:
    raise _bad(path, "header JSON is nested too deeply") from None
  if not isinstance(header, dict):
    raise _bad(path, "header is not a JSON object")
  header.pop("__metadata__", None)
  spans = []
  for name, entry in header.items():
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
      raise _bad(path, f"entry {name!r} must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
      raise _bad(path, f"tensor {name!r} has unsupported dtype {dtype!r}")
    ints = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    if not ints(shape) or not ints(offsets) or len(offsets) != 2:
      raise _bad(path, f"tensor {name!r} has a malformed shape or data_offsets")
    begin, end = offsets
    # Python ints: a shape whose product overflows int64 is just a size that does not fit.
    nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    if end < begin or end > len(buffer) or end - begin != nbytes:
      raise _bad(path, f"tensor {name!r} ({dtype} {shape}) has data_offsets [{begin}, {end}] "
                 f"inconsistent with its size ({nbytes} bytes) or the buffer ({len(buffer)} "
                 "bytes)")
    spans.append((begin, end, name))
  position = 0
  for begin, end, name in sorted(spans):
    if begin != position:
      raise _bad(path, f"tensor {name!r} starts at {begin}, expected {position} (hole or "
                 "overlap)")
    position = end
  if position != len(buffer):
    raise _bad(path, f"{len(buffer) - position} bytes after the last tensor")
  tensors = {}
  for begin, end, name in spans:
    dtype = header[name]["dtype"]
    array = np.frombuffer(buffer, DTYPES[dtype], count=(end - begin) // np.dtype(
        DTYPES[dtype]).itemsize, offset=begin)
    if dtype == "BF16":
      array = (array.astype(np.uint32) << 16).view(np.float32)
    tensors[name] = array.astype(array.dtype.newbyteorder("="), copy=True).reshape(
        header[name]["shape"])
  return tensors


def write_safetensors(file, tensors: dict[str, np.ndarray]):
  """Writes float32 tensors with metadata {"format": "pt"} (what PyTorch consumers expect).

  Args:
    file: A writable binary file object.
    tensors: name -> numpy array.
  """
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top

  arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
  file.write(save(arrays, metadata={"format": "pt"}))
