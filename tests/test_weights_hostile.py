"""Hostile checkpoints: every one refused with a clear error, no payload ever executed.

Each pickle payload would create a canary file if it ran (a positive control below runs some of
them through the standard, unrestricted `pickle.loads` to prove it); the reader must refuse it
and the canary must not exist. Payloads are placed in each pickle slot the reader loads: a zip's
data.pkl, and the legacy format's first (magic number) and main pickles.
"""

import pickle
import struct
import zipfile

import numpy as np
import pytest
import weights_fixtures as wf

from esrgan_tf import weights
from esrgan_tf.models import checkpoints


def _str(text: str) -> bytes:
  encoded = text.encode()
  return b"X" + struct.pack("<I", len(encoded)) + encoded  # BINUNICODE


def _short(text: str) -> bytes:
  return b"\x8c" + bytes([len(text)]) + text.encode()  # SHORT_BINUNICODE (protocol 4)


def _payloads(canary: str) -> dict:
  """name -> (pickle bytes, runs under plain pickle.loads and creates the canary)."""
  touch = f"touch {canary}"
  write = f"open({canary!r}, 'w').close()"
  return {
      "GLOBAL os.system + REDUCE": (b"\x80\x02cos\nsystem\n" + _str(touch) + b"\x85R.", True),
      "GLOBAL posix.system": (b"\x80\x02cposix\nsystem\n" + _str(touch) + b"\x85R.", True),
      "GLOBAL builtins.eval": (b"\x80\x02cbuiltins\neval\n" + _str(write) + b"\x85R.", True),
      "GLOBAL builtins.exec": (b"\x80\x02cbuiltins\nexec\n" + _str(write) + b"\x85R.", True),
      "GLOBAL subprocess.Popen": (b"\x80\x02csubprocess\nPopen\n(" + _str("touch")
                                  + _str(canary) + b"l\x85R.", True),
      "getattr(__import__('os'), 'system')": (
          b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n" + _str("os") + b"\x85R"
          + _str("system") + b"tR" + _str(touch) + b"\x85R.", True),
      "STACK_GLOBAL os.system": (b"\x80\x04" + _short("os") + _short("system") + b"\x93"
                                 + _short(touch) + b"\x85R.", True),
      "STACK_GLOBAL via memo": (b"\x80\x04" + _short("os") + b"\x94" + _short("system") + b"\x94"
                                + b"h\x00h\x01\x93" + _short(touch) + b"\x85R.", True),
      "INST os.system": (b"(S'" + touch.encode() + b"'\nios\nsystem\n.", True),
      "OBJ os.system": (b"\x80\x02(cos\nsystem\n" + _str(touch) + b"o.", True),
      "OBJ on an admitted class": (b"\x80\x02(ccollections\nOrderedDict\no.", False),
      "NEWOBJ subprocess.Popen": (b"\x80\x02csubprocess\nPopen\n(" + _str("touch") + _str(canary)
                                  + b"l\x85\x81.", False),
      "NEWOBJ on an admitted class": (b"\x80\x02ccollections\nOrderedDict\n)\x81.", False),
      "EXT1 (copyreg registry)": (b"\x80\x02\x82\x01.", False),
      "torch.storage._load_from_bytes": (b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x01x\x85R.",
                                         False),
      "BUILD injecting state into OrderedDict": (
          b"\x80\x02ccollections\nOrderedDict\n)R}" + _str("__reduce__") + _str("x") + b"sb.",
          False),
      "BUILD on a storage type stand-in": (b"\x80\x02ctorch\nFloatStorage\n}b.", False),
      "REDUCE on a storage type stand-in": (b"\x80\x02ctorch\nFloatStorage\n)R.", False),
      "_rebuild_tensor_v2 without a storage": (
          b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + _str(touch) + b"K\x00)))tR.", False),
      "persistent id that is not a storage": (b"\x80\x02(" + _str("module") + _str("os")
                                              + b"tQ.", False),
      "text PERSID": (b"\x80\x02Pstorage\n.", False),
  }


