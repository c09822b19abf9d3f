"""The one model entry point: every `--model` (and `--server`, `--blend_with`, `--precision`).

`ModelSpec` is what the model flags of every command say; two functions resolve it:
  * `load_generator(spec)` returns a Keras generator (what training, export and interpolation
    need): a published name, a `.keras` file, a training workdir, or a foreign checkpoint
    (.pth/.pt/.safetensors/ncnn .param); with `blend_with`, the blend of two of them.
  * `load_engine(spec)` returns an `engine.Engine`: anything `load_generator` takes, SavedModel
    directories, `.tflite` and `.onnx` files, or a TF Serving endpoint (`server`).

This module sits at the top of the inference layer: it imports the formats (weights, models,
export) and the engines, none of which imports it back. Each kind of model is one row of a table
of (name, matcher, loader); the loaders import their module lazily so that e.g. reading a
`.keras` file never imports the TFLite runtime.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from absl import logging

from esrgan_tf.core import precision as precision_lib
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import versions
from esrgan_tf.inference.engine import Engine, keras_engine


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Which model to run and how: the model flags of every command, in one object.

  Attributes:
    model: A published name (`esrgan-models list`), .keras file, training workdir, checkpoint
      (.pth/.pt/.safetensors/ncnn .param), SavedModel directory or export base, or .tflite file.
    server: Instead of `model`: HOST:PORT of a TF Serving gRPC endpoint.
    model_name: The model's name on `server`.
    blend_with: Another generator of the same architecture: runs W·model + (1 − W)·blend_with
      (Real-ESRGAN's denoise strength `-dn`; `_blend`).
    blend_weight: W, in [0, 1] (with `blend_with`).
    precision: "auto" (bfloat16 where the CPU has native bf16, else float32), "float32" or
      "bfloat16": what Keras models compute in; SavedModels keep their export's.
    num_threads: CPU threads for TF (intra-op), TFLite and ONNX Runtime; None: their defaults.
    head: A multi-head model's head (Keras or SavedModel; on a server its
      `upscale_<head>_float` signature); None: the model's default head.
    blend_heads: "psnr:0.3,gan:0.7": heads of one scale of a multi-head Keras model, blended
      from one trunk pass (`models.multihead.HeadBlend`).

  Raises:
    ValueError: Inconsistent fields (at construction).
  """

  model: Optional[str] = None
  server: Optional[str] = None
  model_name: str = "esrgan"
  blend_with: Optional[str] = None
  blend_weight: Optional[float] = None
  precision: str = "auto"
  num_threads: Optional[int] = None
  head: Optional[str] = None
  blend_heads: Optional[str] = None

  def __post_init__(self):
    if bool(self.model) == bool(self.server):
      raise ValueError("give exactly one of a model and a server")
    if (self.blend_with is None) != (self.blend_weight is None):
      raise ValueError("blend_with and blend_weight go together")
    if self.blend_with and not self.model:
      raise ValueError("blend_with needs a model (weights are blended locally)")
    if self.blend_weight is not None and not 0.0 <= self.blend_weight <= 1.0:
      raise ValueError(f"blend weight must be in [0, 1], got {self.blend_weight}")
    if self.precision not in precision_lib.PRECISION_FLAG_VALUES:
      raise ValueError(f"precision must be one of {precision_lib.PRECISION_FLAG_VALUES}, got "
                       f"{self.precision!r}")
    if self.num_threads is not None and self.num_threads < 1:
      raise ValueError(f"num_threads must be ≥ 1, got {self.num_threads}")
    if self.head is not None and self.blend_heads is not None:
      raise ValueError("head and blend_heads exclude each other")
    if self.blend_with and (self.head is not None or self.blend_heads is not None):
      raise ValueError("blend_with blends whole models; it does not combine with head or "
                       "blend_heads")
    if self.blend_heads and not self.model:
      raise ValueError("blend_heads needs the Keras model (weights are blended locally)")

  @property
  def name(self) -> str:
    """What is run, for messages and export metadata."""
    if self.server:
      return f"{self.model_name}@{self.server}"
    if self.blend_with:
      return f"{self.blend_weight:g}·{self.model} + {1 - self.blend_weight:g}·{self.blend_with}"
    if self.head or self.blend_heads:
      return f"{self.model} [{self.head or self.blend_heads}]"
    return self.model


