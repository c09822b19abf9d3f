"""Tests of esrgan_tf.data.augment (colour augmentation of LR/HR pairs)."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import esrgan_tf
from esrgan_tf.data import augment, datasets


def _photo_pairs(batch=4, gt=32, scale=4):
  """Real-photo HR crops and their MATLAB-bicubic LR (data.degrade), float32 [0, 1]."""
  with Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")) as im:
    photo = np.asarray(im.convert("RGB"), np.float32) / 255.0
  hr = np.stack([photo[40 * i:40 * i + gt, 30 * i:30 * i + gt] for i in range(batch)])
  lr = np.stack([datasets.degrade(h, scale) for h in hr])
  return lr, hr


def test_permutation_matrices_are_the_six_permutations():
  m = augment.permutation_matrices(tf.constant([1, 2]), 600).numpy()
  found = {tuple(np.argmax(x, axis=1)) for x in m}
  assert found == set(itertools.permutations(range(3)))
  np.testing.assert_array_equal(m.sum(axis=1), np.ones((600, 3)))
  np.testing.assert_array_equal(m.sum(axis=2), np.ones((600, 3)))


def test_hue_rotation_hand_values():
  # θ = 2π/3 about the grey axis maps R → G → B → R (a cyclic permutation of the axes).
  m = augment.hue_rotation_matrices([2 * math.pi / 3, 0.0]).numpy()
  np.testing.assert_allclose(m[0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-6)
  np.testing.assert_allclose(m[1], np.eye(3), atol=1e-7)
  # A rotation: orthogonal, determinant 1, grey (1, 1, 1) fixed.
  r = augment.hue_rotation_matrices([0.7]).numpy()[0]
  np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
  np.testing.assert_allclose(r @ np.ones(3), np.ones(3), atol=1e-6)


def test_saturation_hand_values():
  m = augment.saturation_matrices([0.0, 1.0, 2.0]).numpy()
  np.testing.assert_allclose(m[0], np.full((3, 3), 1 / 3), atol=1e-7)  # grey: the mean
  np.testing.assert_allclose(m[1], np.eye(3), atol=1e-7)
  np.testing.assert_allclose(m[2] @ [0.6, 0.3, 0.3], [0.8, 0.2, 0.2], atol=1e-6)


@pytest.mark.parametrize("eager", [True, False])
def test_color_augment_keeps_pairs_aligned(eager):
  """Recolouring LR and HR alike equals degrading the recoloured HR (bicubic is linear)."""
  lr, hr = _photo_pairs()
  seed = tf.constant([3, 4])
  kwargs = dict(permute=True, max_hue=math.pi, saturation=(0.5, 1.0))
  fn = augment.color_augment_pairs if eager else tf.function(augment.color_augment_pairs)
  lr_aug, hr_aug = fn(tf.constant(lr), tf.constant(hr), seed, **kwargs)
  lr_aug, hr_aug = lr_aug.numpy(), hr_aug.numpy()
  assert lr_aug.shape == lr.shape and hr_aug.shape == hr.shape
  assert hr_aug.min() >= 0 and hr_aug.max() <= 1
  np.testing.assert_allclose(lr_aug * 255, np.round(lr_aug * 255), atol=1e-3)  # 8-bit levels
  m = augment.random_color_matrices(
      tf.random.experimental.stateless_split(seed, 4)[0], 4, **kwargs).numpy()
  np.testing.assert_allclose(hr_aug, np.clip(np.einsum("bhwc,bdc->bhwd", hr, m), 0, 1),
                             atol=1e-5)
  for i in range(4):
    reference = datasets.degrade(hr_aug[i], 4)
    # LR rounding (≤ 0.5 level before and after the matrix) and clipping: a few levels at most.
    assert np.abs(lr_aug[i] - reference).max() <= 3.5 / 255, i
    assert np.abs(lr_aug[i] - reference).mean() <= 0.6 / 255, i
  # Not the identity: the colours did change.
  assert np.abs(hr_aug - hr).mean() > 0.01


def test_color_augment_preserves_the_grey_axis_and_luminance_structure():
  """Permutation, hue and saturation ≤ 1 keep each pixel's channel mean (no clipping then)."""
  lr, hr = _photo_pairs()
  lr_aug, hr_aug = augment.color_augment_pairs(tf.constant(lr), tf.constant(hr),
                                               tf.constant([5, 6]), permute=True,
                                               max_hue=math.pi, saturation=(0.3, 1.0))
  hr_aug = hr_aug.numpy()
  inside = (hr_aug > 0).all(-1) & (hr_aug < 1).all(-1)
  assert inside.mean() > 0.9
  np.testing.assert_allclose(hr_aug.mean(-1)[inside], hr.mean(-1)[inside], atol=1e-5)
  lr_aug = lr_aug.numpy()
  inside = (lr_aug > 0).all(-1) & (lr_aug < 1).all(-1)
  # Rounded to 8-bit levels again: each channel moves by at most half a level.
  np.testing.assert_allclose(lr_aug.mean(-1)[inside], lr.mean(-1)[inside], atol=0.5 / 255 + 1e-6)


