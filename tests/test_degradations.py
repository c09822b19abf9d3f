"""data.degradations (numpy, BasicSR's primitives) and their TF twins in degradations_tf."""

import math
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf import SAMPLES_DIR
from esrgan_tf.data import degradations as dg
from esrgan_tf.data import degradations_tf as dtf

ALL_TYPES = list(dg.KERNEL_TYPES)


def _j1_series(x, terms=60):
  """J1 by its power series Σ (-1)^m (x/2)^(2m+1) / (m! (m+1)!) (independent of dg.bessel_j1)."""
  return sum((-1) ** m * (x / 2) ** (2 * m + 1) / (math.factorial(m) * math.factorial(m + 1))
             for m in range(terms))


def _photo(size=64):
  with Image.open(os.path.join(SAMPLES_DIR, "train", "coffee.png")) as im:
    return np.asarray(im.convert("RGB"), np.float32)[:size, :size] / 255.0


# --- kernels -------------------------------------------------------------------------------------

def test_mesh_grid_is_centred():
  xy, xx, yy = dg.mesh_grid(5)
  assert xy.shape == (5, 5, 2)
  np.testing.assert_array_equal(xx[0], [-2, -1, 0, 1, 2])
  np.testing.assert_array_equal(yy[:, 0], [-2, -1, 0, 1, 2])
  np.testing.assert_array_equal(xy[..., 0], xx)


def test_sigma_matrix2_rotation_by_hand():
  # Rotating diag(4, 1) by 90° swaps the axes; by 45° gives [[2.5, 1.5], [1.5, 2.5]].
  np.testing.assert_allclose(dg.sigma_matrix2(2, 1, math.pi / 2), [[1, 0], [0, 4]], atol=1e-12)
  np.testing.assert_allclose(dg.sigma_matrix2(2, 1, math.pi / 4), [[2.5, 1.5], [1.5, 2.5]],
                             atol=1e-12)


def test_gaussian_3x3_by_hand():
  # Unnormalised exp(-(x²+y²)/2): centre 1, edges e^-1/2, corners e^-1.
  total = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1)
  k = dg.bivariate_gaussian(3, 1.0, 5.0, 0.3)  # isotropic: sig_y, theta ignored
  assert k[1, 1] == pytest.approx(1 / total, abs=1e-15)
  assert k[0, 1] == pytest.approx(math.exp(-0.5) / total, abs=1e-15)
  assert k[0, 0] == pytest.approx(math.exp(-1) / total, abs=1e-15)
  np.testing.assert_array_equal(dg.bivariate_Gaussian(3, 1.0, 5.0, 0.3), k)


def test_plateau_3x3_by_hand():
  # 1 / (1 + q^beta), beta 1, sigma 1: centre 1, edges 1/2, corners 1/3.
  total = 1 + 4 / 2 + 4 / 3
  k = dg.bivariate_plateau(3, 1.0, 1.0, 0.0, 1.0)
  np.testing.assert_allclose(k, np.array([[1 / 3, 1 / 2, 1 / 3], [1 / 2, 1, 1 / 2],
                                          [1 / 3, 1 / 2, 1 / 3]]) / total, atol=1e-15)


def test_generalized_with_beta_one_is_gaussian():
  for iso in (True, False):
    np.testing.assert_allclose(
        dg.bivariate_generalized_gaussian(21, 2.0, 0.7, 0.4, 1.0, isotropic=iso),
        dg.bivariate_gaussian(21, 2.0, 0.7, 0.4, isotropic=iso), atol=1e-15)


@pytest.mark.parametrize("fn,extra", [(dg.bivariate_gaussian, ()),
                                      (dg.bivariate_generalized_gaussian, (2.5,)),
                                      (dg.bivariate_plateau, (1.5,))])
