"""TFLite conversion for the mobile GPU delegate (running a .tflite: `esrgan_tf.inference.tflite`).

Conversion goes through `tf.lite.TFLiteConverter.from_saved_model` on a temporary SavedModel whose
only signature takes a STATIC [1, H, W, 3] float32 batch (the GPU delegate needs static shapes);
in TF 2.21 the concrete-function path with a Keras 3 trackable silently drops the weights.

The GPU-delegate compatibility check is `esrgan_tf.export.gpu_delegate`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence

from esrgan_tf.core import fileio
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import gpu_delegate as gpu_delegate_lib
from esrgan_tf.export.gpu_delegate import GpuIncompatibleError  # noqa: F401  (re-exported)

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8", "int16x8")
# Modes whose files the TFLite GPU delegate is meant to run (it computes in fp32/fp16); int8 and
# int16x8 files are for CPU (XNNPACK), NNAPI and DSPs, so the GPU check is not applied to them.
GPU_QUANTIZE_MODES = ("none", "fp16", "dynamic")


# --- conversion -------------------------------------------------------------------------------

def _static_saved_model(model, directory: str, input_size: Sequence[int]) -> str:
  """Writes a SavedModel whose only signature is float32 [1, H, W, C] → float32.

  Args:
    model: A Keras generator, or the path of one of our SavedModel exports.
    directory: Where to write it.
    input_size: (H, W).

  Returns:
    The signature key to convert.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  h, w = (int(s) for s in input_size)
  module = tf.Module()
  if isinstance(model, (str, os.PathLike)):
    from esrgan_tf.export import saved_model as saved_model_lib  # pylint: disable=g-import-not-at-top
    version_dir = saved_model_lib.resolve_version_dir(model)
    facts = saved_model_lib.read_model_facts(version_dir)
    if facts.get("precision", "float32") != "float32":
      raise ModelError(f"{version_dir}: TFLite conversion needs a float32 export, this one is "
                       f"{facts.get('precision')}")
    module.loaded = tf.saved_model.load(version_dir)
    arch = facts.get("arch", {})  # RRDBNet: in_channels; SRVGGNetCompact: num_in_ch
    channels = int(arch.get("in_channels", arch.get("num_in_ch", 3)))
    upscale_float = module.loaded.signatures["upscale_float"]

    def call(images):
      return {"upscaled": upscale_float(images=images)["upscaled"]}
  else:
    if hasattr(model, "head_names"):  # a .tflite holds one static-shape function
      raise ValueError(f"{model.name} has several heads {list(model.head_names)}: convert one, "
                       "model.to_rrdbnet(head) (esrgan-export writes one .tflite per head)")
    # The converter does not freeze Keras 3 variables (the .tflite keeps VAR_HANDLE/READ_VARIABLE
    # ops and runs on uninitialised weights: NaN). Plain tf.Variable copies, fed through Keras'
    # `stateless_call`, are frozen into constants; the Keras model itself is not saved.
    module.trainable = [tf.Variable(v.value, trainable=False) for v in model.trainable_variables]
    module.non_trainable = [tf.Variable(v.value, trainable=False)
                            for v in model.non_trainable_variables]
    channels = int(getattr(model, "in_channels", 3))

    def call(images):
      out, _ = model.stateless_call(module.trainable, module.non_trainable, images)
      return {"upscaled": tf.cast(out, tf.float32)}

  module.upscale = tf.function(call, input_signature=[
      tf.TensorSpec([1, h, w, channels], tf.float32, name="images")])
  tf.saved_model.save(module, directory,
                      signatures={"serving_default": module.upscale.get_concrete_function()})
  return "serving_default"


