"""ncnn `.param` + `.bin` SRVGGNetCompact graphs (Real-ESRGAN's realesr-animevideov3 for ncnn).

The graph Real-ESRGAN's ncnn exports contain (e.g. `realesr-animevideov3-x4.param`): Input,
Split of the input, Convolution → PReLU repeated num_conv + 1 times, a last Convolution,
PixelShuffle, an Interp of the input (nearest, ×upscale) and a BinaryOp adding the two.

Layer facts from ncnn's wiki ("operation param weight table") and src/layer/*.cpp:
  * PReLU: 0=num_slope; weights: num_slope raw float32 (ModelBin::load(w, 1): no type tag).
  * PixelShuffle: 0=upscale_factor, 1=mode (0: PyTorch's order c·r² + i·r + j, the only one
    exported from PyTorch; 1 is the depth_to_space order).
  * Interp: 0=resize_type (1 nearest, 2 bilinear, 3 bicubic), 1=height_scale, 2=width_scale.
  * BinaryOp: 0=op_type (0 add), 1=with_scalar.
  * Convolution weights: see `esrgan_tf.weights.ncnn` (tagged float32/float16 blob, raw bias).

The x2/x3 animevideov3 files of the sr-vulkan packages are the x4 graph followed by a bicubic
downscale (Interp 0=3); that is not the network, so they are refused with that explanation.
"""

from __future__ import annotations

import math

import numpy as np

from esrgan_tf.weights import ncnn
from esrgan_tf.weights.errors import CheckpointError

_LAYER_TYPES = {"Input", "Split", "Convolution", "PReLU", "PixelShuffle", "Interp", "BinaryOp"}


def is_compact_graph(path: str) -> bool:
  """True if the ncnn model beside `path` has a PixelShuffle layer (RRDBNets have none)."""
  param_path, _ = ncnn.companion_paths(path)
  return any(layer["type"] == "PixelShuffle" for layer in ncnn.parse_param(param_path))