def test_kernels_sum_to_one_and_symmetries(fn, extra):
  iso = fn(21, 1.7, 0.4, 0.9, *extra)
  assert iso.sum() == pytest.approx(1, abs=1e-12)
  # Isotropic: invariant under transpose and both flips.
  np.testing.assert_allclose(iso, iso.T, atol=1e-15)
  np.testing.assert_allclose(iso, iso[::-1], atol=1e-15)
  np.testing.assert_allclose(iso, iso[:, ::-1], atol=1e-15)
  # Anisotropic at theta 0 is symmetric under flips only; rotating by 90° transposes it.
  aniso = fn(21, 3.0, 1.0, 0.0, *extra, isotropic=False)
  assert aniso.sum() == pytest.approx(1, abs=1e-12)
  np.testing.assert_allclose(aniso, aniso[::-1, ::-1], atol=1e-15)
  assert np.abs(aniso - aniso.T).max() > 1e-3
  np.testing.assert_allclose(fn(21, 3.0, 1.0, math.pi / 2, *extra, isotropic=False), aniso.T,
                             atol=1e-12)
  # sig_x is along x (columns): the kernel is wider along rows of the grid's x axis.
  assert aniso[10, 12] > aniso[12, 10]


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_random_mixed_kernels_each_type(kind):
  k = dg.random_mixed_kernels([kind], [1.0], 21, (0.2, 3), (0.2, 3), betag_range=(0.5, 4),
                              betap_range=(1, 2), rng=3)
  assert k.shape == (21, 21) and k.sum() == pytest.approx(1, abs=1e-12)
  assert (k >= 0).all()
  if kind.endswith("_iso") or kind == "iso":
    np.testing.assert_allclose(k, k.T, atol=1e-15)
  np.testing.assert_array_equal(
      k, dg.random_mixed_kernels([kind], [1.0], 21, (0.2, 3), (0.2, 3), betag_range=(0.5, 4),
                                 betap_range=(1, 2), rng=3))


def test_random_mixed_kernels_errors():
  with pytest.raises(ValueError, match="unknown kernel type"):
    dg.random_mixed_kernels(["iso", "skew"], [0.5, 0.5])
  with pytest.raises(ValueError, match="same non-zero length"):
    dg.random_mixed_kernels(["iso"], [0.5, 0.5])
  with pytest.raises(ValueError, match="odd"):
    dg.random_mixed_kernels(["iso"], [1.0], kernel_size=20)


def test_bessel_j1_against_power_series():
  x = np.array([0.0, 0.1, 1.0, math.pi, 3.8317, 7.5, 10.0])
  np.testing.assert_allclose(dg.bessel_j1(x), [_j1_series(v) for v in x], atol=1e-12)
  # First zero of J1 (Abramowitz & Stegun table 9.5): 3.8317059702.
  assert abs(dg.bessel_j1(3.8317059702)) < 1e-9


@pytest.mark.parametrize("cutoff", [math.pi, math.pi / 3, 1.0])
def test_circular_lowpass_kernel_by_hand(cutoff):
  k = dg.circular_lowpass_kernel(cutoff, 13)
  c = 6
  assert k.sum() == pytest.approx(1, abs=1e-12)
  # Centre cutoff²/(4π), neighbours cutoff·J1(cutoff·r)/(2πr); the normalisation cancels in ratios.
  centre = cutoff ** 2 / (4 * math.pi)
  assert k[c, c + 1] / k[c, c] == pytest.approx(
      cutoff * _j1_series(cutoff) / (2 * math.pi) / centre, rel=1e-12)
  r = math.sqrt(8)
  assert k[c + 2, c - 2] / k[c, c] == pytest.approx(
      cutoff * _j1_series(cutoff * r) / (2 * math.pi * r) / centre, rel=1e-10)
  np.testing.assert_allclose(k, k.T, atol=1e-15)
  padded = dg.circular_lowpass_kernel(cutoff, 13, pad_to=21)
  assert padded.shape == (21, 21)
  np.testing.assert_array_equal(padded[4:17, 4:17], k)
  assert padded[:4].sum() == 0


def test_cv2_gaussian_sigma_rule():
  # cv2.getGaussianKernel for sigma <= 0: 0.3·((51 − 1)·0.5 − 1) + 0.8 = 8.0 for USM's 51.
  assert dg.gaussian_sigma_for_size(51) == pytest.approx(8.0)
  g = dg.gaussian_kernel_1d(51)
  assert g.sum() == pytest.approx(1) and g[25] / g[24] == pytest.approx(math.exp(1 / 128))


# --- USM, noise, JPEG ----------------------------------------------------------------------------

