"""What a TF Serving export looks like on disk, without TensorFlow: version folders, pixel limit,
and the signature names and model facts of a multi-head export's heads.

Shared by the writer (`export.saved_model`), its engine (`inference.saved_model`), the resolver
(`inference.resolver`) and the dev server (`serving.core`).
"""

from __future__ import annotations

import os

# TF Serving's file-system source loads every integer-named subdirectory of a model base path as a
# version (tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc); a
# version is a SavedModel directory, i.e. one holding this file.
SAVED_MODEL_FILE = "saved_model.pb"
# Per-image input pixel limit of the exported signatures, inside the graph (so TF Serving enforces
# it too; `esrgan-serve` adds its own per-request limit, SERVER_MAX_PIXELS_PER_REQUEST): 2048²
# input pixels is an 8192² output at ×4, several GB of activations for the full network and an
# 805 MB float32 answer, above the default message limit; clients tile larger images
# (esrgan_tf.inference.tiling does).
GRAPH_MAX_PIXELS = 2048 * 2048
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


# --- multi-head exports ------------------------------------------------------------------------

# Signature names of a single-output export, by kind; a multi-head export's default head has them.
DEFAULT_SIGNATURE_NAMES = {"uint8": "serving_default", "float": "upscale_float",
                           "bytes": "upscale_bytes", "static": "upscale_static"}


def head_signature_names(head: str) -> dict[str, str]:
  """A multi-head export's signatures of one head: {"uint8", "float", "bytes", "static"} →
  upscale_<head>, upscale_<head>_float, upscale_<head>_bytes, upscale_<head>_static."""
  return {"uint8": f"upscale_{head}", "float": f"upscale_{head}_float",
          "bytes": f"upscale_{head}_bytes", "static": f"upscale_{head}_static"}


def output_scales(generator) -> dict:
  """{head name: scale} of a multi-head generator, {None: scale} of a single-output one."""
  scales = getattr(generator, "scales", None)
  if scales is None:
    return {None: int(generator.scale)}
  return {name: int(scale) for name, scale in scales.items()}


def head_facts(scales: dict, default_head: str, kinds: dict) -> tuple[dict, dict]:
  """The model-facts entries of a multi-head export.

  Args:
    scales: {head: scale}.
    default_head: The head behind the single-output names.
    kinds: {kind: signature description} of the kinds exported ("uint8", "float", ...).

  Returns:
    (signatures: {name: description + "head", "scale"} for the default names and every head's,
     {"heads": [{"name", "scale", "signatures": {kind: name}}], "default_head"}).
  """
  signatures = {DEFAULT_SIGNATURE_NAMES[kind]: {**description, "head": default_head,
                                                "scale": scales[default_head]}
                for kind, description in kinds.items()}
  heads = []
  for head, scale in scales.items():
    names = {kind: name for kind, name in head_signature_names(head).items() if kind in kinds}
    signatures.update({name: {**kinds[kind], "head": head, "scale": scale}
                       for kind, name in names.items()})
    heads.append({"name": head, "scale": scale, "signatures": names})
  return signatures, {"heads": heads, "default_head": default_head}


def float_signature(facts: dict, head) -> tuple[str, int]:
  """(float signature name, scale) of `head` in an export's model facts; None: the default output.

  Raises:
    KeyError: No such head (or a head asked of a single-output export); the message says which.
  """
  if head is None:
    return DEFAULT_SIGNATURE_NAMES["float"], int(facts["scale"])
  heads = {h.get("name"): h for h in facts.get("heads", ()) if isinstance(h, dict)}
  if not heads:
    raise KeyError(f"not a multi-head export, so it has no head {head!r}")
  if head not in heads:
    raise KeyError(f"no head {head!r}; its heads are {sorted(heads)}")
  return head_signature_names(head)["float"], int(heads[head]["scale"])
