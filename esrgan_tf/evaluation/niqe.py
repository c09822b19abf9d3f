"""NIQE (Natural Image Quality Evaluator), equal to BasicSR's `calculate_niqe`; numpy only.

NIQE (Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE
Signal Processing Letters 20(3), 2013) scores an image without a reference: the distance between
a multivariate Gaussian fitted to natural-scene statistics of its 96×96 blocks and one fitted to
pristine photos. Lower is better (more natural). Real-ESRGAN reports it for real-world SR, where
no ground truth exists.

The computation follows BasicSR 1.4.2 (basicsr/metrics/niqe.py `calculate_niqe`, which matches
the authors' MATLAB release to 1e-7 on its test image), including its float32 steps, so that the
values agree (scripts/check_basicsr_parity.py, section niqe):
  1. Y of BT.601 YCbCr in [0, 255] (float32, as BasicSR's `bgr2ycbcr(y_only=True)`), cropped by
     `crop_border`, rounded (as MATLAB's uint8 input); cropped to whole 96×96 blocks.
  2. At two scales (the image, then its MATLAB-bicubic ×1/2 with antialiasing, unrounded):
     MSCN coefficients (x − μ)/(σ + 1), μ and σ local statistics under the 7×7 Gaussian window
     (edges replicated: scipy.ndimage's mode "nearest"); per block (96² at scale 1, 48² at
     scale 2): an asymmetric generalised Gaussian fit (α and the mean of β_l, β_r) of the MSCN
     coefficients, and (α, η, β_l, β_r) of their products with the neighbour in 4 directions;
     18 features per scale.
  3. NIQE = √((ν₁ − ν₂)ᵀ ((Σ₁ + Σ₂)/2)⁺ (ν₁ − ν₂)): ν₁, Σ₁ the pristine model
     (`niqe_pris_params.npz`), ν₂, Σ₂ the mean and covariance of the image's block features
     (rows with a NaN, e.g. a block without negative values, left out of Σ₂).
The pristine parameters and the window are BasicSR's `niqe_pris_params.npz` (bundled here, from
the authors' `modelparameters.mat`; provenance and licence in this folder's LICENSES.md).

Images with fewer than two 96×96 blocks (after the crop) cannot be scored: `NiqeError`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import numpy as np

BLOCK = 96  # The authors' block size (their recommended value; BasicSR's default).
PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "niqe_pris_params.npz")
# BT.601 Y weights for B, G, R on [0, 1] (×255 scale), BasicSR's bgr2ycbcr order.
_Y_WEIGHTS_BGR = (24.966, 128.553, 65.481)
# The AGGD shape grid of the fit: α in [0.2, 10] by 0.001 (the MATLAB release's).
_ALPHA_GRID = np.arange(0.2, 10.001, 0.001)
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # Horizontal, vertical and both diagonals.


class NiqeError(ValueError):
  """An image NIQE cannot score (too small, wrong shape)."""


@functools.cache
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean [36], covariance [36, 36], Gaussian window [7, 7]) of the pristine model."""
  with np.load(PARAMS_FILE) as params:
    return (params["mu_pris_param"].reshape(-1), params["cov_pris_param"],
            params["gaussian_window"])


_gamma = np.vectorize(math.gamma, otypes=[np.float64])


@functools.cache
def _ratio_table() -> np.ndarray:
  """ρ(α) = Γ(2/α)² / (Γ(1/α)·Γ(3/α)) over the α grid (the AGGD moment ratio)."""
  inverse = 1.0 / _ALPHA_GRID
  return np.square(_gamma(2 * inverse)) / (_gamma(inverse) * _gamma(3 * inverse))


def luma(rgb: np.ndarray) -> np.ndarray:
  """BT.601 Y in [16, 235] (float32, unrounded) of uint8 RGB, as BasicSR computes it."""
  bgr = np.asarray(rgb)[..., ::-1].astype(np.float32) / 255.0
  y = (np.dot(bgr, _Y_WEIGHTS_BGR) + 16.0) / 255.0  # float64 dot, as np.dot with a list
  return y.astype(np.float32) * 255.0


def aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
  """(α, β_l, β_r) of an asymmetric generalised Gaussian fitted by moment matching.

  The ratio r̂ = E|x|²/E[x²], corrected for the asymmetry γ̂ = σ_l/σ_r (σ the RMS of the negative
  and the positive values), is matched to ρ(α) on the α grid; β = σ·√(Γ(1/α)/Γ(3/α)).
  """
  x = values.reshape(-1)
  with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # no negative/positive value: NaN, as BasicSR
    left = np.sqrt(np.mean(x[x < 0] ** 2))
    right = np.sqrt(np.mean(x[x > 0] ** 2))
    gamma_hat = left / right
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
    r_norm = (r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1)) / ((gamma_hat ** 2 + 1) ** 2)
  alpha = _ALPHA_GRID[np.argmin((_ratio_table() - r_norm) ** 2)]
  scale = np.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
  return alpha, left * scale, right * scale


def block_features(block: np.ndarray) -> list:
  """The 18 features of one block of MSCN coefficients."""
  alpha, beta_l, beta_r = aggd_fit(block)
  features = [alpha, (beta_l + beta_r) / 2]
  for shift in _SHIFTS:
    alpha, beta_l, beta_r = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
    mean = (beta_r - beta_l) * (math.gamma(2 / alpha) / math.gamma(1 / alpha))
    features += [alpha, mean, beta_l, beta_r]
  return features


def _filter_nearest(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Correlation with a symmetric window, edges replicated; float64 sums, float32 result (as
  scipy.ndimage.convolve(float32 image, float64 window, mode="nearest"))."""
  radius = window.shape[0] // 2
  padded = np.pad(image.astype(np.float64), radius, mode="edge")
  h, w = image.shape
  out = np.zeros((h, w), np.float64)
  for dy in range(window.shape[0]):
    for dx in range(window.shape[1]):
      out += window[dy, dx] * padded[dy:dy + h, dx:dx + w]
  return out.astype(image.dtype)


def mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Mean-subtracted contrast-normalised coefficients (x − μ)/(σ + 1), float32."""
  mu = _filter_nearest(image, window)
  sigma = np.sqrt(np.abs(_filter_nearest(np.square(image), window) - np.square(mu)))
  return (image - mu) / (sigma + 1)


def _cubic(x: np.ndarray) -> np.ndarray:
  """MATLAB's bicubic kernel (a = −0.5)."""
  ax = np.abs(x)
  ax2, ax3 = ax ** 2, ax ** 3
  return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))).astype(x.dtype)


def _half_weights(length: int) -> tuple[np.ndarray, np.ndarray]:
  """(weights [out, taps], input indices [out, taps]) of MATLAB's antialiased bicubic ×1/2.

  float32, as BasicSR's torch version; indices mirror at the edges (MATLAB's "symmetric").
  """
  scale, out = 0.5, math.ceil(length * 0.5)
  width = 4 / scale  # The kernel stretched by 1/scale: interpolation and antialiasing.
  x = np.linspace(1, out, out, dtype=np.float32)
  u = x / np.float32(scale) + np.float32(0.5 * (1 - 1 / scale))
  left = np.floor(u - np.float32(width / 2))
  taps = math.ceil(width) + 2
  indices = left[:, None] + np.arange(taps, dtype=np.float32)[None, :]
  weights = np.float32(scale) * _cubic((u[:, None] - indices) * np.float32(scale))
  weights = weights / weights.sum(axis=1, keepdims=True)
  zero_columns = (weights == 0).sum(axis=0)
  if zero_columns[0]:
    indices, weights = indices[:, 1:], weights[:, 1:]
  if zero_columns[-1]:
    indices, weights = indices[:, :-1], weights[:, :-1]
  indices = indices.astype(np.int64) - 1  # 1-based → 0-based
  mirrored = np.where(indices < 0, -indices - 1, indices)
  mirrored = np.where(mirrored >= length, 2 * length - 1 - mirrored, mirrored)
  return weights, mirrored


