"""One negative fixture per rule of esrgan_tf.export.gpu_delegate.check_gpu_compatibility.

Each negative model violates exactly one rule and the test asserts the whole problem list (so
the model trips that rule and no other); each op family also has a passing fixture that differs
from its negatives only in the violated field. Models the converter can produce come from
`tf.lite.TFLiteConverter`; models it cannot (it folds constants, validates options, refuses
SIGN_BIT activations, ...) are written directly with the flatbuffer schema the checker reads
(ai_edge_litert.schema_py_generated, object API).
"""

from __future__ import annotations

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf

from esrgan_tf.export import gpu_delegate, tflite

S = gpu_delegate._schema()  # pylint: disable=protected-access
X = [1, 8, 8, 3]  # the runtime image tensor of the hand-written models.


# --- Hand-written flatbuffers -------------------------------------------------------------------

def _opts(kind: str, **fields):
  """(BuiltinOptions enum, <kind>T object) with `fields` set, e.g. _opts("Conv2DOptions")."""
  obj = getattr(S, kind + "T")()
  for key, value in fields.items():
    assert hasattr(obj, key), (kind, key)  # a typo must not silently leave the default.
    setattr(obj, key, value)
  return getattr(S.BuiltinOptions, kind), obj


def _flatbuffer(tensors: dict, ops: list) -> bytes:
  """A one-subgraph TFLite model.

  Args:
    tensors: name → (shape, TensorType name, constant?) or (shape, type, constant, signature).
    ops: (operator name, input names (None → -1), output names, _opts(...) or None) each.

  Returns:
    The packed model with the TFL3 file identifier.
  """
  model = S.ModelT()
  model.version = 3
  model.buffers = [S.BufferT()]  # buffer 0: the empty sentinel (TFLite convention).
  subgraph = S.SubGraphT()
  subgraph.tensors, index = [], {}
  for name, spec in tensors.items():
    shape, dtype, const = spec[:3]
    tensor = S.TensorT()
    tensor.name, tensor.shape, tensor.type = name, list(shape), getattr(S.TensorType, dtype)
    if len(spec) > 3:
      tensor.shapeSignature = list(spec[3])
    buffer = S.BufferT()
    if const:
      itemsize = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "INT8": 1, "INT16": 2}[dtype]
      buffer.data = [0] * (int(np.prod(shape)) * itemsize)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    index[name] = len(subgraph.tensors)
    subgraph.tensors.append(tensor)
  codes, subgraph.operators = [], []
  for name, inputs, outputs, options in ops:
    if name not in codes:
      codes.append(name)
    op = S.OperatorT()
    op.opcodeIndex = codes.index(name)
    op.inputs = [-1 if i is None else index[i] for i in inputs]
    op.outputs = [index[o] for o in outputs]
    if options is not None:
      op.builtinOptionsType, op.builtinOptions = options
    subgraph.operators.append(op)
  produced = {o for _, _, outs, _ in ops for o in outs}
  subgraph.inputs = [i for n, i in index.items() if not tensors[n][2] and n not in produced]
  subgraph.outputs = [index[o] for o in ops[-1][2]]
  model.subgraphs = [subgraph]
  model.operatorCodes = []
  for name in codes:
    code = S.OperatorCodeT()
    if name.startswith("CUSTOM:"):
      code.builtinCode = S.BuiltinOperator.CUSTOM
      code.customCode = name[len("CUSTOM:"):]
    else:
      code.builtinCode = getattr(S.BuiltinOperator, name)
    # deprecated_builtin_code is an int8: 127 (PLACEHOLDER_FOR_GREATER_OP_CODES) above it.
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    model.operatorCodes.append(code)
  builder = flatbuffers.Builder(1024)
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  return bytes(builder.Output())


def _problems(tensors: dict, ops: list) -> list[str]:
  return gpu_delegate.check_gpu_compatibility(_flatbuffer(tensors, ops))


def _op(index: int, name: str, reason: str) -> str:
  return f"subgraph 0: op #{index} {name}: {reason}"


def _conv_opts(**fields):
  base = dict(strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1)
  return _opts("Conv2DOptions", **{**base, **fields})