def _set_tf_threads(threads: int) -> None:
  """TF's intra-op thread count; TF fixes it when its runtime starts, so later calls only warn."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  except RuntimeError:
    logging.warning("num_threads=%d ignored for TensorFlow: its runtime has started already "
                    "(set it before the first TensorFlow operation)", threads)


def _as_spec(spec) -> ModelSpec:
  return spec if isinstance(spec, ModelSpec) else ModelSpec(model=os.fspath(spec))


# --- model kinds -------------------------------------------------------------------------------

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".param", ".bin")


def _is_keras_file(spec: str) -> bool:
  return spec.endswith(".keras")


def _load_keras_file(spec: str):
  import keras  # pylint: disable=g-import-not-at-top

  import esrgan_tf.models  # noqa: F401  registers the custom layers.  pylint: disable=unused-import

  if not os.path.isfile(spec):
    raise ModelError(f"{spec}: no such file")
  try:
    return keras.models.load_model(spec, compile=False)
  except Exception as e:  # Keras raises many types for a bad archive.
    raise ModelError(f"{spec}: not a loadable .keras model ({type(e).__name__}: {e})") from e


def _is_workdir(spec: str) -> bool:
  from esrgan_tf.models import workdir  # pylint: disable=g-import-not-at-top
  return workdir.is_workdir(spec)


def _load_workdir(spec: str):
  from esrgan_tf.models import workdir  # pylint: disable=g-import-not-at-top
  return workdir.load_generator_from_workdir(spec)


def _is_checkpoint(spec: str) -> bool:
  return spec.lower().endswith(_CHECKPOINT_SUFFIXES)


def _load_checkpoint(spec: str):
  from esrgan_tf.models import checkpoints  # pylint: disable=g-import-not-at-top
  return checkpoints.load_checkpoint(spec)


def _is_saved_model(spec: str) -> bool:
  # A version directory itself, or a TF Serving base directory of integer-named versions.
  return versions.is_saved_model_dir(spec) or bool(versions.version_dirs(spec))


def _load_saved_model(spec: str, **options) -> Engine:
  from esrgan_tf.inference import saved_model  # pylint: disable=g-import-not-at-top
  return saved_model.saved_model_engine(spec, **options)


def _is_tflite(spec: str) -> bool:
  return spec.lower().endswith(".tflite")


def _load_tflite(spec: str, **options) -> Engine:
  from esrgan_tf.inference import tflite  # pylint: disable=g-import-not-at-top
  return tflite.tflite_engine(spec, **options)


def _is_onnx(spec: str) -> bool:
  return spec.lower().endswith(".onnx")


def _load_onnx(spec: str, **options) -> Engine:
  from esrgan_tf.inference import onnx  # pylint: disable=g-import-not-at-top
  return onnx.onnx_engine(spec, **options)


# (name, matcher, loader) returning a Keras generator.
_GENERATOR_LOADERS = [
    ("keras file", _is_keras_file, _load_keras_file),
    ("training workdir", _is_workdir, _load_workdir),
    ("checkpoint", _is_checkpoint, _load_checkpoint),
]
# (name, matcher, loader) returning an Engine directly (no Keras model behind it).
_ENGINE_LOADERS = [
    ("SavedModel", _is_saved_model, _load_saved_model),
    ("TFLite model", _is_tflite, _load_tflite),
    ("ONNX model", _is_onnx, _load_onnx),
]

_ACCEPTED = ("a .keras file, a training workdir (with config.json), a checkpoint "
             "(.pth/.pt/.safetensors/ncnn .param), a SavedModel directory or export base, "
             "a .tflite or a .onnx file")


def _existing_path(spec) -> str:
  """The file or directory a spec names: a published model name (weights.registry: downloaded and
  cached) becomes its file, anything else is taken as a path, which must exist."""
  from esrgan_tf.weights import registry  # pylint: disable=g-import-not-at-top
  try:
    spec = registry.resolve_spec(os.fspath(spec))
  except registry.RegistryError as e:
    raise ModelError(str(e)) from e
  if not os.path.exists(spec):
    raise ModelError(f"{spec}: no such file or directory")
  return spec


def _load_one_generator(spec: str):
  spec = _existing_path(spec)
  for _, matches, load in _GENERATOR_LOADERS:
    if matches(spec):
      return load(spec)
  raise ModelError(f"{spec}: not a Keras generator; expected a .keras file, a training workdir "
                   "or a checkpoint (.pth/.pt/.safetensors/ncnn .param)")


def load_generator(spec):
  """Loads a Keras generator (a published name, .keras, training workdir or checkpoint).

  Args:
    spec: A path or name, or a `ModelSpec` (its `blend_with` blends two generators; `server`
      is refused).

  Returns:
    A built Keras generator (`RRDBNet`, `SRVGGNetCompact`, `MultiHeadRRDBNet`); with
    `spec.head`, a plain `RRDBNet` holding a copy of the trunk and that head.

  Raises:
    ModelError: Unknown kind, missing file, a file that fails to load, or two that cannot be
      blended.
  """
  spec = _as_spec(spec)
  if spec.server:
    raise ModelError(f"{spec.server}: a TF Serving endpoint has no Keras generator to load")
  model = _blend(spec) if spec.blend_with else _load_one_generator(spec.model)
  return model if spec.head is None else _extract_head(model, spec.head, spec.model)


def _extract_head(model, head: str, spec: str):
  """A multi-head model's trunk + one head as a plain RRDBNet (what .pth/.tflite/export need)."""
  if not hasattr(model, "to_rrdbnet"):
    raise ModelError(f"{spec}: not a multi-head model, so it has no head {head!r}")
  try:
    return model.to_rrdbnet(head)
  except ValueError as e:
    raise ModelError(f"{spec}: {e}") from None


