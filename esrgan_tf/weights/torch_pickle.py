"""PyTorch checkpoints without PyTorch: a restricted reader (the writer is `torch_writer`).

Reading never executes a pickle: `torch_unpickle` scans and loads each one with stand-ins for the
few objects a state dict needs. Tensors come out as `TensorRef`s, validated against their storage
(dtype, size, offset, strides) and materialised here as numpy arrays.

Memory is bounded by the file, whatever it declares: pickles of bounded opcode counts
(`torch_unpickle`), a zip of at most MAX_ZIP_ENTRIES records (read
from its end-of-central-directory record before `zipfile` parses the directory), each storage
materialised once, contiguous tensors returned as read-only views of it (a thousand tensors
viewing one storage cost the storage once), and copies of strided tensors at most as many bytes
as all the storages together.

Formats (facts read from torch/serialization.py and files written by torch 2.13):
  * zip (torch >= 1.6): `<dir>/data.pkl` (the object, pickle protocol 2), `<dir>/data/<key>`
    (raw storage bytes), `<dir>/byteorder` ("little"/"big", absent before torch 1.10:
    little), `<dir>/version`. Persistent ids: ('storage', torch.FloatStorage, key, location,
    numel).
  * legacy (torch < 1.6, e.g. the 2018 ESRGAN release): consecutive pickles: the magic number
    0x1950a86a20f9469cfc6c, the protocol version 1001, a sys_info dict (`little_endian`), the
    object (persistent ids ('storage', type, key, location, numel, view_metadata)), the list of
    storage keys; then per key an int64 element count followed by the raw bytes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from typing import Callable
import zipfile

import numpy as np

from esrgan_tf.weights.errors import CheckpointError
from esrgan_tf.weights.torch_unpickle import (
  MAX_PICKLE_BYTES,
  StorageRef,
  StorageType,
  TensorRef,
  load_pickle,
)

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch/serialization.py PROTOCOL_VERSION
# Records of a zip checkpoint (torch writes one per storage plus four); `zipfile` keeps a ~500-byte
# ZipInfo per record of the central directory, which is read whole: both are bounded first.
MAX_ZIP_ENTRIES = 1 << 16
MAX_ZIP_DIRECTORY_BYTES = 16 << 20

def _read_storage_bytes(raw: bytes, storage: StorageType, byteorder: str) -> np.ndarray:
  """Raw bytes -> 1-D native-endian numpy array (bfloat16 widened to float32)."""
  order = "<" if byteorder == "little" else ">"
  if storage.dtype == "bfloat16":
    bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
    return bits.view(np.float32)
  dtype = np.dtype(storage.dtype).newbyteorder(order)
  return np.frombuffer(raw, dtype=dtype).astype(np.dtype(storage.dtype), copy=True)


def _is_contiguous(size: tuple, stride: tuple) -> bool:
  """C order: each stride is the product of the later sizes (dims of size 1 may have any)."""
  expected = 1
  for n, s in zip(reversed(size), reversed(stride)):
    if n != 1 and s != expected:
      return False
    expected *= n
  return True


def _materialised_itemsize(storage: StorageType) -> int:
  return 4 if storage.dtype == "bfloat16" else storage.itemsize  # bfloat16 widens to float32.


@dataclasses.dataclass
class Checkpoint:
  """An unpickled checkpoint: `obj` (dicts of `TensorRef`s) and a way to materialise tensors."""
  obj: object
  storages: dict  # key -> root StorageRef
  _read: Callable[[str], np.ndarray]
  close: Callable[[], None] = lambda: None
  _cache: dict = dataclasses.field(default_factory=dict)
  _copied: int = 0  # Bytes of strided tensors copied so far.

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  @property
  def storage_bytes(self) -> int:
    """Bytes of every distinct storage once materialised: the bound on copies."""
    return sum(s.numel * _materialised_itemsize(s.type) for s in self.storages.values())

  def array(self, tensor: TensorRef) -> np.ndarray:
    """The tensor as a C-contiguous numpy array (validated at unpickling).

    A contiguous tensor is a read-only view of its storage, materialised once however many
    tensors view it; a strided one is copied, all copies together at most `storage_bytes`.

    Raises:
      CheckpointError: The copies would exceed the storages' bytes (overlapping strided views).
    """
    key = tensor.storage.key
    if key not in self._cache:
      self._cache[key] = self._read(key)
      self._cache[key].flags.writeable = False
    flat = self._cache[key]
    start = tensor.storage.offset + tensor.offset
    if tensor.numel == 0:
      return np.zeros(tensor.size, flat.dtype)
    if _is_contiguous(tensor.size, tensor.stride):
      return flat[start:start + tensor.numel].reshape(tensor.size)
    nbytes = tensor.numel * flat.itemsize
    if self._copied + nbytes > self.storage_bytes:
      raise CheckpointError(
          f"strided tensors of size {tensor.size} and others would copy {self._copied + nbytes} "
          f"bytes, more than all storages hold ({self.storage_bytes}): overlapping views")
    self._copied += nbytes
    strides = tuple(s * flat.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(flat[start:], shape=tensor.size, strides=strides,
                                           writeable=False)
    return np.array(view, order="C", copy=True)


def _check_storage_size(key: str, storage: StorageRef, nbytes: int):
  expected = storage.numel * storage.type.itemsize
  if nbytes != expected:
    raise CheckpointError(f"storage {key} declares {storage.numel} {storage.type.dtype} "
                          f"elements ({expected} bytes) but holds {nbytes} bytes")


def _zip_directory_size(path: str) -> tuple[int, int]:
  """(records, central directory bytes) from the zip's end records (APPNOTE.TXT 4.3.14-4.3.16).

  The end-of-central-directory record ("PK\\x05\\x06", at most 65,535 + 22 bytes from the end)
  holds the record count (16 bits at +10) and the directory size (32 bits at +12); a zip64 file
  sets them to all ones and keeps them in the zip64 end record (count at +32, size at +40),
  which the zip64 locator ("PK\\x06\\x07", 20 bytes before) points to (64-bit offset at +8).

  Raises:
    CheckpointError: No end record.
  """
  with open(path, "rb") as f:
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - (65535 + 22))
    f.seek(tail_start)
    tail = f.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) - end < 22:
      raise CheckpointError(f"{path}: not a readable zip archive (no end of central directory)")
    records, directory = struct.unpack_from("<HI", tail, end + 10)
    locator = end - 20
    if (records == 0xFFFF or directory == 0xFFFFFFFF) and locator >= 0 and \
        tail[locator:locator + 4] == b"PK\x06\x07":
      (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
      f.seek(min(record_at, size))
      record = f.read(56)
      if len(record) == 56 and record[:4] == b"PK\x06\x06":
        records, directory = struct.unpack_from("<QQ", record, 32)
  return records, directory


def _read_zip(path: str) -> Checkpoint:
  records, directory = _zip_directory_size(path)
  if records > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY_BYTES:
    raise CheckpointError(f"{path}: a zip of {records} records ({directory}-byte directory) is "
                          f"refused; a PyTorch checkpoint has one record per storage (at most "
                          f"{MAX_ZIP_ENTRIES})")
  try:
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
  except (zipfile.BadZipFile, OSError, ValueError) as e:
    raise CheckpointError(f"{path}: not a readable zip archive ({e})") from None
  pickles = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
  if len(pickles) != 1:
    archive.close()
    raise CheckpointError(f"{path}: a PyTorch zip checkpoint has exactly one <dir>/data.pkl, "
                          f"found {len(pickles)}")
  prefix = pickles[0][:-len("data.pkl")]

  file_size = os.path.getsize(path)

  def record(name: str, limit: int) -> bytes:
    info = archive.getinfo(prefix + name)
    # torch writes every record stored (uncompressed, 64-byte aligned for mmap); a deflated
    # record could inflate a small file into gigabytes, so it is refused, as is a stored record
    # declaring more bytes than the file holds.
    if info.compress_type != zipfile.ZIP_STORED:
      raise CheckpointError(f"{path}: record {name} is compressed (zip method "
                            f"{info.compress_type}); PyTorch checkpoints store records "
                            "uncompressed")
    if info.file_size > file_size:
      raise CheckpointError(f"{path}: record {name} declares {info.file_size} bytes, more than "
                            f"the whole file ({file_size})")
    if info.file_size > limit:
      raise CheckpointError(f"{path}: record {name} is {info.file_size} bytes, more than "
                            f"{limit}")
    try:
      return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
      raise CheckpointError(f"{path}: cannot read record {name} ({e})") from None

  try:
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = record("byteorder", 16).decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byteorder {byteorder!r}")
    data = record("data.pkl", MAX_PICKLE_BYTES)
    storages: dict = {}
    try:
      obj, end = load_pickle(data, 0, storages, legacy=False)
    except CheckpointError as e:
      raise CheckpointError(f"{path}: {e}") from None
    if end != len(data):
      raise CheckpointError(f"{path}: data.pkl has {len(data) - end} bytes after its end")
    for key, storage in storages.items():
      name = f"{prefix}data/{key}"
      if name not in names:
        raise CheckpointError(f"{path}: storage record data/{key} is missing")
      info = archive.getinfo(name)
      if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
        raise CheckpointError(f"{path}: storage record data/{key} is compressed or declares "
                              f"{info.file_size} bytes, more than the file ({file_size})")
      _check_storage_size(f"data/{key}", storage, info.file_size)
  except BaseException:
    archive.close()
    raise

  def read(key: str) -> np.ndarray:
    storage = storages[key]
    raw = record(f"data/{key}", storage.numel * storage.type.itemsize)
    _check_storage_size(f"data/{key}", storage, len(raw))
    return _read_storage_bytes(raw, storage.type, byteorder)

  return Checkpoint(obj, storages, read, archive.close)


def _read_legacy(path: str, data: bytes) -> Checkpoint:
  storages: dict = {}
  try:
    magic, pos = load_pickle(data, 0, {}, legacy=True)
    if magic != LEGACY_MAGIC:
      raise CheckpointError("wrong magic number")
    protocol, pos = load_pickle(data, pos, {}, legacy=True)
    if protocol != LEGACY_PROTOCOL:
      raise CheckpointError(f"unsupported legacy protocol version {protocol!r}")
    sys_info, pos = load_pickle(data, pos, {}, legacy=True)
    if not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool):
      raise CheckpointError("sys_info record lacks little_endian")
    byteorder = "little" if sys_info["little_endian"] else "big"
    obj, pos = load_pickle(data, pos, storages, legacy=True)
    keys, pos = load_pickle(data, pos, {}, legacy=True)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: legacy torch file: {e}") from None
  if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
    raise CheckpointError(f"{path}: legacy torch file: the storage key list is malformed")
  missing = set(storages) - set(keys)
  if missing:
    raise CheckpointError(f"{path}: storages {sorted(missing)[:5]} are referenced but not "
                          "stored")
  arrays = {}
  int64 = "<q" if byteorder == "little" else ">q"
  for key in keys:
    if len(data) < pos + 8:
      raise CheckpointError(f"{path}: truncated before storage {key}")
    (numel,) = struct.unpack_from(int64, data, pos)
    pos += 8
    storage = storages.get(key)
    if storage is None:
      raise CheckpointError(f"{path}: stored storage {key} is never referenced")
    if numel != storage.numel:
      raise CheckpointError(f"{path}: storage {key} declares {storage.numel} elements in the "
                            f"pickle but {numel} in the data")
    nbytes = numel * storage.type.itemsize
    if len(data) < pos + nbytes:
      raise CheckpointError(f"{path}: storage {key} declares {nbytes} bytes but only "
                            f"{len(data) - pos} remain in the file")
    arrays[key] = (pos, nbytes)
    pos += nbytes
  if pos != len(data):
    raise CheckpointError(f"{path}: {len(data) - pos} unexpected bytes after the last storage")

  def read(key: str) -> np.ndarray:
    start, nbytes = arrays[key]
    return _read_storage_bytes(data[start:start + nbytes], storages[key].type, byteorder)

  return Checkpoint(obj, storages, read)


# The legacy file begins with the pickled magic number: PROTO 2, LONG1 of 10 bytes.
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")


def read_torch_checkpoint(path: str) -> Checkpoint:
  """Reads a zip or legacy PyTorch checkpoint without executing its pickles.

  Args:
    path: A .pth/.pt file.

  Returns:
    A `Checkpoint`; its `obj` holds dicts/lists/scalars with `TensorRef` leaves.

  Raises:
    CheckpointError: Not a torch file, a refused pickle, or inconsistent storages.
  """
  try:
    with open(path, "rb") as f:
      head = f.read(len(LEGACY_PREFIX))
  except OSError as e:
    raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
  if head.startswith(b"PK"):
    return _read_zip(path)
  if head == LEGACY_PREFIX:
    with open(path, "rb") as f:
      data = f.read()
    return _read_legacy(path, data)
  raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the "
                        "legacy torch serialization format)")