def _conv(opts=None, filter_const=True, bias_const=True, outputs=("y",), inputs=("x", "w", "b"),
          op="CONV_2D"):
  tensors = {"x": (X, "FLOAT32", False), "w": ([4, 3, 3, 3], "FLOAT32", filter_const),
             "b": ([4], "FLOAT32", bias_const), "y": ([1, 8, 8, 4], "FLOAT32", False),
             "y2": ([1, 8, 8, 4], "FLOAT32", False)}
  return _problems(tensors, [(op, list(inputs), list(outputs),
                              _conv_opts() if opts is None else opts)])


def test_flatbuffer_helper_writes_a_model_litert_runs():
  # The hand-written models are real TFLite files: the interpreter loads and runs one (a
  # conv with zero weights and bias gives zeros), so the checker sees what a converter writes.
  data = _flatbuffer({"x": (X, "FLOAT32", False), "w": ([4, 3, 3, 3], "FLOAT32", True),
                      "b": ([4], "FLOAT32", True), "y": ([1, 8, 8, 4], "FLOAT32", False)},
                     [("CONV_2D", ["x", "w", "b"], ["y"], _conv_opts(padding=S.Padding.SAME))])
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=data)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ones(X, np.float32))
  interpreter.invoke()
  out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  assert out.shape == (1, 8, 8, 4) and not out.any()
  assert gpu_delegate.check_gpu_compatibility(data) == []


# --- Converter-built models ---------------------------------------------------------------------

def _convert(fn, *specs) -> bytes:
  f = tf.function(fn, input_signature=list(specs))
  return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()


IMAGE = tf.TensorSpec(X, tf.float32)
DYNAMIC_OUT = "subgraph 0: tensor 'Identity' has a dynamic shape"

