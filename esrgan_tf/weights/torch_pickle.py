"""PyTorch checkpoints without PyTorch: a restricted reader (the writer is `torch_writer`).

Reading never executes a pickle. Every pickle is first scanned opcode by opcode
(`pickletools.genops`, which only decodes), refusing opcodes and globals a state dict does not
need; it is then loaded by an `Unpickler` whose `find_class` maps the few admitted names to
stand-ins defined here (never to the real objects: there is no torch to reach) and raises for
everything else, and whose `persistent_load` only accepts the torch storage tuple. Tensors come out
as `TensorRef`s, validated against their storage (dtype, size, offset, strides) and materialised as
numpy arrays.

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

import collections
import dataclasses
import io
import math
import os
import pickle
import pickletools
import re
import struct
from typing import Callable
import zipfile

import numpy as np

from esrgan_tf.weights.errors import CheckpointError

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch/serialization.py PROTOCOL_VERSION
MAX_PICKLE_BYTES = 64 << 20  # a state-dict pickle is ~100 kB; refuse anything absurd

# Legacy storage class name -> numpy dtype ("bfloat16" is converted by hand: numpy has none).
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_ITEMSIZE = {name: (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)
             for name, dtype in STORAGE_DTYPES.items()}

# Opcodes a torch state dict needs. INST/OBJ/NEWOBJ/NEWOBJ_EX (instantiate a class), EXT1/2/4
# (the copyreg registry), PERSID (text persistent ids), sets, out-of-band buffers are refused.
_ALLOWED_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE
    INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_LIST APPEND APPENDS LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3
    EMPTY_DICT DICT SETITEM SETITEMS
    GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split())


class _StandIn:
  """Base of the stand-in objects: refuses pickle BUILD (attribute injection)."""

  def __setstate__(self, state):
    raise pickle.UnpicklingError(f"refused BUILD on {type(self).__name__}")


@dataclasses.dataclass(frozen=True)
class StorageType(_StandIn):
  """Stands in for `torch.FloatStorage` & co.: only a dtype name. Not callable."""
  name: str

  @property
  def dtype(self) -> str:
    return STORAGE_DTYPES[self.name]

  @property
  def itemsize(self) -> int:
    return _ITEMSIZE[self.name]


@dataclasses.dataclass(frozen=True)
class StorageRef(_StandIn):
  """A storage named by a persistent id; `offset`/`numel` in elements (a legacy view)."""
  type: StorageType
  key: str
  numel: int
  offset: int = 0


@dataclasses.dataclass(frozen=True)
class TensorRef(_StandIn):
  """A validated tensor description; `Checkpoint.array` materialises it."""
  storage: StorageRef
  offset: int
  size: tuple
  stride: tuple

  @property
  def numel(self) -> int:
    return math.prod(self.size)  # Python ints: no int64 overflow for absurd sizes.


class StateDict(collections.OrderedDict):
  """Stands in for `collections.OrderedDict`; BUILD may only set torch's `_metadata`."""

  def __setstate__(self, state):
    if not isinstance(state, dict) or set(state) - {"_metadata"}:
      raise pickle.UnpicklingError("refused BUILD on OrderedDict with state other than "
                                   "_metadata")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value, what: str) -> tuple:
  if isinstance(value, list):
    value = tuple(value)
  if not isinstance(value, tuple) or not all(_is_int(v) and v >= 0 for v in value):
    raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative ints, "
                                 f"got {value!r}")
  return value


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
  """Stand-in for torch._utils._rebuild_tensor(_v2): validates and returns a `TensorRef`."""
  if len(rest) > 3:
    raise pickle.UnpicklingError("_rebuild_tensor_v2: too many arguments")
  if not isinstance(storage, StorageRef):
    raise pickle.UnpicklingError(f"tensor storage must be a persistent storage, "
                                 f"got {type(storage).__name__}")
  if rest:
    requires_grad, hooks, metadata = (tuple(rest) + (None, None))[:3]
    if not isinstance(requires_grad, bool):
      raise pickle.UnpicklingError("tensor requires_grad must be a bool")
    if hooks is not None and (not isinstance(hooks, dict) or hooks):
      raise pickle.UnpicklingError("tensors with backward hooks are refused")
    if metadata is not None and (not isinstance(metadata, dict) or metadata):
      raise pickle.UnpicklingError("tensors with metadata are refused")
  if not _is_int(storage_offset) or storage_offset < 0:
    raise pickle.UnpicklingError(f"tensor storage offset must be a non-negative int, "
                                 f"got {storage_offset!r}")
  size = _int_tuple(size, "size")
  stride = _int_tuple(stride, "stride")
  if len(size) != len(stride):
    raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
  tensor = TensorRef(storage, storage_offset, size, stride)
  if tensor.numel:
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.numel:
      raise pickle.UnpicklingError(
          f"tensor of size {size}, stride {stride}, offset {storage_offset} reaches element "
          f"{last} of a storage of {storage.numel} elements")
  # Overlapping (e.g. zero-stride) views could expand a small storage into a huge array.
  if tensor.numel > max(storage.numel, 1):
    raise pickle.UnpicklingError(f"tensor of size {size} has more elements than its storage "
                                 f"({storage.numel})")
  return tensor


