"""ONNX export of a generator (tf2onnx), in the layout ONNX super-resolution tools expect.

Layouts of the written model (N, H and W dynamic; C the generator's channels, 3 for RGB):

  nchw_float (default)  input  "input":  float32 [N, C, H, W] in [0, 1]
                        output "output": float32 [N, C, sH, sW], unclipped
  nhwc_uint8            input  "input":  uint8 [N, H, W, C]
                        output "output": uint8 [N, sH, sW, C]

nchw_float is the layout of Real-ESRGAN's scripts/pytorch2onnx.py (a torch NCHW model in [0, 1];
that script fixes the size at 1×3×64×64 and names neither tensor, so torch numbers them):
chaiNNer, ONNX Runtime samples and traiNNer-redux's exports (which always name them "input" and
"output") take it as is. nhwc_uint8 is for tools that feed decoded pixels: ÷255 in the graph,
and out the package's one rounding rule (`esrgan_tf.images.pixels`: clip, ×255, round half to even).

Weights: "float32", or "float16" storage: the convolution weights and biases are stored as
float16, each followed by a Cast to float32 (ONNX Runtime folds the casts when it loads the
model), so the file is half the size and the arithmetic stays float32, like TFLite's fp16
weights. (tf2onnx folds the residual scaling 0.2 into the kernel of each dense block's last
conv, so those kernels are rounded after the scaling.)

Model facts go into the ONNX `metadata_props` (strings; see `model_facts`): format and format
version, scale, generator class and architecture (JSON), layout, weights, source, licence, and
the esrgan_tf / TensorFlow / tf2onnx versions. `facts_from_metadata` reads them back.

The model has NO pixel limit: the SavedModel's in-graph `max_pixels` check is an Assert, which
tf2onnx drops, so an ONNX model runs whatever size it is given. Callers bound the input size
(esrgan-upscale's --max_pixels applies to every engine, ONNX included).

Conversion notes (tf2onnx 1.17, measured):
  * The NCHW transposes are written around the Keras call; tf2onnx's transpose optimizer merges
    them with its own around each Conv: no Transpose node is left (the pixel-unshuffle nets keep
    one in their padding branch).
  * Nearest resizing: tf2onnx writes Resize with coordinate_transformation_mode
    "tf_half_pixel_for_nn" for TF2's (half-pixel) nearest resize, a value of Resize-11 that the
    opset 13+ Resize no longer lists (ONNX Runtime warns at every load; other runtimes may
    refuse it). Our nets resize by integer factors s only (each ×2 stage, Compact's ×upscale),
    where floor((o + 0.5) / s) = floor(o / s): "asymmetric" with nearest_mode "floor", which is
    also what torch writes for F.interpolate(mode="nearest").
  * tf2onnx keeps converting past ops it cannot convert (`continue_on_error`), leaving TF op
    names in the graph: every node is checked to be a standard ONNX op, then `onnx.checker`.

tf2onnx, onnx and TensorFlow are imported inside the functions (the `onnx` extra); importing
this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from typing import Mapping

from esrgan_tf.core import fileio

FORMAT_NAME = "esrgan_tf.onnx"
FORMAT_VERSION = 1
INPUT_NAME = "input"
OUTPUT_NAME = "output"
LAYOUTS = ("nchw_float", "nhwc_uint8")
WEIGHT_TYPES = ("float32", "float16")
# Opset 17 (ONNX 1.12, 2022) is what current runtimes all read; tf2onnx 1.17 writes up to 18
# (tf2onnx/constants.py, OPSET_TO_IR_VERSION).
DEFAULT_OPSET = 17
OPSETS = (17, 18)
# Largest finite float16 (IEEE 754 binary16): a weight beyond it cannot be stored as float16.
_FLOAT16_MAX = 65504.0


@dataclasses.dataclass(frozen=True)
class OnnxOptions:
  """What `convert` writes.

  Attributes:
    layout: "nchw_float" or "nhwc_uint8" (see the module docstring).
    weights: "float32" or "float16" (float16 storage, float32 arithmetic).
    opset: ONNX opset, 17 or 18.
    licence: The weights' licence (SPDX identifier) for the metadata; "" = the published-model
      registry's entry when the source file is one of its files, else "unknown".
  """

  layout: str = "nchw_float"
  weights: str = "float32"
  opset: int = DEFAULT_OPSET
  licence: str = ""

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
    if self.weights not in WEIGHT_TYPES:
      raise ValueError(f"weights must be one of {WEIGHT_TYPES}, got {self.weights!r}")
    if self.opset not in OPSETS:
      raise ValueError(f"opset must be one of {OPSETS}, got {self.opset!r}")


def missing_packages() -> list[str]:
  """The packages of the `onnx` extra that the export needs and this Python lacks."""
  return [name for name in ("tf2onnx", "onnx") if importlib.util.find_spec(name) is None]


def default_filename(scale: int, options: OnnxOptions) -> str:
  """`esrgan_x4.onnx`, `esrgan_x4_fp16.onnx`, `esrgan_x4_nhwc_uint8.onnx`, ..."""
  parts = [f"esrgan_x{int(scale)}"]
  if options.layout == "nhwc_uint8":
    parts.append("nhwc_uint8")
  if options.weights == "float16":
    parts.append("fp16")
  return "_".join(parts) + ".onnx"


def published_licence(source: str) -> str:
  """The licence of a published model's file (by file name, `weights.registry`), or "" (also
  for a blend of two models, whose weights carry both licences)."""
  from esrgan_tf.weights import registry  # pylint: disable=g-import-not-at-top
  if "·" in os.fspath(source):
    return ""
  stem = os.path.splitext(os.path.basename(os.fspath(source)))[0]
  entry = registry.REGISTRY.get(stem)
  return entry.licence if entry else ""


# --- conversion ----------------------------------------------------------------------------------

def _forward(generator, layout: str):
  """The generator as a tf.function with the ONNX model's input and output."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.images import pixels  # pylint: disable=g-import-not-at-top

  c = int(generator.in_channels)
  if layout == "nchw_float":
    spec = tf.TensorSpec([None, c, None, None], tf.float32, name=INPUT_NAME)

    def forward(images):
      out = generator(tf.transpose(images, [0, 2, 3, 1]))
      return {OUTPUT_NAME: tf.transpose(tf.cast(out, tf.float32), [0, 3, 1, 2])}
  else:
    spec = tf.TensorSpec([None, None, None, c], tf.uint8, name=INPUT_NAME)

    def forward(images):
      # pixels.to_float's rule: float32 division by 255.
      out = generator(tf.cast(images, tf.float32) / 255.0)
      return {OUTPUT_NAME: pixels.from_float_tf(out, 8)}
  return tf.function(forward, input_signature=[spec])


