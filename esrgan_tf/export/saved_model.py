"""SavedModel export for TF Serving (running an export: `esrgan_tf.inference.saved_model`).

An export is one `tf.Module` holding the generator, with explicit signatures whose pre- and
post-processing lives inside the graph (the TF Model Garden `export_base.py` pattern):

  serving_default  images: uint8 [N, H, W, 3]      → upscaled: uint8 [N, sH, sW, 3]
                   (clip to [0, 1], ×255, round half to even, cast)
  upscale_float    images: float32 [N, H, W, 3]    → upscaled: float32 [N, sH, sW, 3]
                   (in [0, 1]; output unclipped, exactly the model's)
  upscale_bytes    image_bytes: string [N]         → output_bytes: string [N] (PNG)
                   (PNG/JPEG/WebP/GIF/BMP decoded in the graph, one image at a time, so a batch
                   may mix sizes; the `_bytes` suffix makes TF Serving's REST API base64 them)
  upscale_static   (only with `tflite_input_size`) images: float32 [1, H, W, 3] → upscaled,
                   the static-shape function TFLite converters and mobile runtimes want.

A multi-head generator (`models.MultiHeadRRDBNet`) is held once (one set of weights) and gets,
per head h, `upscale_<h>` (uint8), `upscale_<h>_float`, `upscale_<h>_bytes` (and
`upscale_<h>_static`), each running the trunk and that head only; the names above serve the
default head. The model facts list the heads, their scales and signatures.

H and W are dynamic everywhere else. Every signature rejects an image of more than `max_pixels`
pixels (H·W per image) with INVALID_ARGUMENT; for encoded bytes the size is read from the file
header BEFORE decoding (PNG IHDR, JPEG SOF via `tf.io.extract_jpeg_shape`, WebP VP8/VP8L/VP8X
headers, the first GIF image descriptor, BMP info header), so a decompression bomb is refused
without being decoded, and bytes whose header declares no size are refused too; the decoded size
is checked again after decoding. Only the first frame of an image is ever decoded: a GIF is cut
after its first image before decoding (TF would decode every frame, each on the largest frame's
canvas), animated WebP is refused (TF decodes every frame), APNG frames are ignored by TF.

Directory layout (TF Serving's): `export_base/<integer version>/` with `saved_model.pb`,
`variables/` and `assets.extra/esrgan_tf.json` (the model facts: scale, architecture, precision,
source, signatures, esrgan_tf and TF versions). `assets.extra/` is TF Serving's directory for
files that are not part of the graph (e.g. its warm-up requests), and it is copied verbatim with
the version, which is what we want for metadata. The version directory appears atomically: the
SavedModel is written to a hidden temporary name in `export_base` (`fileio.atomic_path`; TF
Serving only loads integer names) and renamed into place, because TF Serving happily loads a
half-written version directory (tensorflow/serving#1086, #631).
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

from absl import logging
import tensorflow as tf

import esrgan_tf
from esrgan_tf.core import fileio
from esrgan_tf.core import precision as precision_lib
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import versions
from esrgan_tf.images import headers_tf, pixels

ASSET_DIR = "assets.extra"
ASSET_NAME = "esrgan_tf.json"
FORMAT_NAME = "esrgan_tf.saved_model"
FORMAT_VERSION = 1
GRAPH_MAX_PIXELS = versions.GRAPH_MAX_PIXELS

SIGNATURES = {
    "serving_default": {"inputs": {"images": "uint8 [N, H, W, 3]"},
                        "outputs": {"upscaled": "uint8 [N, sH, sW, 3]"}},
    "upscale_float": {"inputs": {"images": "float32 [N, H, W, 3] in [0, 1]"},
                      "outputs": {"upscaled": "float32 [N, sH, sW, 3], unclipped"}},
    "upscale_bytes": {"inputs": {"image_bytes": "string [N], PNG/JPEG/WebP/GIF/BMP"},
                      "outputs": {"output_bytes": "string [N], PNG"}},
}


# --- bfloat16 ----------------------------------------------------------------------------------

def _warn_if_emulated_bf16(precision: str) -> None:
  if precision == "bfloat16" and not precision_lib.cpu_bf16_flags():
    # Unlike `precision.resolve_precision` (runtime: falls back to float32), an export is made
    # for the machine that will serve it, so an explicit request is honoured.
    logging.warning("precision=bfloat16 requested but this CPU has no AVX512-BF16/AMX-BF16: "
                    "bfloat16 math is emulated here and usually SLOWER than float32. Exporting "
                    "in bfloat16 as asked (for serving hardware that has it).")


# --- in-graph image handling ------------------------------------------------------------------

def _check_pixels(height, width, max_pixels: int, what: str):
  pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
  return tf.debugging.assert_less_equal(
      pixels, tf.constant(max_pixels, tf.int64),
      message=f"{what} has more pixels (height × width) than the limit of {max_pixels}")


def _check_batch(images, max_pixels: int):
  shape = tf.shape(images)
  return _check_pixels(shape[1], shape[2], max_pixels, "input image")


def _to_uint8(x):
  """float [0, 1] (unclipped) → uint8 by the package's one rule (`esrgan_tf.images.pixels`)."""
  return pixels.from_float_tf(x, 8)


