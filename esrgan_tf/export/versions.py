"""What a TF Serving export looks like on disk, without TensorFlow: version folders, pixel limit.

Shared by the writer (`export`), the resolver (`loading`) and the dev server (`serving.core`).
"""

from __future__ import annotations

import os

# TF Serving's file-system source loads every integer-named subdirectory of a model base path as a
# version (tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc); a
# version is a SavedModel directory, i.e. one holding this file.
SAVED_MODEL_FILE = "saved_model.pb"
# Per-image input pixel limit of the exported signatures and of `esrgan-serve` requests: 2048²
# input pixels is an 8192² output at ×4, several GB of activations for the full network and an
# 805 MB float32 answer, above the default message limit; clients tile larger images
# (esrgan_tf.inference.tiling does).
DEFAULT_MAX_PIXELS = 2048 * 2048
# gRPC message limit of `esrgan-serve`, 512 MB: a ×4 float32 answer for a 1024² input is
# 1024²·16·3·4 B ≈ 201 MB, far above gRPC's 4 MB default. (tensorflow_model_server itself sets
# the maximum, INT32_MAX.)
DEFAULT_MAX_MESSAGE_MB = 512


def _is_version_name(name: str) -> bool:
  # ASCII digits only: str.isdigit() also accepts e.g. "²" or Arabic-Indic digits.
  return name.isascii() and name.isdigit()


def is_saved_model_dir(path: str) -> bool:
  """True if `path` is a directory holding a saved_model.pb."""
  return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def version_dirs(base_path: str, *, require_saved_model: bool = True) -> dict[int, str]:
  """The version directories under an export base, by version number.

  Args:
    base_path: The model base path (a missing or unreadable one has no versions).
    require_saved_model: Only directories holding a saved_model.pb (what a server loads); False
      counts every integer-named directory (what a writer must not reuse).

  Returns:
    {version: path}; temporary and hidden names (".tmp-3", "3.old") are never versions.
  """
  try:
    names = os.listdir(base_path)
  except OSError:
    return {}
  found = {}
  for name in names:
    path = os.path.join(base_path, name)
    if not _is_version_name(name) or not os.path.isdir(path):
      continue
    if require_saved_model and not is_saved_model_dir(path):
      continue
    found[int(name)] = path
  return found


def latest_version_dir(base_path: str):
  """The highest version directory holding a SavedModel, or None."""
  found = version_dirs(base_path)
  return found[max(found)] if found else None
