"""How close our fp32 convolutions are to the CPU's limit, and what Winograd would need from TF.

Where does the last fp32 gap to ncnn come from? ncnn computes the 3×3
convolutions of RRDBNet with Winograd transforms (`use_winograd_convolution`, on by default),
which need 2.25× (F(2,3)) to 4× (F(4,3)) fewer multiplies than the direct convolution oneDNN runs
in TF. This module measures the three facts that settle it, in one child process:

* the machine's reachable fp32 rate: a large matmul (oneDNN/Eigen at their best);
* one dense-block convolution of x4plus (192 → 64 channels, 3×3, bias + LeakyReLU) computed the
  way our graph computes it (`tf.nn.conv2d`, fused by Grappler into oneDNN), as GFLOP/s and as a
  share of the matmul rate;
* the same convolution as Winograd F(4,3) built from TF ops (input transform as a depthwise
  convolution, 36 batched matmuls, output transform as one matmul), which is what "Winograd in TF"
  can mean without a custom kernel.

The Winograd matrices are those of Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks" (CVPR 2016), F(4×4, 3×3) with interpolation points 0, ±1, ±2, ∞.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from esrgan_tf.benchmarking import engines
from esrgan_tf.benchmarking import measure as measure_lib

# F(4, 3): B^T (6×6), G (6×3), A^T (4×6), Lavin & Gray 2016, section 4.2.
_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)
_M, _A = 4, 6  # output tile, input tile (m + r − 1)


def winograd_conv3x3(kernel: np.ndarray, bias: np.ndarray):
  """A 'SAME' 3×3 stride-1 convolution + bias + LeakyReLU(0.2) as Winograd F(4,3) in TF ops.

  Args:
    kernel: [3, 3, Cin, Cout] float32 (TF layout).
    bias: [Cout].

  Returns:
    A `tf.function` on a float32 [N, H, W, Cin] tensor → [N, H, W, Cout].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cin, cout = kernel.shape[2], kernel.shape[3]
  # U = G g G^T per (Cin, Cout), flattened over the 6×6 tile: [36, Cin, Cout].
  u = np.einsum("ik,klco,jl->ijco", _G, kernel.astype(np.float64), _G).reshape(_A * _A, cin, cout)
  # V = B^T d B as one depthwise conv (6×6 window, stride 4) with 36 outputs per input channel.
  v_kernel = np.einsum("ik,jl->klij", _BT, _BT).reshape(_A, _A, 1, _A * _A)
  y_matrix = np.einsum("pi,qj->ijpq", _AT, _AT).reshape(_A * _A, _M * _M)  # Y = A^T M A
  u = tf.constant(u, tf.float32)
  v_kernel = tf.constant(np.tile(v_kernel, (1, 1, cin, 1)), tf.float32)
  y_matrix = tf.constant(y_matrix, tf.float32)
  bias = tf.constant(bias, tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, cin], tf.float32)])
  def conv(x):
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    padded = tf.pad(x, [[0, 0], [1, 1 + (-h) % _M], [1, 1 + (-w) % _M], [0, 0]])
    v = tf.nn.depthwise_conv2d(padded, v_kernel, [1, _M, _M, 1], "VALID")
    th, tw = tf.shape(v)[1], tf.shape(v)[2]
    v = tf.transpose(tf.reshape(v, [-1, cin, _A * _A]), [2, 0, 1])  # [36, tiles, Cin]
    m = tf.transpose(tf.matmul(v, u), [1, 2, 0])  # [tiles, Cout, 36]
    y = tf.matmul(tf.reshape(m, [-1, _A * _A]), y_matrix)  # [tiles·Cout, 16]
    y = tf.reshape(y, [n, th, tw, cout, _M, _M])
    y = tf.reshape(tf.transpose(y, [0, 1, 4, 2, 5, 3]), [n, th * _M, tw * _M, cout])
    return tf.nn.leaky_relu(y[:, :h, :w] + bias, 0.2)

  return conv


def direct_conv3x3(kernel: np.ndarray, bias: np.ndarray):
  """The same convolution as our models compute it (Grappler fuses it into one oneDNN conv)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  kernel = tf.constant(kernel, tf.float32)
  bias = tf.constant(bias, tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, kernel.shape[2]], tf.float32)])
  def conv(x):
    return tf.nn.leaky_relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias), 0.2)

  return conv


def job_roofline(job: Mapping[str, Any]) -> dict:
  """Matmul rate, direct conv rate and Winograd-from-TF-ops time (see the module docstring).

  Job keys: size (conv input side, default 64), cin/cout (default 192/64: the last conv of an
  x4plus dense block), matmul (side of the square matmul, default 2048), repeats, intra_op,
  inter_op.

  Returns:
    {"matmul_gflops", "direct_ms", "direct_gflops", "winograd_ms", "winograd_max_abs_error",
     "conv_mflop"}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  engines.set_threads(job)
  size, cin, cout = job.get("size", 64), job.get("cin", 192), job.get("cout", 64)
  side, repeats = job.get("matmul", 2048), job.get("repeats", 20)
  rng = np.random.default_rng(0)
  a = tf.constant(rng.standard_normal((side, side)), tf.float32)
  matmul = tf.function(lambda: tf.matmul(a, a))
  timing = measure_lib.measure(lambda: matmul().numpy(), warmup=2, repeats=max(3, repeats // 4))
  matmul_gflops = 2 * side ** 3 / timing.median / 1e9

  x = tf.constant(rng.uniform(size=(1, size, size, cin)), tf.float32)
  kernel = (rng.standard_normal((3, 3, cin, cout)) * 0.05).astype(np.float32)
  bias = rng.standard_normal(cout).astype(np.float32) * 0.1
  direct, winograd = direct_conv3x3(kernel, bias), winograd_conv3x3(kernel, bias)
  error = float(np.abs(direct(x).numpy() - winograd(x).numpy()).max())
  results = measure_lib.measure_interleaved(
      {"direct": lambda: direct(x).numpy(), "winograd": lambda: winograd(x).numpy()},
      warmup=2, repeats=repeats)
  flops = measure_lib.conv3x3_flops(cin, cout) * size * size
  direct_s, winograd_s = results["direct"][0].median, results["winograd"][0].median
  return {"matmul_gflops": matmul_gflops, "matmul_side": side, "size": size, "cin": cin,
          "cout": cout, "conv_mflop": flops / 1e6, "direct_ms": 1e3 * direct_s,
          "direct_gflops": flops / direct_s / 1e9, "winograd_ms": 1e3 * winograd_s,
          "winograd_max_abs_error": error}
