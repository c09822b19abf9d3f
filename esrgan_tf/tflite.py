"""TFLite conversion for the mobile GPU delegate, our own GPU-compatibility check, and a runner.

Conversion goes through `tf.lite.TFLiteConverter.from_saved_model` on a temporary SavedModel whose
only signature takes a STATIC [1, H, W, 3] float32 batch (the GPU delegate needs static shapes);
in TF 2.21 the concrete-function path with a Keras 3 trackable silently drops the weights.

`check_gpu_compatibility` exists because `tf.lite.experimental.Analyzer.analyze(...,
gpu_compatibility=True)` reports every model as compatible in TF 2.21 (tensorflow#77042). It
re-implements the rules of TFLite's `tensorflow/lite/tools/versioning/gpu_compatibility.cc`
(`CheckGpuDelegateCompatibility`) for the operators a super-resolution network can contain,
plus two rules of our own: every tensor shape static (no -1 in `shape_signature`) and CONV_2D
weights constant (directly, or through a DEQUANTIZE of a constant: fp16 and int8 weights).
Unknown operators are reported as unsupported, as the delegate does.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Optional, Sequence, Union

import numpy as np

from esrgan_tf.upscaler import ModelError, Upscaler

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8")
# Modes whose files the TFLite GPU delegate is meant to run (it computes in fp32/fp16); int8
# files are for CPU (XNNPACK), NNAPI and DSPs, so the GPU check is not applied to them.
GPU_QUANTIZE_MODES = ("none", "fp16", "dynamic")


class GpuIncompatibleError(ValueError):
  """The converted model would not run fully on the TFLite GPU delegate; lists the problems."""


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
    from esrgan_tf import export  # pylint: disable=g-import-not-at-top
    version_dir = export.resolve_version_dir(model)
    facts = export.read_model_facts(version_dir)
    if facts.get("precision", "float32") != "float32":
      raise ModelError(f"{version_dir}: TFLite conversion needs a float32 export, this one is "
                       f"{facts.get('precision')}")
    module.loaded = tf.saved_model.load(version_dir)
    channels = int(facts.get("arch", {}).get("in_channels", 3))
    upscale_float = module.loaded.signatures["upscale_float"]

    def call(images):
      return {"upscaled": upscale_float(images=images)["upscaled"]}
  else:
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
                     calibration_dir: Optional[str] = None) -> bytes:
  """Converts a generator (or one of our SavedModel exports) to a TFLite flatbuffer.

  Args:
    model: A Keras `RRDBNet`, or a SavedModel version/base directory written by
      `esrgan_tf.export`.
    input_size: (H, W) of the static [1, H, W, 3] input.
    quantize: "none" (float32), "fp16" (float16 weights, dequantized at load: the GPU delegate
      runs them in fp16), "dynamic" (int8 weights, dynamic-range quantization: no calibration
      data) or "int8" (calibrated int8 with float islands, `esrgan_tf.tflite_int8`).
    calibration_dir: int8 only: folder of calibration images (default the bundled photos).

  Returns:
    The .tflite bytes.

  Raises:
    ValueError: Bad arguments.
    ModelError: A SavedModel that is not ours, or not float32.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if quantize not in QUANTIZE_MODES:
    raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
  if len(input_size) != 2 or any(int(s) < 1 for s in input_size):
    raise ValueError(f"input_size must be (height, width) of positive ints, got {input_size!r}")
  with tempfile.TemporaryDirectory(prefix="esrgan_tflite_") as tmp:
    key = _static_saved_model(model, tmp, input_size)
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
      from esrgan_tf import tflite_int8  # pylint: disable=g-import-not-at-top
      tiles = tflite_int8.calibration_tiles(
          calibration_dir or tflite_int8.default_calibration_dir(), input_size)
      return tflite_int8.quantize_int8(converter, tiles)
    if quantize != "none":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
      converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert(model, output_path: str, *, input_size: Sequence[int], quantize: str = "none",
            gpu_check: bool = True, overwrite: bool = False,
            calibration_dir: Optional[str] = None) -> str:
  """Converts and writes a .tflite file atomically (no partial file on any failure).

  Args:
    model: A Keras `RRDBNet`, or one of our SavedModel export directories.
    output_path: The .tflite path.
    input_size: (H, W) of the static input.
    quantize: "none", "fp16", "dynamic" or "int8" (see `convert_to_bytes`).
    gpu_check: Run `check_gpu_compatibility` and refuse to write an incompatible model (not for
      int8, whose files are for CPU/NNAPI/DSP).
    overwrite: Replace an existing file.
    calibration_dir: int8 only: folder of calibration images (default the bundled photos).

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
                          calibration_dir=calibration_dir)
  if gpu_check and quantize in GPU_QUANTIZE_MODES:
    problems = check_gpu_compatibility(data)
    if problems:
      raise GpuIncompatibleError(f"{output_path}: not compatible with the TFLite GPU delegate:\n  "
                                 + "\n  ".join(problems))
  directory = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tflite", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, output_path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return output_path


# --- GPU delegate compatibility ---------------------------------------------------------------

def _schema():
  # The flatbuffer schema reader shipped with ai-edge-litert (already a dependency).
  from ai_edge_litert import schema_py_generated  # pylint: disable=g-import-not-at-top
  return schema_py_generated


class _Op:
  """One operator with the facts the checks need."""

  def __init__(self, schema, model, subgraph, op, index: int, name: str, producers: dict):
    self.schema = schema
    self.producers = producers  # id(tensor) → the _Op writing it (filled for the subgraph).
    self.index = index
    self.name = name
    self.options = op.builtinOptions
    tensors = subgraph.tensors or []
    self.inputs = [tensors[i] if i >= 0 else None for i in (op.inputs if op.inputs is not None
                                                             else [])]
    self.outputs = [tensors[i] for i in (op.outputs if op.outputs is not None else [])]
    self._buffers = model.buffers or []

  def has_data(self, tensor) -> bool:
    if tensor is None or tensor.buffer <= 0 or tensor.buffer >= len(self._buffers):
      return False
    buf = self._buffers[tensor.buffer]
    return (buf.data is not None and len(buf.data) > 0) or buf.size > 0

  def is_const(self, tensor) -> bool:
    """Constant data, or a DEQUANTIZE of a float16 constant: the delegate's FP16 partition
    helper (tensorflow/lite/delegates/utils.cc, FP16GraphPartitionHelper) maps such inputs back
    to the fp16 constant before checking an op, so fp16-weight models count as constant weights."""
    if self.has_data(tensor):
      return True
    producer = self.producers.get(id(tensor))
    return (producer is not None and producer.name == "DEQUANTIZE" and len(producer.inputs) == 1
            and producer.inputs[0] is not None
            and producer.inputs[0].type == self.schema.TensorType.FLOAT16
            and producer.has_data(producer.inputs[0]))

  def runtime_inputs(self) -> list:
    return [t for t in self.inputs if t is not None and not self.is_const(t)]

  def const_inputs(self) -> list:
    return [t for t in self.inputs if t is not None and self.is_const(t)]


def _activation_problem(op: _Op) -> Optional[str]:
  act = getattr(op.options, "fusedActivationFunction", 0) or 0
  if act == op.schema.ActivationFunctionType.SIGN_BIT:
    return "fused activation SIGN_BIT is not supported"
  return None


def _io_problem(op: _Op, runtime_inputs: int, outputs: int = 1) -> Optional[str]:
  n = len(op.runtime_inputs())
  if n != runtime_inputs:
    return f"expected {runtime_inputs} runtime (non-constant) input(s), has {n}"
  if len(op.outputs) != outputs:
    return f"expected {outputs} output(s), has {len(op.outputs)}"
  return None


def _broadcast_problem(a, b) -> Optional[str]:
  """ADD/MUL broadcasting with TFLite's 'enhanced broadcast' (numpy rules) for ranks > 1."""
  da, db = list(a.shape if a.shape is not None else []), list(b.shape if b.shape is not None
                                                              else [])
  if len(da) > 1 and len(db) > 1 and len(da) != len(db):
    for x, y in zip(reversed(da), reversed(db)):
      if x != y and x != 1 and y != 1:
        return f"cannot broadcast {da} with {db}"
  return None


