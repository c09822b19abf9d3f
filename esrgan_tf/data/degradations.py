"""Real-ESRGAN degradation primitives in numpy, with BasicSR's names, arguments and defaults.

The reference is BasicSR `basicsr/data/degradations.py` and `basicsr/utils/img_process_util.py`
(XPixelGroup/BasicSR, 2024). Kernels are computed in float64 as there; images are HWC float32
RGB in [0, 1]. Differences from BasicSR, all deliberate:

* Randomness: every random function takes `rng`, a `numpy.random.Generator` or a seed (None =
  fresh entropy), instead of the global `random`/`np.random` state, so results are reproducible.
  The same distributions are drawn, not the same stream.
* Channel order: BasicSR's numpy pipeline holds BGR images (cv2). Here images are RGB, except in
  `add_jpg_compression` / `random_add_jpg_compression`, which keep BasicSR's BGR contract. For
  the same picture the results are the same: `jpeg_compress` gives the RGB-ordered pixels of
  BasicSR's `add_jpg_compression` on the BGR-ordered picture (both encode through libjpeg with
  the same luma/chroma conversion, quantisation tables and 4:2:0 subsampling, and decode with
  the accurate integer IDCT and fancy upsampling; the colour conversion is not symmetric in R
  and B, so the order matters); gray Poisson noise uses the luma weights on R, G, B as cv2's
  BGR2GRAY does on its B, G, R input.
* `circular_lowpass_kernel` uses its own Bessel J1 (no scipy) and does not change numpy's global
  error state (BasicSR calls `np.seterr` at import).
* Names: the lower-case `bivariate_gaussian` / `bivariate_generalized_gaussian`, with
  BasicSR's spellings (`bivariate_Gaussian`, ...) as aliases.
"""

from __future__ import annotations

from collections.abc import Sequence
import io
import math

import numpy as np
from PIL import Image

RngLike = np.random.Generator | int | None

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
# Luma weights of cv2.COLOR_BGR2GRAY (ITU-R BT.601), used by BasicSR's gray Poisson noise.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _rng(rng: RngLike) -> np.random.Generator:
  return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_image(img: np.ndarray, name: str = "img") -> np.ndarray:
  img = np.asarray(img)
  if img.ndim != 3 or img.shape[2] != 3:
    raise ValueError(f"{name}: expected an HWC RGB image, got shape {img.shape}")
  return img


# --- blur kernels ------------------------------------------------------------------------------

def sigma_matrix2(sig_x: float, sig_y: float, theta: float) -> np.ndarray:
  """The covariance U·diag(sig_x², sig_y²)·Uᵀ, U the rotation by `theta` radians."""
  d_matrix = np.array([[sig_x ** 2, 0.0], [0.0, sig_y ** 2]])
  u_matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  return u_matrix @ d_matrix @ u_matrix.T


