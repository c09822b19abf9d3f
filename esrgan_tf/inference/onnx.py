"""ONNX Runtime (CPU) as an engine: `--model=x.onnx`.

Our own exports (`esrgan_tf.export.onnx`) carry their scale and layout in the metadata. Other
super-resolution .onnx files are read from their input: float32 or float16 [N, C, H, W] (e.g.
Real-ESRGAN's scripts/pytorch2onnx.py, fixed at 1×3×64×64), or uint8 [N, H, W, C]; their scale
comes from static shapes or, for dynamic ones, from one call on a small input.

A model with dynamic H and W takes any size (`input_size` None); a static one behaves like a
TFLite model: tiles of exactly its size, smaller images edge-padded and the output cropped. The
model itself has no pixel limit: the callers bound the input (esrgan-upscale's --max_pixels).

onnxruntime is imported when a model is loaded (the `onnx` extra), never at import time.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import onnx as onnx_export
from esrgan_tf.images import pixels
from esrgan_tf.inference.engine import Engine

# Input element types (onnxruntime's names) of the layouts we run.
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_UINT8_TYPE = "tensor(uint8)"
# Side of the probe input that measures a dynamic foreign model's scale.
_PROBE_SIDE = 8


def _static(dim) -> Optional[int]:
  """A dimension of onnxruntime's shape as an int, or None when symbolic/unknown."""
  return int(dim) if isinstance(dim, int) and dim > 0 else None


def _layout(path: str, facts: dict, inp) -> str:
  """"nchw_float" or "nhwc_uint8": from our metadata, else from the input's type and shape."""
  if facts:
    return facts["layout"]
  shape = list(inp.shape)
  if len(shape) == 4 and inp.type in _FLOAT_TYPES and _static(shape[1]):
    return "nchw_float"
  if len(shape) == 4 and inp.type == _UINT8_TYPE and _static(shape[3]):
    return "nhwc_uint8"
  raise ModelError(f"{path}: expected an image model with a float [N, C, H, W] or uint8 "
                   f"[N, H, W, C] input, got {inp.type} {shape}")


def _session(path: str, num_threads: Optional[int]):
  try:
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ModelError(f"{path}: running .onnx models needs onnxruntime (pip install "
                     "'esrgan_tf[onnx]')") from None
  options = ort.SessionOptions()
  options.intra_op_num_threads = int(num_threads or 0)  # 0: onnxruntime's default (one per core)
  options.inter_op_num_threads = 1  # a sequential graph: no parallel branches to run
  # onnxruntime's pool threads spin after each run by default, taking the cores from whatever
  # runs next (tile blending, image encoding, other engines): measured on 2 cores, ncnn after an
  # ONNX call took 2 s instead of ~0.1 s at 32². Idle threads sleep instead.
  options.add_session_config_entry("session.intra_op.allow_spinning", "0")
  try:
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
  except Exception as e:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
    raise ModelError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e


class _Runner:
  """Runs the session on float32 NHWC batches in [0, 1], converting to the model's layout."""

  def __init__(self, path: str, session, layout: str):
    self.path, self.session, self.layout = path, session, layout
    inp = session.get_inputs()[0]
    self.input_name, self.output_name = inp.name, session.get_outputs()[0].name
    shape = list(inp.shape)
    if layout == "nchw_float":
      self.dtype = _FLOAT_TYPES[inp.type]
      self.batch, self.channels, h, w = (_static(d) for d in shape)
    else:
      self.dtype = np.uint8
      self.batch, h, w, self.channels = (_static(d) for d in shape)
    if (h is None) != (w is None):
      raise ModelError(f"{path}: input height and width must both be static or both dynamic, "
                       f"got {shape}")
    self.size = (h, w) if h else None
    if self.batch not in (None, 1):
      raise ModelError(f"{path}: static batch size {self.batch}; only 1 or dynamic are run")

  def run(self, batch: np.ndarray) -> np.ndarray:
    """[N, H, W, C] float32 → the model's raw output in NHWC float32."""
    if self.layout == "nchw_float":
      feed = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), self.dtype)
    else:
      feed = pixels.from_float(batch, 8)
    out = self.session.run([self.output_name], {self.input_name: feed})[0]
    if out.ndim != 4:
      raise ValueError(f"{self.path}: output has shape {out.shape}, expected 4 dimensions")
    if self.layout == "nchw_float":
      return out.transpose(0, 2, 3, 1).astype(np.float32)
    return pixels.to_float(out)


