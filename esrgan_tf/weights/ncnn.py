"""ncnn `.param` + `.bin` RRDBNet graphs (e.g. Real-ESRGAN x4plus as shipped for ncnn/Vulkan).

Facts from ncnn's wiki ("param and model file structure", "operation param weight table") and
src/modelbin.cpp:
  * .param (text): magic 7767517; "layer_count blob_count"; one line per layer:
    `Type Name n_in n_out in_blobs... out_blobs... k=v ...`, array params as `-233KK=n,v1,...`
    (key -23300 - KK). Convolution: 0=num_output 1=kernel_w 11=kernel_h 2=dilation_w
    12=dilation_h 3=stride_w 13=stride_h 4=pad_left 14=pad_top 5=bias_term 6=weight_data_size
    8=int8_scale_term 9=activation_type (2 = LeakyReLU, slope in 10=activation_params).
  * .bin: per weight-bearing layer in .param order. A Convolution stores its weights
    (num_output, in, kh, kw) as a "type 0" blob: a 4-byte tag (0 = raw float32, 0x01306B47 =
    float16 padded to 4 bytes; other tags are quantized) then the data; then the bias as raw
    float32 without a tag.

The converted graph keeps the network order of the convolutions (conv_first, the 15 convs of each
RRDB, conv_body, the up convs, conv_hr, conv_last), which is how they map onto BasicSR names.
"""

from __future__ import annotations

import os

import numpy as np

from esrgan_tf.weights.errors import CheckpointError

MAGIC = 7767517
# Bounds of a .param, checked while reading it line by line (Real-ESRGAN x4plus, the largest
# published graph: 999 layers, 117 kB, lines of at most 186 characters): the layer count
# declared in the header, the file's size and each line's length; a parsed layer is ~1.5 kB.
MAX_LAYERS = 16384
MAX_PARAM_BYTES = 16 << 20
MAX_LINE_CHARS = 1 << 16
TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
# Layers of an exported RRDBNet; none but Convolution carries weights.
_RRDB_LAYER_TYPES = {"Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp",
                     "ReLU"}
_LEAKY_SLOPE = 0.2


def read_bin(bin_path: str) -> bytes:
  """The whole weights file of an ncnn model.

  Raises:
    CheckpointError: It cannot be read (the message names it).
  """
  try:
    with open(bin_path, "rb") as f:
      return f.read()
  except OSError as e:
    raise CheckpointError(f"{bin_path}: cannot read ({e.strerror})") from None


def companion_paths(path: str) -> tuple[str, str]:
  """(.param, .bin) for either of the two files, which must lie side by side."""
  stem, ext = os.path.splitext(path)
  if ext.lower() not in (".param", ".bin"):
    raise CheckpointError(f"{path}: an ncnn model is a .param/.bin pair")
  param, weights = stem + ".param", stem + ".bin"
  for needed in (param, weights):
    if not os.path.isfile(needed):
      raise CheckpointError(f"{path}: ncnn model needs {needed} beside it, which does not exist")
  return param, weights


def _parse_value(text: str):
  return float(text) if any(c in text for c in ".eE") else int(text)