def _check_conv(op: _Op) -> Optional[str]:
  if len(op.runtime_inputs()) > 2:
    return f"expected 1 or 2 runtime inputs, has {len(op.runtime_inputs())}"
  if len(op.outputs) != 1:
    return f"expected 1 output, has {len(op.outputs)}"
  o = op.options
  if o is None:
    return "missing Conv2DOptions"
  if min(o.strideH, o.strideW) <= 0 or min(o.dilationHFactor, o.dilationWFactor) <= 0:
    return "non-positive strides or dilation"
  if len(op.inputs) < 2 or op.inputs[1] is None:
    return "no filter tensor"
  weights = op.inputs[1]
  if not op.is_const(weights):
    producer = op.producers.get(id(weights))
    if producer is None or producer.name != "DEQUANTIZE" or not producer.const_inputs():
      return (f"filter tensor {_tensor_name(weights)!r} is not constant (nor a DEQUANTIZE of a "
              "constant)")
  return _activation_problem(op)


def _check_depth_to_space(op: _Op) -> Optional[str]:
  problem = _io_problem(op, 1)
  if problem:
    return problem
  if op.options is None or op.options.blockSize <= 1:
    return "block_size must be > 1"
  return None


def _check_resize(op: _Op) -> Optional[str]:
  problem = _io_problem(op, 1)
  if problem:
    return problem + " (the output size must be a constant)"
  if op.name == "RESIZE_BILINEAR" and op.options is not None and (
      op.options.alignCorners and op.options.halfPixelCenters):
    return "align_corners and half_pixel_centers both set"
  return None


