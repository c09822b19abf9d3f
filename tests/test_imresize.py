"""MATLAB bicubic imresize: hand-derived values and an independent loop implementation."""

import math
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from esrgan_tf import SAMPLES_DIR
from esrgan_tf.images import imresize as imr

# --- independent reference: straight loops over MATLAB's definition -----------------------------

def _keys(x):
  x = abs(x)
  if x <= 1:
    return 1.5 * x ** 3 - 2.5 * x ** 2 + 1
  if x <= 2:
    return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
  return 0.0


def _mirror(i, n):
  """0-based index reflected with the edge repeated: ..., 1, 0 | 0, 1, ..., n-1 | n-1, ..."""
  while i < 0 or i >= n:
    i = -1 - i if i < 0 else 2 * n - 1 - i
  return i


def _ref_resize_1d(signal, scale):
  n = len(signal)
  out_n = math.ceil(n * scale)
  stretch = scale if scale < 1 else 1.0  # antialiasing: kernel widened by 1/scale
  out = np.zeros(out_n)
  for j in range(1, out_n + 1):
    u = j / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of output pixel j
    total, acc = 0.0, 0.0
    for i in range(math.floor(u - 2 / stretch) - 2, math.ceil(u + 2 / stretch) + 3):
      w = stretch * _keys((u - i) * stretch)
      if w:
        acc += w * signal[_mirror(i - 1, n)]
        total += w
    out[j - 1] = acc / total
  return out


def _ref_resize(image, scale):
  image = np.asarray(image, np.float64)
  h, w, c = image.shape
  rows = np.zeros((math.ceil(h * scale), w, c))
  for x in range(w):
    for ch in range(c):
      rows[:, x, ch] = _ref_resize_1d(image[:, x, ch], scale)
  out = np.zeros((rows.shape[0], math.ceil(w * scale), c))
  for y in range(rows.shape[0]):
    for ch in range(c):
      out[y, :, ch] = _ref_resize_1d(rows[y, :, ch], scale)
  return out


# --- hand-derived values -------------------------------------------------------------------------

def test_half_scale_weights_by_hand():
  # ×1/2: kernel width 4/0.5 = 8, P = 10 taps. Output 1: u = 1/0.5 + 0.5(1 - 2) = 1.5,
  # left = floor(1.5 - 4) = -3, taps i = -3..6 at distances 1.5 - i = 4.5, 3.5, ..., -4.5;
  # w = 0.5·cubic(d/2) with d/2 = ±2.25 (→ 0), ±1.75, ±1.25, ±0.75, ±0.25:
  # cubic(0.25) = 1.5/64 - 2.5/16 + 1 = 0.8671875, cubic(0.75) = 0.2265625,
  # cubic(1.25) = -0.5·1.953125 + 2.5·1.5625 - 5 + 2 = -0.0703125, cubic(1.75) = -0.0234375;
  # they sum to 2, so after ×0.5 the weights already sum to 1.
  w, idx = imr.weights_and_indices(8, 0.5)
  expected = [0, -0.01171875, -0.03515625, 0.11328125, 0.43359375,
              0.43359375, 0.11328125, -0.03515625, -0.01171875, 0]
  np.testing.assert_allclose(w.numpy()[0], expected, atol=1e-15)
  # 1-based -3..6 → 0-based -4..5, mirrored with the edge repeated.
  np.testing.assert_array_equal(idx.numpy()[0], [3, 2, 1, 0, 0, 1, 2, 3, 4, 5])
  assert w.shape == (4, 10)


def test_quarter_scale_weights_by_hand():
  # ×1/4: width 16, P = 18. Output 1: u = 4 - 1.5 = 2.5; central taps at distance ±0.5 get
  # 0.25·cubic(0.125) = 0.25·(1.5/512 - 2.5/64 + 1) = 0.25·0.9638671875 = 0.240966796875.
  w = imr.weights_and_indices(64, 0.25)[0].numpy()
  assert w.shape == (16, 18)
  center = np.argsort(-w[0])[:2]
  np.testing.assert_allclose(w[0, center], [0.240966796875] * 2, atol=1e-15)
  np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_double_scale_weights_by_hand():
  # ×2 (no antialiasing): output 2 has u = 2/2 + 0.5(1 - 0.5) = 1.25, taps i = -1..4 at
  # distances 2.25, 1.25, 0.25, -0.75, -1.75, -2.75 → cubic = 0, -0.0703125, 0.8671875,
  # 0.2265625, -0.0234375, 0.
  w = imr.weights_and_indices(5, 2.0)[0].numpy()
  np.testing.assert_allclose(w[1], [0, -0.0703125, 0.8671875, 0.2265625, -0.0234375, 0],
                             atol=1e-15)