# name → (function, input specs, expected problems: exact strings, or prefixes ending in "…").
CONVERTED = {
    "conv_runtime_filter": (
        lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), [IMAGE, tf.TensorSpec([3, 3, 3, 4])],
        # op #0 is the TRANSPOSE of the HWIO filter to OHWI (one runtime input: legal).
        [_op(1, "CONV_2D", "filter tensor 'Conv2D2' is not constant (nor a DEQUANTIZE of a "
             "constant)")]),
    "resize_runtime_size": (
        lambda x, s: tf.image.resize(x, s, "nearest"), [IMAGE, tf.TensorSpec([2], tf.int32)],
        [DYNAMIC_OUT + " [1, -1, -1, 3] (the GPU delegate needs static shapes)",
         _op(0, "RESIZE_NEAREST_NEIGHBOR", "expected 1 runtime (non-constant) input(s), has 2 "
             "(the output size must be a constant)")]),
    "pad_runtime_paddings": (
        lambda x, p: tf.pad(x, p), [IMAGE, tf.TensorSpec([4, 2], tf.int32)],
        [DYNAMIC_OUT + " [-1, -1, -1, -1] (the GPU delegate needs static shapes)",
         _op(0, "PAD", "expected 1 runtime (non-constant) input(s), has 2")]),
    "pad_rank2": (
        lambda x: tf.pad(x, [[1, 1], [1, 1]]), [tf.TensorSpec([8, 8])],
        [_op(0, "PAD", "paddings must be 4x2 or 3x2, got [2, 2]")]),
    "mirror_pad_symmetric": (
        lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), [IMAGE],
        [_op(0, "MIRROR_PAD", "only REFLECT mirror padding is supported")]),
    "strided_slice_shrink_axis": (
        lambda x: x[:, 0] * 2, [IMAGE],
        [_op(0, "STRIDED_SLICE", "ellipsis/new_axis/shrink_axis masks are not supported")]),
    "strided_slice_rank2": (
        lambda x: x[1:5:2] * 2, [tf.TensorSpec([8, 8])],
        [_op(0, "STRIDED_SLICE", "only 3-D or 4-D inputs are supported, got 2-D")]),
    "reshape_runtime_shape": (
        lambda x, s: tf.reshape(x, s), [IMAGE, tf.TensorSpec([2], tf.int32)],
        [DYNAMIC_OUT + " [-1, -1] (the GPU delegate needs static shapes)",
         _op(0, "RESHAPE", "expected 1 runtime (non-constant) input(s), has 2")]),
    "mul_neither_covers": (
        lambda a, b: a * b, [tf.TensorSpec([1, 4, 1, 3]), tf.TensorSpec([1, 1, 4, 3])],
        [_op(0, "MUL", "neither input covers the other in all dimensions ([1, 4, 1, 3] vs "
             "[1, 1, 4, 3])")]),
    "unsupported_cumsum": (
        lambda x: tf.math.cumsum(x, axis=1), [IMAGE],
        [_op(0, "CUMSUM", "not supported by the GPU delegate")]),
    "dynamic_shape": (
        lambda x: x * 2.0, [tf.TensorSpec([1, None, 8, 3])],
        ["subgraph 0: tensor 'x' has a dynamic shape [1, -1, 8, 3] (the GPU delegate needs "
         "static shapes)",
         DYNAMIC_OUT + " [1, -1, 8, 3] (the GPU delegate needs static shapes)"]),
    # Passing counterparts: constant filter, size, paddings; REFLECT; a plain 4-D slice.
    "ok_conv_resize_pad_slice": (
        lambda x: tf.nn.relu(tf.nn.conv2d(
            tf.pad(tf.image.resize(x[:, 1:7], [12, 16], "bilinear"),
                   [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT"),
            tf.ones([3, 3, 3, 4]), 1, "VALID")), [IMAGE], []),
}


@pytest.fixture(scope="module")
def converted():
  return {name: _convert(fn, *specs) for name, (fn, specs, _) in CONVERTED.items()}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted_model(converted, name):
  assert gpu_delegate.check_gpu_compatibility(converted[name]) == CONVERTED[name][2]


def test_converted_passing_model_has_the_ops_checked(converted):
  parsed = S.ModelT.InitFromPackedBuf(converted["ok_conv_resize_pad_slice"], 0)
  names = gpu_delegate._op_names(S)  # pylint: disable=protected-access
  ops = {names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in parsed.operatorCodes}
  assert {"CONV_2D", "RESIZE_BILINEAR", "MIRROR_PAD", "STRIDED_SLICE"} <= ops, ops


def test_prelu_from_keras():
  shared = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.PReLU(shared_axes=[1, 2])])
  data = tflite.convert_to_bytes(shared, input_size=(8, 8))
  assert gpu_delegate.check_gpu_compatibility(data) == []
  # keras PReLU without shared_axes: alpha [H, W, C], neither linear nor [1, H, W, C].
  full = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.PReLU()])
  assert gpu_delegate.check_gpu_compatibility(tflite.convert_to_bytes(full, input_size=(8, 8))) == [
      _op(0, "PRELU", "alpha shape [8, 8, 3] is neither [.., 1, C=3] nor the input's "
          "[1, 8, 8, 3]")]


# --- CONV_2D / DEPTHWISE_CONV_2D ----------------------------------------------------------------

@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_conv_ok_and_each_rule(op):
  assert _conv(op=op) == []
  assert _conv(op=op, filter_const=False) == [_op(
      0, op, "filter tensor 'w' is not constant (nor a DEQUANTIZE of a constant)")]
  assert _conv(op=op, filter_const=False, bias_const=False) == [_op(
      0, op, "expected 1 or 2 runtime inputs, has 3")]
  assert _conv(op=op, outputs=("y", "y2")) == [_op(0, op, "expected 1 output, has 2")]
  assert _conv(op=op, inputs=("x",)) == [_op(0, op, "no filter tensor")]
  assert _conv(op=op, inputs=("x", None, "b")) == [_op(0, op, "no filter tensor")]
  for field in ("strideH", "strideW", "dilationHFactor", "dilationWFactor"):
    assert _conv(op=op, opts=_conv_opts(**{field: 0})) == [_op(
        0, op, "non-positive strides or dilation")], field
  assert _conv(op=op, opts=_conv_opts(
      fusedActivationFunction=S.ActivationFunctionType.SIGN_BIT)) == [_op(
          0, op, "fused activation SIGN_BIT is not supported")]
  assert _conv(op=op, opts=_conv_opts(
      fusedActivationFunction=S.ActivationFunctionType.RELU6)) == []