def _blend(spec: ModelSpec):
  """W·A + (1 − W)·B, parameter by parameter: Real-ESRGAN's denoise strength for any two generators.

  Real-ESRGAN's inference_realesrgan.py, for realesr-general-x4v3 with denoise strength W, loads
  `[general-x4v3, general-wdn-x4v3]` with `dni_weight = [W, 1 − W]` and runs the network whose
  every parameter is W·A + (1 − W)·B (RealESRGANer.dni): ESRGAN's network interpolation with
  α = 1 − W (`weights.interpolate`, also behind esrgan-interpolate).
  """
  from esrgan_tf import weights  # pylint: disable=g-import-not-at-top

  model_a = _load_one_generator(spec.model)
  model_b = _load_one_generator(spec.blend_with)
  try:
    return weights.interpolate(model_a, model_b, 1.0 - spec.blend_weight)
  except ValueError as e:
    raise ModelError(f"cannot blend {spec.model} with {spec.blend_with}: {e}") from None


def load_engine(spec) -> Engine:
  """Loads any supported model, or connects to a server, as an `Engine`.

  Args:
    spec: A path or name (with the `ModelSpec` defaults: precision "auto"), or a `ModelSpec`.

  Returns:
    An `Engine`.

  Raises:
    ModelError: Unknown kind, missing file, a file that fails to load, an unreachable server,
      or a head/blend the model cannot give.
  """
  spec = _as_spec(spec)
  if spec.server:
    from esrgan_tf.inference import remote  # pylint: disable=g-import-not-at-top
    signature = "upscale_float" if spec.head is None else f"upscale_{spec.head}_float"
    return remote.remote_engine(spec.server, model_name=spec.model_name,
                                signature_name=signature)
  precision = precision_lib.resolve_precision(spec.precision)
  if spec.blend_with:
    if spec.num_threads:
      _set_tf_threads(spec.num_threads)
    return keras_engine(load_generator(spec), name=spec.name, precision=precision)
  path = _existing_path(spec.model)
  if spec.num_threads and not (_is_tflite(path) or _is_onnx(path)):  # threads per session
    _set_tf_threads(spec.num_threads)
  blend = _parse_blend(spec.blend_heads, path)
  for kind, matches, load in _ENGINE_LOADERS:
    if matches(path):
      if blend is not None:
        raise ModelError(f"{path}: blending heads needs the Keras model (.keras file or training "
                         f"workdir), not a {kind}: its heads are separate signatures/files, "
                         "each with its own trunk pass")
      if load is _load_saved_model:
        return load(path, precision=precision, head=spec.head)
      if spec.head is not None:
        raise ModelError(f"{path}: a {kind} holds one head; a head applies to multi-head Keras "
                         "models and SavedModels")
      return load(path, num_threads=spec.num_threads)
  for _, matches, load in _GENERATOR_LOADERS:
    if matches(path):
      return keras_engine(load(path), name=path, precision=precision, head=spec.head,
                          blend=blend)
  raise ModelError(f"{path}: unrecognised model; expected {_ACCEPTED}")


def rewrap(model, spec: ModelSpec, precision: str) -> Engine:
  """An engine for a Keras generator already loaded from `spec`, at another precision."""
  return keras_engine(model, name=spec.name, precision=precision_lib.resolve_precision(precision),
                      head=spec.head, blend=_parse_blend(spec.blend_heads, spec.name))


def _parse_blend(blend_heads, spec: str):
  if blend_heads is None or not isinstance(blend_heads, str):
    return blend_heads
  from esrgan_tf.models import multihead  # pylint: disable=g-import-not-at-top
  try:
    return multihead.parse_head_blend(blend_heads)
  except ValueError as e:
    raise ModelError(f"{spec}: {e}") from None


def load_engines(spec) -> dict:
  """Every output of a model as an `Engine`: {head name: Engine} for a multi-head model
  (Keras or SavedModel export, all heads from one load), {None: Engine} for any other.

  Raises:
    ModelError: As `load_engine`.
  """
  spec = _as_spec(spec)
  if spec.server or spec.blend_with or spec.head or spec.blend_heads:
    return {None: load_engine(spec)}
  precision = precision_lib.resolve_precision(spec.precision)
  path = _existing_path(spec.model)
  for _, matches, load in _ENGINE_LOADERS:
    if matches(path):
      if load is not _load_saved_model:
        return {None: load(path, num_threads=spec.num_threads)}
      from esrgan_tf.inference import saved_model  # pylint: disable=g-import-not-at-top
      return saved_model.saved_model_engines(path, precision=precision)
  for _, matches, load in _GENERATOR_LOADERS:
    if matches(path):
      model = load(path)
      heads = getattr(model, "head_names", None)
      if heads is None:
        return {None: keras_engine(model, name=path, precision=precision)}
      return {h: keras_engine(model, name=f"{path} [{h}]", precision=precision, head=h)
              for h in heads}
  raise ModelError(f"{path}: unrecognised model; expected {_ACCEPTED}")