def _scale(path: str, facts: dict, runner: _Runner) -> int:
  if facts:
    return facts["scale"]
  side = runner.size or (_PROBE_SIDE, _PROBE_SIDE)
  out = runner.run(np.zeros((1, *side, runner.channels), np.float32))
  scale = out.shape[1] // side[0]
  if scale < 1 or out.shape[1:3] != (scale * side[0], scale * side[1]):
    raise ModelError(f"{path}: output {out.shape[1]}×{out.shape[2]} for a {side[0]}×{side[1]} "
                     "input is not an integer upscaling")
  return scale


def onnx_engine(path: str, num_threads: Optional[int] = None) -> Engine:
  """A .onnx model as an `Engine` on ONNX Runtime's CPU execution provider.

  Args:
    path: The .onnx file.
    num_threads: Intra-op threads (None: onnxruntime's default, one per physical core).

  Returns:
    An `Engine`; `input_size` and `max_batch` are None for dynamic models (ours), else the
    static size and 1.

  Raises:
    ModelError: Missing file, onnxruntime not installed, not loadable, or not an image model of
      a layout described in the module docstring.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ModelError(f"{path}: no such file")
  session = _session(path, num_threads)
  inputs, outputs = session.get_inputs(), session.get_outputs()
  if len(inputs) != 1 or len(outputs) != 1:
    raise ModelError(f"{path}: expected one input and one output, has {len(inputs)} and "
                     f"{len(outputs)}")
  try:
    facts = onnx_export.facts_from_metadata(session.get_modelmeta().custom_metadata_map)
  except ValueError as e:
    raise ModelError(f"{path}: {e}") from e
  runner = _Runner(path, session, _layout(path, facts, inputs[0]))
  scale = _scale(path, facts, runner)

  def run_static(image: np.ndarray) -> np.ndarray:
    h, w = runner.size
    ih, iw = image.shape[:2]
    if ih > h or iw > w:
      raise ValueError(f"{path}: takes images of at most {h}×{w}, got {ih}×{iw}; tile larger "
                       "images")
    padded = np.pad(image, ((0, h - ih), (0, w - iw), (0, 0)), mode="edge")
    return runner.run(padded[np.newaxis])[0, :ih * scale, :iw * scale]

  def fn(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4 or batch.shape[3] != runner.channels:
      raise ValueError(f"{path}: expected a [N, H, W, {runner.channels}] batch, got shape "
                       f"{batch.shape}")
    if runner.size or runner.batch == 1:
      run_one = run_static if runner.size else (lambda image: runner.run(image[np.newaxis])[0])
      out = np.stack([run_one(image) for image in batch])
    else:
      out = runner.run(batch)
    expected = (batch.shape[0], batch.shape[1] * scale, batch.shape[2] * scale)
    if out.shape[:3] != expected:
      raise ValueError(f"{path}: output shape {out.shape} for input {batch.shape}, expected "
                       f"{expected} (×{scale})")
    return out

  fn.session = session
  info = {"precision": f"onnx {facts.get('weights', runner.dtype.__name__)}",
          "layout": runner.layout, "num_threads": num_threads, "input_size": runner.size,
          "arch": facts.get("arch", {}), "source": facts.get("source", ""),
          "licence": facts.get("licence", ""), "max_pixels": None}
  return Engine(fn=fn, scale=scale, name=path, input_size=runner.size,
                  max_batch=1 if runner.size or runner.batch == 1 else None, info=info)
