"""Model resolution: every `--model` flag goes through here.

Two levels:
  * `load_generator(spec)` returns a Keras generator (what training, export and interpolation
    need): a `.keras` file, a training workdir, or a foreign checkpoint (.pth/.pt/.safetensors/
    ncnn .param).
  * `load_upscaler(spec)` returns an `engine.Upscaler`: anything `load_generator`
    takes, plus SavedModel directories and `.tflite` files.

This module sits at the top of the model layers: it imports the formats (weights, workdir,
export, tflite), none of which imports it back. Each kind of model is one entry in a table of
(name, matcher, loader); the loaders import their module lazily so that e.g. reading a `.keras`
file never imports the TFLite runtime.
"""

from __future__ import annotations

import os
from typing import Optional

from esrgan_tf.export import versions
from esrgan_tf.inference.engine import ModelError, Upscaler, keras_upscaler

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
  from esrgan_tf import weights  # pylint: disable=g-import-not-at-top
  return weights.load_checkpoint(spec)


def _is_saved_model(spec: str) -> bool:
  # A version directory itself, or a TF Serving base directory of integer-named versions.
  return versions.is_saved_model_dir(spec) or bool(versions.version_dirs(spec))


def _load_saved_model(spec: str, **options) -> Upscaler:
  from esrgan_tf.export import saved_model  # pylint: disable=g-import-not-at-top
  return saved_model.load_saved_model_upscaler(spec, **options)


def _is_tflite(spec: str) -> bool:
  return spec.lower().endswith(".tflite")


def _load_tflite(spec: str, **options) -> Upscaler:
  from esrgan_tf.export import tflite  # pylint: disable=g-import-not-at-top
  return tflite.load_tflite_upscaler(spec, **options)


# (name, matcher, loader) returning a Keras generator.
_GENERATOR_LOADERS = [
    ("keras file", _is_keras_file, _load_keras_file),
    ("training workdir", _is_workdir, _load_workdir),
    ("checkpoint", _is_checkpoint, _load_checkpoint),
]
# (name, matcher, loader) returning an Upscaler directly (no Keras model behind it).
_UPSCALER_LOADERS = [
    ("SavedModel", _is_saved_model, _load_saved_model),
    ("TFLite model", _is_tflite, _load_tflite),
]

_ACCEPTED = ("a .keras file, a training workdir (with config.json), a checkpoint "
             "(.pth/.pt/.safetensors/ncnn .param), a SavedModel directory or export base, "
             "or a .tflite file")


def _existing_path(spec) -> str:
  """The file or directory a spec names: a published model name (weights.registry: downloaded and
  cached) becomes its file, anything else is taken as a path, which must exist."""
  from esrgan_tf.weights import registry  # pylint: disable=g-import-not-at-top
  try:
    spec = registry.resolve_spec(os.fspath(spec))
  except registry.HubError as e:
    raise ModelError(str(e)) from e
  if not os.path.exists(spec):
    raise ModelError(f"{spec}: no such file or directory")
  return spec


def load_generator(spec: str):
  """Loads a Keras generator from a `.keras` file, a training workdir or a foreign checkpoint.

  Args:
    spec: The path.

  Returns:
    A Keras model (an `RRDBNet`).

  Raises:
    ModelError: Unknown kind, missing file, or a file that fails to load.
  """
  spec = _existing_path(spec)
  for _, matches, load in _GENERATOR_LOADERS:
    if matches(spec):
      return load(spec)
  raise ModelError(f"{spec}: not a Keras generator; expected a .keras file, a training workdir "
                   "or a checkpoint (.pth/.pt/.safetensors/ncnn .param)")


def load_upscaler(spec: str, *, precision: str = "float32", num_threads: Optional[int] = None
                  ) -> Upscaler:
  """Loads any supported model as an `Upscaler`.

  Args:
    spec: A path (see the module docstring).
    precision: "float32" or "bfloat16" (where the model kind supports it).
    num_threads: Interpreter threads (TFLite only).

  Returns:
    An `Upscaler`.

  Raises:
    ModelError: Unknown kind, missing file, or a file that fails to load.
  """
  spec = _existing_path(spec)
  for _, matches, load in _UPSCALER_LOADERS:
    if matches(spec):
      options = {"precision": precision} if load is _load_saved_model else {
          "num_threads": num_threads}
      return load(spec, **options)
  for _, matches, load in _GENERATOR_LOADERS:
    if matches(spec):
      return keras_upscaler(load(spec), name=spec, precision=precision)
  raise ModelError(f"{spec}: unrecognised model; expected {_ACCEPTED}")