def _interpret(path: str, layers: list[dict]) -> tuple[list[tuple[str, dict]], int]:
  """Checks the graph; returns ([(state-dict prefix, layer)] of weight layers, upscale)."""
  types = {layer["type"] for layer in layers}
  if types - _LAYER_TYPES:
    raise CheckpointError(f"{path}: not an SRVGGNetCompact graph: layer types "
                          f"{sorted(types - _LAYER_TYPES)}")
  chain = [layer for layer in layers if layer["type"] in ("Convolution", "PReLU")]
  kinds = [layer["type"] for layer in chain]
  expected = ["Convolution", "PReLU"] * ((len(chain) - 1) // 2) + ["Convolution"]
  if kinds != expected or len(chain) < 3:
    raise CheckpointError(f"{path}: SRVGGNetCompact needs (Convolution, PReLU) pairs and a last "
                          f"Convolution; found {len(chain)} layers in the order {kinds[:6]}...")
  for previous, layer in zip(chain, chain[1:]):
    if layer["inputs"] != previous["outputs"]:
      raise CheckpointError(f"{path}: {layer['name']} does not take {previous['name']}'s output")
  specs = {layer["name"]: ncnn._conv_spec(path, layer)  # pylint: disable=protected-access
           for layer in chain if layer["type"] == "Convolution"}
  for name, spec in specs.items():
    if spec["act"] != 0:
      raise CheckpointError(f"{path}: Convolution {name} has a fused activation "
                            f"{spec['act']}; SRVGGNetCompact's convs have none")
  first, last = specs[chain[0]["name"]], specs[chain[-1]["name"]]
  square, rest = divmod(last["out"], first["in"])
  upscale = math.isqrt(square)
  if rest or upscale**2 != square or upscale not in (1, 2, 3, 4):
    raise CheckpointError(f"{path}: last Convolution has {last['out']} outputs, not "
                          f"{first['in']}·upscale² for an upscale in 1..4")
  for layer in chain:
    if layer["type"] == "PReLU" and layer["params"].get(0, 1) != first["out"]:
      raise CheckpointError(f"{path}: PReLU {layer['name']} has {layer['params'].get(0, 1)} "
                            f"slopes, expected one per channel ({first['out']})")

  by_type = {}
  for layer in layers:
    by_type.setdefault(layer["type"], []).append(layer)
  shuffles, interps, adds = (by_type.get(t, []) for t in ("PixelShuffle", "Interp", "BinaryOp"))
  if len(interps) > 1 or len(adds) != 1 or len(shuffles) != 1:
    resizes = [f"{i['name']} type {i['params'].get(0)}" for i in interps]
    raise CheckpointError(
        f"{path}: expected one PixelShuffle, one nearest Interp and one BinaryOp add; found "
        f"{len(shuffles)}, {len(interps)} ({', '.join(resizes)}), {len(adds)}. (sr-vulkan's "
        "animevideov3 x2/x3 files are the x4 network plus a bicubic downscale: use the x4 file)")
  shuffle, add = shuffles[0], adds[0]
  if shuffle["inputs"] != chain[-1]["outputs"] or shuffle["params"].get(0) != upscale or (
      shuffle["params"].get(1, 0) != 0):
    raise CheckpointError(f"{path}: PixelShuffle {shuffle['name']} must take the last conv's "
                          f"output with upscale_factor {upscale} and mode 0")
  if add["params"].get(0, 0) != 0 or add["params"].get(1, 0) != 0 or len(add["inputs"]) != 2:
    raise CheckpointError(f"{path}: BinaryOp {add['name']} is not an add of two blobs")
  if interps:
    p = interps[0]["params"]
    if p.get(0) != 1 or p.get(1) != float(upscale) or p.get(2) != float(upscale):
      raise CheckpointError(f"{path}: Interp {interps[0]['name']} is not a nearest ×{upscale} "
                            "resize")
    residual = interps[0]["outputs"]
  elif upscale == 1:
    residual = None  # ×1: the input itself is added.
  else:
    raise CheckpointError(f"{path}: no Interp upsampling the input")
  if shuffle["outputs"][0] not in add["inputs"] or (
      residual is not None and residual[0] not in add["inputs"]):
    raise CheckpointError(f"{path}: BinaryOp {add['name']} does not add the PixelShuffle and "
                          "the upsampled input")
  names = [(f"body.{i}", layer) for i, layer in enumerate(chain)]
  return [(name, specs.get(layer["name"], layer)) for name, layer in names], upscale


def read_compact(path: str) -> dict[str, np.ndarray]:
  """Reads an ncnn SRVGGNetCompact as its Real-ESRGAN state dict (torch layout, float32).

  Args:
    path: The .param or the .bin file (the other must lie beside it).

  Returns:
    {"body.0.weight": (nf, in, 3, 3), "body.0.bias": (nf,), "body.1.weight": (nf,), ...}.

  Raises:
    CheckpointError: Not a Compact graph, unsupported weight encoding, or a .bin that does not
      match what the .param declares.
  """
  param_path, bin_path = ncnn.companion_paths(path)
  entries, _ = _interpret(param_path, ncnn.parse_param(param_path))
  data = ncnn.read_bin(bin_path)
  state, pos = {}, 0

  def take(dtype: str, count: int, nbytes: int, what: str) -> np.ndarray:
    nonlocal pos
    if pos + nbytes > len(data):
      raise CheckpointError(f"{bin_path}: is {len(data)} bytes, shorter than {param_path} "
                            f"needs ({what} ends at byte {pos + nbytes})")
    array = np.frombuffer(data, dtype, count=count, offset=pos).astype(np.float32)
    pos += nbytes
    return array

  for name, spec in entries:
    if "out" not in spec:  # PReLU: raw float32 slopes.
      count = spec["params"].get(0, 1)
      state[f"{name}.weight"] = take("<f4", count, 4 * count, spec["name"])
      continue
    take("<u4", 1, 4, spec["name"])  # the 4-byte type tag: bounds-checked, then read
    tag = int.from_bytes(data[pos - 4:pos], "little")
    n = spec["size"]
    if tag == ncnn.TAG_FP32:
      weight = take("<f4", n, 4 * n, spec["name"])
    elif tag == ncnn.TAG_FP16:
      weight = take("<f2", n, (2 * n + 3) // 4 * 4, spec["name"])  # padded to 4 bytes
    else:
      raise CheckpointError(f"{bin_path}: {spec['name']} weights have tag {tag:#010x}: only "
                            "float32 (0) and float16 (0x01306b47) weights are supported")
    state[f"{name}.weight"] = weight.reshape(spec["out"], spec["in"], 3, 3)
    state[f"{name}.bias"] = take("<f4", spec["out"], 4 * spec["out"], spec["name"])
  if pos != len(data):
    raise CheckpointError(f"{bin_path}: {len(data) - pos} bytes more than {param_path} "
                          "declares")
  return state