def _check_concat(op: _Op) -> Optional[str]:
  if op.options is None:
    return "missing ConcatenationOptions"
  return _activation_problem(op)


def _check_add(op: _Op) -> Optional[str]:
  if len(op.inputs) != 2:
    return "ADD requires two input tensors"
  return _broadcast_problem(*op.inputs) or _activation_problem(op)


def _check_mul(op: _Op) -> Optional[str]:
  if len(op.inputs) != 2:
    return "MUL requires two input tensors"
  a, b = (list(t.shape if t.shape is not None else []) for t in op.inputs)
  if len(a) == len(b):
    if any(x < y for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b)):
      return f"neither input covers the other in all dimensions ({a} vs {b})"
  else:
    problem = _broadcast_problem(*op.inputs)
    if problem:
      return problem
  return _activation_problem(op)


def _check_binary(op: _Op) -> Optional[str]:
  runtime, const = len(op.runtime_inputs()), len(op.const_inputs())
  if (runtime, const) not in ((2, 0), (1, 1)) or len(op.outputs) != 1:
    return f"needs 1 or 2 runtime operands and one output (has {runtime} runtime, {const} const)"
  return _activation_problem(op)


def _check_unary(op: _Op) -> Optional[str]:
  if op.const_inputs():
    return "constant input"
  return _io_problem(op, 1)


def _check_dequantize(op: _Op) -> Optional[str]:
  if len(op.inputs) != 1 or len(op.outputs) != 1:
    return "expected one input and one output"
  if op.inputs[0].type == op.schema.TensorType.INT16:
    return "int16 dequantization is not supported"
  return None


def _check_pad(op: _Op) -> Optional[str]:
  if op.name == "MIRROR_PAD" and (op.options is None
                                  or op.options.mode != op.schema.MirrorPadMode.REFLECT):
    return "only REFLECT mirror padding is supported"
  problem = _io_problem(op, 1)
  if problem:
    return problem
  pads = op.inputs[1] if len(op.inputs) > 1 else None
  shape = list(pads.shape) if pads is not None and pads.shape is not None else []
  if len(shape) != 2 or shape[0] not in (3, 4) or shape[1] != 2:
    return f"paddings must be 4x2 or 3x2, got {shape}"
  return None


def _check_strided_slice(op: _Op) -> Optional[str]:
  o = op.options
  if o is None:
    return "missing StridedSliceOptions"
  if o.ellipsisMask or o.newAxisMask or o.shrinkAxisMask:
    return "ellipsis/new_axis/shrink_axis masks are not supported"
  if len(op.inputs) < 4:
    return "STRIDED_SLICE requires 4 inputs"
  rank = len(op.inputs[0].shape if op.inputs[0].shape is not None else [])
  if rank not in (3, 4):
    return f"only 3-D or 4-D inputs are supported, got {rank}-D"
  return None


