"""MATLAB-exact bicubic `imresize`, in TensorFlow ops (usable inside `tf.data`).

Super-resolution benchmarks (Set5, Set14, DIV2K, ...) make their LR images with MATLAB's
`imresize(hr, 1/s, 'bicubic')`, which *antialiases* when downscaling: the Keys cubic kernel is
stretched by 1/s (so ×1/4 uses 16 taps, not 4). `tf.image.resize(method="bicubic")` uses a
different kernel (Keys a=-0.75, no stretching unless `antialias=True`, and different edge
handling), and a model trained or evaluated on its LR loses several dB against MATLAB-made LR
(krasserm/super-resolution#19). `tf.image.resize(..., antialias=True)` uses the same stretched
kernel and agrees in the interior, but not within ~2 kernel widths of the borders, where it
renormalises the truncated kernel instead of mirroring the image (up to 4.5 levels of 255 on
samples/val/chelsea.png ×1/4). This module reproduces MATLAB's definition:

  * kernel: Keys cubic with a = -0.5 (MATLAB `imresize.m`, `cubic()`), i.e.
      1.5|x|³ - 2.5|x|² + 1          for |x| <= 1,
      -0.5|x|³ + 2.5|x|² - 4|x| + 2  for 1 < |x| <= 2, else 0;
  * downscaling (scale < 1) with antialiasing: h(x) = scale · cubic(scale · x), width 4 / scale;
  * output pixel j (1-based) maps to input coordinate u = j / scale + 0.5 · (1 - 1 / scale);
    it takes the P = ceil(width) + 2 input pixels left = floor(u - width / 2) + [0, P),
    weighted by h(u - i) and normalised to sum 1;
  * out-of-range indices are mirrored with the edge pixel repeated ("symmetric"):
    MATLAB's `aux = [1:n, n:-1:1]; idx = aux(mod(idx - 1, 2n) + 1)`;
  * output length ceil(n · scale); rows first, then columns (MATLAB sorts the dimensions by
    scale, a stable sort, so equal scales resize dimension 1 first; BasicSR does the same).

The weights and indices are computed per axis with TF ops from the (possibly dynamic) input
length, then applied as one `tf.gather` along the axis and a weighted sum of the P taps.
"""

from __future__ import annotations

import math

import tensorflow as tf

# Keys (1981) cubic convolution parameter used by MATLAB's imresize.
_KEYS_A = -0.5
# Support of the cubic kernel before antialiasing stretches it.
_KERNEL_WIDTH = 4.0