# --- the exported module ------------------------------------------------------------------------

class _Output:
  """The serving functions of one output (the generator's, or one head's): float32, uint8 and
  encoded-bytes variants around one traced network function."""

  def __init__(self, module: "ExportModule", head: Optional[str]):
    self.module = module
    self.head = head
    c = module.channels
    # The network is traced once per output, as one function all its signatures call (smaller
    # graph, faster export than inlining a copy of it into each signature).
    self.forward = tf.function(
        self._forward_impl,
        input_signature=[tf.TensorSpec([None, None, None, c], module.generator.compute_dtype)])
    self.upscale_float = tf.function(
        self._upscale_float, input_signature=[tf.TensorSpec([None, None, None, c], tf.float32)])
    self.serve_uint8 = tf.function(
        self._serve_uint8, input_signature=[tf.TensorSpec([None, None, None, c], tf.uint8)])
    self.upscale_bytes = tf.function(
        self._upscale_bytes, input_signature=[tf.TensorSpec([None], tf.string)])
    h, w = module.tflite_input_size or (None, None)
    self.upscale_static = module.tflite_input_size and tf.function(
        self._run, input_signature=[tf.TensorSpec([1, h, w, c], tf.float32)])

  def _forward_impl(self, x):
    if self.head is None:
      return self.module.generator(x)
    return self.module.generator(x, heads=(self.head,))[self.head]  # the trunk and this head

  def _run(self, images):
    """float32 [N, H, W, C] → float32 [N, sH, sW, C], no checks (the static TFLite path)."""
    x = tf.cast(images, self.module.generator.compute_dtype)
    return {"upscaled": tf.cast(self.forward(x), tf.float32)}

  def _upscale_float(self, images):
    with tf.control_dependencies([_check_batch(images, self.module.max_pixels)]):
      images = tf.identity(images)
    return self._run(images)

  def _serve_uint8(self, images):
    x = tf.cast(images, tf.float32) / 255.0
    return {"upscaled": _to_uint8(self._upscale_float(x)["upscaled"])}

  def _upscale_one(self, data):
    max_pixels, channels = self.module.max_pixels, self.module.channels
    data, size = headers_tf.decodable(data)  # A GIF: its first image only.
    check = _check_pixels(size[0], size[1], max_pixels, "encoded image (declared size)")
    known = tf.debugging.assert_non_negative(
        size, message="encoded image: no size in its header (not a PNG, JPEG, still WebP, GIF or "
        "BMP file, or a truncated one); refused before decoding")
    with tf.control_dependencies([check, known]):
      image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8,
                                 expand_animations=False)
    image.set_shape([None, None, channels])
    shape = tf.shape(image)
    with tf.control_dependencies([_check_pixels(shape[0], shape[1], max_pixels,
                                                "decoded image")]):
      image = tf.identity(image)
    out = self._serve_uint8(image[tf.newaxis])["upscaled"][0]
    return tf.io.encode_png(out)

  def _upscale_bytes(self, image_bytes):
    out = tf.map_fn(self._upscale_one, image_bytes, fn_output_signature=tf.string)
    return {"output_bytes": out}

  def signatures(self, names: dict) -> dict:
    """{signature name: concrete function}, named by `names` (kind → name)."""
    sigs = {names["uint8"]: self.serve_uint8.get_concrete_function(),
            names["float"]: self.upscale_float.get_concrete_function(),
            names["bytes"]: self.upscale_bytes.get_concrete_function()}
    if self.upscale_static:
      sigs[names["static"]] = self.upscale_static.get_concrete_function()
    return sigs


