"""Pixel value conversions: integer images ↔ float32 in [0, 1], with ONE rounding rule.

Every place that turns a model's float output into 8- or 16-bit pixels uses `from_float` (numpy:
files written by `esrgan-upscale`, metrics, tiling into an integer buffer, the serving client) or
`from_float_tf` (inside exported SavedModels), so a SavedModel's uint8 answer equals the PNG
`esrgan-upscale` writes for the same model, bit for bit.

The rule, identical in both: NaN → 0, clip to [0, 1], multiply by 255 (or 65535) in float32,
round half to even. Why half to even:
  * it is what BasicSR measures and saves (`basicsr/utils/img_util.py` `tensor2img`:
    `(img_np * 255.0).round()`, numpy's round is half to even), so our PSNRs compare with theirs;
  * it is TensorFlow's `tf.round` and numpy's `np.rint`, the exact rounding of the float32 value
    in one native op inside a graph (also in TFLite); half up as `floor(y + 0.5)` is not exact in
    float32 (0.49999997 + 0.5 rounds to 1.0);
  * and in float32 so that numpy and TF compute the very same product before rounding.
The one other rounding in the package is deliberate: `imresize.quantize` reproduces MATLAB's
uint8 conversion (half away from zero) to recreate MATLAB-made LR images exactly.
"""

from __future__ import annotations

import numpy as np

# Elements converted per step in `from_float`: 4M float32 = 16 MB of temporaries, small next to
# an 8192² RGB output (805 MB in float32).
_CHUNK = 1 << 22


def to_float(array: np.ndarray) -> np.ndarray:
  """uint8 or uint16 array → float32 in [0, 1] (divided by 255 or 65535).

  Raises:
    TypeError: for other dtypes.
  """
  array = np.asarray(array)
  if array.dtype == np.uint8:
    return array.astype(np.float32) / np.float32(255)
  if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # includes big-endian >u2
    return array.astype(np.float32) / np.float32(65535)
  raise TypeError(f"to_float expects uint8 or uint16, got {array.dtype}")


def _peak(bit_depth: int) -> np.float32:
  if bit_depth not in (8, 16):
    raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
  return np.float32(255 if bit_depth == 8 else 65535)


def quantize_inplace(values: np.ndarray, bit_depth: int = 8) -> np.ndarray:
  """The rounding rule applied in place to a float32 array: integer levels 0..255/65535 as floats.

  Args:
    values: float32 array, overwritten.
    bit_depth: 8 or 16.

  Returns:
    `values`.
  """
  peak = _peak(bit_depth)
  np.nan_to_num(values, copy=False, nan=0.0)
  np.clip(values, 0.0, 1.0, out=values)
  values *= peak
  return np.rint(values, out=values)


def from_float(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
  """float in [0, 1] → uint8/uint16 by the module's rule (NaN → 0, clip, ×peak, half to even).

  Args:
    x: Float array (any range).
    bit_depth: 8 or 16.

  Returns:
    uint8 (bit_depth 8) or uint16 (bit_depth 16) array of the same shape.

  Raises:
    ValueError: for another bit depth.
  """
  _peak(bit_depth)
  x = np.asarray(x)
  out = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
  flat_in = x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1, 1)
  flat_out = out.reshape(flat_in.shape)
  rows = max(1, _CHUNK // max(1, flat_in.shape[1]))
  for start in range(0, flat_in.shape[0], rows):  # bounded float32 temporaries
    chunk = flat_in[start:start + rows].astype(np.float32)  # always a copy
    flat_out[start:start + rows] = quantize_inplace(chunk, bit_depth)
  return out


def integer_dtype(bit_depth: int) -> type:
  """np.uint8 for 8 bits, np.uint16 for 16."""
  _peak(bit_depth)
  return np.uint8 if bit_depth == 8 else np.uint16


def join_planes(color: np.ndarray, alpha: np.ndarray | None, bit_depth: int) -> np.ndarray:
  """HxWxC colour (+ HxW alpha) → one uint8/uint16 HxWx(C+1) array, plane group by plane group.

  Args:
    color: Float in [0, 1] (quantized by `from_float`), or already of `integer_dtype(bit_depth)`
      (used as is: with no alpha, `color` itself is returned).
    alpha: Float HxW in [0, 1], or None.
    bit_depth: 8 or 16.
  """
  dtype = integer_dtype(bit_depth)
  quantized = color.dtype == dtype
  if quantized and alpha is None:
    return color
  out = np.empty(color.shape[:2] + (color.shape[-1] + (alpha is not None),), dtype)
  out[..., :color.shape[-1]] = color if quantized else from_float(color, bit_depth)
  if alpha is not None:
    out[..., -1] = from_float(alpha, bit_depth)
  return out


def from_float_tf(x, bit_depth: int = 8):
  """`from_float` as TensorFlow ops (for exported graphs): same rule, same float32 product.

  Args:
    x: A float tensor (float32 or bfloat16/float16, computed in float32).
    bit_depth: 8 or 16.

  Returns:
    A uint8 or uint16 tensor.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # numpy users need no TF.

  peak = float(_peak(bit_depth))
  x = tf.cast(x, tf.float32)
  x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
  levels = tf.round(tf.clip_by_value(x, 0.0, 1.0) * peak)
  return tf.cast(levels, tf.uint8 if bit_depth == 8 else tf.uint16)