_NAMES = list(_payloads("x"))


def _container(tmp_path, slot: str, payload: bytes):
  path = tmp_path / "model.pth"
  if slot == "zip data.pkl":
    wf.write_zip(path, {}, data_pkl=payload)
  elif slot == "legacy magic pickle":
    # The genuine magic-number pickle minus its STOP, POP, then the payload's opcodes: the reader
    # recognises the file and must refuse while loading its very first pickle.
    magic = pickle.dumps(wf.LEGACY_MAGIC, protocol=2)[:-1] + b"0"
    body = payload[2:] if payload.startswith(b"\x80") else payload
    path.write_bytes(wf.legacy_bytes({}, magic_pickle=magic + body))
  else:
    path.write_bytes(wf.legacy_bytes({}, main_pickle=payload))
  return str(path)


@pytest.mark.parametrize("slot", ["zip data.pkl", "legacy magic pickle", "legacy main pickle"])
@pytest.mark.parametrize("name", _NAMES)
def test_hostile_pickle_refused_without_execution(tmp_path, slot, name):
  canary = tmp_path / "canary"
  payload, _ = _payloads(str(canary))[name]
  path = _container(tmp_path, slot, payload)
  with pytest.raises(weights.CheckpointError, match=r"model\.pth: .*(refused|corrupt pickle)"):
    checkpoints.load_checkpoint(path)
  assert not canary.exists()


@pytest.mark.parametrize("name", ["GLOBAL os.system + REDUCE", "GLOBAL builtins.exec",
                                  "STACK_GLOBAL via memo", "INST os.system", "OBJ os.system",
                                  "getattr(__import__('os'), 'system')"])
def test_positive_control_payloads_do_create_the_canary(tmp_path, name):
  """The same bytes through an unrestricted unpickler: the canary appears (the tests can fail)."""
  canary = tmp_path / "canary"
  payload, live = _payloads(str(canary))[name]
  assert live
  try:
    pickle.loads(payload)
  except Exception:  # pylint: disable=broad-except  the payload's return value is irrelevant
    pass
  assert canary.exists()


def test_refusal_messages_name_the_global(tmp_path):
  payload, _ = _payloads(str(tmp_path / "canary"))["STACK_GLOBAL os.system"]
  with pytest.raises(weights.CheckpointError, match=r"refused pickle global os\.system"):
    checkpoints.load_checkpoint(_container(tmp_path, "zip data.pkl", payload))
  payload, _ = _payloads(str(tmp_path / "canary"))["INST os.system"]
  with pytest.raises(weights.CheckpointError, match="refused pickle opcode INST"):
    checkpoints.load_checkpoint(_container(tmp_path, "zip data.pkl", payload))


# --- storages and tensors ------------------------------------------------------------------------

def _float_tensor(key="0", numel=16, data_elems=16, size=(4, 4), stride=(4, 1), offset=0,
                  type_name="FloatStorage"):
  data = np.arange(data_elems, dtype="<f4").tobytes()
  return wf.Tensor(wf.Storage(key, type_name, numel, data), offset, size, stride)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_storage_declaring_more_bytes_than_exist(tmp_path, fmt):
  obj = {"w": _float_tensor(numel=1 << 20, data_elems=16, size=(16,), stride=(1,))}
  path = tmp_path / "big.pth"
  if fmt == "zip":
    wf.write_zip(path, obj)
    match = r"storage data/0 declares 1048576 float32 elements \(4194304 bytes\) but holds 64"
  else:
    path.write_bytes(wf.legacy_bytes(obj))
    match = "storage 0 declares 4194304 bytes but only 64 remain"
  with pytest.raises(weights.CheckpointError, match=match):
    weights.read_state_dict(str(path))