def _check_pool(op: _Op) -> Optional[str]:
  problem = _io_problem(op, 1)
  if problem:
    return problem
  o = op.options
  if o is None or min(o.filterHeight, o.filterWidth, o.strideH, o.strideW) <= 0:
    return "non-positive kernel or stride"
  return _activation_problem(op)


def _always_ok(op: _Op) -> Optional[str]:
  return None


def _check_single_runtime(op: _Op) -> Optional[str]:
  return _io_problem(op, 1)


# Builtin operators the GPU delegate runs (gpu_compatibility.cc `CheckGpuDelegateCompatibility`),
# restricted to the ones an image-to-image CNN can contain, with their constraints.
_GPU_CHECKS = {
    "CONV_2D": _check_conv,
    "DEPTHWISE_CONV_2D": _check_conv,
    "TRANSPOSE_CONV": _always_ok,
    "DEPTH_TO_SPACE": _check_depth_to_space,
    "SPACE_TO_DEPTH": _check_depth_to_space,
    "RESIZE_NEAREST_NEIGHBOR": _check_resize,
    "RESIZE_BILINEAR": _check_resize,
    "CONCATENATION": _check_concat,
    "ADD": _check_add,
    "MUL": _check_mul,
    "SUB": _check_binary, "DIV": _check_binary, "MAXIMUM": _check_binary,
    "MINIMUM": _check_binary, "POW": _check_binary, "SQUARED_DIFFERENCE": _check_binary,
    "LEAKY_RELU": _always_ok, "RELU": _always_ok, "RELU6": _always_ok, "PRELU": _always_ok,
    "RELU_N1_TO_1": _always_ok,
    "LOGISTIC": _check_unary, "TANH": _check_unary, "ABS": _check_unary, "EXP": _check_unary,
    "SQRT": _check_unary, "RSQRT": _check_unary, "SQUARE": _check_unary, "ELU": _check_unary,
    "NEG": _check_unary, "FLOOR": _check_unary, "CEIL": _check_unary, "GELU": _check_unary,
    "HARD_SWISH": _check_single_runtime,
    "DEQUANTIZE": _check_dequantize,
    "QUANTIZE": _check_single_runtime,
    "PAD": _check_pad, "PADV2": _check_pad, "MIRROR_PAD": _check_pad,
    "RESHAPE": _check_single_runtime,
    "TRANSPOSE": _check_single_runtime,
    "TILE": _check_single_runtime,
    "STRIDED_SLICE": _check_strided_slice,
    "AVERAGE_POOL_2D": _check_pool, "MAX_POOL_2D": _check_pool,
    "SPLIT": _always_ok, "SPLIT_V": _always_ok, "PACK": _always_ok,
}


def _tensor_name(tensor) -> str:
  name = tensor.name
  return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _op_names(schema) -> dict[int, str]:
  return {v: k for k, v in vars(schema.BuiltinOperator).items()
          if not k.startswith("_") and isinstance(v, int)}


