"""The `Engine` interface: what tiling, the file pipeline and evaluation run.

The bottom layer of model handling: every model kind (Keras, SavedModel, TFLite, a TF Serving
endpoint) is wrapped into an `Engine`, a plain callable on float32 NHWC batches in [0, 1].
Which kind a `--model` spec is, and how to load it, is `inference.resolver`'s job; this module
imports none of the formats.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional
import weakref

import numpy as np

from esrgan_tf.core.errors import ModelError


@dataclasses.dataclass
class Engine:
  """A super-resolution model as a callable on host arrays.

  Attributes:
    fn: float32 [N, H, W, C] in [0, 1] → float32 [N, s·H, s·W, C] (unclipped).
    scale: The upscaling factor.
    name: What was loaded (for messages).
    input_size: (H, W) if the model only takes one input size (TFLite), else None; tiling then
      uses exactly this tile size.
    max_batch: Largest batch the model takes (TFLite: 1), or None.
    info: Free-form facts (architecture config, source, precision).
  """

  fn: Callable[[np.ndarray], np.ndarray]
  scale: int
  name: str
  input_size: Optional[tuple[int, int]] = None
  max_batch: Optional[int] = None
  info: dict = dataclasses.field(default_factory=dict)

  def __call__(self, batch: np.ndarray) -> np.ndarray:
    return self.fn(batch)


# Keras model → its traced forward function (float32). Weak keys: the entry goes with the model;
# the function holds only a weak reference back to it.
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _trace(model, channels: int, *, weak: bool):
  """model(x) cast to float32, as one tf.function for any batch and size (traced once)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model_ref = weakref.ref(model) if weak else (lambda: model)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
  def run(x):
    return tf.cast(model_ref()(x), tf.float32)

  return run


def keras_engine(model, name: str = "keras model", precision: str = "float32") -> Engine:
  """Wraps a Keras generator in one `tf.function` traced once for any batch and size.

  Args:
    model: An `RRDBNet` (or any Keras model with a `scale` attribute).
    name: For messages.
    precision: "float32", or "bfloat16" to compute in bfloat16 (inputs/outputs stay float32;
      exactly what is asked: CLI flags go through `esrgan_tf.core.precision.resolve_precision`).

  Returns:
    An `Engine`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.core.precision import INFERENCE_PRECISIONS  # pylint: disable=g-import-not-at-top

  if precision not in INFERENCE_PRECISIONS:
    raise ModelError(f"{name}: precision must be float32 or bfloat16, got {precision!r}")
  channels = getattr(model, "in_channels", 3)

  if precision == "bfloat16":
    # A bfloat16 copy of the weights as they are now: traced afresh for each call of ours.
    run = _trace(model.with_dtype("bfloat16"), channels, weak=False)
  else:
    # One traced function per model, reused by every wrapper of it: evaluation during training
    # and scripts wrap the same model again and again, and a tf.function created per wrapper
    # would retrace each time (TF warns after 5). It reads the model's live variables, so it
    # stays right when training updates them.
    run = _TRACED.get(model)
    if run is None:
      run = _TRACED[model] = _trace(model, channels, weak=True)

  def fn(batch):
    return run(tf.convert_to_tensor(batch, tf.float32)).numpy()

  fn.model = model  # the wrapper keeps its model alive (the cache holds it weakly).

  info = {"precision": precision}
  if hasattr(model, "arch_config"):
    info["arch"] = model.arch_config()
  return Engine(fn=fn, scale=int(model.scale), name=name, info=info)