def _rebuild_parameter(data, requires_grad, hooks, *rest):
  """Stand-in for torch._utils._rebuild_parameter: a parameter is just its tensor here."""
  if (not isinstance(data, TensorRef) or rest or not isinstance(requires_grad, bool)
      or (hooks is not None and (not isinstance(hooks, dict) or hooks))):
    raise pickle.UnpicklingError("refused _rebuild_parameter with unexpected arguments")
  return data


_GLOBALS = {
    ("collections", "OrderedDict"): StateDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _module in ("torch", "torch.cuda"):
  for _name in STORAGE_DTYPES:
    _GLOBALS[(_module, _name)] = StorageType(_name)


def _refuse_global(module: str, name: str):
  raise pickle.UnpicklingError(
      f"refused pickle global {module}.{name} (only OrderedDict, tensor rebuild functions and "
      "storage types are admitted)")


class _RestrictedUnpickler(pickle.Unpickler):
  """Maps admitted globals to stand-ins; only storage persistent ids are accepted."""

  def __init__(self, file, storages: dict, legacy: bool):
    super().__init__(file, encoding="utf-8")
    self._storages = storages  # key -> StorageRef (root, offset 0)
    self._legacy = legacy

  def find_class(self, module, name):
    try:
      return _GLOBALS[(module, name)]
    except (KeyError, TypeError):
      _refuse_global(str(module), str(name))

  def persistent_load(self, pid):
    expected = 6 if self._legacy else 5
    if (not isinstance(pid, tuple) or len(pid) != expected or pid[0] != "storage"
        or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)
        or not isinstance(pid[3], str) or not _is_int(pid[4]) or pid[4] < 0):
      raise pickle.UnpicklingError(f"refused persistent id {pid!r:.200} (expected "
                                   f"('storage', <storage type>, key, location, numel"
                                   f"{', view' if self._legacy else ''}))")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
      raise pickle.UnpicklingError(f"refused storage key {key!r:.80}")
    root = self._storages.get(key)
    if root is None:
      root = self._storages[key] = StorageRef(storage_type, key, numel)
    elif root.type != storage_type or root.numel != numel:
      raise pickle.UnpicklingError(f"storage {key} declared twice with different type/size")
    view = pid[5] if self._legacy else None
    if view is None:
      return root
    # Legacy storage view (torch < 1.0): (view_key, offset, view_size) into the root storage.
    if (not isinstance(view, tuple) or len(view) != 3 or not _is_int(view[1])
        or not _is_int(view[2]) or view[1] < 0 or view[2] < 0
        or view[1] + view[2] > numel):
      raise pickle.UnpicklingError(f"refused storage view {view!r:.120} of storage {key}")
    return StorageRef(storage_type, key, view[2], view[1])


