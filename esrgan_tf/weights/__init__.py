"""Checkpoint interop without PyTorch: read published generator weights, write BasicSR files.

Readers (never executing a pickle; see `torch_pickle`): PyTorch zip and legacy `.pth`/`.pt`,
`.safetensors`, ncnn `.param` + `.bin`. Layouts (`layouts`): RRDBNet as ESRGAN old/new arch,
BasicSR and Real-ESRGAN (x4/x8, and the pixel-unshuffle x2plus/x1), Real-ESRGAN's
SRVGGNetCompact (`params_ema` preferred over `params`, `module.` prefixes stripped). Writers:
BasicSR layout `.pth` (`{"params_ema", "params"}`, readable by `torch.load(weights_only=True)`)
and `.safetensors`, for `upsampler="nearest"` RRDBNets and SRVGGNetCompact.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from esrgan_tf.core import fileio
from esrgan_tf.weights import (
  discriminator,
  layouts,
  ncnn,
  ncnn_srvgg,
  safetensors_io,
  torch_pickle,
  torch_writer,
  vgg,
)
from esrgan_tf.weights.errors import CheckpointError

TORCH_SUFFIXES = (".pth", ".pt")
NCNN_SUFFIXES = (".param", ".bin")
SAVE_SUFFIXES = (".keras", ".pth", ".safetensors")

__all__ = ["CheckpointError", "GeneratorWeights", "assign_generator", "interpolate",
           "load_torchvision_vgg19", "read_discriminator", "read_generator", "read_state_dict",
           "save_checkpoint", "save_discriminator", "save_model"]


def _suffix(path: str) -> str:
  return os.path.splitext(path)[1].lower()


# Wrapper levels unwrapped at most: BasicSR nests one ({"params_ema": sd}), trainers two or three.
MAX_WRAPPER_DEPTH = 8
# Errors a reader must never let out bare on a malformed file (each becomes a CheckpointError).
_MALFORMED = (ValueError, TypeError, OverflowError, RecursionError, IndexError, KeyError,
              MemoryError, struct.error)


def _select_state_dict(path: str, obj) -> dict:
  """Unwraps training checkpoints ({"params_ema": ...}) down to the flat state dict.

  Raises:
    CheckpointError: A dict that contains itself through its wrapper keys, or more than
      MAX_WRAPPER_DEPTH levels of them (a pickle can build both; unwrapping would never end).
  """
  seen = set()
  while isinstance(obj, dict):
    wrapper = next((k for k in layouts.WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
    if wrapper is None:
      break
    if id(obj) in seen or len(seen) >= MAX_WRAPPER_DEPTH:
      raise CheckpointError(
          f"{path}: the wrapper keys {list(layouts.WRAPPER_KEYS)} nest "
          f"{'back into themselves' if id(obj) in seen else f'more than {MAX_WRAPPER_DEPTH} deep'}"
          "; not a state dict")
    seen.add(id(obj))
    obj = obj[wrapper]
  if not isinstance(obj, dict):
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch_pickle.TensorRef)]
  if not_tensors:
    raise CheckpointError(f"{path}: state dict entries are not tensors: {not_tensors[:10]}")
  return obj


def _looks_like_torch(path: str) -> bool:
  with open(path, "rb") as f:
    head = f.read(len(torch_pickle.LEGACY_PREFIX))
  return head.startswith(b"PK\x03\x04") or head == torch_pickle.LEGACY_PREFIX


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a checkpoint file's flat state dict as numpy arrays (no layout mapping).

  Args:
    path: .pth/.pt (zip or legacy torch), .safetensors, or ncnn .param/.bin.

  Returns:
    name -> array (ncnn files come back already BasicSR-named).

  Raises:
    CheckpointError: Unknown suffix, unreadable or refused file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file")
  try:
    return _read_state_dict(path)
  except CheckpointError:
    raise
  except _MALFORMED as e:  # A reader's check that is missing: still a clear refusal.
    raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: "
                          f"{str(e)[:200]})") from None


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  suffix = _suffix(path)
  if suffix == ".bin" and _looks_like_torch(path):  # e.g. a torch pickle named pytorch_model.bin
    suffix = ".pth"
  if suffix in TORCH_SUFFIXES:
    with torch_pickle.read_torch_checkpoint(path) as checkpoint:
      tensors = _select_state_dict(path, checkpoint.obj)
      return {str(k): checkpoint.array(v) for k, v in tensors.items()}
  if suffix == ".safetensors":
    return safetensors_io.read_safetensors(path)
  if suffix in NCNN_SUFFIXES:
    if ncnn_srvgg.is_compact_graph(path):
      return ncnn_srvgg.read_compact(path)
    return ncnn.read_ncnn(path)
  raise CheckpointError(f"{path}: unknown checkpoint type {suffix!r}; expected .pth/.pt, "
                        ".safetensors or an ncnn .param/.bin")


@dataclasses.dataclass(frozen=True)
class GeneratorWeights:
  """A published generator's weights, read and recognised (no Keras model is built here).

  Attributes:
    arch: "rrdbnet" or "srvgg": the `arch` key of `esrgan_tf.models.GENERATORS`.
    config: The constructor arguments the tensors imply (`RRDBNet(**config)`; RRDBNets are
      upsampler="nearest", input_unshuffle 2/4 for the x2plus/x1 layouts).
    state: BasicSR-named arrays (torch layout).
    path: The file they came from (for messages).
  """

  arch: str
  config: dict
  state: dict
  path: str


def read_generator(path: str) -> GeneratorWeights:
  """Reads a published generator checkpoint and recognises its layout and architecture.

  Args:
    path: .pth/.pt, .safetensors, or ncnn .param/.bin.

  Returns:
    The `GeneratorWeights`; `esrgan_tf.models.checkpoints.load_checkpoint` builds the model.

  Raises:
    CheckpointError: Unreadable/refused file, unrecognised layout, inconsistent shapes.
  """
  path = os.fspath(path)
  state = read_state_dict(path)
  try:
    state, layout = layouts.to_basicsr(state)
    if layout == layouts.COMPACT_LAYOUT:
      return GeneratorWeights("srvgg", layouts.infer_compact_arch(state), state, path)
    return GeneratorWeights("rrdbnet", layouts.infer_arch(state), state, path)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from None


def assign_generator(model, found: GeneratorWeights) -> None:
  """Copies `found`'s tensors into a built generator of the same architecture.

  Raises:
    CheckpointError: Missing/unexpected keys or shape mismatches (the message names the file).
  """
  try:
    layouts.assign_state(model, found.state)
  except CheckpointError as e:
    raise CheckpointError(f"{found.path}: {e}") from None


def save_checkpoint(model, path: str, *, overwrite: bool = False):
  """Writes a generator in the BasicSR layout as .pth (torch zip) or .safetensors, atomically.

  Args:
    model: An `RRDBNet` with upsampler="nearest", or an `SRVGGNetCompact`.
    path: Ends with .pth or .safetensors.
    overwrite: Replace an existing file.

  Raises:
    CheckpointError: Other suffix, existing file, or a depth_to_space generator.
  """
  path = os.fspath(path)
  suffix = _suffix(path)
  if suffix not in (".pth", ".safetensors"):
    raise CheckpointError(f"{path}: checkpoints are written as .pth or .safetensors")
  _check_target(path, overwrite)
  if hasattr(model, "head_names"):
    raise CheckpointError(
        f"{path}: a multi-head model has no BasicSR/Real-ESRGAN layout; save one head (its trunk "
        f"+ head as a plain RRDBNet: head= one of {list(model.head_names)}) or save it as .keras")
  _write_state(path, layouts.model_state(model), overwrite=overwrite)


def read_discriminator(path: str) -> discriminator.DiscriminatorWeights:
  """Reads a BasicSR netD checkpoint (`weights.discriminator`); models.checkpoints builds it.

  Args:
    path: .pth/.pt or .safetensors, e.g. RealESRGAN_x4plus_netD.pth (`{"params": sd}`).

  Returns:
    The layout ("unet_sn" or "vgg"), the constructor arguments and the state dict.

  Raises:
    CheckpointError: Unreadable/refused file or not a BasicSR discriminator layout.
  """
  path = os.fspath(path)
  state = read_state_dict(path)
  try:
    return discriminator.read_discriminator(state)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from None


def load_torchvision_vgg19(path: str) -> dict:
  """Reads torchvision's VGG19 (e.g. vgg19-dcbb9e9d.pth, as BasicSR's perceptual loss uses).

  Returns:
    {Keras VGG19 conv name: (kernel, bias)}, for `VGGFeatureExtractor(weights=...)` (which then
    applies torch's ImageNet normalisation).

  Raises:
    CheckpointError: Unreadable/refused file or not a VGG19 state dict.
  """
  path = os.fspath(path)
  state = read_state_dict(path)
  try:
    return vgg.torchvision_vgg19_convs(state)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from None


def save_discriminator(model, path: str, *, overwrite: bool = False):
  """Writes a discriminator in BasicSR's netD layout, atomically.

  .pth files hold `{"params": state_dict}` as BasicSR's `save_network(net_d, ...)` does.

  Args:
    model: `UNetDiscriminatorSN`, or `Discriminator(type="vgg")` without spectral norm and with
      input_size 128 or 256.
    path: Ends with .pth or .safetensors.
    overwrite: Replace an existing file.

  Raises:
    CheckpointError: Other suffix, existing file, or no BasicSR counterpart for the model.
  """
  path = os.fspath(path)
  suffix = _suffix(path)
  if suffix not in (".pth", ".safetensors"):
    raise CheckpointError(f"{path}: discriminators are written as .pth or .safetensors")
  _check_target(path, overwrite)
  try:
    state = discriminator.discriminator_state(model)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from None
  _write_state(path, state, overwrite=overwrite, wrappers=("params",))


def _write_state(path: str, state: dict, *, overwrite: bool,
                 wrappers: tuple = ("params_ema", "params")) -> None:
  """Writes a state dict atomically as .pth (torch zip, `{wrapper: state}`) or .safetensors."""
  if _suffix(path) == ".pth":
    write = lambda f: torch_writer.write_torch_zip(f, state, wrappers=wrappers)  # noqa: E731
  else:
    write = lambda f: safetensors_io.write_safetensors(f, state)  # noqa: E731
  try:
    fileio.atomic_write(path, write, overwrite=overwrite)
  except FileExistsError:  # appeared meanwhile
    raise CheckpointError(f"{path}: exists (pass overwrite to replace it)") from None


def _check_target(path: str, overwrite: bool):
  if os.path.exists(path) and not overwrite:
    raise CheckpointError(f"{path}: exists (pass overwrite to replace it)")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise CheckpointError(f"{path}: directory {directory} does not exist")


def save_model(model, path: str, *, overwrite: bool = False, head: str | None = None):
  """Saves a generator by suffix: .keras (native), .pth or .safetensors (BasicSR layout).

  Args:
    model: An `RRDBNet` or `SRVGGNetCompact`, or a `MultiHeadRRDBNet` (.keras only, unless
      `head` is given).
    path: Target file.
    overwrite: Replace an existing file.
    head: For a multi-head model: save its trunk + this head as a plain `RRDBNet` (loadable by
      anything that reads single-head checkpoints).

  Raises:
    CheckpointError: Unsupported suffix, existing file, a layout that cannot be exported, or a
      head the model does not have.
  """
  path = os.fspath(path)
  suffix = _suffix(path)
  if suffix not in SAVE_SUFFIXES:
    raise CheckpointError(f"{path}: output must end with one of {', '.join(SAVE_SUFFIXES)}")
  if head is not None:
    if not hasattr(model, "to_rrdbnet"):
      raise CheckpointError(f"{path}: head={head!r} given, but the model is not multi-head")
    try:
      model = model.to_rrdbnet(head)
    except ValueError as e:
      raise CheckpointError(f"{path}: {e}") from None
  if suffix != ".keras":
    save_checkpoint(model, path, overwrite=overwrite)
    return
  _check_target(path, overwrite)
  try:
    with fileio.atomic_path(path, overwrite=overwrite, suffix=".keras") as tmp:
      model.save(tmp)
  except FileExistsError:  # appeared meanwhile
    raise CheckpointError(f"{path}: exists (pass overwrite to replace it)") from None


def interpolate(model_a, model_b, alpha: float):
  """Network interpolation θ = (1 − α)·θa + α·θb (ESRGAN paper §3.4), computed in float64.

  Args:
    model_a: The alpha = 0 generator (PSNR-oriented).
    model_b: The alpha = 1 generator (GAN); same architecture.
    alpha: Weight of `model_b`, in [0, 1].

  Real-ESRGAN's denoise strength (`-dn`, W·A + (1 − W)·B) is `interpolate(A, B, 1 − W)`
  (`esrgan_tf.inference.blending`).

  Returns:
    A new built generator of the same class with the interpolated weights.

  Raises:
    ValueError: alpha outside [0, 1] or different architectures.
  """
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}")
  configs = [getattr(m, "arch_config", lambda: None)() for m in (model_a, model_b)]
  if None in configs:
    raise ValueError("can only interpolate esrgan_tf generators (RRDBNet, SRVGGNetCompact)")
  if type(model_a) is not type(model_b):
    raise ValueError(f"cannot interpolate different architectures (a is "
                     f"{type(model_a).__name__}, b is {type(model_b).__name__})")
  keys = sorted(set(configs[0]) | set(configs[1]))
  differences = [f"{k}: {configs[0].get(k)} vs {configs[1].get(k)}" for k in keys
                 if configs[0].get(k) != configs[1].get(k)]
  if differences:
    raise ValueError(f"cannot interpolate different architectures (a vs b: "
                     f"{', '.join(differences)})")
  model = type(model_a)(**configs[0])
  model.build((None, None, None, model.in_channels))
  model.set_weights([
      ((1.0 - alpha) * np.asarray(a, np.float64) + alpha * np.asarray(b, np.float64)
       ).astype(np.float32)
      for a, b in zip(model_a.get_weights(), model_b.get_weights())])
  return model
