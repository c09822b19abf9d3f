"""PSNR/SSIM against hand-derived values and a direct-window SSIM; metrics.evaluate."""

import math

import numpy as np
import pytest

from esrgan_tf.evaluation import metrics
from esrgan_tf.images import imresize

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _direct_ssim(a, b):
  """Straightforward SSIM: 11×11 Gaussian window (σ 1.5) placed at every valid position."""
  x = np.arange(11) - 5.0
  g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
  win = np.outer(g, g)
  win /= win.sum()
  h, w = a.shape
  values = []
  for i in range(h - 10):
    for j in range(w - 10):
      pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
      mu_a, mu_b = (win * pa).sum(), (win * pb).sum()
      var_a = (win * (pa - mu_a) ** 2).sum()
      var_b = (win * (pb - mu_b) ** 2).sum()
      cov = (win * (pa - mu_a) * (pb - mu_b)).sum()
      values.append((2 * mu_a * mu_b + C1) * (2 * cov + C2) /
                    ((mu_a ** 2 + mu_b ** 2 + C1) * (var_a + var_b + C2)))
  return np.mean(values)


def test_psnr_of_plus_one_is_20_log10_255():
  ref = np.random.default_rng(0).integers(0, 255, (8, 9, 3)).astype(np.uint8)
  # MSE = 1 → PSNR = 10·log10(255²) = 20·log10(255) = 48.1308 dB.
  assert metrics.calculate_psnr(ref + 1, ref) == pytest.approx(48.1308036, abs=1e-6)
  assert metrics.calculate_psnr(ref.astype(np.float32) + 2, ref) == pytest.approx(
      20 * math.log10(255 / 2), abs=1e-9)


def test_identical_images_give_inf_and_one():
  img = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
  assert metrics.calculate_psnr(img, img) == float("inf")
  assert metrics.calculate_ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_uint8_does_not_wrap():
  a = np.zeros((4, 4, 1), np.uint8)
  b = np.full((4, 4, 1), 255, np.uint8)
  # MSE 255² → 0 dB (uint8 subtraction would wrap around to 1).
  assert metrics.calculate_psnr(a, b) == pytest.approx(0.0, abs=1e-12)


def test_crop_border_removes_each_side():
  ref = np.zeros((10, 10, 3))
  img = ref.copy()
  img[:2] = 100.0  # only inside the border
  img[:, -2:] = 100.0
  assert metrics.calculate_psnr(img, ref, crop_border=2) == float("inf")
  img[5, 5, 0] = 6.0  # one pixel of the 6×6×3 centre: MSE = 36 / 108
  assert metrics.calculate_psnr(img, ref, crop_border=2) == pytest.approx(
      10 * math.log10(255 ** 2 / (36 / 108)))


def test_y_channel_of_white_black_and_grey():
  # BT.601 studio swing: Y = 16 + (65.481 + 128.553 + 24.966)·v/255 = 16 + 219·v/255.
  white, black = np.full((1, 1, 3), 255.0), np.zeros((1, 1, 3))
  assert metrics.rgb_to_y(white)[0, 0, 0] == pytest.approx(235.0)
  assert metrics.rgb_to_y(black)[0, 0, 0] == pytest.approx(16.0)
  red = np.array([[[255.0, 0, 0]]])
  assert metrics.rgb_to_y(red)[0, 0, 0] == pytest.approx(16 + 65.481)
  # Y of (v+1) vs v everywhere differs by 219/255 → PSNR = 20·log10(255 / (219/255)).
  ref = np.full((4, 4, 3), 100.0)
  assert metrics.calculate_psnr(ref + 1, ref, y_channel=True) == pytest.approx(
      20 * math.log10(255 * 255 / 219))


