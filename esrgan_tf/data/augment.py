"""Colour augmentation of (LR, HR) training pairs: channel permutation, hue, saturation, contrast.

A small model trained on a few photos learns their colour statistics: the quickstart model
trained on four bundled photos shifted a red retina photo by G +9 / B −10 levels and a dark
teal out-of-focus background by +84 levels. Randomising colours makes the
network treat the channels alike.

Every transform here is one 3×3 matrix per example, the same for LR and HR, that keeps the
grey axis R = G = B fixed (so the per-pixel channel mean is unchanged):
  - a random permutation of R, G, B (lossless: every pixel value stays a real photo's);
  - a hue rotation by θ about the grey axis (Rodrigues' rotation formula with axis
    (1, 1, 1)/√3);
  - a saturation scale s about the grey axis: M = s·I + (1 − s)·J/3 (J the all-ones matrix).
and, optionally, a contrast cut c·x + (1 − c)·t towards a random colour t (flat patches) and
Gaussian grain added to the HR (and its bicubic downscale to the LR).
MATLAB bicubic downscaling is linear per channel with weights summing to 1, so these affine
maps applied to the LR and HR of a bicubic pair give (up to LR rounding, redone here, and
clipping) the pair of the recoloured HR: the pair stays aligned. That does not hold for
non-linear degradations (noise, JPEG: Real-ESRGAN's pipeline); there, recolour the HR before
degrading it.

Measured on 11 held-out photos (configs/quickstart.py docstring), quickstart model, 1000
steps: mean Y-PSNR gain over bicubic −6.07 dB without, −0.38 dB with permutation + hue +
saturation; with contrast too and 4000 steps +1.21 dB.
"""

from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from esrgan_tf.images import imresize as imresize_lib


def permutation_matrices(seed, batch: int) -> tf.Tensor:
  """[batch, 3, 3] random RGB permutation matrices (each of the 6 equally likely)."""
  perms = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
  index = tf.random.stateless_uniform([batch], seed, minval=0, maxval=6, dtype=tf.int32)
  return tf.gather(tf.eye(3), tf.gather(perms, index))


def hue_rotation_matrices(theta: tf.Tensor) -> tf.Tensor:
  """[N, 3, 3] rotations by `theta` [N] radians about the grey axis (1, 1, 1)/√3.

  Rodrigues: R = cos θ·I + sin θ·[k]× + (1 − cos θ)·k kᵀ with k = (1, 1, 1)/√3, so
  k kᵀ = J/3 and [k]× = [[0, −1, 1], [1, 0, −1], [−1, 1, 0]]/√3.
  """
  theta = tf.convert_to_tensor(theta, tf.float32)[:, None, None]
  cross = tf.constant([[0., -1., 1.], [1., 0., -1.], [-1., 1., 0.]]) / math.sqrt(3.0)
  return (tf.cos(theta) * tf.eye(3) + tf.sin(theta) * cross
          + (1.0 - tf.cos(theta)) * tf.ones([3, 3]) / 3.0)


def saturation_matrices(scale: tf.Tensor) -> tf.Tensor:
  """[N, 3, 3] saturation scales s [N] about the grey axis: s·I + (1 − s)·J/3."""
  s = tf.convert_to_tensor(scale, tf.float32)[:, None, None]
  return s * tf.eye(3) + (1.0 - s) * tf.ones([3, 3]) / 3.0