class ExportModule(tf.Module):
  """The generator plus the serving signatures (see the module docstring).

  A multi-head generator is held once; each head gets its signatures (`export_layout.
  head_signature_names`) and the default head also the single-output names, for old clients.
  """

  def __init__(self, generator, *, precision: str = "float32",
               max_pixels: int = GRAPH_MAX_PIXELS,
               tflite_input_size: Optional[Sequence[int]] = None):
    super().__init__(name="esrgan_tf_export")
    if precision not in precision_lib.INFERENCE_PRECISIONS:
      raise ValueError(f"precision must be one of {precision_lib.INFERENCE_PRECISIONS}, "
                     f"got {precision!r}")
    self.precision = precision
    self.generator = (generator.with_dtype("bfloat16") if precision == "bfloat16"
                      else generator)
    self.scales = versions.output_scales(generator)
    self.default_head = getattr(generator, "default_head", None)
    self.scale = self.scales[self.default_head]
    self.channels = int(generator.in_channels)
    self.max_pixels = int(max_pixels)
    self.tflite_input_size = tuple(tflite_input_size) if tflite_input_size else None
    self._outputs = {head: _Output(self, head) for head in self.scales}
    default = self._outputs[self.default_head]
    # Attributes: tf.saved_model.save keeps them as functions of the loaded object.
    self.upscale_float = default.upscale_float
    self.serving_default = default.serve_uint8
    self.upscale_bytes = default.upscale_bytes
    if self.tflite_input_size:
      self.upscale_static = default.upscale_static

  def signatures(self) -> dict:
    sigs = self._outputs[self.default_head].signatures(versions.DEFAULT_SIGNATURE_NAMES)
    for head, output in self._outputs.items():
      if head is not None:
        sigs.update(output.signatures(versions.head_signature_names(head)))
    return sigs


# --- writing ------------------------------------------------------------------------------------