def test_usm_sharp_constant_is_identity_and_edge_overshoots():
  flat = np.full((30, 40, 3), 0.3, np.float32)
  np.testing.assert_allclose(dg.usm_sharp(flat), flat, atol=1e-7)
  step = np.zeros((40, 40, 3), np.float32)
  step[:, 20:] = 0.6
  out = dg.usm_sharp(step)
  assert out.dtype == np.float32 and out.shape == step.shape
  assert out[:, 20].min() > 0.6 + 0.02  # bright side pushed up
  assert out[:, 19].max() == 0.0  # dark side clipped at 0
  np.testing.assert_allclose(out[0], out[17], atol=1e-7)  # constant along the edge


def test_usm_sharp_reflect101_border():
  # A ramp along x reflected by reflect-101 at x=0 is a V: the blur there lifts the value above
  # the ramp's (a plain continuation would keep a linear function unchanged).
  ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (8, 1, 3))
  blurred = dg._gaussian_blur(ramp, dg.gaussian_kernel_1d(51))
  assert blurred[0, 0, 0] > 0.05
  np.testing.assert_allclose(blurred[:, 32], ramp[:, 32], atol=2e-3)


def test_gaussian_noise_statistics():
  img = np.full((256, 256, 3), 0.5, np.float32)
  noise = dg.generate_gaussian_noise(img, sigma=10, rng=0)
  assert noise.std() == pytest.approx(10 / 255, rel=0.02)
  assert abs(noise.mean()) < 1e-3
  gray = dg.generate_gaussian_noise(img, sigma=10, gray_noise=True, rng=0)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  out = dg.add_gaussian_noise(img, sigma=30, rounds=True, rng=1)
  assert out.min() >= 0 and out.max() <= 1
  np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)
  a = dg.random_add_gaussian_noise(img, (1, 30), 0.4, rng=7)
  np.testing.assert_array_equal(a, dg.random_add_gaussian_noise(img, (1, 30), 0.4, rng=7))
  assert not np.array_equal(a, dg.random_add_gaussian_noise(img, (1, 30), 0.4, rng=8))