def test_tiny_matlab_output_by_hand():
  # imresize([1 2 3 4], 0.5): output 1 takes 1-based pixels -2..5 = mirrored values
  # 3, 2, 1, 1, 2, 3, 4, 4 with the 8 weights above:
  # -0.0351563 - 0.0703125 + 0.1132813 + 0.4335938 + 0.8671875 + 0.3398438 - 0.140625
  # - 0.046875 = 1.4609375; by symmetry output 2 = 5 - 1.4609375 = 3.5390625.
  out = imr.imresize(np.array([[[1.0], [2.0], [3.0], [4.0]]]), 0.5).numpy()
  np.testing.assert_allclose(out.ravel(), [1.4609375, 3.5390625], atol=1e-6)
  col = imr.imresize(np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1), 0.5).numpy()
  np.testing.assert_allclose(col.ravel(), [1.4609375, 3.5390625], atol=1e-6)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2.0, 4.0])
def test_constant_stays_constant(scale):
  out = imr.imresize(np.full((13, 11, 2), 0.7, np.float32), scale).numpy()
  assert out.shape == (math.ceil(13 * scale), math.ceil(11 * scale), 2)
  np.testing.assert_allclose(out, 0.7, atol=1e-6)


def test_linear_ramp_is_reproduced_in_the_interior():
  # Keys' cubic reproduces linear functions exactly: away from the mirrored borders,
  # output j samples the ramp at u = 2j - 0.5 (1-based), i.e. value u - 1 for x[i] = i (0-based).
  ramp = np.arange(32, dtype=np.float64).reshape(32, 1, 1)
  out = imr.imresize(ramp, 0.5).numpy().ravel()
  j = np.arange(1, 17)
  interior = slice(3, 13)
  np.testing.assert_allclose(out[interior], (2 * j - 1.5)[interior], atol=1e-9)


# --- against the loop reference ------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 3.0, 4.0])
def test_matches_loop_reference(scale):
  rng = np.random.default_rng(0)
  image = rng.random((13, 17, 3))
  expected = _ref_resize(image, scale)
  np.testing.assert_allclose(imr.imresize(image, scale).numpy(), expected, atol=1e-12)
  out32 = imr.imresize(image.astype(np.float32), scale)
  assert out32.dtype == tf.float32
  np.testing.assert_allclose(out32.numpy(), expected, atol=2e-5)


def test_tiny_image_mirrors_more_than_once():
  # ×1/4 of a 3-pixel-wide image: the 18 taps reach several reflections away.
  image = np.random.default_rng(1).random((3, 2, 1))
  np.testing.assert_allclose(imr.imresize(image, 0.25).numpy(), _ref_resize(image, 0.25),
                             atol=1e-12)


def test_batched_input_and_uint8():
  rng = np.random.default_rng(2)
  batch = (rng.random((2, 12, 8, 3)) * 255).astype(np.uint8)
  out = imr.imresize(batch, 0.25).numpy()
  assert out.shape == (2, 3, 2, 3)
  for b in range(2):
    np.testing.assert_allclose(out[b], _ref_resize(batch[b], 0.25), atol=1e-3)


def test_inside_dataset_map_and_dynamic_shapes():
  rng = np.random.default_rng(3)
  images = [rng.random((16, 20, 3)).astype(np.float32), rng.random((9, 12, 3)).astype(np.float32)]
  ds = tf.data.Dataset.from_generator(lambda: iter(images),
                                      output_signature=tf.TensorSpec([None, None, 3], tf.float32))
  ds = ds.map(lambda x: imr.imresize(x, 0.25))
  outs = list(ds.as_numpy_iterator())
  for image, out in zip(images, outs):
    np.testing.assert_allclose(out, _ref_resize(image, 0.25), atol=2e-5)


def test_quantize_rounds_like_matlab_uint8():
  x = tf.constant([-0.1, 0.5 / 255, 1.5 / 255, 2.49 / 255, 1.2])
  np.testing.assert_allclose(imr.quantize(x).numpy() * 255, [0, 1, 2, 2, 255], atol=1e-4)


def test_bad_arguments():
  with pytest.raises(ValueError, match="scale"):
    imr.imresize(np.zeros((4, 4, 1)), 0)
  with pytest.raises(ValueError, match="expected"):
    imr.imresize(np.zeros((4, 4)), 0.5)


def test_tf_image_resize_bicubic_is_different():
  # Why this module exists: TF's bicubic (a = -0.75, no antialiasing) gives another LR image.
  hr = np.asarray(Image.open(os.path.join(SAMPLES_DIR, "val", "chelsea.png")).convert("RGB"),
                  np.float32) / 255.0
  matlab = imr.imresize(hr, 0.25).numpy()
  tf_lr = tf.image.resize(hr, (64, 64), method="bicubic", antialias=False).numpy()
  psnr = 10 * np.log10(1.0 / np.mean((matlab - tf_lr) ** 2))
  assert psnr < 35.0, psnr
  assert np.abs(matlab - tf_lr).max() > 0.1
  # With antialias=True TF uses the same stretched kernel: equal inside, different at the borders
  # (TF renormalises the truncated kernel, MATLAB mirrors the image).
  tf_aa = tf.image.resize(hr, (64, 64), method="bicubic", antialias=True).numpy()
  np.testing.assert_allclose(tf_aa[3:-3, 3:-3], matlab[3:-3, 3:-3], atol=1e-5)
  assert np.abs(tf_aa[0] - matlab[0]).max() > 0.01
