"""The TFLite GPU-delegate compatibility check (used by `tflite.convert`).

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
from typing import Optional, Union

from esrgan_tf.core.errors import ModelError


class GpuIncompatibleError(ValueError):
  """The converted model would not run fully on the TFLite GPU delegate; lists the problems."""


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


def _dims(tensor) -> list[int]:
  # Python ints: the parsed shape is a numpy int32 array, whose items print as np.int32(8).
  return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def _broadcast_problem(a, b) -> Optional[str]:
  """ADD/MUL broadcasting with TFLite's 'enhanced broadcast' (numpy rules) for ranks > 1."""
  da, db = _dims(a), _dims(b)
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
  a, b = (_dims(t) for t in op.inputs)
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
  shape = _dims(pads) if pads is not None else []
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


def _check_prelu(op: _Op) -> Optional[str]:
  """PRELU: TFLite's gpu/common/model_builder.cc PReLUOperationParser reads alpha as a CONSTANT
  tensor, either "linear" (every dimension but the last is 1: [C], [1, 1, C]) with C equal to the
  input's channels, or an [1, H, W, C] tensor equal to the input's H, W, C; one runtime input
  and one output (gpu_compatibility.cc). Keras' PReLU(shared_axes=[1, 2]) gives [1, 1, C]."""
  if len(op.inputs) != 2 or op.inputs[1] is None:
    return "expected an input and an alpha tensor"
  alpha = op.inputs[1]
  if not op.is_const(alpha):  # Before the input count, which a runtime alpha also breaks.
    return f"alpha {_tensor_name(alpha)!r} is not constant"
  problem = _io_problem(op, 1)
  if problem:
    return problem
  shape = [int(d) for d in (alpha.shape if alpha.shape is not None else [])]
  data = [int(d) for d in (op.inputs[0].shape if op.inputs[0].shape is not None else [])]
  if len(data) != 4:
    return f"input must be 4-D NHWC, got {data}"
  linear = len(shape) >= 1 and all(d == 1 for d in shape[:-1])
  if linear and shape[-1] == data[3]:
    return None
  if len(shape) == 4 and shape[0] == 1 and shape[1:] == data[1:]:
    return None
  return (f"alpha shape {shape} is neither [.., 1, C={data[3]}] nor the input's "
          f"[1, {data[1]}, {data[2]}, {data[3]}]")


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
    "LEAKY_RELU": _always_ok, "RELU": _always_ok, "RELU6": _always_ok, "PRELU": _check_prelu,
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