def test_poisson_noise_statistics():
  # A constant image has one level: vals = 2^0 = 1, so the noise is Poisson(λ) − λ with
  # λ = round(0.5·255)/255 = 128/255, variance λ.
  img = np.full((256, 256, 3), 0.5, np.float32)
  lam = 128 / 255
  noise = dg.generate_poisson_noise(img, scale=1.0, rng=0)
  assert noise.var() == pytest.approx(lam, rel=0.02)
  assert abs(noise.mean()) < 0.01
  assert dg.generate_poisson_noise(img, scale=0.5, rng=0).var() == pytest.approx(lam / 4, rel=0.02)
  # 256 levels → vals 256: variance img/256 per pixel.
  ramp = np.tile((np.arange(256, dtype=np.float32) / 255)[None, :, None], (512, 1, 3))
  assert dg.poisson_levels(ramp) == 256
  var = dg.generate_poisson_noise(ramp, rng=1)[:, 200, 0].var()
  assert var == pytest.approx((200 / 255) / 256, rel=0.1)
  gray = dg.generate_poisson_noise(_photo(), gray_noise=True, rng=2)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
  out = dg.random_add_poisson_noise(_photo(), (0.05, 3), 0.4, rng=3)
  assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_jpeg_compress():
  img = _photo()
  q100 = dg.jpeg_compress(img, 100)
  assert q100.dtype == np.float32 and q100.shape == img.shape
  # At quality 100 the quantisation is nearly lossless; what remains is mostly the 4:2:0 chroma
  # subsampling, so the luma stays within ~1/3 level on average and the colours within ~2.
  luma = np.array([0.299, 0.587, 0.114], np.float32)
  assert np.abs((q100 - img) @ luma).mean() < 0.5 / 255
  assert np.abs(q100 - img).mean() < 2.5 / 255
  np.testing.assert_array_equal(q100 * 255, np.round(q100 * 255))
  err = [np.abs(dg.jpeg_compress(img, q) - img).mean() for q in (10, 50, 90)]
  assert err[0] > err[1] > err[2]
  # Same pixels as TF's own libjpeg encoder with 4:2:0 chroma at the same quality.
  pixels = np.rint(img * 255).astype(np.uint8)
  for q in (30, 95):
    ref = tf.io.decode_jpeg(tf.io.encode_jpeg(pixels, quality=q, chroma_downsampling=True),
                            dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(dg.jpeg_compress(img, q), ref / np.float32(255))
  # BasicSR's name keeps its BGR contract; R and B are not interchangeable in JPEG's YCbCr.
  bgr = img[..., ::-1]
  np.testing.assert_array_equal(dg.add_jpg_compression(bgr, 30),
                                dg.jpeg_compress(img, 30)[..., ::-1])
  assert not np.array_equal(dg.add_jpg_compression(img, 30), dg.jpeg_compress(img, 30))
  with pytest.raises(ValueError, match=r"integer in \[1, 100\]"):
    dg.jpeg_compress(img, 101)
  with pytest.raises(ValueError, match="HWC RGB"):
    dg.jpeg_compress(img[..., 0], 90)


# --- TF twins ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", range(6))
def test_tf_shaped_kernel_matches_numpy(kind):
  fns = [dg.bivariate_gaussian, dg.bivariate_generalized_gaussian, dg.bivariate_plateau]
  fn = fns[kind // 2]
  extra = () if kind // 2 == 0 else (1.7,)
  ref = fn(11, 2.1, 0.8, 0.6, *extra, isotropic=kind % 2 == 0)
  ref = np.pad(ref, 5)
  got = dtf.shaped_kernel(kind, 11, 2.1, 0.8, 0.6, 1.7).numpy()
  np.testing.assert_allclose(got, ref, atol=1e-13)


def test_tf_sinc_and_random_kernels():
  np.testing.assert_allclose(dtf.sinc_kernel(1.3, 9).numpy(),
                             dg.circular_lowpass_kernel(1.3, 9, pad_to=21), atol=1e-12)
  for i in range(8):
    k = dtf.random_blur_kernel(tf.constant([i, 1]), ALL_TYPES, [0.45, 0.25, 0.12, 0.03, 0.12,
                                                                  0.03], (0.2, 3), (0.5, 4),
                               (1, 2), sinc_prob=0.3).numpy()
    assert k.shape == (21, 21) and k.sum() == pytest.approx(1, abs=1e-5)
  again = dtf.random_blur_kernel(tf.constant([7, 1]), ALL_TYPES, [1] * 6, (0.2, 3), (0.5, 4),
                                 (1, 2), 0.3)
  np.testing.assert_array_equal(
      again, dtf.random_blur_kernel(tf.constant([7, 1]), ALL_TYPES, [1] * 6, (0.2, 3), (0.5, 4),
                                    (1, 2), 0.3))
  with pytest.raises(ValueError, match="bad kernel_list"):
    dtf.random_blur_kernel(tf.constant([1, 1]), ["iso", "skew"], [1, 1], (0.2, 3), (0.5, 4),
                           (1, 2), 0.1)


def test_tf_filter_usm_jpeg_match_numpy():
  img = _photo(48)
  kernel = dg.bivariate_gaussian(5, 1.2, 0.5, 0.3, isotropic=False)
  pad = np.pad(img.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
  ref = sum(kernel[i, j] * pad[i:i + 48, j:j + 48] for i in range(5) for j in range(5))
  np.testing.assert_allclose(dtf.filter2d(img, kernel).numpy(), ref, atol=1e-6)
  np.testing.assert_allclose(dtf.usm_sharp(tf.constant(img)).numpy(), dg.usm_sharp(img),
                             atol=2e-5)
  np.testing.assert_array_equal(dtf.jpeg(img, tf.constant(40)).numpy(), dg.jpeg_compress(img, 40))
  # reflect-101 beyond one period (a 3-pixel axis padded by 5): 1 2 1 0 1 2 1 0 ...
  np.testing.assert_array_equal(dtf.reflect101_indices(3, 0, 5).numpy(), [0, 1, 2, 1, 0, 1, 2, 1])


def test_tf_poisson_noise_variance():
  img = tf.fill([256, 256, 3], 0.5)
  noise = dtf.poisson_noise(img, tf.constant([3, 4]), 1.0, tf.constant(False)).numpy()
  assert noise.var() == pytest.approx(128 / 255, rel=0.03)
  gray = dtf.poisson_noise(img, tf.constant([3, 4]), 1.0, tf.constant(True)).numpy()
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
