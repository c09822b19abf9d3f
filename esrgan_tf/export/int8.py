"""Calibrated integer TFLite: int8 (or int16) activations, int8 per-channel weights, float
islands where accuracy needs them.

Post-training full-integer quantization (TFLite's MLIR quantizer): a representative dataset of
tiles of the export's input size, cut from `--calibration_dir` (default the bundled training
photos), is run through the float model to record each activation's range; weights get one scale
per output channel. In int8 mode, ops of the types in `float_ops` and the first/last convolutions
named in `edge_convs` are left in float32 ("float islands", `tf.lite.experimental.
QuantizationDebugger`'s denylists), with QUANTIZE/DEQUANTIZE ops at their borders. In int16x8
mode (16-bit activations, 8-bit weights: TFLite's `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
WEIGHTS_INT8`) every op is quantized; the islands do not apply. Inputs and outputs stay float32.

Accuracy on Real-ESRGAN x4plus: 34.6 dB vs float32 with the default ADD + MUL islands at 0.35×
the float32 .tflite's time; int16x8 41.0 dB but on TFLite's reference kernels (37× slower). What
limits int8 is per-tensor activation resolution accumulated over 351 convolutions:
docs/experiments/int8.md.

int8/int16x8 files are for CPUs (XNNPACK's int8 kernels), NNAPI and DSPs (Hexagon); the TFLite GPU
delegate runs float models, so the GPU-compatibility check does not apply to them.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

# Defaults of `quantize_int8`. FLOAT_OPS: TFLite builtin op names kept in float32.
FLOAT_OPS = ("ADD", "MUL")
# (first, last) counts of CONV_2D ops, in execution order, kept in float32: the first conv sees
# the image itself; the last ones (upsampling convs, conv_hr, conv_last) write the output.
EDGE_CONVS = (0, 0)
CALIBRATION_TILES = 16


def default_calibration_dir() -> str:
  """The bundled training photos (esrgan_tf/samples/train)."""
  from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
  return os.path.join(SAMPLES_DIR, "train")


def calibration_tiles(directory: str, input_size: Sequence[int], count: int = CALIBRATION_TILES,
                      seed: int = 0) -> list[np.ndarray]:
  """Random tiles of `input_size` from the images of `directory`, spread evenly over them.

  Args:
    directory: A folder of images (searched recursively, `esrgan_tf.data.folders.list_image_files`).
    input_size: (H, W) of the tiles (the export's static input size).
    count: How many tiles in total.
    seed: Tile positions are drawn from `numpy.random.default_rng(seed)`.

  Returns:
    float32 [1, H, W, 3] arrays in [0, 1].

  Raises:
    ValueError: No such folder, no images in it, an unreadable image (named), or no image as
      large as one tile.
  """
  from esrgan_tf.data import folders
  from esrgan_tf.images import image_io
  h, w = (int(s) for s in input_size)
  try:
    paths = folders.list_image_files(directory)
  except folders.DataError as e:
    raise ValueError(f"--calibration_dir: {e}") from e
  images = []
  for path in paths:
    try:
      color = image_io.read_image(path).color
    except image_io.ImageError as e:
      raise ValueError(f"calibration image {e}") from e
    if color.shape[0] >= h and color.shape[1] >= w:
      images.append(color)
  if not images:
    raise ValueError(f"{directory}: no calibration image of at least {h}×{w} pixels "
                     f"({len(paths)} images found)")
  rng = np.random.default_rng(seed)
  tiles = []
  for i in range(count):
    image = images[i % len(images)]
    y = int(rng.integers(0, image.shape[0] - h + 1))
    x = int(rng.integers(0, image.shape[1] - w + 1))
    tiles.append(np.ascontiguousarray(image[None, y:y + h, x:x + w], np.float32))
  return tiles


def _conv_output_names(model_bytes: bytes) -> list[str]:
  """Output tensor names of the CONV_2D ops of a TFLite model, in execution order."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
  codes = model.operatorCodes or []
  names = []
  subgraph = model.subgraphs[0]
  for op in subgraph.operators or []:
    code = codes[op.opcodeIndex]
    if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D:
      name = subgraph.tensors[op.outputs[0]].name
      names.append(name.decode() if isinstance(name, bytes) else name)
  return names


def check_float_ops(float_ops: Sequence[str]) -> tuple[str, ...]:
  """Validates TFLite builtin op names for `quantize_int8`'s float islands.

  Args:
    float_ops: Names such as "ADD", "MUL", "LEAKY_RELU", "CONCATENATION" (case-insensitive).

  Returns:
    The names, upper case.

  Raises:
    ValueError: A name that is not a TFLite builtin operator.
  """
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  names = tuple(str(op).strip().upper() for op in float_ops)
  unknown = [op for op in names if not hasattr(schema.BuiltinOperator, op)]
  if unknown:
    raise ValueError(f"float islands: {', '.join(unknown)} is not a TFLite builtin op name "
                     f"(e.g. {', '.join(FLOAT_OPS + ('LEAKY_RELU', 'CONCATENATION'))})")
  return names


def quantize_int8(converter, tiles: Sequence[np.ndarray], *,
                  float_ops: Sequence[str] = FLOAT_OPS,
                  edge_convs: Sequence[int] = EDGE_CONVS,
                  activations: str = "int8") -> bytes:
  """Calibrates and quantizes a float TFLite conversion to int8 (or int16x8) with float islands.

  Args:
    converter: A `tf.lite.TFLiteConverter` of the float model (static input shape).
    tiles: The representative dataset (`calibration_tiles`).
    float_ops: int8 only: TFLite builtin op names to keep in float32 (e.g. "ADD", "MUL",
      "CONCATENATION").
    edge_convs: int8 only: (first, last): how many CONV_2D ops at each end to keep in float32.
    activations: "int8", or "int16" (16-bit activations, 8-bit weights, every op quantized).

  Returns:
    The .tflite bytes (float32 input and output).

  Raises:
    ValueError: Unknown `activations`, an unknown op name, or islands asked for in int16 mode.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  float_ops = check_float_ops(float_ops)
  first, last = (int(n) for n in edge_convs)
  if activations not in ("int8", "int16"):
    raise ValueError(f"activations must be 'int8' or 'int16', got {activations!r}")
  if activations == "int16" and (float_ops or first or last):
    raise ValueError("int16x8: float islands are not supported (TFLite quantizes int16x8 "
                     "models whole); pass no float ops and no edge convs")

  def dataset():
    for tile in tiles:
      yield [tile]

  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = dataset
  if activations == "int16":
    # Integer kernels where they exist (all of RRDBNet's ops have int16x8 ones), float otherwise.
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
  # Int8 kernels where they exist, float kernels for the islands.
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                         tf.lite.OpsSet.TFLITE_BUILTINS]
  options = tf.lite.experimental.QuantizationDebugOptions(
      denylisted_ops=list(float_ops) or None)
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=converter, debug_dataset=dataset, debug_options=options)
  if first or last:
    convs = _conv_output_names(debugger.calibrated_model)
    nodes = convs[:first] + (convs[-last:] if last else [])
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(float_ops) or None, denylisted_nodes=nodes)
  return debugger.get_nondebug_quantized_model()


def describe(calibration_dir: Optional[str], tiles: int, float_ops: Sequence[str],
             edge_convs: Sequence[int], activations: str = "int8") -> str:
  """One line for logs: what the integer conversion used."""
  if activations == "int16":
    return (f"int16x8: {tiles} calibration tiles from "
            f"{calibration_dir or default_calibration_dir()}; no float islands")
  return (f"int8: {tiles} calibration tiles from {calibration_dir or default_calibration_dir()}; "
          f"float32 islands: ops {', '.join(float_ops) or 'none'}, first {edge_convs[0]} / last "
          f"{edge_convs[1]} convs")
