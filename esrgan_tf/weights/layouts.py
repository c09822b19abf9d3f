"""State-dict layouts of the published RRDBNet weights, mapped onto BasicSR names.

Three layouts exist (key examples from the released files):
  * BasicSR / Real-ESRGAN: `conv_first`, `body.N.rdbK.convJ`, `conv_body`, `conv_upI`,
    `conv_hr`, `conv_last` (our names: `RRDBNet.named_convs`).
  * ESRGAN "new arch" (xinntao/ESRGAN RRDBNet_arch.py, 2019): `conv_first`,
    `RRDB_trunk.N.RDBK.convJ`, `trunk_conv`, `upconvI`, `HRconv`, `conv_last`.
  * ESRGAN "old arch" (the 2018 release, a flat nn.Sequential): `model.0` = conv_first,
    `model.1.sub.N.RDBK.convJ.0` = body, `model.1.sub.{nb}` = conv_body; then per ×2 stage
    (Upsample, conv, LeakyReLU) the conv at `model.3`, `model.6`, ...; then HRconv and conv_last
    two indices apart (x4: `model.8`, `model.10`; x8: `model.11`, `model.13`).
All convs are 3×3 with bias; torch weights are (out, in, kh, kw).

BasicSR's RRDBNet for scale 2 and 1 (RealESRGAN_x2plus, x1 community models) has the BasicSR
keys with a conv_first taking in·4 or in·16 channels (pixel-unshuffle by 2 or 4): inferred from
those channels, mapped to `RRDBNet(input_unshuffle=f)`.

Real-ESRGAN's SRVGGNetCompact (realesrgan/archs/srvgg_arch.py) has only `body.N.weight/bias`:
convs at even N, (out, in, 3, 3) with bias; PReLU slopes (num_feat,) at odd N (ReLU/LeakyReLU
have no parameters); the last conv has num_out_ch·upscale² outputs.

Channel orders: torch's pixel_unshuffle / PixelShuffle put channel c of sub-pixel (i, j) at
c·r² + i·r + j, TF's space_to_depth / depth_to_space at (i·r + j)·C + c; `shuffle_permutation`
maps one onto the other (conv_first's inputs, Compact's last conv outputs).
"""

from __future__ import annotations

import math
import re

import numpy as np

from esrgan_tf.weights.errors import CheckpointError

# Wrappers of the state dict in training checkpoints, in order of preference (BasicSR saves the
# EMA weights under params_ema; those are the published ones).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")

_BASICSR = re.compile(r"(conv_first|conv_body|conv_hr|conv_last|conv_up\d+|"
                      r"body\.\d+\.rdb[123]\.conv[1-5])\.(weight|bias)")
_NEW_BODY = re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)")
_NEW_NAMES = {"conv_first": "conv_first", "trunk_conv": "conv_body", "HRconv": "conv_hr",
              "conv_last": "conv_last"}
_OLD_BODY = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")


def _key_summary(keys) -> str:
  keys = list(keys)
  shown = ", ".join(keys[:10])
  return f"{len(keys)} keys: {shown}{', ...' if len(keys) > 10 else ''}"


def strip_module_prefix(state: dict) -> dict:
  """Removes DataParallel's `module.` prefixes."""
  out = {}
  for key, value in state.items():
    while key.startswith("module."):
      key = key[len("module."):]
    out[key] = value
  return out


def _from_new_arch(state: dict) -> dict:
  out, unknown = {}, []
  for key, value in state.items():
    body = _NEW_BODY.fullmatch(key)
    prefix, _, kind = key.rpartition(".")
    up = re.fullmatch(r"upconv(\d+)", prefix)
    if body:
      out[f"body.{body[1]}.rdb{body[2]}.conv{body[3]}.{body[4]}"] = value
    elif prefix in _NEW_NAMES and kind in ("weight", "bias"):
      out[f"{_NEW_NAMES[prefix]}.{kind}"] = value
    elif up and kind in ("weight", "bias"):
      out[f"conv_up{up[1]}.{kind}"] = value
    else:
      unknown.append(key)
  if unknown:
    raise CheckpointError(f"ESRGAN (new arch) layout with unexpected {_key_summary(unknown)}")
  return out