def cubic(x: tf.Tensor) -> tf.Tensor:
  """Keys cubic kernel with a = -0.5 (MATLAB `imresize` bicubic).

  Args:
    x: Distances (any float tensor).

  Returns:
    Kernel values, same shape and dtype.
  """
  a = _KEYS_A
  ax = tf.abs(x)
  ax2 = ax * ax
  ax3 = ax2 * ax
  inner = (a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0
  outer = a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a
  zeros = tf.zeros_like(ax)
  return tf.where(ax <= 1.0, inner, tf.where(ax <= 2.0, outer, zeros))


def output_length(in_length: int, scale: float) -> int:
  """MATLAB's output size for a scale factor: ceil(in_length · scale)."""
  return int(math.ceil(in_length * scale))


def _num_taps(scale: float, antialiasing: bool) -> int:
  width = _KERNEL_WIDTH / scale if (scale < 1 and antialiasing) else _KERNEL_WIDTH
  return int(math.ceil(width)) + 2


def weights_and_indices(in_length, scale: float, antialiasing: bool = True):
  """The per-axis contribution table of MATLAB's `imresize` (`contributions()`).

  Args:
    in_length: Input length along the axis (Python int or scalar int tensor).
    scale: Scale factor (> 0).
    antialiasing: Stretch the kernel when downscaling (MATLAB's default).

  Returns:
    (weights float64 [out_length, P], indices int32 [out_length, P]) with 0-based indices
    already mirrored into [0, in_length).
  """
  scale = float(scale)
  aa = scale < 1 and antialiasing
  width = _KERNEL_WIDTH / scale if aa else _KERNEL_WIDTH
  taps = _num_taps(scale, antialiasing)
  n = tf.cast(in_length, tf.int64)
  out_len = tf.cast(tf.math.ceil(tf.cast(n, tf.float64) * scale), tf.int64)
  x = tf.range(1, out_len + 1, dtype=tf.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = tf.floor(u - width / 2.0)
  idx = left[:, None] + tf.range(taps, dtype=tf.float64)[None, :]
  distance = u[:, None] - idx
  if aa:
    w = scale * cubic(distance * scale)
  else:
    w = cubic(distance)
  w = w / tf.reduce_sum(w, axis=1, keepdims=True)
  # Symmetric mirroring (edge pixel repeated), MATLAB: aux = [1:n, n:-1:1].
  zero_based = tf.cast(idx, tf.int64) - 1
  period = 2 * n
  m = tf.math.floormod(zero_based, period)
  mirrored = tf.where(m < n, m, period - 1 - m)
  return w, tf.cast(mirrored, tf.int32)


def _resize_axis(x: tf.Tensor, axis: int, scale: float, antialiasing: bool) -> tf.Tensor:
  """Resizes `x` along `axis` (counted from the end: -3 = rows, -2 = columns)."""
  rank = x.shape.rank
  axis = rank + axis
  w, idx = weights_and_indices(tf.shape(x)[axis], scale, antialiasing)
  w = tf.cast(w, x.dtype)
  gathered = tf.gather(x, idx, axis=axis)  # [..., out, P, ...]
  letters = "abcdefgh"[:rank + 1]
  src = letters
  dst = letters[:axis + 1] + letters[axis + 2:]
  weights = letters[axis] + letters[axis + 1]
  return tf.einsum(f"{src},{weights}->{dst}", gathered, w)


def imresize(image, scale: float, antialiasing: bool = True) -> tf.Tensor:
  """Resizes like MATLAB's `imresize(image, scale, 'bicubic')`, without rounding or clipping.

  Args:
    image: [H, W, C] or [N, H, W, C] (any real dtype; computed in float32, or float64 if the
      input is float64). Values are taken as they are (e.g. [0, 1] or [0, 255]).
    scale: One factor for both axes, e.g. 0.25 to make ×4 LR, 4 to upscale (bicubic baseline).
    antialiasing: MATLAB's 'Antialiasing' option (default true; only matters when downscaling).

  Returns:
    Float tensor [..., ceil(H·scale), ceil(W·scale), C]. Not clipped or rounded (MATLAB rounds
    and saturates only for integer inputs; see `quantize`).

  Raises:
    ValueError: Scale not positive, or the rank is not 3 or 4.
  """
  scale = float(scale)
  if not scale > 0:
    raise ValueError(f"imresize: scale must be positive, got {scale}")
  x = tf.convert_to_tensor(image)
  if x.shape.rank not in (3, 4):
    raise ValueError(f"imresize: expected [H, W, C] or [N, H, W, C], got shape {x.shape}")
  if x.dtype != tf.float64:
    x = tf.cast(x, tf.float32)
  if scale == 1.0:
    return tf.identity(x)
  x = _resize_axis(x, -3, scale, antialiasing)
  return _resize_axis(x, -2, scale, antialiasing)


def quantize(image: tf.Tensor, max_value: float = 1.0) -> tf.Tensor:
  """Rounds to 8-bit levels and clips, as MATLAB's `imresize` returns for uint8 images.

  Args:
    image: Float tensor on the [0, max_value] scale.
    max_value: 1.0 for [0, 1] images, 255.0 for [0, 255].

  Returns:
    The tensor with values in {0, 1/255, ..., 1} · max_value.
  """
  # MATLAB's uint8 conversion rounds halves away from zero (tf.round would round to even).
  levels = tf.floor(tf.clip_by_value(image / max_value * 255.0, 0.0, 255.0) + 0.5)
  return levels * (max_value / 255.0)