def test_conv_missing_options():
  tensors = {"x": (X, "FLOAT32", False), "w": ([4, 3, 3, 3], "FLOAT32", True),
             "y": ([1, 8, 8, 4], "FLOAT32", False)}
  assert _problems(tensors, [("CONV_2D", ["x", "w"], ["y"], None)]) == [
      _op(0, "CONV_2D", "missing Conv2DOptions")]


@pytest.mark.parametrize("source,const,expected", [
    ("FLOAT16", True, []),   # fp16 weights (quantize="fp16").
    ("INT8", True, []),      # dynamic-range int8 weights.
    ("FLOAT16", False, [_op(1, "CONV_2D", "filter tensor 'w' is not constant (nor a DEQUANTIZE "
                                          "of a constant)")]),
])
def test_conv_filter_through_dequantize(source, const, expected):
  tensors = {"x": (X, "FLOAT32", False), "q": ([4, 3, 3, 3], source, const),
             "w": ([4, 3, 3, 3], "FLOAT32", False), "y": ([1, 8, 8, 4], "FLOAT32", False)}
  assert _problems(tensors, [("DEQUANTIZE", ["q"], ["w"], None),
                             ("CONV_2D", ["x", "w"], ["y"], _conv_opts())]) == expected


# --- DEQUANTIZE ---------------------------------------------------------------------------------

def test_dequantize_rules():
  tensors = {"q": ([4], "INT16", True), "q2": ([4], "INT8", True), "w": ([4], "FLOAT32", False)}
  assert _problems(tensors, [("DEQUANTIZE", ["q2"], ["w"], None)]) == []
  assert _problems(tensors, [("DEQUANTIZE", ["q"], ["w"], None)]) == [
      _op(0, "DEQUANTIZE", "int16 dequantization is not supported")]
  assert _problems(tensors, [("DEQUANTIZE", ["q2", "q2"], ["w"], None)]) == [
      _op(0, "DEQUANTIZE", "expected one input and one output")]


# --- DEPTH_TO_SPACE / SPACE_TO_DEPTH ------------------------------------------------------------

@pytest.mark.parametrize("op,kind", [("DEPTH_TO_SPACE", "DepthToSpaceOptions"),
                                     ("SPACE_TO_DEPTH", "SpaceToDepthOptions")])
def test_depth_to_space_rules(op, kind):
  tensors = {"x": ([1, 4, 4, 12], "FLOAT32", False), "c": ([1, 4, 4, 12], "FLOAT32", True),
             "y": ([1, 8, 8, 3], "FLOAT32", False), "y2": ([1, 8, 8, 3], "FLOAT32", False)}
  assert _problems(tensors, [(op, ["x"], ["y"], _opts(kind, blockSize=2))]) == []
  for block in (1, 0):
    assert _problems(tensors, [(op, ["x"], ["y"], _opts(kind, blockSize=block))]) == [
        _op(0, op, "block_size must be > 1")]
  assert _problems(tensors, [(op, ["x"], ["y"], None)]) == [_op(0, op, "block_size must be > 1")]
  assert _problems(tensors, [(op, ["c"], ["y"], _opts(kind, blockSize=2))]) == [
      _op(0, op, "expected 1 runtime (non-constant) input(s), has 0")]
  assert _problems(tensors, [(op, ["x"], ["y", "y2"], _opts(kind, blockSize=2))]) == [
      _op(0, op, "expected 1 output(s), has 2")]


# --- RESIZE_* -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op,kind", [("RESIZE_BILINEAR", "ResizeBilinearOptions"),
                                     ("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions")])
def test_resize_rules(op, kind):
  tensors = {"x": (X, "FLOAT32", False), "size": ([2], "INT32", True),
             "rsize": ([2], "INT32", False), "y": ([1, 16, 16, 3], "FLOAT32", False)}
  both = _opts(kind, alignCorners=True, halfPixelCenters=True)
  assert _problems(tensors, [(op, ["x", "size"], ["y"], _opts(kind, halfPixelCenters=True))]) == []
  assert _problems(tensors, [(op, ["x", "rsize"], ["y"], _opts(kind))]) == [_op(
      0, op, "expected 1 runtime (non-constant) input(s), has 2 (the output size must be a "
      "constant)")]
  # Both flags: refused for bilinear (gpu_compatibility.cc); nearest-neighbour has no such rule.
  expected = [_op(0, op, "align_corners and half_pixel_centers both set")] if (
      op == "RESIZE_BILINEAR") else []
  assert _problems(tensors, [(op, ["x", "size"], ["y"], both)]) == expected