def test_permutation_only_is_lossless():
  lr, hr = _photo_pairs()
  lr_aug, hr_aug = augment.color_augment_pairs(tf.constant(lr), tf.constant(hr),
                                               tf.constant([7, 8]), permute=True)
  for i in range(4):
    order = [int(np.argmin(np.abs(hr_aug[i].numpy()[..., c:c + 1] - hr[i]).sum((0, 1))))
             for c in range(3)]
    np.testing.assert_array_equal(hr_aug[i].numpy(), hr[i][..., order])
    np.testing.assert_allclose(lr_aug[i].numpy(), lr[i][..., order], atol=1e-6)  # re-rounded


def test_color_augmented_dataset_is_deterministic_and_keeps_the_spec():
  lr, hr = _photo_pairs()
  ds = tf.data.Dataset.from_tensors((tf.constant(lr), tf.constant(hr))).repeat(3)
  out1 = list(augment.color_augmented_dataset(ds, 11, permute=True, max_hue=1.0))
  out2 = list(augment.color_augmented_dataset(ds, 11, permute=True, max_hue=1.0))
  assert augment.color_augmented_dataset(ds, 11).element_spec == ds.element_spec
  for (a_lr, a_hr), (b_lr, b_hr) in zip(out1, out2):
    np.testing.assert_array_equal(a_lr.numpy(), b_lr.numpy())
    np.testing.assert_array_equal(a_hr.numpy(), b_hr.numpy())
  # Batches differ from one another (the seed advances per batch).
  assert np.abs(out1[0][1].numpy() - out1[1][1].numpy()).max() > 0.05


def test_contrast_makes_flat_aligned_pairs_without_clipping():
  lr, hr = _photo_pairs()
  lr_aug, hr_aug = augment.color_augment_pairs(tf.constant(lr), tf.constant(hr),
                                               tf.constant([9, 10]), permute=False,
                                               min_contrast=0.2, contrast_prob=1.0)
  lr_aug, hr_aug = lr_aug.numpy(), hr_aug.numpy()
  for i in range(4):
    # x' = c·x + (1 − c)·t: the standard deviation shrinks by c ∈ [0.2, 1], no value clips.
    c = hr_aug[i][..., 0].std() / hr[i][..., 0].std()
    assert 0.2 - 1e-4 <= c <= 1.0 + 1e-4
    t = (hr_aug[i] - c * hr[i]).mean(axis=(0, 1)) / max(1 - c, 1e-6)
    if c < 0.999:
      np.testing.assert_allclose(hr_aug[i], c * hr[i] + (1 - c) * t, atol=1e-5)
      assert (t >= 0).all() and (t <= 1).all()
    # Affine maps commute with bicubic (weights sum to 1): LR = degrade(HR) up to rounding.
    assert np.abs(lr_aug[i] - datasets.degrade(hr_aug[i], 4)).max() <= 1.01 / 255, i
  assert np.mean([hr_aug[i][..., 0].std() / hr[i][..., 0].std() for i in range(4)]) < 0.9


def test_grain_is_added_to_hr_and_its_downscale_to_lr():
  lr, hr = _photo_pairs(batch=6)
  seed = tf.constant([3, 4])
  plain = augment.color_augment_pairs(tf.constant(lr), tf.constant(hr), seed, permute=False)
  lr_g, hr_g = (x.numpy() for x in augment.color_augment_pairs(
      tf.constant(lr), tf.constant(hr), seed, permute=False, grain=8 / 255, grain_prob=0.5))
  sigmas = []
  for i in range(6):
    noise = hr_g[i] - plain[1][i].numpy()
    sigmas.append(noise.std() * 255)
    # Still a MATLAB-bicubic pair (the grain is linear; LR rounding and rare clipping aside).
    assert np.abs(lr_g[i] - datasets.degrade(hr_g[i], 4)).max() <= 1.01 / 255, i
  sigmas = np.array(sigmas)
  # σ uniform in [0, 8] levels on about half of the pairs; the others are untouched.
  assert (sigmas <= 8.1).all() and 1 <= (sigmas > 0).sum() <= 5, sigmas
  untouched = sigmas == 0
  np.testing.assert_array_equal(lr_g[untouched], plain[0].numpy()[untouched])
