"""TensorFlow versions of the Real-ESRGAN degradation steps, one image at a time, stateless.

The math is that of `esrgan_tf.data.degradations` (BasicSR's numpy reference); these run inside
`tf.data` maps. Every random function takes a stateless seed (int [2]) and draws its numbers with
`tf.random.stateless_*`, so an element's degradation depends only on its seed. Images are HWC
float32 RGB in [0, 1].

Differences from Real-ESRGAN's GPU batch code (`realesrgan/models/realesrnet_model.py`), where
they are not the same numbers:

* Each example draws its own resize scale and mode (Real-ESRGAN draws one per batch and relies
  on its training-pair pool to mix them).
* Resizing is `tf.image.resize` without antialiasing (as torch's F.interpolate): bilinear is the
  same half-pixel interpolation; bicubic uses Keys' a = −0.5 (torch: −0.75); 'area' averages
  exact pixel overlaps (torch: adaptive average pooling over integer bins). Output sizes follow
  torch: floor(size · scale).
* JPEG is real libjpeg (TF's encoder: 4:2:0, integer quality; decoded with the accurate IDCT),
  where Real-ESRGAN uses DiffJPEG with a continuous quality and no 8-bit rounding.
* Gray Poisson noise uses TF's luma weights (0.2989, 0.587, 0.114), as torchvision's
  rgb_to_grayscale in BasicSR's `generate_poisson_noise_pt`.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
import tensorflow as tf

from esrgan_tf.data import degradations as np_degradations

# Real-ESRGAN's realesrgan_dataset.py: kernel sizes 7, 9, ..., 21 (hard-coded there), padded to 21.
KERNEL_SIZES = tuple(range(7, 22, 2))
MAX_KERNEL_SIZE = 21
RESIZE_MODES = ("area", "bilinear", "bicubic")
# kernel types in the order of esrgan_tf.data.degradations.KERNEL_TYPES: family = index // 2
# (0 Gaussian, 1 generalized Gaussian, 2 plateau), isotropic = index % 2 == 0.
_KERNEL_INDEX = {name: i for i, name in enumerate(np_degradations.KERNEL_TYPES)}


def split(seed, n: int) -> tf.Tensor:
  """n independent stateless seeds [n, 2] from one."""
  return tf.random.experimental.stateless_split(seed, n)


def uniform(seed, low, high, dtype=tf.float32) -> tf.Tensor:
  """A scalar U[low, high)."""
  return tf.random.stateless_uniform([], seed, minval=low, maxval=high, dtype=dtype)


def _f64(value) -> tf.Tensor:
  """float64 tensor; Python numbers go straight to float64 (tf.cast would pass through float32)."""
  if isinstance(value, (tf.Tensor, tf.Variable)):
    return tf.cast(value, tf.float64)
  return tf.constant(value, tf.float64)


def _choice(seed, probs: Sequence[float]) -> tf.Tensor:
  """An index drawn with the (unnormalised) probabilities `probs`, int32 scalar."""
  logits = tf.math.log(tf.constant([list(probs)], tf.float64))
  return tf.cast(tf.random.stateless_categorical(logits, 1, seed)[0, 0], tf.int32)


# --- borders and filtering -----------------------------------------------------------------------

def reflect101_indices(n, before: int, after: int) -> tf.Tensor:
  """Source indices of a reflect-101 padding (cv2.BORDER_REFLECT_101, np.pad 'reflect').

  Unlike tf.pad's REFLECT this allows pads larger than the size (repeated reflections).
  """
  n = tf.convert_to_tensor(n, tf.int32)
  i = tf.range(-before, n + after)
  period = tf.maximum(2 * (n - 1), 1)
  j = tf.math.floormod(i, period)
  return tf.where(j >= n, period - j, j)


def reflect101_pad(img: tf.Tensor, top: int, bottom: int, left: int, right: int) -> tf.Tensor:
  """Pads [H, W, C] (or [N, H, W, C] with axis offsets 1, 2) by reflect-101."""
  axis = img.shape.rank - 3
  shape = tf.shape(img)
  img = tf.gather(img, reflect101_indices(shape[axis], top, bottom), axis=axis)
  return tf.gather(img, reflect101_indices(shape[axis + 1], left, right), axis=axis + 1)


def _conv_channels(img: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """Correlates every channel of [H, W, C] with kernel [kh, kw] (reflect-101 borders)."""
  kh, kw = kernel.shape[0] // 2, kernel.shape[1] // 2
  x = tf.transpose(img, [2, 0, 1])[..., None]  # channels as the batch: one plain conv2d
  x = reflect101_pad(x, kh, kh, kw, kw)
  y = tf.nn.conv2d(x, tf.cast(kernel, img.dtype)[:, :, None, None], 1, "VALID")
  return tf.transpose(y[..., 0], [1, 2, 0])


def filter2d(img: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """BasicSR's filter2D for one image: reflect-101 pad k//2, correlate (no flip) each channel.

  Args:
    img: [H, W, C] float32.
    kernel: [k, k] with k odd and static.

  Returns:
    [H, W, C].
  """
  kernel = tf.convert_to_tensor(kernel)
  if kernel.shape[0] is None or kernel.shape[0] % 2 != 1:
    raise ValueError(f"filter2d needs a static odd kernel size, got {kernel.shape}")
  return _conv_channels(img, kernel)


def gaussian_blur(img: tf.Tensor, ksize: int, sigma: float = 0.0) -> tf.Tensor:
  """cv2.GaussianBlur(img, (ksize, ksize), sigma) with its default reflect-101 borders."""
  g = np_degradations.gaussian_kernel_1d(ksize, sigma).astype(np.float32)
  return _conv_channels(_conv_channels(img, tf.constant(g[:, None])), tf.constant(g[None, :]))


def usm_sharp(img: tf.Tensor, weight: float = 0.5, radius: int = 50,
              threshold: float = 10) -> tf.Tensor:
  """Unsharp masking, as `esrgan_tf.data.degradations.usm_sharp` (BasicSR's usm_sharp/USMSharp)."""
  if radius % 2 == 0:
    radius += 1
  residual = img - gaussian_blur(img, radius)
  mask = tf.cast(tf.abs(residual) * 255.0 > threshold, img.dtype)
  soft_mask = gaussian_blur(mask, radius)
  sharp = tf.clip_by_value(img + weight * residual, 0.0, 1.0)
  return soft_mask * sharp + (1.0 - soft_mask) * img


# --- kernels -------------------------------------------------------------------------------------

def _grid(size: int = MAX_KERNEL_SIZE):
  ax = np.arange(size, dtype=np.float64) - size // 2
  xx, yy = np.meshgrid(ax, ax)
  return tf.constant(xx), tf.constant(yy)


def _support_mask(kernel_size, size: int = MAX_KERNEL_SIZE) -> tf.Tensor:
  """1 inside the centred kernel_size² square of the size² grid: a k×k kernel padded to size."""
  xx, yy = _grid(size)
  half = tf.cast(kernel_size // 2, tf.float64)
  return tf.cast((tf.abs(xx) <= half) & (tf.abs(yy) <= half), tf.float64)


def sinc_kernel(cutoff, kernel_size, size: int = MAX_KERNEL_SIZE) -> tf.Tensor:
  """`circular_lowpass_kernel(cutoff, kernel_size, pad_to=size)` with tensor arguments, float64."""
  xx, yy = _grid(size)
  cutoff = _f64(cutoff)
  r = tf.sqrt(xx ** 2 + yy ** 2)
  safe_r = tf.where(r == 0, tf.ones_like(r), r)
  kernel = tf.where(r == 0, cutoff ** 2 / (4 * math.pi),
                    cutoff * tf.math.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r))
  kernel = kernel * _support_mask(kernel_size, size)
  return kernel / tf.reduce_sum(kernel)


def shaped_kernel(kind, kernel_size, sig_x, sig_y, theta, beta,
                  size: int = MAX_KERNEL_SIZE) -> tf.Tensor:
  """A Gaussian / generalized / plateau kernel (kind = index in KERNEL_TYPES), float64 [size²].

  Equals `esrgan_tf.data.degradations.bivariate_*(kernel_size, ...)` zero-padded to `size`.
  """
  kind = tf.convert_to_tensor(kind, tf.int32)
  sig_x, sig_y, theta, beta = (_f64(v) for v in (sig_x, sig_y, theta, beta))
  isotropic = kind % 2 == 0
  sig_y = tf.where(isotropic, sig_x, sig_y)
  theta = tf.where(isotropic, tf.zeros_like(theta), theta)
  # Σ⁻¹ = U·diag(1/sx², 1/sy²)·Uᵀ for the rotation U by theta (sigma_matrix2 inverted).
  c, s = tf.cos(theta), tf.sin(theta)
  a = c ** 2 / sig_x ** 2 + s ** 2 / sig_y ** 2
  b = c * s * (1 / sig_x ** 2 - 1 / sig_y ** 2)
  d = s ** 2 / sig_x ** 2 + c ** 2 / sig_y ** 2
  xx, yy = _grid(size)
  q = a * xx ** 2 + 2 * b * xx * yy + d * yy ** 2
  family = kind // 2
  kernel = tf.switch_case(family, [
      lambda: tf.exp(-0.5 * q),
      lambda: tf.exp(-0.5 * tf.pow(q, beta)),
      lambda: 1.0 / (tf.pow(q, beta) + 1.0),
  ])
  kernel = kernel * _support_mask(kernel_size, size)
  return kernel / tf.reduce_sum(kernel)


def _random_kernel_size(seed) -> tf.Tensor:
  return tf.gather(tf.constant(KERNEL_SIZES),
                   tf.random.stateless_uniform([], seed, 0, len(KERNEL_SIZES), tf.int32))


def random_blur_kernel(seed, kernel_list: Sequence[str], kernel_prob: Sequence[float],
                       blur_sigma: Sequence[float], betag_range: Sequence[float],
                       betap_range: Sequence[float], sinc_prob: float) -> tf.Tensor:
  """One kernel as realesrgan_dataset.py draws kernel1/kernel2: float32 [21, 21].

  Size uniform in 7..21 (odd); with probability `sinc_prob` a sinc with cutoff U(π/3, π) (U(π/5,
  π) for sizes >= 13); otherwise `random_mixed_kernels(kernel_list, kernel_prob, size,
  blur_sigma, blur_sigma, (-π, π), betag_range, betap_range)`.

  Raises:
    ValueError: Unknown kernel types or mismatched lists.
  """
  unknown = sorted(set(kernel_list) - set(_KERNEL_INDEX))
  if unknown or len(kernel_list) != len(kernel_prob) or not kernel_list:
    raise ValueError(f"bad kernel_list {list(kernel_list)} / kernel_prob {list(kernel_prob)}; "
                     f"known types: {list(_KERNEL_INDEX)}")
  seeds = split(seed, 9)
  kernel_size = _random_kernel_size(seeds[0])
  use_sinc = uniform(seeds[1], 0.0, 1.0) < sinc_prob
  low = tf.where(kernel_size < 13, tf.constant(math.pi / 3, tf.float64),
                 tf.constant(math.pi / 5, tf.float64))
  cutoff = low + (math.pi - low) * uniform(seeds[2], 0.0, 1.0, tf.float64)

  kind = tf.gather(tf.constant([_KERNEL_INDEX[k] for k in kernel_list]),
                   _choice(seeds[3], kernel_prob))
  sig_x = uniform(seeds[4], blur_sigma[0], blur_sigma[1], tf.float64)
  sig_y = uniform(seeds[5], blur_sigma[0], blur_sigma[1], tf.float64)
  theta = uniform(seeds[6], -math.pi, math.pi, tf.float64)
  beta_range = tf.where(kind // 2 == 2, tf.constant(list(betap_range), tf.float64),
                        tf.constant(list(betag_range), tf.float64))
  # BasicSR: beta below 1 or above 1 with probability 1/2 each.
  u = uniform(seeds[7], 0.0, 1.0, tf.float64)
  beta = tf.where(uniform(seeds[8], 0.0, 1.0) < 0.5,
                  beta_range[0] + (1 - beta_range[0]) * u, 1 + (beta_range[1] - 1) * u)
  kernel = tf.cond(use_sinc, lambda: sinc_kernel(cutoff, kernel_size),
                   lambda: shaped_kernel(kind, kernel_size, sig_x, sig_y, theta, beta))
  return tf.cast(kernel, tf.float32)


def random_final_sinc(seed) -> tf.Tensor:
  """The final sinc kernel of realesrgan_dataset.py: size 7..21, cutoff U(π/3, π), padded."""
  seeds = split(seed, 2)
  cutoff = uniform(seeds[1], math.pi / 3, math.pi, tf.float64)
  return tf.cast(sinc_kernel(cutoff, _random_kernel_size(seeds[0])), tf.float32)


# --- resizing ------------------------------------------------------------------------------------

def resize(img: tf.Tensor, size, mode_index, modes: Sequence[str] = RESIZE_MODES) -> tf.Tensor:
  """tf.image.resize to `size` [2] with the method modes[mode_index] (no antialiasing)."""
  size = tf.maximum(tf.cast(size, tf.int32), 1)
  branches = [lambda m=m: tf.image.resize(img, size, method=m, antialias=False) for m in modes]
  if len(branches) == 1:
    return branches[0]()
  return tf.switch_case(tf.cast(mode_index, tf.int32), branches)


def random_scale(seed, resize_prob: Sequence[float], resize_range: Sequence[float]) -> tf.Tensor:
  """Real-ESRGAN's scale: 'up' U(1, hi), 'down' U(lo, 1), 'keep' 1, chosen by resize_prob."""
  seeds = split(seed, 2)
  u = uniform(seeds[1], 0.0, 1.0)
  return tf.gather(tf.stack([1 + (resize_range[1] - 1) * u,
                             resize_range[0] + (1 - resize_range[0]) * u,
                             tf.constant(1.0)]), _choice(seeds[0], resize_prob))


def random_mode(seed, modes: Sequence[str] = RESIZE_MODES) -> tf.Tensor:
  """A uniformly drawn index into `modes`."""
  return tf.random.stateless_uniform([], seed, 0, len(modes), tf.int32)


# --- noise ---------------------------------------------------------------------------------------

def gaussian_noise(img: tf.Tensor, seed, sigma, gray) -> tf.Tensor:
  """N(0, (sigma/255)²) noise like `img` [H, W, 3]; one channel repeated if `gray`."""
  shape = tf.shape(img)
  seeds = split(seed, 2)
  noise = tf.cond(
      gray,
      lambda: tf.tile(tf.random.stateless_normal([shape[0], shape[1], 1], seeds[0]), [1, 1, 3]),
      lambda: tf.random.stateless_normal(shape, seeds[1]))
  return noise * tf.cast(sigma, tf.float32) / 255.0


def _poisson_noise_of(img: tf.Tensor, seed) -> tf.Tensor:
  levels = tf.clip_by_value(tf.round(img * 255.0), 0.0, 255.0)
  img = levels / 255.0
  count = tf.size(tf.unique(tf.reshape(tf.cast(levels, tf.int32), [-1]))[0])
  vals = tf.pow(2.0, tf.math.ceil(tf.math.log(tf.cast(count, tf.float32)) / math.log(2.0)))
  return tf.random.stateless_poisson(tf.shape(img), seed, img * vals, tf.float32) / vals - img


def poisson_noise(img: tf.Tensor, seed, scale, gray) -> tf.Tensor:
  """BasicSR's shot noise (`generate_poisson_noise`) for one image; gray on the luma."""
  seeds = split(seed, 2)
  noise = tf.cond(
      gray,
      lambda: tf.tile(_poisson_noise_of(tf.image.rgb_to_grayscale(img), seeds[0]), [1, 1, 3]),
      lambda: _poisson_noise_of(img, seeds[1]))
  return noise * tf.cast(scale, tf.float32)


def random_noise(img: tf.Tensor, seed, gaussian_noise_prob, noise_range, poisson_scale_range,
                 gray_noise_prob) -> tf.Tensor:
  """Gaussian (prob. gaussian_noise_prob, sigma ~ U(noise_range)) or else Poisson (scale ~
  U(poisson_scale_range)) noise, gray with probability gray_noise_prob; clipped to [0, 1]."""
  seeds = split(seed, 5)
  gray = uniform(seeds[0], 0.0, 1.0) < gray_noise_prob
  noise = tf.cond(
      uniform(seeds[1], 0.0, 1.0) < gaussian_noise_prob,
      lambda: gaussian_noise(img, seeds[2], uniform(seeds[3], *noise_range), gray),
      lambda: poisson_noise(img, seeds[2], uniform(seeds[4], *poisson_scale_range), gray))
  return tf.clip_by_value(img + noise, 0.0, 1.0)


# --- JPEG ----------------------------------------------------------------------------------------

def jpeg(img: tf.Tensor, quality) -> tf.Tensor:
  """Baseline JPEG round trip at an integer `quality` tensor (4:2:0), as `jpeg_compress`."""
  pixels = tf.cast(tf.round(tf.clip_by_value(img, 0.0, 1.0) * 255.0), tf.uint8)
  encoded = tf.raw_ops.EncodeJpegVariableQuality(images=pixels,
                                                 quality=tf.cast(quality, tf.int32))
  decoded = tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")
  return tf.cast(decoded, tf.float32) / 255.0


def random_jpeg(img: tf.Tensor, seed, jpeg_range: Sequence[float]) -> tf.Tensor:
  """`jpeg` at an integer quality uniform in [jpeg_range[0], jpeg_range[1]]."""
  quality = tf.random.stateless_uniform([], seed, int(jpeg_range[0]), int(jpeg_range[1]) + 1,
                                        tf.int32)
  return jpeg(img, quality)
