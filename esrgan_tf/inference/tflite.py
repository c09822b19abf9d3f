"""A .tflite file as an `Engine` on LiteRT's interpreter (conversion: `esrgan_tf.export.tflite`)."""

from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np

from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference.engine import Engine


def tflite_engine(path: str, num_threads: Optional[int] = None) -> Engine:
  """A .tflite model as an `Engine` on LiteRT's interpreter (XNNPACK delegate by default).

  The model takes one static size: `input_size` tells the tiler to use exactly that tile size and
  `max_batch` is 1. A smaller image (one smaller than a tile) is padded by edge replication to the
  static size and the output cropped; a larger one is an error (tile it).

  Args:
    path: The .tflite file.
    num_threads: Interpreter threads (None: LiteRT's default).

  Returns:
    An `Engine`.

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
  return Engine(fn=fn, scale=scale, name=path, input_size=(h, w), max_batch=1, info=info)