@pytest.mark.parametrize("tensor,match", [
    (_float_tensor(size=(4, 4), stride=(5, 1)), r"reaches element 18 of a storage of 16"),
    (_float_tensor(size=(4, 4), stride=(4, 1), offset=1), r"reaches element 16 of a storage"),
    (_float_tensor(size=(1000, 1000), stride=(0, 0)), "more elements than its storage"),
    (_float_tensor(size=(4, 4), stride=(4, -1)), "stride must be a tuple of non-negative"),
    (_float_tensor(size=(4, 4), stride=(4,)), "differ in length"),
], ids=["stride", "offset", "zero-stride bomb", "negative stride", "rank mismatch"])
def test_tensor_outside_its_storage(tmp_path, tensor, match):
  for fmt in ("zip", "legacy"):
    path = tmp_path / f"{fmt}.pth"
    if fmt == "zip":
      wf.write_zip(path, {"w": tensor})
    else:
      path.write_bytes(wf.legacy_bytes({"w": tensor}))
    with pytest.raises(weights.CheckpointError, match=match):
      weights.read_state_dict(str(path))


def test_unknown_storage_dtype_refused(tmp_path):
  data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((" + _str("storage")
          + b"ctorch\nComplexFloatStorage\n" + _str("0") + _str("cpu") + b"K\x01tQK\x00)))tR.")
  path = tmp_path / "complex.pth"
  wf.write_zip(path, {}, data_pkl=data)
  with pytest.raises(weights.CheckpointError, match=r"refused pickle global "
                     r"torch\.ComplexFloatStorage"):
    weights.read_state_dict(str(path))


def test_truncated_and_corrupt_containers(tmp_path):
  sd = wf.state_dict({"conv.weight": np.ones((4, 3, 3, 3), np.float32)})
  wf.write_zip(tmp_path / "ok.pth", sd)
  raw = (tmp_path / "ok.pth").read_bytes()
  (tmp_path / "truncated.pth").write_bytes(raw[:len(raw) // 2])
  legacy = wf.legacy_bytes(sd)
  (tmp_path / "truncated_legacy.pth").write_bytes(legacy[:-10])
  (tmp_path / "trailing_legacy.pth").write_bytes(legacy + b"junk")
  with zipfile.ZipFile(tmp_path / "two.pth", "w") as archive:
    archive.writestr("a/data.pkl", b"\x80\x02}.")
    archive.writestr("b/data.pkl", b"\x80\x02}.")
  cases = {"truncated.pth": "not a readable zip archive",
           "truncated_legacy.pth": "declares 432 bytes but only 422 remain",
           "trailing_legacy.pth": "4 unexpected bytes after the last storage",
           "two.pth": "exactly one <dir>/data.pkl, found 2"}
  for name, match in cases.items():
    with pytest.raises(weights.CheckpointError, match=match):
      weights.read_state_dict(str(tmp_path / name))


def test_zip_storage_missing_or_bad_byteorder(tmp_path):
  sd = {"w": _float_tensor()}
  wf.write_zip(tmp_path / "order.pth", sd, byteorder=b"middle")
  with pytest.raises(weights.CheckpointError, match="unknown byteorder 'middle'"):
    weights.read_state_dict(str(tmp_path / "order.pth"))
  wf.write_zip(tmp_path / "ok.pth", sd)
  with zipfile.ZipFile(tmp_path / "ok.pth") as src, zipfile.ZipFile(
      tmp_path / "missing.pth", "w") as dst:
    for info in src.infolist():
      if not info.filename.endswith("data/0"):
        dst.writestr(info, src.read(info))
  with pytest.raises(weights.CheckpointError, match="storage record data/0 is missing"):
    weights.read_state_dict(str(tmp_path / "missing.pth"))


# --- safetensors ---------------------------------------------------------------------------------

def _safetensors(header: dict, buffer: bytes) -> bytes:
  import json  # pylint: disable=g-import-not-at-top
  encoded = json.dumps(header).encode()
  return struct.pack("<Q", len(encoded)) + encoded + buffer


@pytest.mark.parametrize("header,buffer,match", [
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}, bytes(16),
     r"data_offsets \[0, 64\] inconsistent"),
    ({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 16]}}, bytes(16),
     "inconsistent with its size"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16),
     "hole or overlap"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16),
     "hole or overlap"),
    ({"w": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, bytes(16),
     "unsupported dtype 'C64'"),
    ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16),
     "malformed shape"),
], ids=["offsets past the buffer", "shape larger than span", "overlap", "hole", "unknown dtype",
        "negative shape"])