def _from_old_arch(state: dict) -> dict:
  out, top, unknown = {}, {}, []
  trunk = None
  for key, value in state.items():
    body, trunk_match, top_match = (_OLD_BODY.fullmatch(key), _OLD_TRUNK.fullmatch(key),
                                    _OLD_TOP.fullmatch(key))
    if body:
      out[f"body.{body[1]}.rdb{body[2]}.conv{body[3]}.{body[4]}"] = value
    elif trunk_match:
      if trunk not in (None, trunk_match[1]):
        unknown.append(key)
        continue
      trunk = trunk_match[1]
      out[f"conv_body.{trunk_match[2]}"] = value
    elif top_match:
      top.setdefault(int(top_match[1]), {})[top_match[2]] = value
    else:
      unknown.append(key)
  if unknown:
    raise CheckpointError(f"ESRGAN (old arch) layout with unexpected {_key_summary(unknown)}")
  indices = sorted(i for i in top if i != 0)
  num_ups = len(indices) - 2
  expected = [3 * (i + 1) for i in range(num_ups)] + [3 * num_ups + 2, 3 * num_ups + 4]
  if 0 not in top or num_ups < 1 or indices != expected:
    raise CheckpointError(f"ESRGAN (old arch) layout: top-level convs at model.{sorted(top)} do "
                          f"not form conv_first, up convs, HRconv, conv_last")
  names = {0: "conv_first", indices[-2]: "conv_hr", indices[-1]: "conv_last"}
  names.update({index: f"conv_up{i + 1}" for i, index in enumerate(indices[:num_ups])})
  for index, params in top.items():
    for kind, value in params.items():
      out[f"{names[index]}.{kind}"] = value
  return out


_COMPACT = re.compile(r"body\.(\d+)\.(weight|bias)")
COMPACT_LAYOUT = "Real-ESRGAN SRVGGNetCompact"


def to_basicsr(state: dict) -> tuple[dict, str]:
  """Detects the layout and renames every key to the BasicSR convention.

  Args:
    state: A flat state dict (name -> array).

  Returns:
    (renamed state dict, layout name).

  Raises:
    CheckpointError: Unrecognised layout (the message lists the keys found).
  """
  state = strip_module_prefix(state)
  keys = list(state)
  if any(k.startswith("RRDB_trunk.") for k in keys):
    return _from_new_arch(state), "ESRGAN (new arch)"
  if "model.0.weight" in state and any(k.startswith("model.1.sub.") for k in keys):
    return _from_old_arch(state), "ESRGAN (old arch)"
  if "conv_first.weight" in state and any(k.startswith("body.") for k in keys):
    unknown = [k for k in keys if not _BASICSR.fullmatch(k)]
    if unknown:
      raise CheckpointError(f"BasicSR layout with unexpected {_key_summary(unknown)}")
    return dict(state), "BasicSR"
  if "body.0.weight" in state and all(_COMPACT.fullmatch(k) for k in keys):
    return dict(state), COMPACT_LAYOUT
  raise CheckpointError(f"not a recognised RRDBNet state dict (ESRGAN old/new arch, BasicSR/"
                        f"Real-ESRGAN) nor SRVGGNetCompact one; found {_key_summary(keys)}")


def _shape(state: dict, key: str) -> tuple:
  if key not in state:
    raise CheckpointError(f"RRDBNet state dict lacks {key}")
  return tuple(state[key].shape)


