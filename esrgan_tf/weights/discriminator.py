"""BasicSR discriminator checkpoints (netD) ↔ Keras discriminators, without PyTorch.

Two layouts, as BasicSR's `save_network(net_d, 'net_d', ...)` writes them (`{"params": sd}`):
  * `UNetDiscriminatorSN` (Real-ESRGAN, e.g. RealESRGAN_x4plus_netD.pth): `conv0.weight/bias`,
    `convK.weight_orig`, `convK.weight_u`, `convK.weight_v` for K = 1..8 (torch.nn.utils.
    spectral_norm; the newer parametrization API's `convK.parametrizations.weight.original`,
    `.0._u`, `.0._v` are accepted too), `conv9.weight/bias`. The stored u and v are kept, so
    inference gives torch's eval-mode σ = uᵀ W v.
  * `VGGStyleDiscriminator` (ESRGAN, input 128 or 256): `conv{i}_0`, `conv{i}_1` (bias only on
    conv0_0), `bn{i}_{j}.weight/bias/running_mean/running_var[/num_batches_tracked]`,
    `linear1`, `linear2`. torch flattens (C, 4, 4) before linear1, Keras (4, 4, C): linear1's
    input axis is permuted on the way in and out.
`esrgan_tf.weights.read_discriminator` / `save_discriminator` read and write the files
(`esrgan_tf.models.checkpoints.load_discriminator` builds the Keras model).
Written files omit `num_batches_tracked` (torch's BatchNorm fills it in when loading a state dict
without version metadata; it only matters for momentum=None).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from esrgan_tf.weights.errors import CheckpointError
from esrgan_tf.weights.layouts import strip_module_prefix, to_float32

UNET_SN_CONVS = tuple(f"conv{k}" for k in range(1, 9))
# torch.nn.utils.parametrizations.spectral_norm key suffixes → the classic spectral_norm ones.
_PARAMETRIZATION_KEYS = {"parametrizations.weight.original": "weight_orig",
                         "parametrizations.weight.0._u": "weight_u",
                         "parametrizations.weight.0._v": "weight_v"}
_VGG_KEY = re.compile(r"(conv\d+_[01]\.(weight|bias)|"
                      r"bn\d+_[01]\.(weight|bias|running_mean|running_var|num_batches_tracked)|"
                      r"linear[12]\.(weight|bias))")
_VGG_SIZES = {5: 128, 6: 256}  # BasicSR VGGStyleDiscriminator: input_size 128 or 256 only.
_BN_VARIABLES = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                 ("running_var", "moving_variance"))


def _summary(keys) -> str:
  keys = sorted(keys)
  return f"{len(keys)} keys: {', '.join(keys[:10])}{', ...' if len(keys) > 10 else ''}"


def _rename_parametrizations(state: dict) -> dict:
  out = {}
  for key, value in state.items():
    for old, new in _PARAMETRIZATION_KEYS.items():
      if key.endswith("." + old):
        key = key[:-len(old)] + new
        break
    out[key] = value
  return out


def detect_layout(state: dict) -> str:
  """"unet_sn" or "vgg" for a (prefix-stripped) discriminator state dict.

  Raises:
    CheckpointError: Neither layout (the message lists the keys found).
  """
  if "conv0.weight" in state and "conv9.weight" in state:
    if "conv1.weight" in state:
      raise CheckpointError("U-Net discriminator without spectral-norm keys (conv1.weight "
                            "instead of conv1.weight_orig/_u/_v): spectral norm was removed; "
                            "UNetDiscriminatorSN needs the u and v vectors")
    return "unet_sn"
  if "conv0_0.weight" in state and "linear1.weight" in state:
    return "vgg"
  raise CheckpointError(f"not a BasicSR discriminator state dict (UNetDiscriminatorSN or "
                        f"VGGStyleDiscriminator); found {_summary(state)}")


def _expect_keys(state: dict, expected: set, layout: str, ignored=()):
  present = {k for k in state if not any(k.endswith(s) for s in ignored)}
  missing, unexpected = sorted(expected - present), sorted(present - expected)
  if missing or unexpected:
    raise CheckpointError(f"{layout} state dict: missing {missing[:6]}, unexpected "
                          f"{unexpected[:6]}")


def _tensor(state: dict, key: str, shape: tuple) -> np.ndarray:
  array = to_float32(key, state[key])
  if array.shape != tuple(shape):
    raise CheckpointError(f"{key}: shape {array.shape}, expected {tuple(shape)}")
  return array


def _oihw_to_keras(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)


def _keras_to_oihw(kernel) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1))


# --- U-Net SN ----------------------------------------------------------------------------------


def _unet_arch(state: dict) -> dict:
  shape = tuple(state["conv0.weight"].shape)
  if len(shape) != 4:
    raise CheckpointError(f"conv0.weight has shape {shape}, expected (out, in, 3, 3)")
  return {"num_in_ch": int(shape[1]), "num_feat": int(shape[0])}


def _assign_conv(conv, state: dict, prefix: str, weight_key: str):
  kh, kw, cin, cout = conv.kernel.shape
  conv.kernel.assign(_oihw_to_keras(_tensor(state, f"{prefix}.{weight_key}",
                                            (cout, cin, kh, kw))))
  if conv.use_bias:
    conv.bias.assign(_tensor(state, f"{prefix}.bias", (cout,)))


def _assign_unet(model, state: dict):
  expected = {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"}
  expected |= {f"{c}.{s}" for c in UNET_SN_CONVS for s in ("weight_orig", "weight_u", "weight_v")}
  _expect_keys(state, expected, "UNetDiscriminatorSN")
  for name, layer in model.named_convs().items():
    if name not in UNET_SN_CONVS:
      _assign_conv(layer, state, name, "weight")
      continue
    kh, kw, cin, cout = layer.layer.kernel.shape
    _assign_conv(layer.layer, state, name, "weight_orig")
    layer.vector_u.assign(_tensor(state, f"{name}.weight_u", (cout,)))
    # torch's v follows weight.reshape(out, -1): (in, kh, kw) order; ours is (kh, kw, in).
    v = _tensor(state, f"{name}.weight_v", (cin * kh * kw,))
    layer.vector_v.assign(v.reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1))


def _unet_state(model) -> dict:
  state = {}
  for name, layer in model.named_convs().items():
    if name not in UNET_SN_CONVS:
      state[f"{name}.weight"] = _keras_to_oihw(layer.kernel)
      state[f"{name}.bias"] = np.asarray(layer.bias, np.float32)
      continue
    kh, kw, cin, _ = layer.layer.kernel.shape
    state[f"{name}.weight_orig"] = _keras_to_oihw(layer.layer.kernel)
    state[f"{name}.weight_u"] = np.asarray(layer.vector_u, np.float32)
    v = np.asarray(layer.vector_v, np.float32).reshape(kh, kw, cin)
    state[f"{name}.weight_v"] = np.ascontiguousarray(v.transpose(2, 0, 1).reshape(-1))
  return state


# --- VGG-style ---------------------------------------------------------------------------------


def _vgg_arch(state: dict) -> dict:
  unknown = [k for k in state if not _VGG_KEY.fullmatch(k)]
  if unknown:
    raise CheckpointError(f"VGGStyleDiscriminator layout with unexpected {_summary(unknown)}")
  stages = len({k.split("_")[0] for k in state if k.startswith("conv")})
  if stages not in _VGG_SIZES:
    raise CheckpointError(f"VGGStyleDiscriminator with {stages} stages; BasicSR has 5 (input "
                          "128) or 6 (input 256)")
  shape = tuple(state["conv0_0.weight"].shape)
  if len(shape) != 4:
    raise CheckpointError(f"conv0_0.weight has shape {shape}, expected (out, in, 3, 3)")
  return {"type": "vgg", "num_features": int(shape[0]), "input_size": _VGG_SIZES[stages],
          "in_channels": int(shape[1])}


def _vgg_layers(model):
  """{BasicSR prefix: Keras layer} of a non-spectral-norm vgg `Discriminator`."""
  layers = {}
  for i, (conv0, bn0, conv1, bn1) in enumerate(model.stage_layers):
    layers.update({f"conv{i}_0": conv0, f"conv{i}_1": conv1, f"bn{i}_1": bn1})
    if bn0 is not None:
      layers[f"bn{i}_0"] = bn0
  layers["linear1"], layers["linear2"] = model.head
  return layers


def _assign_vgg(model, state: dict):
  layers = _vgg_layers(model)
  expected = set()
  for prefix, layer in layers.items():
    if prefix.startswith("bn"):
      expected |= {f"{prefix}.{k}" for k, _ in _BN_VARIABLES}
    else:
      expected |= {f"{prefix}.weight"} | ({f"{prefix}.bias"} if layer.use_bias else set())
  _expect_keys(state, expected, "VGGStyleDiscriminator", ignored=(".num_batches_tracked",))
  for prefix, layer in layers.items():
    if prefix.startswith("bn"):
      for torch_name, keras_name in _BN_VARIABLES:
        variable = getattr(layer, keras_name)
        variable.assign(_tensor(state, f"{prefix}.{torch_name}", variable.shape))
    elif prefix.startswith("conv"):
      _assign_conv(layer, state, prefix, "weight")
    else:
      fan_in, out = layer.kernel.shape
      weight = _tensor(state, f"{prefix}.weight", (out, fan_in))
      if prefix == "linear1":  # torch input order (C, H, W) → Keras Flatten's (H, W, C).
        channels = fan_in // 16
        weight = weight.reshape(out, channels, 4, 4).transpose(0, 2, 3, 1).reshape(out, fan_in)
      layer.kernel.assign(weight.T)
      layer.bias.assign(_tensor(state, f"{prefix}.bias", (out,)))


def _vgg_state(model) -> dict:
  state = {}
  for prefix, layer in _vgg_layers(model).items():
    if prefix.startswith("bn"):
      for torch_name, keras_name in _BN_VARIABLES:
        state[f"{prefix}.{torch_name}"] = np.asarray(getattr(layer, keras_name), np.float32)
    elif prefix.startswith("conv"):
      state[f"{prefix}.weight"] = _keras_to_oihw(layer.kernel)
      if layer.use_bias:
        state[f"{prefix}.bias"] = np.asarray(layer.bias, np.float32)
    else:
      weight = np.asarray(layer.kernel, np.float32).T
      if prefix == "linear1":
        out, fan_in = weight.shape
        weight = weight.reshape(out, 4, 4, fan_in // 16).transpose(0, 3, 1, 2).reshape(
            out, fan_in)
      state[f"{prefix}.weight"] = np.ascontiguousarray(weight)
      state[f"{prefix}.bias"] = np.asarray(layer.bias, np.float32)
  return state


# --- public API ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DiscriminatorWeights:
  """A BasicSR netD state dict, recognised.

  Attributes:
    layout: "unet_sn" (`UNetDiscriminatorSN`) or "vgg" (`Discriminator(type="vgg")`).
    config: Constructor arguments the tensors imply (skip_connection is not among them: it is
      not recorded in the weights).
    state: BasicSR-named arrays, parametrization keys renamed to weight_orig/_u/_v.
  """

  layout: str
  config: dict
  state: dict


def read_discriminator(state: dict) -> DiscriminatorWeights:
  """Recognises a BasicSR-named, torch-layout discriminator state dict.

  Args:
    state: Flat state dict (name -> array), `module.` prefixes allowed.

  Raises:
    CheckpointError: Unknown layout, bad shapes.
  """
  state = _rename_parametrizations(strip_module_prefix(state))
  layout = detect_layout(state)
  arch = _unet_arch(state) if layout == "unet_sn" else _vgg_arch(state)
  return DiscriminatorWeights(layout, arch, state)


def assign_discriminator(model, found: DiscriminatorWeights) -> None:
  """Copies `found` into a built Keras discriminator of its layout.

  Raises:
    CheckpointError: Missing/unexpected keys, bad shapes or dtypes.
  """
  if found.layout == "unet_sn":
    _assign_unet(model, found.state)
  else:
    _assign_vgg(model, found.state)


def discriminator_state(model) -> dict[str, np.ndarray]:
  """The BasicSR-named, torch-layout (float32) state dict of a Keras discriminator.

  Args:
    model: A built `UNetDiscriminatorSN`, or a `Discriminator(type="vgg")` without spectral norm
      and with input_size 128 or 256 (the sizes BasicSR's VGGStyleDiscriminator accepts).

  Raises:
    CheckpointError: For discriminators with no BasicSR counterpart.
  """
  # By class name: this layer reads and writes tensors and does not import the models.
  kind = type(model).__name__
  if kind == "UNetDiscriminatorSN":
    return _unet_state(model)
  if kind == "Discriminator":
    if model.type != "vgg" or model.spectral_norm or model.input_size not in (128, 256):
      raise CheckpointError(
          f"discriminator type={model.type!r}, spectral_norm={model.spectral_norm}, "
          f"input_size={model.input_size} has no BasicSR counterpart (VGGStyleDiscriminator is "
          "type='vgg' without spectral norm, input 128 or 256; or use UNetDiscriminatorSN)")
    return _vgg_state(model)
  raise CheckpointError(f"not a discriminator: {type(model).__name__}")