# --- CONCATENATION / ADD / MUL / binary ---------------------------------------------------------

SIGN_BIT = S.ActivationFunctionType.SIGN_BIT


def test_concat_rules():
  tensors = {"a": (X, "FLOAT32", False), "b": (X, "FLOAT32", False),
             "y": ([1, 8, 8, 6], "FLOAT32", False)}
  ops = lambda opts: [("CONCATENATION", ["a", "b"], ["y"], opts)]  # noqa: E731
  assert _problems(tensors, ops(_opts("ConcatenationOptions", axis=3))) == []
  assert _problems(tensors, ops(None)) == [_op(0, "CONCATENATION", "missing ConcatenationOptions")]
  assert _problems(tensors, ops(_opts("ConcatenationOptions", axis=3,
                                      fusedActivationFunction=SIGN_BIT))) == [
      _op(0, "CONCATENATION", "fused activation SIGN_BIT is not supported")]


@pytest.mark.parametrize("op,kind", [("ADD", "AddOptions"), ("MUL", "MulOptions")])
def test_add_mul_rules(op, kind):
  tensors = {"a": (X, "FLOAT32", False), "b": (X, "FLOAT32", False),
             "c": ([3], "FLOAT32", True), "hw": ([8, 1, 3], "FLOAT32", True),
             "bad": ([8, 2], "FLOAT32", True), "y": (X, "FLOAT32", False)}
  for other in ("b", "c", "hw"):  # same shape; per-channel; numpy broadcast of a lower rank.
    assert _problems(tensors, [(op, ["a", other], ["y"], _opts(kind))]) == [], other
  assert _problems(tensors, [(op, ["a", "bad"], ["y"], _opts(kind))]) == [
      _op(0, op, "cannot broadcast [1, 8, 8, 3] with [8, 2]")]
  assert _problems(tensors, [(op, ["a"], ["y"], _opts(kind))]) == [
      _op(0, op, f"{op} requires two input tensors")]
  assert _problems(tensors, [(op, ["a", "b"], ["y"], _opts(
      kind, fusedActivationFunction=SIGN_BIT))]) == [
          _op(0, op, "fused activation SIGN_BIT is not supported")]


def test_mul_same_rank_cover_rule():
  tensors = {"a": ([1, 4, 1, 3], "FLOAT32", False), "b": ([1, 1, 4, 3], "FLOAT32", False),
             "c": ([1, 4, 4, 3], "FLOAT32", False), "y": ([1, 4, 4, 3], "FLOAT32", False)}
  assert _problems(tensors, [("MUL", ["c", "a"], ["y"], _opts("MulOptions"))]) == []
  assert _problems(tensors, [("MUL", ["a", "b"], ["y"], _opts("MulOptions"))]) == [_op(
      0, "MUL", "neither input covers the other in all dimensions ([1, 4, 1, 3] vs [1, 1, 4, 3])")]


@pytest.mark.parametrize("op,kind", [
    ("SUB", "SubOptions"), ("DIV", "DivOptions"), ("MAXIMUM", "MaximumMinimumOptions"),
    ("MINIMUM", "MaximumMinimumOptions"), ("POW", "PowOptions"),
    ("SQUARED_DIFFERENCE", "SquaredDifferenceOptions")])