def infer_arch(state: dict) -> dict:
  """Infers `RRDBNet` arguments from a BasicSR-named state dict.

  Args:
    state: BasicSR-named state dict.

  Returns:
    RRDBNet kwargs with upsampler="nearest" (the layout of every published RRDBNet), and
    input_unshuffle 2 or 4 when conv_first takes 4× or 16× the output channels (Real-ESRGAN
    x2plus / x1: scale = 2^ups / factor).

  Raises:
    CheckpointError: Inconsistent block numbering or an unsupported scale.
  """
  first, last = _shape(state, "conv_first.weight"), _shape(state, "conv_last.weight")
  if len(first) != 4 or len(last) != 4:
    raise CheckpointError(f"conv weights must be 4-D (out, in, kh, kw); conv_first is {first}")
  blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
  if not blocks or blocks != list(range(len(blocks))):
    raise CheckpointError(f"RRDB blocks must be numbered 0..n-1, found {blocks[:10]}")
  ups = sorted({int(m[1]) for k in state if (m := re.match(r"conv_up(\d+)\.", k))})
  if ups != list(range(1, len(ups) + 1)):
    raise CheckpointError(f"up convs must be numbered 1..n, found conv_up{ups}")
  growth = _shape(state, "body.0.rdb1.conv1.weight")[0]
  in_channels, out_channels = first[1], last[0]
  trunk_scale = 2 ** len(ups)
  if trunk_scale not in (2, 4, 8):
    raise CheckpointError(f"{len(ups)} up convs give scale {trunk_scale}; supported: 2, 4, 8")
  arch = {"in_channels": in_channels, "out_channels": out_channels, "num_features": first[0],
          "num_blocks": len(blocks), "growth_channels": growth, "scale": trunk_scale,
          "upsampler": "nearest"}
  for factor in (2, 4):
    if in_channels == factor**2 * out_channels and trunk_scale >= factor:
      arch.update(in_channels=out_channels, scale=trunk_scale // factor, input_unshuffle=factor)
  return arch


def infer_compact_arch(state: dict) -> dict:
  """Infers `SRVGGNetCompact` arguments from its state dict.

  num_out_ch is taken equal to num_in_ch (forward() adds the upsampled input to the output), so
  the last conv's out channels give upscale².

  Raises:
    CheckpointError: Gaps in the numbering, non-conv shapes, no PReLU slopes (ReLU and
      LeakyReLU cannot be told apart from the weights), or an unsupported scale.
  """
  indices = sorted({int(_COMPACT.fullmatch(k)[1]) for k in state})
  convs = [i for i in indices if len(state[f"body.{i}.weight"].shape) == 4]
  prelus = [i for i in indices if i not in convs]
  if convs != list(range(0, 2 * len(convs), 2)) or len(convs) < 2:
    raise CheckpointError(f"SRVGGNetCompact convs must sit at body.0, body.2, ...; found "
                          f"4-D weights at body.{convs[:10]}")
  if not prelus:
    raise CheckpointError("SRVGGNetCompact without PReLU slopes: act_type relu or leakyrelu "
                          "cannot be inferred from the weights (every published model is prelu)")
  if prelus != list(range(1, 2 * len(convs) - 2, 2)):
    raise CheckpointError(f"SRVGGNetCompact PReLU slopes must follow every conv but the last; "
                          f"found them at body.{prelus[:10]}")
  first = tuple(state["body.0.weight"].shape)
  last = tuple(state[f"body.{convs[-1]}.weight"].shape)
  in_ch = first[1]
  square = last[0] // in_ch
  upscale = math.isqrt(square)
  if last[0] % in_ch or upscale**2 != square or upscale not in (1, 2, 3, 4):
    raise CheckpointError(f"SRVGGNetCompact last conv has {last[0]} outputs: not "
                          f"{in_ch}·upscale² for an upscale in 1..4")
  return {"num_in_ch": in_ch, "num_out_ch": in_ch, "num_feat": first[0],
          "num_conv": len(convs) - 2, "upscale": upscale, "act_type": "prelu"}


def shuffle_permutation(channels: int, factor: int) -> np.ndarray:
  """TF→torch channel index for depth_to_space/space_to_depth by `factor` on `channels` planes.

  Returns:
    p with p[(i·r + j)·C + c] = c·r² + i·r + j, i.e. keras_channels = torch_channels[p].
  """
  return np.arange(channels * factor**2).reshape(channels, factor**2).T.reshape(-1)


def _permutations(model) -> dict[str, tuple[int, np.ndarray]]:
  """{conv prefix: (torch axis, permutation)} of the convs next to a pixel (un)shuffle."""
  if hasattr(model, "input_unshuffle"):
    factor = model.input_unshuffle
    if factor == 1:
      return {}
    return {"conv_first": (1, shuffle_permutation(model.in_channels, factor))}
  if model.scale == 1:
    return {}
  last = list(model.named_convs())[-1]
  return {last: (0, shuffle_permutation(model.out_channels, model.scale))}


def to_float32(name: str, array: np.ndarray) -> np.ndarray:
  """Float tensors → float32; refuses integer tensors and non-finite values."""
  if array.dtype.kind != "f":
    raise CheckpointError(f"tensor {name} has dtype {array.dtype}, expected a float type")
  array = array.astype(np.float32)
  if not np.all(np.isfinite(array)):
    raise CheckpointError(f"tensor {name} contains NaN or infinite values")
  return array


def assign_state(model, state: dict):
  """Copies a BasicSR-named state dict (torch layout) into a built `RRDBNet`/`SRVGGNetCompact`.

  Args:
    model: A built generator whose architecture matches.
    state: name -> array.

  Raises:
    CheckpointError: Missing/unexpected keys or shape mismatches.
  """
  convs = model.named_convs()
  prelus = getattr(model, "named_prelus", dict)()
  perms = _permutations(model)
  expected = {f"{p}.{k}" for p in convs for k in ("weight", "bias")}
  expected |= {f"{p}.weight" for p in prelus}
  missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
  if missing or unexpected:
    raise CheckpointError(f"state dict does not match {model.arch_config()}: missing "
                          f"{missing[:5]}, unexpected {unexpected[:5]}")
  for prefix, conv in convs.items():
    kh, kw, cin, cout = conv.kernel.shape
    weight = to_float32(f"{prefix}.weight", state[f"{prefix}.weight"])
    bias = to_float32(f"{prefix}.bias", state[f"{prefix}.bias"])
    if weight.shape != (cout, cin, kh, kw) or bias.shape != (cout,):
      raise CheckpointError(f"{prefix}: weight {weight.shape} / bias {bias.shape}, expected "
                            f"{(cout, cin, kh, kw)} / {(cout,)}")
    if prefix in perms:
      axis, perm = perms[prefix]
      weight = np.take(weight, perm, axis=axis)
      bias = bias[perm] if axis == 0 else bias
    conv.kernel.assign(weight.transpose(2, 3, 1, 0))
    conv.bias.assign(bias)
  for prefix, prelu in prelus.items():
    slopes = to_float32(f"{prefix}.weight", state[f"{prefix}.weight"])
    channels = prelu.alpha.shape[-1]
    if slopes.shape != (channels,):
      raise CheckpointError(f"{prefix}: PReLU weight {slopes.shape}, expected {(channels,)}")
    prelu.alpha.assign(slopes.reshape(prelu.alpha.shape))


def model_state(model) -> dict[str, np.ndarray]:
  """The BasicSR-named state dict (torch OIHW layout, float32) of an `RRDBNet` or
  `SRVGGNetCompact` (the Real-ESRGAN layout).

  Raises:
    CheckpointError: For depth_to_space generators (no counterpart in the BasicSR layout, whose
      RRDBNet upsamples by nearest interpolation).
  """
  if getattr(model, "upsampler", "nearest") != "nearest":
    raise CheckpointError(
        f"upsampler={model.upsampler!r} has no PyTorch counterpart in the BasicSR/Real-ESRGAN "
        "layout (nearest ×2 + conv per stage); only upsampler='nearest' generators can be "
        "exported to .pth/.safetensors")
  state = {}
  perms = _permutations(model)
  for prefix, conv in model.named_convs().items():
    weight = np.asarray(conv.kernel, np.float32).transpose(3, 2, 0, 1)
    bias = np.asarray(conv.bias, np.float32)
    if prefix in perms:  # keras = torch[perm] → torch = keras[argsort(perm)]
      axis, perm = perms[prefix]
      inverse = np.argsort(perm)
      weight = np.take(weight, inverse, axis=axis)
      bias = bias[inverse] if axis == 0 else bias
    state[f"{prefix}.weight"] = np.ascontiguousarray(weight)
    state[f"{prefix}.bias"] = bias
  for prefix, prelu in getattr(model, "named_prelus", dict)().items():
    state[f"{prefix}.weight"] = np.asarray(prelu.alpha, np.float32).reshape(-1)
  return state