def _subgraphs(graph):
  """`graph` and every graph nested in its nodes' attributes (If branches, loops)."""
  yield graph
  for node in graph.node:
    for attribute in node.attribute:
      for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
        yield from _subgraphs(sub)


def _fix_nearest_resize(model) -> int:
  """tf_half_pixel_for_nn → asymmetric (see the module docstring); returns the count changed."""
  changed = 0
  for graph in _subgraphs(model.graph):
    for node in graph.node:
      if node.op_type != "Resize":
        continue
      attrs = {a.name: a for a in node.attribute}
      mode = attrs["coordinate_transformation_mode"] if (
          "coordinate_transformation_mode" in attrs) else None
      if mode is not None and mode.s == b"tf_half_pixel_for_nn":
        if attrs.get("mode") is None or attrs["mode"].s != b"nearest" or (
            "nearest_mode" in attrs and attrs["nearest_mode"].s != b"floor"):
          raise ValueError(f"Resize node {node.name}: unexpected attributes for a nearest resize")
        mode.s = b"asymmetric"
        changed += 1
  return changed


def _store_float16(model) -> int:
  """Conv weights and biases → float16 initializers + Cast to float32; returns the count.

  Only the Conv inputs: they are > 99% of the bytes, and every other float constant keeps its
  exact value (tf2onnx's graphs hold float sentinels such as ±1e9 that float16 cannot hold).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from onnx import TensorProto, helper, numpy_helper  # pylint: disable=g-import-not-at-top

  graph = model.graph
  conv_inputs = {name for node in graph.node if node.op_type == "Conv"
                 for name in node.input[1:3]}
  kept, casts = [], []
  for tensor in graph.initializer:
    if tensor.data_type != TensorProto.FLOAT or tensor.name not in conv_inputs:
      kept.append(tensor)
      continue
    values = numpy_helper.to_array(tensor)
    if values.size and np.abs(values).max() > _FLOAT16_MAX:
      raise ValueError(f"Conv weights {tensor.name}: values beyond the float16 range "
                       f"(max |w| {np.abs(values).max():g}); export with float32 weights")
    half = numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}__float16")
    kept.append(half)
    casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                  name=f"{tensor.name}__to_float32"))
  del graph.initializer[:]
  graph.initializer.extend(kept)
  nodes = casts + list(graph.node)  # casts first: the graph stays topologically sorted.
  del graph.node[:]
  graph.node.extend(nodes)
  return len(casts)


def _name_dimensions(model) -> None:
  """Readable names for the dynamic dimensions (tf2onnx writes unk__N)."""
  io_names = ((model.graph.input[0], "height", "width"),
              (model.graph.output[0], "out_height", "out_width"))
  for value, height, width in io_names:
    dims = value.type.tensor_type.shape.dim
    nchw = len(dims) == 4 and dims[1].HasField("dim_value")
    names = (("batch", None, height, width) if nchw else ("batch", height, width, None))
    for dim, name in zip(dims, names):
      if name and not dim.HasField("dim_value"):
        dim.dim_param = name


def _check_standard_ops(model, opset: int) -> None:
  import onnx  # pylint: disable=g-import-not-at-top

  unknown = sorted({f"{node.domain or 'ai.onnx'}:{node.op_type}"
                    for graph in _subgraphs(model.graph) for node in graph.node
                    if not onnx.defs.has(node.op_type, opset, node.domain)})
  if unknown:
    raise ValueError(f"tf2onnx left operations that are not ONNX opset {opset}: "
                     f"{', '.join(unknown)}")


def model_facts(generator, options: OnnxOptions, source: str = "") -> dict[str, str]:
  """The metadata_props written into the model (all values strings; arch is JSON)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf2onnx  # pylint: disable=g-import-not-at-top

  import esrgan_tf  # pylint: disable=g-import-not-at-top
  arch = generator.arch_config() if hasattr(generator, "arch_config") else {}
  c, s = int(generator.in_channels), int(generator.scale)
  if options.layout == "nchw_float":
    io = (f"float32 [N, {c}, H, W] in [0, 1]", f"float32 [N, {c}, {s}H, {s}W], unclipped")
  else:
    io = (f"uint8 [N, H, W, {c}]", f"uint8 [N, {s}H, {s}W, {c}]")
  return {
      "format": FORMAT_NAME,
      "format_version": str(FORMAT_VERSION),
      "scale": str(s),
      "generator": type(generator).__name__,  # RRDBNet / SRVGGNetCompact: how to read "arch"
      "arch": json.dumps(arch, sort_keys=True),
      "layout": options.layout,
      "weights": options.weights,
      "input": io[0],
      "output": io[1],
      "source": source,
      "licence": options.licence or published_licence(source) or "unknown",
      "esrgan_tf_version": esrgan_tf.__version__,
      "tensorflow_version": tf.__version__,
      "tf2onnx_version": tf2onnx.__version__,
      "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }


def convert_to_proto(generator, options: OnnxOptions = OnnxOptions(), *, source: str = ""):
  """Converts a Keras generator to an ONNX ModelProto.

  Args:
    generator: A built float32 `RRDBNet` or `SRVGGNetCompact`.
    options: Layout, weights, opset, licence.
    source: Where the weights came from (recorded in the metadata).

  Returns:
    An `onnx.ModelProto`, checked.

  Raises:
    ValueError: A generator that is not float32, or a graph tf2onnx could not fully convert.
  """
  import onnx  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf2onnx  # pylint: disable=g-import-not-at-top

  policy = getattr(generator, "dtype_policy", None)
  if policy is not None and policy.name != "float32":
    raise ValueError(f"ONNX export needs a float32 generator, this one computes in "
                     f"{policy.name} (use float16 weights for a smaller file)")
  function = _forward(generator, options.layout)
  with tf.device("/cpu:0"):
    model, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=options.opset)
  _check_standard_ops(model, options.opset)
  _fix_nearest_resize(model)
  if options.weights == "float16":
    _store_float16(model)
  _name_dimensions(model)
  if [v.name for v in model.graph.input] != [INPUT_NAME] or [
      v.name for v in model.graph.output] != [OUTPUT_NAME]:
    raise ValueError(f"unexpected ONNX graph inputs/outputs {[v.name for v in model.graph.input]}"
                     f" → {[v.name for v in model.graph.output]}")
  facts = model_facts(generator, options, source)
  del model.metadata_props[:]
  for key, value in facts.items():
    model.metadata_props.add(key=key, value=value)
  model.doc_string = (f"esrgan_tf {facts['generator']} x{facts['scale']}: {facts['input']} → "
                      f"{facts['output']}")
  onnx.checker.check_model(model, full_check=True)
  return model


