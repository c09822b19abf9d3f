"""Generators of PyTorch checkpoint files for the weights tests, without torch.

They reproduce the byte layouts that torch 2.13 writes (checked by hand once against real
`torch.save` output, both the zip format and `_use_new_zipfile_serialization=False`): the standard
library pickler is given stand-in `torch` / `torch._utils` modules for the duration of one dump, so
it emits the same GLOBAL / BINPERSID / REDUCE / BUILD opcodes as torch's own pickling of tensors
(`Tensor.__reduce_ex__` → `torch._utils._rebuild_tensor_v2`) and of a `state_dict()`
(an OrderedDict carrying `_metadata`, restored by BUILD).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
                 np.dtype("float64"): "DoubleStorage", np.dtype("int64"): "LongStorage"}


@dataclasses.dataclass
class Storage:
  """A storage to write: raw little-endian bytes, the type name and the declared element count."""
  key: str
  type_name: str
  numel: int
  data: bytes


@dataclasses.dataclass
class Tensor:
  """A tensor view on a Storage (element offset/strides), pickled as torch pickles tensors."""
  storage: Storage
  offset: int
  size: tuple
  stride: tuple
  # How torch rebuilds it: "_rebuild_tensor_v2" (torch >= 0.4), "_rebuild_tensor" (older), or
  # "_rebuild_parameter" (an nn.Parameter wrapping a v2 tensor).
  rebuild: str = "_rebuild_tensor_v2"


def tensor(array: np.ndarray, key: str) -> Tensor:
  """A contiguous tensor holding `array` in its own storage."""
  array = np.ascontiguousarray(array)
  storage = Storage(key, STORAGE_NAMES[array.dtype], array.size,
                    array.astype(array.dtype.newbyteorder("<")).tobytes())
  strides = tuple(s // array.itemsize for s in array.strides)
  return Tensor(storage, 0, array.shape, strides)


def state_dict(arrays: dict, metadata: bool = True) -> collections.OrderedDict:
  """name → array as torch's `module.state_dict()` pickles (OrderedDict + `_metadata`)."""
  out = collections.OrderedDict(
      (name, tensor(a, str(i))) for i, (name, a) in enumerate(arrays.items()))
  if metadata:
    # pylint: disable-next=protected-access
    out._metadata = collections.OrderedDict([("", {"version": 1})])
  return out