def _param_lines(path: str):
  """(line number, fields) of the non-blank lines, each at most MAX_LINE_CHARS long.

  Raises:
    CheckpointError: Unreadable, not UTF-8, too large, or a line too long.
  """
  try:
    if os.path.getsize(path) > MAX_PARAM_BYTES:
      raise CheckpointError(f"{path}: a .param of {os.path.getsize(path)} bytes is refused (at "
                            f"most {MAX_PARAM_BYTES}; the largest published graph has 117 kB)")
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 1), ""), start=1):
        if len(line) > MAX_LINE_CHARS:
          raise CheckpointError(f"{path}: line {number} is longer than {MAX_LINE_CHARS} "
                                "characters")
        if line.strip():
          yield number, line.split()
  except (OSError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: cannot read as a text ncnn .param ({e})") from None


def parse_param(path: str) -> list[dict]:
  """Parses a text .param file, line by line: never more layers than its header declares.

  Args:
    path: The .param file.

  Returns:
    One dict per layer: type, name, inputs, outputs, params (int key -> value or list).

  Raises:
    CheckpointError: Bad magic, counts or syntax, or over MAX_LAYERS/MAX_PARAM_BYTES.
  """
  lines = _param_lines(path)
  if next(lines, (0, None))[1] != [str(MAGIC)]:
    raise CheckpointError(f"{path}: not a text ncnn .param (first line must be {MAGIC})")
  try:
    layer_count, _ = (int(v) for v in next(lines, (0, []))[1])
    if not 0 <= layer_count <= MAX_LAYERS:
      raise CheckpointError(f"{path}: header announces {layer_count} layers; at most "
                            f"{MAX_LAYERS} are read (the largest published graph has 999)")
    layers = []
    for number, fields in lines:
      if len(layers) == layer_count:
        raise CheckpointError(f"{path}: header announces {layer_count} layers, line {number} "
                              "is one more")
      n_in, n_out = int(fields[2]), int(fields[3])
      if n_in < 0 or n_out < 0:
        raise ValueError(f"line {number}: negative blob count {n_in} {n_out}")
      blobs = fields[4:4 + n_in + n_out]
      if len(blobs) != n_in + n_out:
        raise ValueError(f"line {number}: {n_in}+{n_out} blobs announced")
      params = {}
      for item in fields[4 + n_in + n_out:]:
        key, value = item.split("=", 1)
        key = int(key)
        if key <= -23300:  # array: -23300 - key, "n,v1,...,vn"
          count, *values = value.split(",")
          if int(count) != len(values):
            raise ValueError(f"line {number}: array {item} has a wrong count")
          params[-23300 - key] = [_parse_value(v) for v in values]
        else:
          params[key] = _parse_value(value)
      layers.append({"type": fields[0], "name": fields[1], "inputs": blobs[:n_in],
                     "outputs": blobs[n_in:], "params": params})
  except (ValueError, IndexError) as e:
    raise CheckpointError(f"{path}: malformed ncnn .param ({e})") from None
  if len(layers) != layer_count:
    raise CheckpointError(f"{path}: header announces {layer_count} layers, found {len(layers)}")
  return layers


# Convolution params that are arrays (activation_params); every other one used is a scalar.
_ARRAY_PARAMS = {10}


def _check_param_kinds(path: str, layer: dict) -> None:
  """Scalars where scalars belong, arrays where arrays do, no negative scalars."""
  for key, value in layer["params"].items():
    if (key in _ARRAY_PARAMS) != isinstance(value, list):
      kind = "an array" if key in _ARRAY_PARAMS else "a scalar"
      raise CheckpointError(f"{path}: {layer['type']} {layer['name']}: param {key} must be "
                            f"{kind}, got {value!r:.60}")
    if not isinstance(value, list) and value < 0 and key in (0, 1, 2, 3, 5, 6, 11, 12, 13):
      raise CheckpointError(f"{path}: {layer['type']} {layer['name']}: param {key} is negative "
                            f"({value})")


def _conv_spec(path: str, layer: dict) -> dict:
  _check_param_kinds(path, layer)
  p = layer["params"]
  out, kw = p.get(0, 0), p.get(1, 0)
  spec = {"name": layer["name"], "out": out, "kh": p.get(11, kw), "kw": kw,
          "bias": p.get(5, 0), "size": p.get(6, 0), "act": p.get(9, 0), "act_params": p.get(10)}
  geometry = (spec["kh"], kw, p.get(2, 1), p.get(12, p.get(2, 1)), p.get(3, 1),
              p.get(13, p.get(3, 1)), p.get(4, 0), p.get(14, p.get(4, 0)), p.get(8, 0))
  if geometry != (3, 3, 1, 1, 1, 1, 1, 1, 0) or spec["bias"] != 1:
    raise CheckpointError(f"{path}: Convolution {layer['name']} is not a 3x3/stride 1/pad 1 "
                          "float conv with bias, as every RRDBNet conv is")
  if (not isinstance(spec["size"], int) or not isinstance(out, int) or out < 1
      or spec["size"] < 1 or spec["size"] % (out * 9)):
    raise CheckpointError(f"{path}: Convolution {layer['name']}: weight_data_size "
                          f"{spec['size']} is not a multiple of num_output*9")
  spec["in"] = spec["size"] // (out * 9)
  return spec


def _rrdb_names(path: str, num_convs: int, num_ups: int) -> list[str]:
  num_blocks, rest = divmod(num_convs - 4 - num_ups, 15)
  if rest or num_blocks < 1:
    raise CheckpointError(f"{path}: {num_convs} convolutions and {num_ups} upsampling layers "
                          "do not form an RRDBNet (1 + 15 per block + 1 + ups + 2)")
  names = ["conv_first"]
  names += [f"body.{i}.rdb{k}.conv{j}" for i in range(num_blocks) for k in (1, 2, 3)
            for j in range(1, 6)]
  names += ["conv_body"] + [f"conv_up{i}" for i in range(1, num_ups + 1)]
  return names + ["conv_hr", "conv_last"]


def _has_leaky_relu(name: str) -> bool:
  return name.startswith("conv_up") or name == "conv_hr" or (
      name.startswith("body.") and not name.endswith("conv5"))


def read_ncnn(path: str) -> dict[str, np.ndarray]:
  """Reads an ncnn RRDBNet as a BasicSR-named state dict (torch OIHW layout, float32).

  Args:
    path: The .param or the .bin file (the other must lie beside it).

  Returns:
    e.g. {"conv_first.weight": (nf, in, 3, 3), "conv_first.bias": (nf,), ...}.

  Raises:
    CheckpointError: Not an RRDBNet graph, unsupported weight encoding, or a .bin that does not
      match what the .param declares.
  """
  param_path, bin_path = companion_paths(path)
  layers = parse_param(param_path)
  types = sorted({layer["type"] for layer in layers})
  foreign = set(types) - _RRDB_LAYER_TYPES
  if foreign:
    raise CheckpointError(f"{param_path}: not an RRDBNet graph: layer types {sorted(foreign)} "
                          f"(found {types})")
  convs = [_conv_spec(param_path, layer) for layer in layers if layer["type"] == "Convolution"]
  interps = [layer for layer in layers if layer["type"] == "Interp"]
  for layer in interps:
    p = layer["params"]
    if p.get(0) != 1 or p.get(1) != 2.0 or p.get(2) != 2.0:
      raise CheckpointError(f"{param_path}: Interp {layer['name']} is not a nearest x2 resize")
  names = _rrdb_names(param_path, len(convs), len(interps))
  for name, spec in zip(names, convs):
    act = spec["act"]
    leaky = act == 2 and spec["act_params"] is not None and np.isclose(
        spec["act_params"][0], _LEAKY_SLOPE)
    if act not in (0, 2) or (act == 2 and not (leaky and _has_leaky_relu(name))):
      raise CheckpointError(f"{param_path}: Convolution {spec['name']} (mapped to {name}) has "
                            f"activation {act} {spec['act_params']}, which RRDBNet's {name} "
                            "does not have")

  data = read_bin(bin_path)
  state, pos = {}, 0
  for name, spec in zip(names, convs):
    if pos + 4 > len(data):
      raise CheckpointError(f"{bin_path}: is {len(data)} bytes, shorter than {param_path} "
                            f"needs (ends before {spec['name']})")
    tag = int.from_bytes(data[pos:pos + 4], "little")
    pos += 4
    n = spec["size"]
    if tag == TAG_FP32:
      dtype, nbytes = "<f4", 4 * n
    elif tag == TAG_FP16:
      dtype, nbytes = "<f2", (2 * n + 3) // 4 * 4  # padded to 4 bytes
    else:
      raise CheckpointError(f"{bin_path}: {spec['name']} weights have tag {tag:#010x}: only "
                            "float32 (0) and float16 (0x01306b47) weights are supported")
    needed = nbytes + 4 * spec["out"]
    if pos + needed > len(data):
      raise CheckpointError(f"{bin_path}: is {len(data)} bytes, shorter than {param_path} "
                            f"needs ({spec['name']} ends at byte {pos + needed})")
    weight = np.frombuffer(data, dtype, count=n, offset=pos).astype(np.float32)
    pos += nbytes
    bias = np.frombuffer(data, "<f4", count=spec["out"], offset=pos).astype(np.float32)
    pos += 4 * spec["out"]
    state[f"{name}.weight"] = weight.reshape(spec["out"], spec["in"], 3, 3)
    state[f"{name}.bias"] = bias
  if pos != len(data):
    raise CheckpointError(f"{bin_path}: {len(data) - pos} bytes more than {param_path} "
                          "declares")
  return state