def mesh_grid(kernel_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Integer grid centred at zero: (xy [K, K, 2], xx [K, K], yy [K, K]); xy[..., 0] = x."""
  ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
  xx, yy = np.meshgrid(ax, ax)
  return np.stack([xx, yy], axis=-1), xx, yy


def _quadratic_form(kernel_size, sig_x, sig_y, theta, grid, isotropic) -> np.ndarray:
  """pᵀ Σ⁻¹ p for every grid point p (the Mahalanobis distance squared)."""
  if grid is None:
    grid, _, _ = mesh_grid(kernel_size)
  if isotropic:
    sigma = np.array([[sig_x ** 2, 0.0], [0.0, sig_x ** 2]])
  else:
    sigma = sigma_matrix2(sig_x, sig_y, theta)
  inverse_sigma = np.linalg.inv(sigma)
  return np.sum((grid @ inverse_sigma) * grid, axis=2)


def pdf2(sigma_matrix: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Un-normalised bivariate Gaussian exp(-½ pᵀ Σ⁻¹ p) on `grid` [K, K, 2]."""
  inverse_sigma = np.linalg.inv(sigma_matrix)
  return np.exp(-0.5 * np.sum((grid @ inverse_sigma) * grid, axis=2))


def bivariate_gaussian(kernel_size: int, sig_x: float, sig_y: float, theta: float,
                       grid: np.ndarray | None = None, isotropic: bool = True) -> np.ndarray:
  """Normalised bivariate Gaussian kernel; isotropic uses only `sig_x`.

  Args:
    kernel_size: K.
    sig_x: Standard deviation along the (rotated) x axis.
    sig_y: Standard deviation along the (rotated) y axis (ignored if isotropic).
    theta: Rotation in radians (ignored if isotropic).
    grid: `mesh_grid(K)[0]`, or None to make it.
    isotropic: Use diag(sig_x², sig_x²).

  Returns:
    float64 [K, K] summing to 1.
  """
  kernel = np.exp(-0.5 * _quadratic_form(kernel_size, sig_x, sig_y, theta, grid, isotropic))
  return kernel / np.sum(kernel)


def bivariate_generalized_gaussian(kernel_size: int, sig_x: float, sig_y: float, theta: float,
                                   beta: float, grid: np.ndarray | None = None,
                                   isotropic: bool = True) -> np.ndarray:
  """Normalised generalized Gaussian exp(-½ (pᵀΣ⁻¹p)^beta) (beta = 1: Gaussian).

  The form is BasicSR's (after "Parameter Estimation For Multivariate Generalized Gaussian
  Distributions", Pascal et al. 2013). Arguments as `bivariate_gaussian`, plus `beta`.
  """
  q = _quadratic_form(kernel_size, sig_x, sig_y, theta, grid, isotropic)
  kernel = np.exp(-0.5 * np.power(q, beta))
  return kernel / np.sum(kernel)


def bivariate_plateau(kernel_size: int, sig_x: float, sig_y: float, theta: float, beta: float,
                      grid: np.ndarray | None = None, isotropic: bool = True) -> np.ndarray:
  """Normalised plateau kernel 1 / (1 + (pᵀΣ⁻¹p)^beta) (BasicSR's form).

  Arguments as `bivariate_generalized_gaussian`.
  """
  q = _quadratic_form(kernel_size, sig_x, sig_y, theta, grid, isotropic)
  kernel = np.reciprocal(np.power(q, beta) + 1.0)
  return kernel / np.sum(kernel)


# BasicSR's spellings.
bivariate_Gaussian = bivariate_gaussian
bivariate_generalized_Gaussian = bivariate_generalized_gaussian


def _random_shape(rng, sigma_x_range, sigma_y_range, rotation_range, isotropic):
  """(sig_x, sig_y, theta) drawn as BasicSR's random_bivariate_* do."""
  if not sigma_x_range[0] < sigma_x_range[1]:
    raise ValueError(f"sigma_x_range must be increasing, got {sigma_x_range}")
  sig_x = rng.uniform(sigma_x_range[0], sigma_x_range[1])
  if isotropic:
    return sig_x, sig_x, 0.0
  if not (sigma_y_range[0] < sigma_y_range[1] and rotation_range[0] < rotation_range[1]):
    raise ValueError(f"sigma_y_range {sigma_y_range} and rotation_range {rotation_range} must "
                     "be increasing")
  return sig_x, rng.uniform(*sigma_y_range), rng.uniform(*rotation_range)


def _random_beta(rng, beta_range) -> float:
  # BasicSR: half of the draws below 1 (heavier tails), half above (flatter top).
  if rng.uniform() < 0.5:
    return rng.uniform(beta_range[0], 1)
  return rng.uniform(1, beta_range[1])


def _kernel_noise(kernel, rng, noise_range):
  if noise_range is not None:
    if not noise_range[0] < noise_range[1]:
      raise ValueError(f"noise_range must be increasing, got {noise_range}")
    kernel = kernel * rng.uniform(noise_range[0], noise_range[1], size=kernel.shape)
  return kernel / np.sum(kernel)


def random_bivariate_gaussian(kernel_size, sigma_x_range, sigma_y_range, rotation_range,
                              noise_range=None, isotropic=True, rng: RngLike = None):
  """A random `bivariate_gaussian` (BasicSR's random_bivariate_Gaussian)."""
  _check_odd(kernel_size)
  rng = _rng(rng)
  sx, sy, theta = _random_shape(rng, sigma_x_range, sigma_y_range, rotation_range, isotropic)
  kernel = bivariate_gaussian(kernel_size, sx, sy, theta, isotropic=isotropic)
  return _kernel_noise(kernel, rng, noise_range)


def random_bivariate_generalized_gaussian(kernel_size, sigma_x_range, sigma_y_range,
                                          rotation_range, beta_range, noise_range=None,
                                          isotropic=True, rng: RngLike = None):
  """A random `bivariate_generalized_gaussian` (beta below or above 1 with probability ½)."""
  _check_odd(kernel_size)
  rng = _rng(rng)
  sx, sy, theta = _random_shape(rng, sigma_x_range, sigma_y_range, rotation_range, isotropic)
  beta = _random_beta(rng, beta_range)
  kernel = bivariate_generalized_gaussian(kernel_size, sx, sy, theta, beta, isotropic=isotropic)
  return _kernel_noise(kernel, rng, noise_range)


def random_bivariate_plateau(kernel_size, sigma_x_range, sigma_y_range, rotation_range,
                             beta_range, noise_range=None, isotropic=True, rng: RngLike = None):
  """A random `bivariate_plateau` (beta below or above 1 with probability ½)."""
  _check_odd(kernel_size)
  rng = _rng(rng)
  sx, sy, theta = _random_shape(rng, sigma_x_range, sigma_y_range, rotation_range, isotropic)
  beta = _random_beta(rng, beta_range)
  kernel = bivariate_plateau(kernel_size, sx, sy, theta, beta, isotropic=isotropic)
  return _kernel_noise(kernel, rng, noise_range)


random_bivariate_Gaussian = random_bivariate_gaussian
random_bivariate_generalized_Gaussian = random_bivariate_generalized_gaussian


def _check_odd(kernel_size: int) -> None:
  if kernel_size < 1 or kernel_size % 2 != 1:
    raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")


def random_mixed_kernels(kernel_list: Sequence[str], kernel_prob: Sequence[float],
                         kernel_size: int = 21, sigma_x_range=(0.6, 5), sigma_y_range=(0.6, 5),
                         rotation_range=(-math.pi, math.pi), betag_range=(0.5, 8),
                         betap_range=(0.5, 8), noise_range=None,
                         rng: RngLike = None) -> np.ndarray:
  """A kernel of a type drawn from `kernel_list` with probabilities `kernel_prob`.

  Types: 'iso', 'aniso' (Gaussian), 'generalized_iso', 'generalized_aniso' (beta from
  `betag_range`), 'plateau_iso', 'plateau_aniso' (beta from `betap_range`; as in BasicSR the
  plateau kernels never get the multiplicative `noise_range` noise).

  Raises:
    ValueError: Unknown kernel type, mismatched lists, even kernel size.
  """
  if len(kernel_list) != len(kernel_prob) or not kernel_list:
    raise ValueError(f"kernel_list {list(kernel_list)} and kernel_prob {list(kernel_prob)} must "
                     "have the same non-zero length")
  unknown = sorted(set(kernel_list) - set(KERNEL_TYPES))
  if unknown:
    raise ValueError(f"unknown kernel type(s) {unknown}; known: {list(KERNEL_TYPES)}")
  rng = _rng(rng)
  prob = np.asarray(kernel_prob, np.float64)
  kernel_type = kernel_list[rng.choice(len(kernel_list), p=prob / prob.sum())]
  isotropic = kernel_type.endswith("iso") and not kernel_type.endswith("aniso")
  args = (kernel_size, sigma_x_range, sigma_y_range, rotation_range)
  if kernel_type in ("iso", "aniso"):
    return random_bivariate_gaussian(*args, noise_range=noise_range, isotropic=isotropic, rng=rng)
  if kernel_type.startswith("generalized"):
    return random_bivariate_generalized_gaussian(*args, betag_range, noise_range=noise_range,
                                                 isotropic=isotropic, rng=rng)
  return random_bivariate_plateau(*args, betap_range, noise_range=None, isotropic=isotropic,
                                  rng=rng)


def bessel_j1(x) -> np.ndarray:
  """Bessel function of the first kind, order 1, to ~1e-15 for |x| up to hundreds.

  Bessel's integral J1(x) = 1/(2π) ∫₀^{2π} cos(τ − x sin τ) dτ, by the trapezoidal rule over the
  full period, which converges geometrically for a periodic analytic integrand once the number of
  nodes exceeds |x| (the error is of the order of J_N(x)).
  """
  x = np.asarray(x, np.float64)
  nodes = 64 + 2 * int(np.ceil(np.max(np.abs(x), initial=0.0)))
  tau = 2 * np.pi * np.arange(nodes) / nodes
  return np.mean(np.cos(tau - x[..., None] * np.sin(tau)), axis=-1)


def circular_lowpass_kernel(cutoff: float, kernel_size: int, pad_to: int = 0) -> np.ndarray:
  """The 2-D sinc (circularly symmetric ideal low-pass) kernel, normalised.

  h(r) = cutoff·J1(cutoff·r) / (2π·r), with the r → 0 limit cutoff² / (4π) at the centre
  (BasicSR; dsp.stackexchange.com/questions/58301).

  Args:
    cutoff: Cutoff frequency in radians per pixel (π is Nyquist).
    kernel_size: Odd size K.
    pad_to: Zero-pad to this odd size if larger than K (0/False: no padding).

  Returns:
    float64 [max(K, pad_to), ...] summing to 1.

  Raises:
    ValueError: Even kernel size.
  """
  _check_odd(kernel_size)
  c = (kernel_size - 1) / 2
  y, x = np.mgrid[0:kernel_size, 0:kernel_size]
  r = np.sqrt((x - c) ** 2 + (y - c) ** 2)
  safe_r = np.where(r == 0, 1.0, r)
  kernel = np.where(r == 0, cutoff ** 2 / (4 * np.pi),
                    cutoff * bessel_j1(cutoff * safe_r) / (2 * np.pi * safe_r))
  kernel = kernel / np.sum(kernel)
  if pad_to and pad_to > kernel_size:
    pad = (pad_to - kernel_size) // 2
    kernel = np.pad(kernel, ((pad, pad), (pad, pad)))
  return kernel


# --- sharpening ----------------------------------------------------------------------------------

def gaussian_sigma_for_size(ksize: int) -> float:
  """cv2.getGaussianKernel's sigma for sigma <= 0: 0.3·((ksize − 1)·0.5 − 1) + 0.8."""
  return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def gaussian_kernel_1d(ksize: int, sigma: float = 0.0) -> np.ndarray:
  """cv2.getGaussianKernel(ksize, sigma) for ksize > 7 or sigma > 0, float64 [ksize]."""
  if sigma <= 0:
    sigma = gaussian_sigma_for_size(ksize)
  x = np.arange(ksize) - (ksize - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return g / g.sum()


def _gaussian_blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Separable blur with reflect-101 borders (np.pad 'reflect' = cv2.BORDER_REFLECT_101)."""
  r = len(kernel) // 2
  pad = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
  h, w = img.shape[:2]
  rows = sum(kernel[i] * pad[i:i + h] for i in range(len(kernel)))
  return sum(kernel[j] * rows[:, j:j + w] for j in range(len(kernel)))


def usm_sharp(img: np.ndarray, weight: float = 0.5, radius: int = 50,
              threshold: float = 10) -> np.ndarray:
  """Unsharp masking as BasicSR's usm_sharp (cv2.GaussianBlur (radius|1)², sigma from size).

  sharp = clip(I + weight·(I − B)); mask = |I − B|·255 > threshold blurred by the same kernel;
  out = mask·sharp + (1 − mask)·I.

  Args:
    img: HWC float32 RGB in [0, 1].
    weight: Sharpening weight.
    radius: Blur kernel size (made odd by adding 1), sigma = cv2's rule for that size.
    threshold: Residual threshold in 8-bit levels.

  Returns:
    float32 [H, W, 3].
  """
  img = _check_image(img)
  if radius % 2 == 0:
    radius += 1
  kernel = gaussian_kernel_1d(radius)
  x = img.astype(np.float64)
  residual = x - _gaussian_blur(x, kernel)
  mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
  soft_mask = _gaussian_blur(mask, kernel)
  sharp = np.clip(x + weight * residual, 0, 1)
  return (soft_mask * sharp + (1 - soft_mask) * x).astype(np.float32)


# --- noise ------------------------------------------------------------------------------------

def _finish(out: np.ndarray, clip: bool, rounds: bool) -> np.ndarray:
  if clip and rounds:
    return np.clip(np.round(out * 255.0), 0, 255) / 255.0
  if clip:
    return np.clip(out, 0, 1)
  if rounds:
    return np.round(out * 255.0) / 255.0
  return out


def generate_gaussian_noise(img, sigma=10, gray_noise=False, rng: RngLike = None) -> np.ndarray:
  """N(0, (sigma/255)²) noise shaped like `img`; gray noise repeats one channel 3 times."""
  rng = _rng(rng)
  img = _check_image(img)
  if gray_noise:
    noise = np.float32(rng.standard_normal(img.shape[:2])) * sigma / 255.0
    return np.repeat(noise[:, :, None], 3, axis=2)
  return np.float32(rng.standard_normal(img.shape)) * sigma / 255.0


def add_gaussian_noise(img, sigma=10, clip=True, rounds=False, gray_noise=False,
                       rng: RngLike = None) -> np.ndarray:
  """img + `generate_gaussian_noise`, then clip to [0, 1] and/or round to 8-bit levels."""
  return _finish(img + generate_gaussian_noise(img, sigma, gray_noise, rng), clip, rounds)


def random_generate_gaussian_noise(img, sigma_range=(0, 10), gray_prob=0, rng: RngLike = None):
  """Gaussian noise with sigma ~ U(sigma_range), gray with probability `gray_prob`."""
  rng = _rng(rng)
  sigma = rng.uniform(sigma_range[0], sigma_range[1])
  gray = rng.uniform() < gray_prob
  return generate_gaussian_noise(img, sigma, gray, rng)


def random_add_gaussian_noise(img, sigma_range=(0, 1.0), gray_prob=0, clip=True, rounds=False,
                              rng: RngLike = None) -> np.ndarray:
  """img + `random_generate_gaussian_noise`, then clip and/or round."""
  noise = random_generate_gaussian_noise(img, sigma_range, gray_prob, rng)
  return _finish(img + noise, clip, rounds)


def poisson_levels(img: np.ndarray) -> float:
  """2^ceil(log2(number of distinct 8-bit levels)): BasicSR's photon-count scale (skimage)."""
  vals = len(np.unique(img))
  return float(2 ** np.ceil(np.log2(vals)))


def generate_poisson_noise(img, scale=1.0, gray_noise=False, rng: RngLike = None) -> np.ndarray:
  """Shot noise: Poisson(img·vals)/vals − img, times `scale` (BasicSR, after skimage).

  The image is first rounded to 8-bit levels; `vals` is `poisson_levels` of it. Gray noise is
  computed on the BT.601 luma and repeated over the channels.
  """
  rng = _rng(rng)
  img = _check_image(img).astype(np.float32)
  if gray_noise:
    img = img @ _LUMA
  img = np.clip(np.round(img * 255.0), 0, 255) / 255.0
  vals = poisson_levels(img)
  noise = np.float32(rng.poisson(img * vals) / vals) - img
  if gray_noise:
    noise = np.repeat(noise[:, :, None], 3, axis=2)
  return noise * scale


def add_poisson_noise(img, scale=1.0, clip=True, rounds=False, gray_noise=False,
                      rng: RngLike = None) -> np.ndarray:
  """img + `generate_poisson_noise`, then clip and/or round."""
  return _finish(img + generate_poisson_noise(img, scale, gray_noise, rng), clip, rounds)


def random_generate_poisson_noise(img, scale_range=(0, 1.0), gray_prob=0, rng: RngLike = None):
  """Poisson noise with scale ~ U(scale_range), gray with probability `gray_prob`."""
  rng = _rng(rng)
  scale = rng.uniform(scale_range[0], scale_range[1])
  gray = rng.uniform() < gray_prob
  return generate_poisson_noise(img, scale, gray, rng)


def random_add_poisson_noise(img, scale_range=(0, 1.0), gray_prob=0, clip=True, rounds=False,
                             rng: RngLike = None) -> np.ndarray:
  """img + `random_generate_poisson_noise`, then clip and/or round."""
  noise = random_generate_poisson_noise(img, scale_range, gray_prob, rng)
  return _finish(img + noise, clip, rounds)


# --- JPEG -------------------------------------------------------------------------------------

def _check_quality(quality) -> int:
  q = int(quality)
  if q != quality or not 1 <= q <= 100:
    raise ValueError(f"JPEG quality must be an integer in [1, 100], got {quality!r}")
  return q


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
  """Encodes to baseline JPEG (libjpeg quality scaling, 4:2:0 chroma) and decodes back.

  Pixels are rounded half-to-even to 8 bits first (cv2's convertTo). Encoder and decoder are
  libjpeg(-turbo) through Pillow with the settings cv2 uses by default (4:2:0, islow DCT, fancy
  upsampling), so the result equals cv2's (BasicSR's `add_jpg_compression`) on the same picture;
  BasicSR passes BGR arrays to cv2, this function takes and returns RGB.

  Args:
    img: HWC float32 RGB in [0, 1] (clipped first, as BasicSR does).
    quality: Integer JPEG quality in [1, 100].

  Returns:
    float32 [H, W, 3] in [0, 1], multiples of 1/255.

  Raises:
    ValueError: Bad shape or quality.
  """
  img = _check_image(img)
  q = _check_quality(quality)
  pixels = np.rint(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=q, subsampling=2)
  with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
    return np.asarray(decoded.convert("RGB"), np.float32) / 255.0


def add_jpg_compression(img: np.ndarray, quality: int = 90) -> np.ndarray:
  """BasicSR's add_jpg_compression, on a BGR image as there (cv2 order): `jpeg_compress` of the
  channel-reversed image, reversed back."""
  return jpeg_compress(np.asarray(img)[..., ::-1], quality)[..., ::-1]


def random_add_jpg_compression(img: np.ndarray, quality_range=(90, 100),
                               rng: RngLike = None) -> np.ndarray:
  """BasicSR's random_add_jpg_compression (BGR): quality ~ U(quality_range), truncated."""
  quality = int(_rng(rng).uniform(quality_range[0], quality_range[1]))
  return add_jpg_compression(img, quality)