def test_ssim_of_constant_images_by_hand():
  # Both constant: variances and covariance are 0, so SSIM = (2μxμy + C1) / (μx² + μy² + C1).
  a = np.full((12, 12, 1), 100.0)
  b = np.full((12, 12, 1), 120.0)
  expected = (2 * 100 * 120 + C1) / (100 ** 2 + 120 ** 2 + C1)
  assert metrics.calculate_ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_direct_window_loops():
  rng = np.random.default_rng(2)
  a = rng.random((20, 20, 3)) * 255
  b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
  expected = np.mean([_direct_ssim(a[..., c], b[..., c]) for c in range(3)])
  assert metrics.calculate_ssim(a, b) == pytest.approx(expected, abs=1e-10)
  y_expected = _direct_ssim(metrics.rgb_to_y(a)[4:-4, 4:-4, 0], metrics.rgb_to_y(b)[4:-4, 4:-4, 0])
  assert metrics.calculate_ssim(a, b, crop_border=4, y_channel=True) == pytest.approx(
      y_expected, abs=1e-10)


def test_gaussian_window():
  g = metrics.gaussian_window()
  assert g.sum() == pytest.approx(1.0)
  assert g[5] / g[4] == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)))


def test_errors():
  with pytest.raises(ValueError, match="differ"):
    metrics.calculate_psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
  with pytest.raises(ValueError, match="crop_border"):
    metrics.calculate_psnr(np.zeros((4, 4, 3)), np.ones((4, 4, 3)), crop_border=2)
  with pytest.raises(ValueError, match="11x11"):
    metrics.calculate_ssim(np.zeros((10, 10, 3)), np.zeros((10, 10, 3)))
  with pytest.raises(ValueError, match="y_channel"):
    metrics.calculate_psnr(np.zeros((4, 4, 1)), np.ones((4, 4, 1)), y_channel=True)


def test_evaluate_with_bicubic_model_equals_baseline():
  rng = np.random.default_rng(3)
  hr = rng.random((32, 24, 3)).astype(np.float32)
  lr = imresize.imresize(hr, 0.5).numpy()

  def bicubic_model(batch):  # an "upscaler" that is MATLAB bicubic itself
    return imresize.imresize(batch, 2.0).numpy()

  result = metrics.evaluate(bicubic_model, [("a", lr, hr)], crop_border=2, y_channel=True)
  row = result["images"][0]
  assert row["psnr"] == pytest.approx(row["bicubic_psnr"])
  assert row["ssim"] == pytest.approx(row["bicubic_ssim"])
  sr = np.floor(np.clip(imresize.imresize(lr, 2.0).numpy(), 0, 1) * 255 + 0.5)
  hr255 = np.floor(hr * 255 + 0.5)
  assert row["psnr"] == pytest.approx(metrics.calculate_psnr(sr, hr255, 2, True))
  assert result["mean"]["psnr"] == pytest.approx(row["psnr"])
  assert result["psnr_gain"] == pytest.approx(0.0, abs=1e-12)
  assert "PSNR gain over MATLAB bicubic: +0.000 dB" in metrics.format_table(result)


def test_evaluate_rejects_wrong_output_shape():
  lr = np.zeros((8, 8, 3), np.float32)
  hr = np.zeros((16, 16, 3), np.float32)
  with pytest.raises(ValueError, match="differs"):
    metrics.evaluate(lambda b: np.zeros((1, 8, 8, 3)), [("x", lr, hr)])


def test_fixed_size_models_are_tiled_at_their_size():
  # A TFLite/static-ONNX-like engine refuses inputs larger than its size; evaluating it on a
  # larger LR (esrgan-eval's default, no --tile) cuts tiles of that size.
  from esrgan_tf.inference.engine import Engine  # pylint: disable=g-import-not-at-top

  def nearest(batch):
    assert batch.shape[1] <= 8 and batch.shape[2] <= 8, batch.shape
    return batch.repeat(2, 1).repeat(2, 2)

  engine = Engine(fn=nearest, scale=2, name="static", input_size=(8, 8), max_batch=1)
  lr = np.random.default_rng(3).random((13, 11, 3)).astype(np.float32)
  hr = lr.repeat(2, 0).repeat(2, 1)
  result = metrics.evaluate(engine, [("x", lr, hr)], bicubic=False)
  assert result["images"][0]["psnr"] == float("inf")