def _resample_rows(image: np.ndarray) -> np.ndarray:
  """×1/2 along axis 0: each output row Σ_k w_k·x_k, summed in float32 from k = 0 up.

  For BasicSR's first (row) pass this order gives its torch `mv` bit for bit; its second pass
  runs a strided BLAS kernel whose float32 rounding no plain summation order reproduces (a
  third of the pixels differ in the last bit). That moves NIQE by up to ~2e-3 (one step of
  the α grid), as much as BasicSR's own value moves with its BLAS (scripts/
  check_basicsr_parity.py measures both).
  """
  weights, indices = _half_weights(image.shape[0])
  out = np.zeros((weights.shape[0],) + image.shape[1:], np.float32)
  for k in range(weights.shape[1]):
    out += weights[:, k, None] * image[indices[:, k]]
  return out


def half_size(image: np.ndarray) -> np.ndarray:
  """MATLAB imresize(image, 0.5) (bicubic, antialiased) of a 2-D float32 image, rows first."""
  rows = _resample_rows(np.asarray(image, np.float32))
  return _resample_rows(rows.T).T


def niqe_of_luma(y: np.ndarray) -> float:
  """NIQE of a rounded Y (or grey) image in [0, 255], float32 [H, W].

  Raises:
    NiqeError: Fewer than two 96×96 blocks (with complete features).
  """
  mu_pris, cov_pris, window = pristine_model()
  y = np.asarray(y, np.float32)
  rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
  if not rows or not cols:
    raise NiqeError(f"NIQE needs at least one {BLOCK}×{BLOCK} block; the image is "
                    f"{y.shape[1]}×{y.shape[0]}")
  image = y[:rows * BLOCK, :cols * BLOCK]
  per_scale = []
  for scale in (1, 2):
    coefficients = mscn(image, window)
    size = BLOCK // scale
    per_scale.append(np.array([
        block_features(coefficients[r * size:(r + 1) * size, c * size:(c + 1) * size])
        for c in range(cols) for r in range(rows)]))  # BasicSR's order: columns outer
    if scale == 1:
      image = half_size(image / 255.0) * 255.0
  features = np.concatenate(per_scale, axis=1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as BasicSR
    mu = np.nanmean(features, axis=0)
  complete = features[~np.isnan(features).any(axis=1)]
  if len(complete) < 2:  # np.cov of one row is NaN (BasicSR then fails in pinv).
    raise NiqeError(f"NIQE needs at least two {BLOCK}×{BLOCK} blocks with complete features; "
                    f"the {y.shape[1]}×{y.shape[0]} image has {len(complete)}")
  cov = np.cov(complete, rowvar=False)
  difference = mu_pris - mu
  quality = difference @ np.linalg.pinv((cov_pris + cov) / 2) @ difference
  return float(np.sqrt(quality))


def niqe(image: np.ndarray, crop_border: int = 0) -> float:
  """NIQE of an image, as BasicSR's `calculate_niqe(img, crop_border)` (convert_to "y").

  Args:
    image: uint8 RGB [H, W, 3] (or values in [0, 255]: any dtype), or a 2-D grey image in
      [0, 255]. BasicSR takes cv2's BGR order; this takes RGB.
    crop_border: Pixels cropped from each edge first.

  Returns:
    The score (lower = more natural).

  Raises:
    NiqeError: A shape other than [H, W] or [H, W, 3], or fewer than two 96×96 blocks after
      the crop.
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[2] == 3:
    y = luma(image)
  elif image.ndim == 2:
    y = image.astype(np.float32)
  else:
    raise NiqeError(f"NIQE takes an [H, W, 3] RGB or [H, W] grey image, got shape {image.shape}")
  if crop_border:
    y = y[crop_border:-crop_border, crop_border:-crop_border]
  return niqe_of_luma(np.round(y))