def test_binary_rules(op, kind):
  tensors = {"a": (X, "FLOAT32", False), "b": (X, "FLOAT32", False),
             "c": (X, "FLOAT32", True), "d": (X, "FLOAT32", True),
             "y": (X, "FLOAT32", False), "y2": (X, "FLOAT32", False)}
  for inputs in (["a", "b"], ["a", "c"]):
    assert _problems(tensors, [(op, inputs, ["y"], _opts(kind))]) == [], inputs
  assert _problems(tensors, [(op, ["c", "d"], ["y"], _opts(kind))]) == [_op(
      0, op, "needs 1 or 2 runtime operands and one output (has 0 runtime, 2 const)")]
  assert _problems(tensors, [(op, ["a"], ["y"], _opts(kind))]) == [_op(
      0, op, "needs 1 or 2 runtime operands and one output (has 1 runtime, 0 const)")]
  assert _problems(tensors, [(op, ["a", "b"], ["y", "y2"], _opts(kind))]) == [_op(
      0, op, "needs 1 or 2 runtime operands and one output (has 2 runtime, 0 const)")]
  if hasattr(_opts(kind)[1], "fusedActivationFunction"):  # SUB and DIV carry one.
    assert _problems(tensors, [(op, ["a", "b"], ["y"], _opts(
        kind, fusedActivationFunction=SIGN_BIT))]) == [
            _op(0, op, "fused activation SIGN_BIT is not supported")]


# --- Unary and single-input ops -----------------------------------------------------------------

UNARY = ["LOGISTIC", "TANH", "ABS", "EXP", "SQRT", "RSQRT", "SQUARE", "ELU", "NEG", "FLOOR",
         "CEIL", "GELU"]
SINGLE = ["HARD_SWISH", "QUANTIZE", "RESHAPE", "TRANSPOSE", "TILE"]


@pytest.mark.parametrize("op", UNARY + SINGLE)
def test_unary_and_single_runtime_input_rules(op):
  tensors = {"x": (X, "FLOAT32", False), "x2": (X, "FLOAT32", False),
             "c": (X, "FLOAT32", True), "y": (X, "FLOAT32", False),
             "y2": (X, "FLOAT32", False)}
  assert _problems(tensors, [(op, ["x"], ["y"], None)]) == []
  assert _problems(tensors, [(op, ["x", "x2"], ["y"], None)]) == [
      _op(0, op, "expected 1 runtime (non-constant) input(s), has 2")]
  assert _problems(tensors, [(op, ["x"], ["y", "y2"], None)]) == [
      _op(0, op, "expected 1 output(s), has 2")]
  # A constant operand: refused outright for the element-wise unary ops; a shape/permutation
  # operand (constant second input) is how RESHAPE/TRANSPOSE/TILE are meant to be used.
  if op in UNARY:
    assert _problems(tensors, [(op, ["c"], ["y"], None)]) == [_op(0, op, "constant input")]
  else:
    assert _problems(tensors, [(op, ["x", "c"], ["y"], None)]) == []
    assert _problems(tensors, [(op, ["c"], ["y"], None)]) == [
        _op(0, op, "expected 1 runtime (non-constant) input(s), has 0")]


# --- PAD / PADV2 / MIRROR_PAD -------------------------------------------------------------------

@pytest.mark.parametrize("op", ["PAD", "PADV2", "MIRROR_PAD"])
def test_pad_rules(op):
  tensors = {"x": (X, "FLOAT32", False), "p": ([4, 2], "INT32", True),
             "p3": ([3, 2], "INT32", True), "p5": ([5, 2], "INT32", True),
             "p43": ([4, 3], "INT32", True),
             "rp": ([4, 2], "INT32", False), "y": ([1, 10, 10, 3], "FLOAT32", False)}
  opts = _opts("MirrorPadOptions", mode=S.MirrorPadMode.REFLECT) if op == "MIRROR_PAD" else None
  for pads in ("p", "p3"):
    assert _problems(tensors, [(op, ["x", pads], ["y"], opts)]) == [], pads
  assert _problems(tensors, [(op, ["x", "p5"], ["y"], opts)]) == [
      _op(0, op, "paddings must be 4x2 or 3x2, got [5, 2]")]
  assert _problems(tensors, [(op, ["x", "p43"], ["y"], opts)]) == [
      _op(0, op, "paddings must be 4x2 or 3x2, got [4, 3]")]
  assert _problems(tensors, [(op, ["x", "rp"], ["y"], opts)]) == [
      _op(0, op, "expected 1 runtime (non-constant) input(s), has 2")]
  if op == "MIRROR_PAD":
    for bad in (None, _opts("MirrorPadOptions", mode=S.MirrorPadMode.SYMMETRIC)):
      assert _problems(tensors, [(op, ["x", "p"], ["y"], bad)]) == [
          _op(0, op, "only REFLECT mirror padding is supported")]


