"""The restricted unpickler of PyTorch checkpoints (`torch_pickle` reads the containers).

Reading never executes a pickle. Every pickle is first scanned opcode by opcode
(`pickletools.genops`, which only decodes), refusing opcodes and globals a state dict does not
need, and more than MAX_PICKLE_OPCODES opcodes (each makes at most one small object, so the
unpickled objects are bounded whatever the pickle says); it is then loaded by an `Unpickler` whose
`find_class` maps the few admitted names to stand-ins defined here (never to the real objects:
there is no torch to reach) and raises for everything else, and whose `persistent_load` only
accepts the torch storage tuple. Tensors come out as `TensorRef`s, validated against their
storage (dtype, size, offset, strides).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import pickletools
import re

import numpy as np

from esrgan_tf.weights.errors import CheckpointError

MAX_PICKLE_BYTES = 64 << 20  # a state-dict pickle is ~100 kB; refuse anything absurd
# A state dict pickles ~34 opcodes per tensor (a 23-block RRDBNet's, pickled as torch does: 702
# tensors, 23,548 opcodes, 69 kB); 2 M opcodes admit 60,000 tensors and bound the unpickled
# objects (each opcode makes at most one list/dict/tuple, ~64 bytes) to ~130 MB whatever the
# pickle says.
MAX_PICKLE_OPCODES = 1 << 21
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
    for count, (opcode, arg, pos) in enumerate(pickletools.genops(stream)):
      if count >= MAX_PICKLE_OPCODES:
        raise CheckpointError(f"refused pickle of more than {MAX_PICKLE_OPCODES} opcodes (a state "
                              "dict of 60,000 tensors has fewer)")
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


def load_pickle(data: bytes, start: int, storages: dict, legacy: bool):
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
