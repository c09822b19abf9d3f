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


# Keras model → its traced forward function (float32); multi-head models: → {head or blend: its
# function} in _TRACED_OUTPUTS. Weak keys: the entry goes with the model; the functions hold only
# a weak reference back to it.
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_TRACED_OUTPUTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _forward(model, output):
  """model → the function computing `output`: the model itself (single-output generators), one
  head of a multi-head model (`head_fn`), or a blend of its heads (`blend_fn`)."""
  if output is None:
    return model
  if isinstance(output, str):
    return model.head_fn(output)
  return model.blend_fn(output)


def _trace(model, channels: int, output, *, weak: bool):
  """The model's output cast to float32, as one tf.function for any batch and size (traced
  once)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model_ref = weakref.ref(model) if weak else (lambda: model)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)])
  def run(x):
    return tf.cast(_forward(model_ref(), output)(x), tf.float32)

  return run


def _select_output(model, name: str, head, blend):
  """(output key for `_forward`, scale, info entries) of a head, a blend or the single output.

  Raises:
    ModelError: --head/--blend_heads on a single-output model, both given, or names/weights the
      model rejects.
  """
  heads = getattr(model, "head_names", None)
  if heads is None:
    if head is not None or blend is not None:
      raise ModelError(f"{name}: not a multi-head model, so it takes no "
                       f"{'head' if head is not None else 'head blend'}")
    return None, int(model.scale), {}
  if head is not None and blend is not None:
    raise ModelError(f"{name}: give a head or a head blend, not both")
  info = {"heads": {h: int(s) for h, s in model.scales.items()},
          "default_head": model.default_head}
  try:
    if blend is not None:
      scale = model.check_blend(blend)
      return blend, int(scale), {**info, "blend_heads": blend.describe()}
    head = model.default_head if head is None else head
    return head, int(model.head_spec(head).scale), {**info, "head": head}
  except ValueError as e:
    raise ModelError(f"{name}: {e}") from None


def keras_engine(model, name: str = "keras model", precision: str = "float32", *,
                   head: Optional[str] = None, blend=None) -> Engine:
  """Wraps a Keras generator in one `tf.function` traced once for any batch and size.

  Args:
    model: An `RRDBNet` (or any Keras model with a `scale` attribute), or a `MultiHeadRRDBNet`.
    name: For messages.
    precision: "float32", or "bfloat16" to compute in bfloat16 (inputs/outputs stay float32;
      exactly what is asked: CLI flags go through `esrgan_tf.core.precision.resolve_precision`).
    head: Multi-head models: the head to run (default: the model's default head); only the
      trunk and that head are computed.
    blend: Multi-head models: a `models.multihead.HeadBlend` of heads of one scale, run as
      Σ weight · head image from one trunk pass (instead of `head`).

  Returns:
    An `Engine`.

  Raises:
    ModelError: Bad precision, or a head/blend the model does not have.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from esrgan_tf.core.precision import INFERENCE_PRECISIONS  # pylint: disable=g-import-not-at-top

  if precision not in INFERENCE_PRECISIONS:
    raise ModelError(f"{name}: precision must be float32 or bfloat16, got {precision!r}")
  channels = getattr(model, "in_channels", 3)
  output, scale, head_info = _select_output(model, name, head, blend)

  if precision == "bfloat16":
    # A bfloat16 copy of the weights as they are now: traced afresh for each call of ours.
    run = _trace(model.with_dtype("bfloat16"), channels, output, weak=False)
  else:
    # One traced function per model and output, reused by every wrapper of it: evaluation during
    # training and scripts wrap the same model again and again, and a tf.function created per
    # wrapper would retrace each time (TF warns after 5). It reads the model's live variables,
    # so it stays right when training updates them.
    if output is None:
      run = _TRACED.get(model)
      if run is None:
        run = _TRACED[model] = _trace(model, channels, output, weak=True)
    else:
      traced = _TRACED_OUTPUTS.setdefault(model, {})
      run = traced.get(output)
      if run is None:
        run = traced[output] = _trace(model, channels, output, weak=True)

  def fn(batch):
    return run(tf.convert_to_tensor(batch, tf.float32)).numpy()

  fn.model = model  # the wrapper keeps its model alive (the cache holds it weakly).

  info = {"precision": precision, **head_info}
  if hasattr(model, "arch_config"):
    info["arch"] = model.arch_config()
  return Engine(fn=fn, scale=scale, name=name, info=info)