# --- STRIDED_SLICE ------------------------------------------------------------------------------

def test_strided_slice_rules():
  tensors = {"x": (X, "FLOAT32", False), "x2": ([8, 8], "FLOAT32", False),
             "x3": ([8, 8, 3], "FLOAT32", False),
             "b": ([4], "INT32", True), "e": ([4], "INT32", True), "s": ([4], "INT32", True),
             "y": ([1, 4, 8, 3], "FLOAT32", False)}
  slice_ = lambda inputs, opts: [("STRIDED_SLICE", inputs, ["y"], opts)]  # noqa: E731
  ok = _opts("StridedSliceOptions")
  assert _problems(tensors, slice_(["x", "b", "e", "s"], ok)) == []
  assert _problems(tensors, slice_(["x3", "b", "e", "s"], ok)) == []  # 3-D HWC is accepted too.
  assert _problems(tensors, slice_(["x", "b", "e", "s"], None)) == [
      _op(0, "STRIDED_SLICE", "missing StridedSliceOptions")]
  for mask in ("ellipsisMask", "newAxisMask", "shrinkAxisMask"):
    assert _problems(tensors, slice_(["x", "b", "e", "s"], _opts(
        "StridedSliceOptions", **{mask: 2}))) == [_op(
            0, "STRIDED_SLICE", "ellipsis/new_axis/shrink_axis masks are not supported")], mask
  assert _problems(tensors, slice_(["x", "b", "e"], ok)) == [
      _op(0, "STRIDED_SLICE", "STRIDED_SLICE requires 4 inputs")]
  assert _problems(tensors, slice_(["x2", "b", "e", "s"], ok)) == [
      _op(0, "STRIDED_SLICE", "only 3-D or 4-D inputs are supported, got 2-D")]


# --- PRELU --------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha,expected", [
    (([3], "FLOAT32", True), None),                # linear [C]
    (([1, 1, 3], "FLOAT32", True), None),          # linear [1, 1, C] (keras shared_axes=[1, 2])
    (([1, 8, 8, 3], "FLOAT32", True), None),       # the input's [1, H, W, C]
    (([1, 1, 3], "FLOAT16", True), "dequantize"),  # fp16 alpha through DEQUANTIZE: constant
    (([1, 1, 3], "FLOAT32", False), "alpha 'alpha' is not constant"),
    (([1, 1, 4], "FLOAT32", True),
     "alpha shape [1, 1, 4] is neither [.., 1, C=3] nor the input's [1, 8, 8, 3]"),
    (([1, 4, 8, 3], "FLOAT32", True),
     "alpha shape [1, 4, 8, 3] is neither [.., 1, C=3] nor the input's [1, 8, 8, 3]"),
    (([8, 8, 3], "FLOAT32", True),
     "alpha shape [8, 8, 3] is neither [.., 1, C=3] nor the input's [1, 8, 8, 3]"),
])
def test_prelu_alpha_rules(alpha, expected):
  tensors = {"x": (X, "FLOAT32", False), "y": (X, "FLOAT32", False)}
  if expected == "dequantize":
    tensors.update(alpha16=alpha, alpha=(alpha[0], "FLOAT32", False))
    ops = [("DEQUANTIZE", ["alpha16"], ["alpha"], None), ("PRELU", ["x", "alpha"], ["y"], None)]
    expected = None
  else:
    tensors["alpha"] = alpha
    ops = [("PRELU", ["x", "alpha"], ["y"], None)]
  want = [] if expected is None else [_op(0, "PRELU", expected)]
  assert _problems(tensors, ops) == want