def test_safetensors_header_lies(tmp_path, header, buffer, match):
  path = tmp_path / "lie.safetensors"
  path.write_bytes(_safetensors(header, buffer))
  with pytest.raises(weights.CheckpointError, match=r"lie\.safetensors: invalid safetensors.*"
                     + match):
    checkpoints.load_checkpoint(str(path))


def test_safetensors_header_length_lies(tmp_path):
  path = tmp_path / "len.safetensors"
  path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
  with pytest.raises(weights.CheckpointError, match="header length 1099511627776 exceeds"):
    checkpoints.load_checkpoint(str(path))


# --- ncnn ----------------------------------------------------------------------------------------

def _tiny_ncnn(tmp_path, bin_bytes: bytes, tag: int = 0):
  wf.write_ncnn(tmp_path / "m", wf.random_state(), num_blocks=1, num_ups=2)
  raw = (tmp_path / "m.bin").read_bytes()
  if tag:
    raw = struct.pack("<I", tag) + raw[4:]
  (tmp_path / "m.bin").write_bytes(raw[:bin_bytes] if bin_bytes else raw)
  return raw


def test_ncnn_bin_shorter_than_param_needs(tmp_path):
  raw = _tiny_ncnn(tmp_path, 0)
  (tmp_path / "m.bin").write_bytes(raw[:-4])
  with pytest.raises(weights.CheckpointError, match=r"m\.bin: is \d+ bytes, shorter than "
                     r".*m\.param needs \(conv_last ends at byte"):
    checkpoints.load_checkpoint(str(tmp_path / "m.param"))
  (tmp_path / "m.bin").write_bytes(raw + b"\0" * 8)
  with pytest.raises(weights.CheckpointError, match="8 bytes more than"):
    checkpoints.load_checkpoint(str(tmp_path / "m.param"))


def test_ncnn_quantized_tag_and_foreign_graph_refused(tmp_path):
  _tiny_ncnn(tmp_path, 0, tag=0x000D4B38)  # int8 weights
  with pytest.raises(weights.CheckpointError, match="tag 0x000d4b38: only float32"):
    checkpoints.load_checkpoint(str(tmp_path / "m.bin"))
  (tmp_path / "m.param").write_text("7767517\n2 2\nInput data 0 1 d\nPReLU p 1 1 d o 0=1\n")
  with pytest.raises(weights.CheckpointError, match=r"not an RRDBNet graph: layer types "
                     r"\['PReLU'\]"):
    checkpoints.load_checkpoint(str(tmp_path / "m.param"))
  (tmp_path / "m.param").write_text("not ncnn\n")
  with pytest.raises(weights.CheckpointError, match="not a text ncnn .param"):
    checkpoints.load_checkpoint(str(tmp_path / "m.param"))



# --- self-containing dicts, compressed storages, overflowing / deep / mistyped fields ----

_PARAMS_EMA = _str("params_ema")
_PARAMS = _str("params")
# PROTO 2, EMPTY_DICT, BINPUT 0, "params_ema", BINGET 0, SETITEM, STOP: {"params_ema": <itself>}.
_SELF_DICT = b"\x80\x02}q\x00" + _PARAMS_EMA + b"h\x00s."
# a = {"params": b}, b = {"params_ema": a}: a cycle through two wrapper levels.
_CYCLE_DICT = b"\x80\x02}q\x00" + _PARAMS + b"}q\x01" + _PARAMS_EMA + b"h\x00ss."
# 100 nested {"params": {"params": ...}} levels, built without recursion in the pickle.
_DEEP_DICT = b"\x80\x02" + (b"}" + _PARAMS) * 100 + b"}" + b"s" * 100 + b"."