def convert_to_bytes(model, *, input_size: Sequence[int], quantize: str = "none",
                     calibration_dir: Optional[str] = None,
                     float_ops: Optional[Sequence[str]] = None) -> bytes:
  """Converts a generator (or one of our SavedModel exports) to a TFLite flatbuffer.

  Args:
    model: A Keras `RRDBNet`, or a SavedModel version/base directory written by
      `esrgan_tf.export.saved_model`.
    input_size: (H, W) of the static [1, H, W, 3] input.
    quantize: "none" (float32), "fp16" (float16 weights, dequantized at load: the GPU delegate
      runs them in fp16), "dynamic" (int8 weights, dynamic-range quantization: no calibration
      data), "int8" (calibrated int8 with float islands, `esrgan_tf.export.int8`) or "int16x8"
      (calibrated int16 activations, int8 weights; TFLite's reference kernels: accurate, slow).
    calibration_dir: int8/int16x8: folder of calibration images (default the bundled photos).
    float_ops: int8 only: TFLite op names kept in float32 (default
      `int8.FLOAT_OPS`; () = every op int8).

  Returns:
    The .tflite bytes.

  Raises:
    ValueError: Bad arguments.
    ModelError: A SavedModel that is not ours, or not float32.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if quantize not in QUANTIZE_MODES:
    raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
  if float_ops is not None and quantize != "int8":
    raise ValueError(f"float_ops applies to quantize='int8' only, not {quantize!r}")
  if float_ops is not None:
    from esrgan_tf.export import int8  # pylint: disable=g-import-not-at-top
    float_ops = int8.check_float_ops(float_ops)  # before the minutes of calibration
  if len(input_size) != 2 or any(int(s) < 1 for s in input_size):
    raise ValueError(f"input_size must be (height, width) of positive ints, got {input_size!r}")
  with tempfile.TemporaryDirectory(prefix="esrgan_tflite_") as tmp:
    key = _static_saved_model(model, tmp, input_size)
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("int8", "int16x8"):
      from esrgan_tf.export import int8  # pylint: disable=g-import-not-at-top
      tiles = int8.calibration_tiles(
          calibration_dir or int8.default_calibration_dir(), input_size)
      if quantize == "int16x8":
        return int8.quantize_int8(converter, tiles, float_ops=(), activations="int16")
      return int8.quantize_int8(
          converter, tiles,
          float_ops=int8.FLOAT_OPS if float_ops is None else tuple(float_ops))
    if quantize != "none":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
      converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert(model, output_path: str, *, input_size: Sequence[int], quantize: str = "none",
            gpu_check: bool = True, overwrite: bool = False,
            calibration_dir: Optional[str] = None,
            float_ops: Optional[Sequence[str]] = None) -> str:
  """Converts and writes a .tflite file atomically (no partial file on any failure).

  Args:
    model: A Keras `RRDBNet`, or one of our SavedModel export directories.
    output_path: The .tflite path.
    input_size: (H, W) of the static input.
    quantize: "none", "fp16", "dynamic", "int8" or "int16x8" (see `convert_to_bytes`).
    gpu_check: Run `gpu_delegate.check_gpu_compatibility` and refuse to write an incompatible model
      (not for int8/int16x8, whose files are for CPU/NNAPI/DSP).
    overwrite: Replace an existing file.
    calibration_dir: int8/int16x8: folder of calibration images (default the bundled photos).
    float_ops: int8 only: TFLite op names kept in float32 (see `convert_to_bytes`).

  Returns:
    `output_path`.

  Raises:
    FileExistsError: `output_path` exists and `overwrite` is False.
    GpuIncompatibleError: `gpu_check` found problems (listed in the message).
  """
  output_path = os.fspath(output_path)
  if os.path.exists(output_path) and not overwrite:
    raise FileExistsError(f"{output_path}: exists (pass overwrite=True, or --overwrite)")
  data = convert_to_bytes(model, input_size=input_size, quantize=quantize,
                          calibration_dir=calibration_dir, float_ops=float_ops)
  if gpu_check and quantize in GPU_QUANTIZE_MODES:
    problems = gpu_delegate_lib.check_gpu_compatibility(data)
    if problems:
      raise gpu_delegate_lib.GpuIncompatibleError(
          f"{output_path}: not compatible with the TFLite GPU delegate:\n  "
          + "\n  ".join(problems))
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  try:
    return fileio.atomic_write(output_path, lambda f: f.write(data), overwrite=overwrite)
  except FileExistsError:  # appeared while converting
    raise FileExistsError(f"{output_path}: exists (pass overwrite=True, or --overwrite)") from None