def test_prelu_structure_rules():
  tensors = {"x": (X, "FLOAT32", False), "c": (X, "FLOAT32", True),
             "a": ([3], "FLOAT32", True), "x2": ([1, 8], "FLOAT32", False),
             "a2": ([8], "FLOAT32", True), "y": (X, "FLOAT32", False),
             "y2": (X, "FLOAT32", False)}
  assert _problems(tensors, [("PRELU", ["x"], ["y"], None)]) == [
      _op(0, "PRELU", "expected an input and an alpha tensor")]
  assert _problems(tensors, [("PRELU", ["x", None], ["y"], None)]) == [
      _op(0, "PRELU", "expected an input and an alpha tensor")]
  assert _problems(tensors, [("PRELU", ["c", "a"], ["y"], None)]) == [
      _op(0, "PRELU", "expected 1 runtime (non-constant) input(s), has 0")]
  assert _problems(tensors, [("PRELU", ["x", "a"], ["y", "y2"], None)]) == [
      _op(0, "PRELU", "expected 1 output(s), has 2")]
  assert _problems(tensors, [("PRELU", ["x2", "a2"], ["y"], None)]) == [
      _op(0, "PRELU", "input must be 4-D NHWC, got [1, 8]")]


# --- AVERAGE_POOL_2D / MAX_POOL_2D --------------------------------------------------------------

@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pool_rules(op):
  tensors = {"x": (X, "FLOAT32", False), "c": (X, "FLOAT32", True),
             "y": ([1, 4, 4, 3], "FLOAT32", False)}
  base = dict(filterHeight=2, filterWidth=2, strideH=2, strideW=2)
  pool = lambda x="x", **f: [(op, [x], ["y"], _opts("Pool2DOptions", **{**base, **f}))]  # noqa
  assert _problems(tensors, pool()) == []
  for field in base:
    assert _problems(tensors, pool(**{field: 0})) == [
        _op(0, op, "non-positive kernel or stride")], field
  assert _problems(tensors, [(op, ["x"], ["y"], None)]) == [
      _op(0, op, "non-positive kernel or stride")]
  assert _problems(tensors, pool(fusedActivationFunction=SIGN_BIT)) == [
      _op(0, op, "fused activation SIGN_BIT is not supported")]
  assert _problems(tensors, pool("c")) == [
      _op(0, op, "expected 1 runtime (non-constant) input(s), has 0")]


# --- Ops without constraints, unsupported ops, dynamic shapes -----------------------------------

@pytest.mark.parametrize("op", ["TRANSPOSE_CONV", "LEAKY_RELU", "RELU", "RELU6", "RELU_N1_TO_1",
                                "SPLIT", "SPLIT_V", "PACK"])
def test_unconstrained_ops_pass(op):
  tensors = {"x": (X, "FLOAT32", False), "y": (X, "FLOAT32", False)}
  assert _problems(tensors, [(op, ["x"], ["y"], None)]) == []


@pytest.mark.parametrize("op", ["SHAPE", "GATHER", "ARG_MAX", "CAST", "SOFTMAX", "CUSTOM:MyOp",
                                "STABLEHLO_ADD"])
def test_unsupported_ops(op):
  # STABLEHLO_ADD's code is > 127: found through builtin_code, not the int8 deprecated one.
  tensors = {"x": (X, "FLOAT32", False), "y": (X, "FLOAT32", False)}
  assert _problems(tensors, [(op, ["x"], ["y"], None)]) == [
      _op(0, op, "not supported by the GPU delegate")]


def test_dynamic_shape_signature_and_problems_in_op_order():
  tensors = {"x": (X, "FLOAT32", False, [1, -1, -1, 3]), "y": (X, "FLOAT32", False),
             "z": (X, "FLOAT32", False)}
  assert _problems(tensors, [("RELU", ["x"], ["y"], None), ("CUMSUM", ["y"], ["z"], None),
                             ("ARG_MAX", ["z"], ["y"], None)]) == [
      "subgraph 0: tensor 'x' has a dynamic shape [1, -1, -1, 3] (the GPU delegate needs static "
      "shapes)",
      _op(1, "CUMSUM", "not supported by the GPU delegate"),
      _op(2, "ARG_MAX", "not supported by the GPU delegate")]
  # A static signature (what a fixed-size conversion writes) is not a problem.
  tensors["x"] = (X, "FLOAT32", False, X)
  assert _problems(tensors, [("RELU", ["x"], ["y"], None)]) == []