def model_facts(generator, *, precision: str, max_pixels: int, source: str,
                tflite_input_size=None) -> dict:
  """The JSON written to `assets.extra/esrgan_tf.json`.

  A multi-head generator's facts also list its heads ({"name", "scale", "signatures"}) and
  default head; "scale" is the default head's and each signature records its "scale" and "head".
  """
  kinds = dict(zip(("uint8", "float", "bytes"), SIGNATURES.values()))
  if tflite_input_size:
    h, w = tflite_input_size
    kinds["static"] = {"inputs": {"images": f"float32 [1, {h}, {w}, 3]"},
                       "outputs": {"upscaled": "float32, unclipped"}}
  scales = versions.output_scales(generator)
  default_head = getattr(generator, "default_head", None)
  signatures = {versions.DEFAULT_SIGNATURE_NAMES[kind]: description
                for kind, description in kinds.items()}
  facts = {}
  if default_head is not None:
    signatures, facts = versions.head_facts(scales, default_head, kinds)
  return {
      "format": FORMAT_NAME,
      "format_version": FORMAT_VERSION,
      "scale": scales[default_head],
      "arch": generator.arch_config() if hasattr(generator, "arch_config") else {},
      # RRDBNet / SRVGGNetCompact / MultiHeadRRDBNet: how to read "arch"
      "generator": type(generator).__name__,
      **facts,
      "precision": precision,
      "max_pixels": int(max_pixels),
      # upscale_bytes decodes the first frame of an image only (esrgan-serve counts every frame
      # of exports without this fact).
      "image_frames": "first",
      "source": source,
      "signatures": signatures,
      "esrgan_tf_version": esrgan_tf.__version__,
      "tensorflow_version": tf.__version__,
      "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }


def export_saved_model(generator, export_base: str, *, version: Optional[int] = None,
                       precision: str = "float32", max_pixels: int = GRAPH_MAX_PIXELS,
                       source: str = "", tflite_input_size: Optional[Sequence[int]] = None,
                       overwrite: bool = False) -> str:
  """Writes `generator` as a TF Serving version directory, atomically.

  Args:
    generator: A built `RRDBNet`, `SRVGGNetCompact` or `MultiHeadRRDBNet` (float32 weights;
      a multi-head model gets signatures per head, its weights stored once).
    export_base: The model base path (created if missing).
    version: Integer version; default the next free one (1 for an empty base).
    precision: "float32" or "bfloat16" (computes in bfloat16 inside the graph; inputs and outputs
      keep their dtypes). Warns when this CPU lacks native bfloat16.
    max_pixels: Per-image input pixel limit enforced by every signature.
    source: Where the weights came from (recorded in the asset JSON).
    tflite_input_size: (H, W): also add the static `upscale_static` signature.
    overwrite: Replace an existing version directory.

  Returns:
    The version directory path.

  Raises:
    ValueError: Bad version, precision, max_pixels or input size.
    FileExistsError: The version exists and `overwrite` is False.
  """
  if precision not in precision_lib.INFERENCE_PRECISIONS:
    raise ValueError(f"precision must be one of {precision_lib.INFERENCE_PRECISIONS}, "
                     f"got {precision!r}")
  if not isinstance(max_pixels, int) or max_pixels < 1:
    raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
  if tflite_input_size is not None and (
      len(tflite_input_size) != 2 or any(int(s) < 1 for s in tflite_input_size)):
    raise ValueError(f"tflite_input_size must be (height, width), got {tflite_input_size!r}")
  export_base = os.fspath(export_base)
  existing = versions.version_dirs(export_base, require_saved_model=False)
  if version is None:
    version = max(existing, default=0) + 1
  if not isinstance(version, int) or isinstance(version, bool) or version < 0:
    raise ValueError(f"version must be a non-negative integer, got {version!r}")
  final = os.path.join(export_base, str(version))
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f"{final}: version {version} already exists (pass overwrite=True, "
                          "or --overwrite, to replace it)")
  _warn_if_emulated_bf16(precision)

  os.makedirs(export_base, exist_ok=True)
  module = ExportModule(generator, precision=precision, max_pixels=max_pixels,
                        tflite_input_size=tflite_input_size)
  facts = model_facts(generator, precision=precision, max_pixels=max_pixels, source=source,
                      tflite_input_size=tflite_input_size)
  # Written under a hidden non-integer name (TF Serving only loads integer names) and renamed
  # into place; with `overwrite` the old version is moved aside first and removed after.
  try:
    with fileio.atomic_path(final, overwrite=overwrite) as tmp:
      tf.saved_model.save(module, tmp, signatures=module.signatures())
      os.makedirs(os.path.join(tmp, ASSET_DIR), exist_ok=True)
      with open(os.path.join(tmp, ASSET_DIR, ASSET_NAME), "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=2, sort_keys=True)
  except FileExistsError:  # appeared while we wrote
    raise FileExistsError(f"{final}: version {version} already exists (pass overwrite=True, "
                          "or --overwrite, to replace it)") from None
  logging.info("Exported %s (precision %s) to %s", source or "generator", precision, final)
  return final


# --- reading an export back ----------------------------------------------------------------------

def resolve_version_dir(path: str) -> str:
  """A version directory itself, or the highest integer version under a base directory.

  Raises:
    ModelError: Neither.
  """
  path = os.fspath(path)
  if versions.is_saved_model_dir(path):
    return path
  latest = versions.latest_version_dir(path)
  if latest is None:
    raise ModelError(f"{path}: not a SavedModel directory (no saved_model.pb) nor an export base "
                     "with integer version directories")
  return latest


def read_model_facts(version_dir: str) -> dict:
  """The asset JSON of one of our exports.

  Raises:
    ModelError: Missing or not ours.
  """
  asset = os.path.join(version_dir, ASSET_DIR, ASSET_NAME)
  try:
    with open(asset, encoding="utf-8") as f:
      facts = json.load(f)
  except FileNotFoundError:
    raise ModelError(f"{version_dir}: a SavedModel but not an esrgan_tf export (no "
                     f"{ASSET_DIR}/{ASSET_NAME}); export it with esrgan-export") from None
  except (OSError, ValueError) as e:
    raise ModelError(f"{asset}: unreadable model facts ({e})") from e
  if not isinstance(facts, dict) or facts.get("format") != FORMAT_NAME:
    raise ModelError(f"{asset}: not an esrgan_tf model description")
  return facts