def check_gpu_compatibility(model: Union[str, bytes, os.PathLike]) -> list[str]:
  """Checks that every operator and tensor of a .tflite model suits the TFLite GPU delegate.

  Args:
    model: A .tflite path, or its bytes.

  Returns:
    The problems, one string each naming the subgraph, operator index, operator name and the
    reason (or the tensor and its dynamic shape); empty if compatible.

  Raises:
    ModelError: The file cannot be read or is not a TFLite flatbuffer.
  """
  if isinstance(model, (bytes, bytearray)):
    data, where = bytes(model), "TFLite model"
  else:
    where = os.fspath(model)
    try:
      with open(where, "rb") as f:
        data = f.read()
    except OSError as e:
      raise ModelError(f"{where}: cannot read ({e})") from e
  schema = _schema()
  # A flatbuffer's file identifier sits at bytes 4..8; TFLite's is "TFL3".
  if len(data) < 8 or data[4:8] != b"TFL3":
    raise ModelError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
  try:
    parsed = schema.ModelT.InitFromPackedBuf(data, 0)
  except Exception as e:  # flatbuffers raises assorted errors for corrupt buffers.
    raise ModelError(f"{where}: corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from e

  names = _op_names(schema)
  codes = parsed.operatorCodes or []
  problems = []
  for g, subgraph in enumerate(parsed.subgraphs or []):
    for tensor in subgraph.tensors or []:
      signature = tensor.shapeSignature
      if signature is not None and any(int(d) < 0 for d in signature):
        problems.append(f"subgraph {g}: tensor {_tensor_name(tensor)!r} has a dynamic shape "
                        f"{[int(d) for d in signature]} (the GPU delegate needs static shapes)")
    ops = []
    producers = {}
    for i, op in enumerate(subgraph.operators or []):
      code = codes[op.opcodeIndex]
      builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
      if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        name = "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
      else:
        name = names.get(builtin, f"BUILTIN_{builtin}")
      wrapped = _Op(schema, parsed, subgraph, op, i, name, producers)
      ops.append(wrapped)
      for t in wrapped.outputs:
        producers[id(t)] = wrapped
    for op in ops:
      check = _GPU_CHECKS.get(op.name)
      reason = "not supported by the GPU delegate" if check is None else check(op)
      if reason:
        problems.append(f"subgraph {g}: op #{op.index} {op.name}: {reason}")
  return problems


# --- running -------------------------------------------------------------------------------------

def load_tflite_upscaler(path: str, num_threads: Optional[int] = None) -> Upscaler:
  """A .tflite model as an `Upscaler` on LiteRT's interpreter (XNNPACK delegate by default).

  The model takes one static size: `input_size` tells the tiler to use exactly that tile size and
  `max_batch` is 1. A smaller image (one smaller than a tile) is padded by edge replication to the
  static size and the output cropped; a larger one is an error (tile it).

  Args:
    path: The .tflite file.
    num_threads: Interpreter threads (None: LiteRT's default).

  Returns:
    An `Upscaler`.

  Raises:
    ModelError: Missing file, not loadable, or not an image-to-image model with a static
      [1, H, W, C] float32 input.
  """
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ModelError(f"{path}: no such file")
  try:
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
  except (ValueError, RuntimeError) as e:
    raise ModelError(f"{path}: not a loadable TFLite model ({e})") from e
  inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
  if len(inputs) != 1 or len(outputs) != 1:
    raise ModelError(f"{path}: expected one input and one output, has {len(inputs)} and "
                     f"{len(outputs)}")
  inp, out = inputs[0], outputs[0]
  in_shape, out_shape = [int(d) for d in inp["shape"]], [int(d) for d in out["shape"]]
  signature = [int(d) for d in inp.get("shape_signature", inp["shape"])]
  if (len(in_shape) != 4 or in_shape[0] != 1 or any(d < 0 for d in signature)
      or inp["dtype"] != np.float32 or out["dtype"] != np.float32 or len(out_shape) != 4):
    raise ModelError(f"{path}: expected a static float32 [1, H, W, C] → [1, sH, sW, C] model, "
                     f"got {signature} {np.dtype(inp['dtype']).name} → {out_shape} "
                     f"{np.dtype(out['dtype']).name}")
  _, h, w, c = in_shape
  scale = out_shape[1] // h
  if scale < 1 or out_shape[1] != scale * h or out_shape[2] != scale * w:
    raise ModelError(f"{path}: output {out_shape} is not an integer multiple of input {in_shape}")
  lock = threading.Lock()  # one interpreter: invocations must not interleave.

  def run_one(image: np.ndarray) -> np.ndarray:
    ih, iw = image.shape[:2]
    if ih > h or iw > w or image.shape[2] != c:
      raise ValueError(f"{path}: takes images of at most {h}×{w}×{c}, got "
                       f"{'×'.join(map(str, image.shape))}; tile larger images")
    padded = np.pad(image, ((0, h - ih), (0, w - iw), (0, 0)), mode="edge")
    with lock:
      interpreter.set_tensor(inp["index"], padded[np.newaxis].astype(np.float32))
      interpreter.invoke()
      result = interpreter.get_tensor(out["index"])[0]
    return result[:ih * scale, :iw * scale].copy()

  def fn(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4:
      raise ValueError(f"{path}: expected a [N, H, W, C] batch, got shape {batch.shape}")
    return np.stack([run_one(image) for image in batch])

  info = {"precision": "tflite", "input_size": (h, w), "num_threads": num_threads}
  return Upscaler(fn=fn, scale=scale, name=path, input_size=(h, w), max_batch=1, info=info)