def convert(generator, output_path: str, options: OnnxOptions = OnnxOptions(), *,
            source: str = "", overwrite: bool = False) -> str:
  """Converts and writes a .onnx file atomically (no partial file on any failure).

  Args:
    generator: A built float32 `RRDBNet` or `SRVGGNetCompact`.
    output_path: The .onnx path (its directory is created).
    options: Layout, weights, opset, licence.
    source: Where the weights came from (recorded in the metadata).
    overwrite: Replace an existing file.

  Returns:
    `output_path`.

  Raises:
    FileExistsError: `output_path` exists and `overwrite` is False.
    ValueError: See `convert_to_proto`.
  """
  output_path = os.fspath(output_path)
  if os.path.exists(output_path) and not overwrite:
    raise FileExistsError(f"{output_path}: exists (pass overwrite=True, or --overwrite)")
  data = convert_to_proto(generator, options, source=source).SerializeToString()
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  try:
    return fileio.atomic_write(output_path, lambda f: f.write(data), overwrite=overwrite)
  except FileExistsError:  # appeared while converting
    raise FileExistsError(f"{output_path}: exists (pass overwrite=True, or --overwrite)") from None


# --- reading -------------------------------------------------------------------------------------

def facts_from_metadata(props: Mapping[str, str]) -> dict:
  """The model facts of one of our .onnx files from its metadata_props, typed; {} if not ours.

  Args:
    props: key → value (e.g. onnxruntime's `get_modelmeta().custom_metadata_map`).

  Returns:
    The facts with "scale" and "format_version" as int and "arch" as a dict, or {} when the
    metadata does not name our format.

  Raises:
    ValueError: Our format, but a newer format version or unreadable values.
  """
  if props.get("format") != FORMAT_NAME:
    return {}
  facts = dict(props)
  try:
    facts["format_version"] = int(props["format_version"])
    facts["scale"] = int(props["scale"])
    facts["arch"] = json.loads(props.get("arch", "{}"))
  except (KeyError, ValueError) as e:
    raise ValueError(f"unreadable esrgan_tf metadata ({type(e).__name__}: {e})") from e
  if facts["format_version"] > FORMAT_VERSION:
    raise ValueError(f"written by a newer esrgan_tf (format version {facts['format_version']}, "
                     f"this one reads up to {FORMAT_VERSION})")
  if facts["scale"] < 1 or facts.get("layout") not in LAYOUTS:
    raise ValueError(f"bad scale {facts['scale']} or layout {facts.get('layout')!r}")
  return facts
