"""Writes PyTorch zip checkpoints without PyTorch (the layout `torch_pickle` reads).

The pickle is emitted opcode by opcode (protocol 2, as `torch.save` writes it: GLOBAL
`torch._utils._rebuild_tensor_v2`, persistent ids ('storage', torch.FloatStorage, key, 'cpu',
numel), an OrderedDict per wrapper); records are stored uncompressed and 64-byte aligned like
torch's own zip writer, so `torch.load(weights_only=True)` reads the file.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

ZIP_ALIGNMENT = 64  # torch's zip writer aligns every record's data to 64 bytes


class _PickleWriter:
  """Emits the protocol-2 opcodes of a torch state dict by hand (no torch, no real globals)."""

  def __init__(self):
    self.out = bytearray(b"\x80\x02")  # PROTO 2

  def global_(self, module: str, name: str):
    self.out += b"c" + f"{module}\n{name}\n".encode("ascii")

  def str_(self, value: str):
    encoded = value.encode("utf-8")
    self.out += b"X" + struct.pack("<I", len(encoded)) + encoded  # BINUNICODE

  def int_(self, value: int):
    if 0 <= value < 256:
      self.out += b"K" + bytes([value])  # BININT1
    elif -2**31 <= value < 2**31:
      self.out += b"J" + struct.pack("<i", value)  # BININT
    else:
      encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
      self.out += b"\x8a" + bytes([len(encoded)]) + encoded  # LONG1

  def int_tuple(self, values):
    if not values:
      self.out += b")"  # EMPTY_TUPLE
      return
    self.out += b"("  # MARK
    for v in values:
      self.int_(int(v))
    self.out += b"t"  # TUPLE

  def empty_ordered_dict(self):
    self.global_("collections", "OrderedDict")
    self.out += b")R"  # EMPTY_TUPLE REDUCE

  def tensor(self, key: str, array: np.ndarray):
    strides, acc = [], 1
    for n in reversed(array.shape):
      strides.insert(0, acc)
      acc *= n
    self.global_("torch._utils", "_rebuild_tensor_v2")
    self.out += b"(("  # MARK (args) MARK (persistent id)
    self.str_("storage")
    self.global_("torch", "FloatStorage")
    self.str_(key)
    self.str_("cpu")
    self.int_(int(array.size))
    self.out += b"tQ"  # TUPLE BINPERSID
    self.int_(0)  # storage offset
    self.int_tuple(array.shape)
    self.int_tuple(strides)
    self.out += b"\x89"  # NEWFALSE: requires_grad
    self.empty_ordered_dict()  # backward hooks
    self.out += b"tR"  # TUPLE REDUCE


def _state_dict_pickle(tensors: dict, wrappers: tuple) -> bytes:
  keys = {name: str(i) for i, name in enumerate(tensors)}
  w = _PickleWriter()
  w.out += b"}("  # EMPTY_DICT MARK
  for wrapper in wrappers:
    w.str_(wrapper)
    w.empty_ordered_dict()
    w.out += b"("  # MARK
    for name, array in tensors.items():
      w.str_(name)
      w.tensor(keys[name], array)
    w.out += b"u"  # SETITEMS
  w.out += b"u."  # SETITEMS STOP
  return bytes(w.out)


def _aligned_info(name: str, offset: int) -> zipfile.ZipInfo:
  """A stored ZipInfo whose data starts at a multiple of ZIP_ALIGNMENT (padding extra field)."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  header = 30 + len(name.encode("utf-8"))  # local file header size without extras
  pad = (-(offset + header + 4)) % ZIP_ALIGNMENT
  # Extra field id "FB" as torch's writer uses: 2-byte id, 2-byte length, padding.
  info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
  return info


def write_torch_zip(file, tensors: dict, wrappers: tuple = ("params_ema", "params"),
                    folder: str = "archive"):
  """Writes float32 tensors as a torch zip checkpoint `{wrapper: OrderedDict(name: tensor)}`.

  The wrappers share storages (torch deduplicates by key), so the file holds the weights once.

  Args:
    file: A writable binary file object (seekable).
    tensors: name -> numpy array (converted to little-endian float32, C order).
    wrappers: Top-level keys, each mapping to the same state dict.
    folder: The archive's top-level folder.
  """
  arrays = {name: np.ascontiguousarray(a, dtype="<f4") for name, a in tensors.items()}
  records = [("data.pkl", _state_dict_pickle(arrays, wrappers)),
             ("byteorder", b"little")]
  records += [(f"data/{i}", a.tobytes()) for i, a in enumerate(arrays.values())]
  records.append(("version", b"3\n"))
  with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
    offset = 0
    for name, payload in records:
      info = _aligned_info(f"{folder}/{name}", offset)
      archive.writestr(info, payload)
      offset += 30 + len(info.filename.encode("utf-8")) + len(info.extra) + len(payload)