def apply_color_matrices(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
  """out[b, h, w] = matrices[b] @ images[b, h, w] for [B, H, W, 3] images and [B, 3, 3]."""
  return tf.einsum("bhwc,bdc->bhwd", images, matrices)


def random_color_matrices(seed, batch: int, permute: bool = True, max_hue: float = 0.0,
                          saturation: tuple[float, float] = (1.0, 1.0)) -> tf.Tensor:
  """[batch, 3, 3] random colour matrices: saturation, then hue rotation, then permutation.

  Args:
    seed: Stateless seed, int [2].
    batch: Number of matrices.
    permute: Random RGB permutation.
    max_hue: Hue rotation angle uniform in [−max_hue, max_hue] radians (0 = none; π = any).
    saturation: (low, high) saturation scale, uniform (1, 1) = none.

  Returns:
    float32 [batch, 3, 3].
  """
  seeds = tf.random.experimental.stateless_split(seed, 3)
  m = saturation_matrices(tf.random.stateless_uniform(
      [batch], seeds[0], minval=saturation[0], maxval=saturation[1]))
  if max_hue:
    theta = tf.random.stateless_uniform([batch], seeds[1], minval=-max_hue, maxval=max_hue)
    m = tf.matmul(hue_rotation_matrices(theta), m)
  if permute:
    m = tf.matmul(permutation_matrices(seeds[2], batch), m)
  return m


def color_augment_pairs(lr: tf.Tensor, hr: tf.Tensor, seed, permute: bool = True,
                        max_hue: float = 0.0, saturation: tuple[float, float] = (1.0, 1.0),
                        min_contrast: float = 1.0, contrast_prob: float = 0.0,
                        grain: float = 0.0, grain_prob: float = 0.0
                        ) -> tuple[tf.Tensor, tf.Tensor]:
  """The same random colour matrix for the LR and HR of each pair of a batch.

  Args:
    lr: float32 [B, h, w, 3] in [0, 1], on 8-bit levels (MATLAB-bicubic LR).
    hr: float32 [B, H, W, 3] in [0, 1].
    seed: Stateless seed, int [2].
    permute, max_hue, saturation: See `random_color_matrices`.
    min_contrast: With probability `contrast_prob`, a pair becomes c·x + (1 − c)·t with c
      uniform in [min_contrast, 1] and a colour t uniform in [0, 1]³ (after the colour
      matrix): flat, low-contrast pairs of any brightness and hue, never clipped. Affine maps
      commute with bicubic resizing (its weights sum to 1), so the pair stays aligned.
    contrast_prob: See `min_contrast`.
    grain: With probability `grain_prob`, Gaussian grain of σ uniform in [0, grain] is added to
      the HR and its MATLAB-bicubic downscale to the LR (linear, so the pair stays aligned):
      fluctuations the LR cannot predict, as in a real photo's flat sky, whose best estimate is
      smooth.
    grain_prob: See `grain`.

  Returns:
    (lr, hr) recoloured and clipped to [0, 1]; lr rounded to 8-bit levels again, as the
    degradation in `esrgan_tf.data.datasets` makes it.
  """
  batch = tf.shape(hr)[0]
  seeds = tf.random.experimental.stateless_split(seed, 4)
  m = random_color_matrices(seeds[0], batch, permute, max_hue, saturation)
  hr = tf.clip_by_value(apply_color_matrices(hr, m), 0.0, 1.0)
  lr = tf.clip_by_value(apply_color_matrices(lr, m), 0.0, 1.0)
  if contrast_prob > 0:
    c = tf.random.stateless_uniform([batch], seeds[1], minval=min_contrast, maxval=1.0)
    apply = tf.random.stateless_uniform([batch], seeds[2]) < contrast_prob
    c = tf.where(apply, c, tf.ones_like(c))[:, None, None, None]
    t = tf.random.stateless_uniform([batch, 1, 1, 3], seeds[3])
    hr, lr = c * hr + (1.0 - c) * t, c * lr + (1.0 - c) * t
  if grain_prob > 0:
    # A stream of its own (fold_in), so that grain_prob = 0 keeps the other draws as they were.
    g_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), 3)
    sigma = tf.random.stateless_uniform([batch], g_seeds[0], maxval=grain)
    sigma = tf.where(tf.random.stateless_uniform([batch], g_seeds[1]) < grain_prob, sigma, 0.0)
    noise = sigma[:, None, None, None] * tf.random.stateless_normal(tf.shape(hr), g_seeds[2])
    scale = hr.shape[1] // lr.shape[1]
    hr = tf.clip_by_value(hr + noise, 0.0, 1.0)
    lr = tf.clip_by_value(lr + imresize_lib.imresize(noise, 1.0 / scale), 0.0, 1.0)
  lr = tf.round(lr * 255.0) / 255.0
  return lr, hr


def color_augmented_dataset(dataset: tf.data.Dataset, seed: int, **kwargs) -> tf.data.Dataset:
  """Maps `color_augment_pairs` over a dataset of (lr, hr) batches, deterministically.

  Args:
    dataset: Of (lr [B, h, w, 3], hr [B, H, W, 3]) float32 batches, e.g.
      `esrgan_tf.data.datasets.make_train_dataset`.
    seed: Base seed (batch i uses the stateless seed (seed, i)).
    **kwargs: Options of `color_augment_pairs` (`permute`, `max_hue`, `saturation`, ...).

  Returns:
    The recoloured dataset (same element spec).
  """
  base = tf.constant(seed, tf.int64)

  def recolour(index, batch):
    lr, hr = batch
    return color_augment_pairs(lr, hr, tf.stack([base, index]), **kwargs)

  return dataset.enumerate().map(recolour, num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=True)


def with_color_augment(dataset_fn: Callable, seed: int, **kwargs) -> Callable:
  """Wraps a `train.loop.train_and_evaluate` dataset_fn so that its batches are recoloured.

  Args:
    dataset_fn: `input_context -> tf.data.Dataset` of per-replica (lr, hr) batches, e.g.
      `train.make_dataset_fn(config, global_batch)`.
    seed: Base seed; input pipeline i uses seed·1000 + i + 1 (distinct from the crop seeds).
    **kwargs: `permute`, `max_hue`, `saturation`, `min_contrast`, `contrast_prob`, `grain`,
      `grain_prob` of `color_augment_pairs`.

  Returns:
    A dataset_fn of the same signature.
  """

  def augmented(input_context):
    pipeline = input_context.input_pipeline_id if input_context is not None else 0
    return color_augmented_dataset(dataset_fn(input_context), seed * 1000 + pipeline + 1,
                                   **kwargs)

  return augmented


def options(data_config) -> dict:
  """`config.data.color` (the config schema of configs/psnr_x4.py) as keyword arguments of
  `color_augment_pairs`, for `with_color_augment` when `config.data.color_augment`."""
  kwargs = dict(data_config["color"])
  kwargs["saturation"] = tuple(float(s) for s in kwargs["saturation"])
  return kwargs