@contextlib.contextmanager
def _stand_in_torch():
  """Registers fake `torch` and `torch._utils` modules so pickle can name their globals."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")
  for name in set(STORAGE_NAMES.values()):
    setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))

  for name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
    def rebuild(*args):  # never called: only its name is pickled
      raise AssertionError(args)
    rebuild.__module__, rebuild.__qualname__, rebuild.__name__ = "torch._utils", name, name
    setattr(utils, name, rebuild)
  torch._utils = utils  # pylint: disable=protected-access
  saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
  sys.modules.update({"torch": torch, "torch._utils": utils})
  try:
    yield torch
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module


def _dump(obj, legacy: bool) -> tuple[bytes, dict]:
  """Pickles `obj` (protocol 2) with storages as persistent ids; returns (bytes, storages)."""
  storages = {}
  with _stand_in_torch() as torch:
    utils = sys.modules["torch._utils"]

    class Pickler(pickle.Pickler):

      def persistent_id(self, value):
        if isinstance(value, Storage):
          storages[value.key] = value
          pid = ("storage", getattr(torch, value.type_name), value.key, "cpu", value.numel)
          return pid + (None,) if legacy else pid
        return None

      def reducer_override(self, value):
        if isinstance(value, Tensor):
          args = (value.storage, value.offset, tuple(value.size), tuple(value.stride))
          if value.rebuild == "_rebuild_parameter":
            inner = dataclasses.replace(value, rebuild="_rebuild_tensor_v2")
            return utils._rebuild_parameter, (inner, True, collections.OrderedDict())
          if value.rebuild == "_rebuild_tensor_v2":
            args += (False, collections.OrderedDict())
          return getattr(utils, value.rebuild), args
        return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
  return buffer.getvalue(), storages


def random_state(num_blocks=1, num_ups=2, nf=8, gc=4, in_ch=3, out_ch=3, seed=1):
  """A BasicSR-named torch-layout state dict with random weights."""
  rng = np.random.default_rng(seed)
  shapes = {"conv_first": (nf, in_ch)}
  for i in range(num_blocks):
    for k in (1, 2, 3):
      for j in range(1, 6):
        shapes[f"body.{i}.rdb{k}.conv{j}"] = (gc if j < 5 else nf, nf + (j - 1) * gc)
  shapes["conv_body"] = (nf, nf)
  shapes.update({f"conv_up{u}": (nf, nf) for u in range(1, num_ups + 1)})
  shapes.update({"conv_hr": (nf, nf), "conv_last": (out_ch, nf)})
  state = {}
  for name, (cout, cin) in shapes.items():
    state[f"{name}.weight"] = rng.normal(0, 0.2, (cout, cin, 3, 3)).astype(np.float32)
    state[f"{name}.bias"] = rng.normal(0, 0.1, (cout,)).astype(np.float32)
  return state


def write_zip(path, obj, folder: str = "archive", byteorder: bytes = b"little",
              data_pkl: bytes | None = None):
  """A torch >= 1.6 zip checkpoint, records as torch 2.13 writes them (stored, no compression).

  Args:
    path: Output file.
    obj: Object to pickle (dicts of `Tensor`).
    folder: Top-level folder name (torch uses the file's stem).
    byteorder: Content of the byteorder record (None: omit it, as torch < 1.10 did).
    data_pkl: Use these bytes as data.pkl instead of pickling `obj` (hostile tests).
  """
  pickled, storages = _dump(obj, legacy=False)
  records = [("data.pkl", pickled if data_pkl is None else data_pkl),
             (".format_version", b"1"), (".storage_alignment", b"64")]
  if byteorder is not None:
    records.append(("byteorder", byteorder))
  records += [(f"data/{key}", s.data) for key, s in storages.items()]
  records += [("version", b"3\n"), (".data/serialization_id", b"0" * 40)]
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
    for name, payload in records:
      archive.writestr(zipfile.ZipInfo(f"{folder}/{name}"), payload)


def legacy_bytes(obj, magic_pickle: bytes | None = None, main_pickle: bytes | None = None
                 ) -> bytes:
  """The pre-1.6 torch format: magic, protocol, sys_info, object, keys, then storages.

  Args:
    obj: Object to pickle (dicts of `Tensor`).
    magic_pickle: Replace the first pickle (hostile tests).
    main_pickle: Replace the object pickle (hostile tests).

  Returns:
    The file content.
  """
  pickled, storages = _dump(obj, legacy=True)
  keys = sorted(storages)
  out = pickle.dumps(LEGACY_MAGIC, protocol=2) if magic_pickle is None else magic_pickle
  out += pickle.dumps(1001, protocol=2)
  out += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                       "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
  out += pickled if main_pickle is None else main_pickle
  out += pickle.dumps(keys, protocol=2)
  for key in keys:
    out += struct.pack("<q", storages[key].numel) + storages[key].data
  return out


def write_ncnn(stem, state, num_blocks, num_ups, fp16=False):
  """A .param/.bin pair in ncnn's format with the convs in network order (a linear blob chain:
  our reader only needs the layer list; the real branching graph is tested against ncnn itself
  in test_ncnn_reference.py)."""
  names = ["conv_first"] + [f"body.{i}.rdb{k}.conv{j}" for i in range(num_blocks)
                            for k in (1, 2, 3) for j in range(1, 6)]
  names += ["conv_body"] + [f"conv_up{u}" for u in range(1, num_ups + 1)] + ["conv_hr",
                                                                              "conv_last"]
  lines, blob, weights_bin = ["Input data 0 1 b0"], 0, bytearray()
  for name in names:
    weight, bias = state[f"{name}.weight"], state[f"{name}.bias"]
    if name.startswith("conv_up"):
      lines.append(f"Interp up{name[-1]} 1 1 b{blob} b{blob + 1} 0=1 1=2.0 2=2.0")
      blob += 1
    leaky = name.startswith("conv_up") or name == "conv_hr" or (
        name.startswith("body") and not name.endswith("conv5"))
    act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
    lines.append(f"Convolution {name} 1 1 b{blob} b{blob + 1} 0={weight.shape[0]} 1=3 4=1 5=1 "
                 f"6={weight.size}{act}")
    blob += 1
    if fp16:
      data = weight.astype("<f2").tobytes()
      weights_bin += struct.pack("<I", 0x01306B47) + data + b"\0" * (-len(data) % 4)
    else:
      weights_bin += struct.pack("<I", 0) + weight.astype("<f4").tobytes()
    weights_bin += bias.astype("<f4").tobytes()
  header = ["7767517", f"{len(lines)} {blob + 1}"]
  (stem.parent / (stem.name + ".param")).write_text("\n".join(header + lines) + "\n")
  (stem.parent / (stem.name + ".bin")).write_bytes(bytes(weights_bin))