def _scan_pickle(data: bytes, start: int) -> int:
  """Checks opcodes and GLOBAL names without executing anything; returns the end offset."""
  stream = io.BytesIO(data)
  stream.seek(start)
  try:
    for opcode, arg, pos in pickletools.genops(stream):
      if opcode.name not in _ALLOWED_OPCODES:
        raise CheckpointError(f"refused pickle opcode {opcode.name} at byte {pos}")
      if opcode.name == "GLOBAL":
        module, _, name = str(arg).partition(" ")
        if (module, name) not in _GLOBALS:
          _refuse_global(module, name)
      if opcode.name == "STOP":
        return pos + 1
  except pickle.UnpicklingError as e:
    raise CheckpointError(str(e)) from None
  except (ValueError, EOFError) as e:  # genops: truncated or unknown opcode
    raise CheckpointError(f"corrupt pickle ({e})") from None
  raise CheckpointError("corrupt pickle (no STOP opcode)")


def _load_pickle(data: bytes, start: int, storages: dict, legacy: bool):
  """Scans then loads one pickle at `start`; returns (object, end offset)."""
  end = _scan_pickle(data, start)
  if end - start > MAX_PICKLE_BYTES:
    raise CheckpointError(f"pickle of {end - start} bytes is larger than a state dict can be")
  try:
    obj = _RestrictedUnpickler(io.BytesIO(data[start:end]), storages, legacy).load()
  except CheckpointError:
    raise
  except pickle.UnpicklingError as e:
    message = str(e)
    raise CheckpointError(message if message.startswith("refused") else
                          f"refused pickle: {message}") from None
  except (ValueError, TypeError, EOFError, KeyError, IndexError, AttributeError, RecursionError,
          UnicodeDecodeError, OverflowError, MemoryError) as e:
    raise CheckpointError(f"refused malformed pickle ({type(e).__name__}: {e})") from None
  return obj, end


def _read_storage_bytes(raw: bytes, storage: StorageType, byteorder: str) -> np.ndarray:
  """Raw bytes -> 1-D native-endian numpy array (bfloat16 widened to float32)."""
  order = "<" if byteorder == "little" else ">"
  if storage.dtype == "bfloat16":
    bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
    return bits.view(np.float32)
  dtype = np.dtype(storage.dtype).newbyteorder(order)
  return np.frombuffer(raw, dtype=dtype).astype(np.dtype(storage.dtype), copy=True)


@dataclasses.dataclass
class Checkpoint:
  """An unpickled checkpoint: `obj` (dicts of `TensorRef`s) and a way to materialise tensors."""
  obj: object
  storages: dict  # key -> root StorageRef
  _read: Callable[[str], np.ndarray]
  close: Callable[[], None] = lambda: None
  _cache: dict = dataclasses.field(default_factory=dict)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def array(self, tensor: TensorRef) -> np.ndarray:
    """Returns the tensor as a new C-contiguous numpy array (validated at unpickling)."""
    key = tensor.storage.key
    if key not in self._cache:
      self._cache[key] = self._read(key)
    flat = self._cache[key]
    start = tensor.storage.offset + tensor.offset
    if tensor.numel == 0:
      return np.zeros(tensor.size, flat.dtype)
    strides = tuple(s * flat.itemsize for s in tensor.stride)
    view = np.lib.stride_tricks.as_strided(flat[start:], shape=tensor.size, strides=strides,
                                           writeable=False)
    return np.array(view, order="C", copy=True)


def _check_storage_size(key: str, storage: StorageRef, nbytes: int):
  expected = storage.numel * storage.type.itemsize
  if nbytes != expected:
    raise CheckpointError(f"storage {key} declares {storage.numel} {storage.type.dtype} "
                          f"elements ({expected} bytes) but holds {nbytes} bytes")


def _read_zip(path: str) -> Checkpoint:
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
      obj, end = _load_pickle(data, 0, storages, legacy=False)
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
    magic, pos = _load_pickle(data, 0, {}, legacy=True)
    if magic != LEGACY_MAGIC:
      raise CheckpointError("wrong magic number")
    protocol, pos = _load_pickle(data, pos, {}, legacy=True)
    if protocol != LEGACY_PROTOCOL:
      raise CheckpointError(f"unsupported legacy protocol version {protocol!r}")
    sys_info, pos = _load_pickle(data, pos, {}, legacy=True)
    if not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool):
      raise CheckpointError("sys_info record lacks little_endian")
    byteorder = "little" if sys_info["little_endian"] else "big"
    obj, pos = _load_pickle(data, pos, storages, legacy=True)
    keys, pos = _load_pickle(data, pos, {}, legacy=True)
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