@pytest.mark.parametrize("slot", ["zip data.pkl", "legacy main pickle"])
@pytest.mark.parametrize("payload, match", [
    (_SELF_DICT, "nest back into themselves"),
    (_CYCLE_DICT, "nest back into themselves"),
    (_DEEP_DICT, "more than 8 deep"),
], ids=["self", "cycle", "deep"])
def test_self_containing_state_dict_refused_quickly(tmp_path, slot, payload, match):
  import time  # pylint: disable=g-import-not-at-top

  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top

  path = _container(tmp_path, slot, payload)
  started = time.monotonic()
  with pytest.raises(weights.CheckpointError, match=r"model\.pth: the wrapper keys .*" + match):
    weights.read_state_dict(path)
  # The same reader behind --model / train.init_from (loading) and esrgan-import (load_checkpoint).
  with pytest.raises(weights.CheckpointError, match=match):
    checkpoints.load_checkpoint(path)
  with pytest.raises(weights.CheckpointError, match=match):
    resolver.load_generator(path)
  assert time.monotonic() - started < 10


def test_esrgan_import_refuses_a_self_containing_checkpoint(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  path = _container(tmp_path, "zip data.pkl", _SELF_DICT)
  out = tmp_path / "out.keras"
  result = subprocess.run(
      [sys.executable, "-c", "import sys; from esrgan_tf.cli import import_checkpoint as m; "
       "sys.argv[0] = 'esrgan-import'; m.run()", f"--checkpoint={path}", f"--output={out}"],
      capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "nest back into themselves" in result.stderr
  assert not out.exists()


def _deflated_copy(src, dst):
  with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
    for info in archive.infolist():
      out.writestr(info.filename, archive.read(info), compress_type=zipfile.ZIP_DEFLATED)


def test_deflated_storage_refused_before_inflating(tmp_path):
  # 16 MB of zeros deflate to ~16 kB: the reader must not inflate it to find out.
  numel = 4 << 20
  tensor = wf.Tensor(wf.Storage("0", "FloatStorage", numel, bytes(4 * numel)), 0, (numel,), (1,))
  stored, deflated = tmp_path / "stored.pth", tmp_path / "model.pth"
  wf.write_zip(stored, {"w": tensor})
  _deflated_copy(stored, deflated)
  assert deflated.stat().st_size < 100_000
  with pytest.raises(weights.CheckpointError, match=r"model\.pth: record .* is compressed"):
    weights.read_state_dict(str(deflated))


def test_safetensors_shape_overflowing_int64_is_a_checkpoint_error(tmp_path):
  path = tmp_path / "lie.safetensors"
  for shape in ([2**40, 2**40], [2**70]):
    path.write_bytes(_safetensors({"w": {"dtype": "F32", "shape": shape,
                                         "data_offsets": [0, 16]}}, bytes(16)))
    with pytest.raises(weights.CheckpointError, match=r"lie\.safetensors: .*tensor 'w'.*"
                       "inconsistent with its size"):
      weights.read_state_dict(str(path))


def test_safetensors_deeply_nested_header(tmp_path):
  path = tmp_path / "deep.safetensors"
  header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
  path.write_bytes(struct.pack("<Q", len(header)) + header)
  with pytest.raises(weights.CheckpointError, match=r"deep\.safetensors: .*nested too deeply"):
    weights.read_state_dict(str(path))


def test_tensor_size_overflowing_int64_refused(tmp_path):
  # 2**32 × 2**32 elements with zero strides: with int64 arithmetic the count wraps to 0.
  obj = {"w": _float_tensor(size=(2**32, 2**32), stride=(0, 0))}
  for fmt in ("zip", "legacy"):
    path = tmp_path / f"{fmt}.pth"
    if fmt == "zip":
      wf.write_zip(path, obj)
    else:
      path.write_bytes(wf.legacy_bytes(obj))
    with pytest.raises(weights.CheckpointError, match=rf"{fmt}\.pth: .*more elements than its "
                       "storage"):
      weights.read_state_dict(str(path))


@pytest.mark.parametrize("old, new, match", [
    ("6=", "6=-", "param 6 is negative"),
    ("0=8 ", "0=-8 ", "param 0 is negative"),
    ("-23310=1,2.000000e-01", "10=0.2", "param 10 must be an array"),
    ("0=8 ", "-23300=1,8 ", "param 0 must be a scalar"),
    ("Convolution conv_first 1 1", "Convolution conv_first -1 1", "negative blob count"),
], ids=["negative size", "negative num_output", "scalar activation_params",
        "array num_output", "negative blob count"])
def test_ncnn_negative_and_mistyped_fields(tmp_path, old, new, match):
  _tiny_ncnn(tmp_path, 0)
  param = tmp_path / "m.param"
  text = param.read_text()
  assert old in text
  param.write_text(text.replace(old, new))
  with pytest.raises(weights.CheckpointError, match=r"m\.param: .*" + match):
    weights.read_state_dict(str(param))


# --- memory bounded by the file (a loader's peak is a small multiple of what it reads) ----------

_LOAD = "from esrgan_tf import weights\n"


def _aliasing(tmp_path, fmt: str, views: int = 400):
  """`views` tensors of 1024² float32, all viewing one 4 MB storage (the issue's 2.17 GB case)."""
  storage = wf.Storage("0", "FloatStorage", 1 << 20,
                       np.arange(1 << 20, dtype="<f4").tobytes())
  obj = {f"w{i}": wf.Tensor(storage, 0, (1024, 1024), (1024, 1)) for i in range(views)}
  path = tmp_path / f"alias_{fmt}.pth"
  if fmt == "zip":
    wf.write_zip(path, obj)
  else:
    path.write_bytes(wf.legacy_bytes(obj))
  return path


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_aliasing_views_share_their_storage(tmp_path, fmt):
  path = _aliasing(tmp_path, fmt)
  size = path.stat().st_size
  outcome = _child_load(path, "len(weights.read_state_dict({path!r}))")
  assert outcome["result"] == "400", outcome
  assert outcome["growth"] < 4 * size + (16 << 20), outcome  # was 400 × 4 MB = 1.6 GB
  state = weights.read_state_dict(str(path))
  expected = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)
  np.testing.assert_array_equal(state["w0"], expected)
  assert all(np.shares_memory(state["w0"], state[f"w{i}"]) for i in range(400))
  assert not state["w7"].flags.writeable  # A shared storage is never written through a view.
  # The layout error the issue reached after 2 GB, now with the storage read once.
  with pytest.raises(weights.CheckpointError, match="not a recognised RRDBNet state dict"):
    checkpoints.load_checkpoint(str(path))


def test_strided_views_of_one_storage_are_copied_within_the_storages_bytes(tmp_path):
  storage = wf.Storage("0", "FloatStorage", 1 << 16, np.arange(1 << 16, dtype="<f4").tobytes())
  transposed = {f"t{i}": wf.Tensor(storage, 0, (256, 256), (1, 256)) for i in range(3)}
  path = tmp_path / "strided.pth"
  wf.write_zip(path, {"t0": transposed["t0"]})
  state = weights.read_state_dict(str(path))  # One copy: within the storage's bytes.
  np.testing.assert_array_equal(state["t0"], np.arange(1 << 16, dtype=np.float32)
                                .reshape(256, 256).T)
  wf.write_zip(path, transposed)  # Three copies of one storage: refused at the second.
  with pytest.raises(weights.CheckpointError, match="overlapping views"):
    weights.read_state_dict(str(path))


def _child_load(path, call: str) -> dict:
  import hostile_fixtures as hf  # pylint: disable=g-import-not-at-top
  return hf.child_peak(_LOAD, call.format(path=str(path)))


def test_pickle_of_millions_of_objects_is_refused_by_its_opcode_count(tmp_path):
  path = tmp_path / "objects.pth"
  wf.write_zip(path, {}, data_pkl=b"\x80\x02]" + b"]a" * 3_000_000 + b".")  # 6 MB, 6 M opcodes
  outcome = _child_load(path, "weights.read_state_dict({path!r})")
  assert "refused pickle of more than 2097152 opcodes" in outcome["error"], outcome
  assert outcome["growth"] < 64 << 20 and outcome["seconds"] < 10, outcome  # was +2 GB, 67 s
  wf.write_zip(path, {}, data_pkl=b"\x80\x02]" + b"]a" * 1_000_000 + b".")  # under the cap
  outcome = _child_load(path, "weights.read_state_dict({path!r})")
  assert "holds a list, not a state dict" in outcome["error"], outcome
  assert outcome["growth"] < 200 << 20, outcome


def test_zip_of_many_records_is_refused_from_its_end_record(tmp_path):
  path = tmp_path / "records.pth"
  with zipfile.ZipFile(path, "w") as archive:
    for index in range(70_000):
      archive.writestr(f"archive/x{index}", b"")
    archive.writestr("archive/data.pkl", b"\x80\x02}.")
  outcome = _child_load(path, "weights.read_state_dict({path!r})")
  assert "a zip of 70001 records" in outcome["error"], outcome
  assert outcome["growth"] < 16 << 20 and outcome["seconds"] < 2, outcome
  # zip64: the count is read from the zip64 end record (Python writes one past 65,535 records).
  with open(path, "rb") as f:
    assert b"PK\x06\x06" in f.read()


@pytest.mark.parametrize("header, body, lines, match", [
    ("1 1", "a\n", 9_000_000, "a .param of 18000012 bytes is refused"),
    ("1 1", "a\n", 7_000_000, "malformed ncnn .param (list index out of range)"),
    ("20000 20000", "ReLU r 1 1 a b\n", 10, "header announces 20000 layers; at most 16384"),
    ("16384 16384", "ReLU r 1 1 a b\n", 700_000, "line 16387 is one more"),
    ("1 1", "x" * (1 << 17) + "\n", 1, "line 3 is longer than 65536"),
], ids=["9 M tiny lines", "7 M tiny lines", "declared layers", "lines beyond the declared layers",
        "long line"])
def test_ncnn_param_read_line_by_line_within_bounds(tmp_path, header, body, lines, match):
  param = tmp_path / "m.param"
  with open(param, "w") as f:
    f.write(f"7767517\n{header}\n")
    f.write(body * lines)
  (tmp_path / "m.bin").write_bytes(b"")
  outcome = _child_load(param, "weights.read_state_dict({path!r})")
  assert match in outcome["error"], outcome
  assert outcome["growth"] < 64 << 20 and outcome["seconds"] < 5, outcome  # was +1.7 GB, 24 s


def test_safetensors_header_of_millions_of_values_is_refused(tmp_path):
  path = tmp_path / "h.safetensors"
  header = (b'{"x":{"dtype":"F32","shape":[' + b"0," * 16_000_000
            + b'0],"data_offsets":[0,0]}}')
  path.write_bytes(struct.pack("<Q", len(header)) + header)
  outcome = _child_load(path, "weights.read_state_dict({path!r})")
  # 16,000,003 commas + 4 colons + 1: the cheap count made before any parsing.
  assert "header holds about 16000008 JSON values, more than 1048576" in outcome["error"]
  assert outcome["growth"] < 48 << 20, outcome  # the 32 MB header is read, nothing parsed
