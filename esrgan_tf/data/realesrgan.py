"""Real-ESRGAN's second-order degradation as a `tf.data` training pipeline.

Follows xinntao/Real-ESRGAN: `realesrgan/data/realesrgan_dataset.py` (augment, crop/pad the GT
to 400, draw the kernels) and `realesrgan/models/realesrnet_model.py` `feed_data` (USM, the two
degradation stages, final sinc + resize back and JPEG in random order, clamp/round, paired crop,
training-pair pool), with the option names and defaults of `options/train_realesrnet_x4plus.yml`.

Per element (`degrade_example`, pure TF, stateless):

  GT uint8 → flip → crop/pad to crop_pad_size → [USM] → blur(kernel1) → random resize
  → noise → JPEG → [blur(kernel2)] → random resize to size/scale·s2 → noise
  → {resize to size/scale + sinc, JPEG} in random order → clamp/round → paired crop

then the pool (`shuffle(queue_size)`, standing for Real-ESRGAN's `_dequeue_and_enqueue`) and
batching. Each element draws its own resize scales and modes (Real-ESRGAN: one per batch); see
`esrgan_tf.data.degradations_tf` for the numerical differences from the PyTorch code.

Options not in Real-ESRGAN (defaults reproduce it): `blur_prob`, `noise_prob`, `jpeg_prob`,
`noise_prob2`, `jpeg_prob2` (set 0 to switch a stage off), `resize_modes`, `crop_pad_size` (400
is hard-coded in realesrgan_dataset.py). With every stage off the LR is a plain resize
(`resize_modes`) of the GT to crop_pad_size/scale, rounded to 8-bit levels.

Randomness: element i of input pipeline p gets the seed (seed·1000 + p, i), as in
`datasets.make_train_dataset`, so a seed reproduces the batches whatever the parallelism.

The pool and checkpoints: the iterator can be saved in a `tf.train.Checkpoint` like the plain
pipeline's, but it then holds the pool's `queue_size` degraded pairs (≈ 0.8 MB each at gt 256,
≈ 150 MB at 180). Since every element already draws its own degradation, the pool matters less
here than in Real-ESRGAN; `queue_size` 0 turns it off.
"""

from __future__ import annotations

import os
import random
import time

import ml_collections
import numpy as np
import tensorflow as tf

from esrgan_tf.data import datasets as datasets_lib
from esrgan_tf.data import degradations_tf as ops

_KERNEL_LIST = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso"]
_KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]


def default_degradation_config() -> ml_collections.ConfigDict:
  """Real-ESRGAN's options (options/train_realesrnet_x4plus.yml) plus the switches above."""
  c = ml_collections.ConfigDict()
  c.gt_usm = True  # degrade the USM-sharpened GT, and train against it (RealESRNet)
  # The first degradation (dataset part: kernel1).
  c.blur_kernel_size = 21
  c.kernel_list = list(_KERNEL_LIST)
  c.kernel_prob = list(_KERNEL_PROB)
  c.sinc_prob = 0.1
  c.blur_sigma = [0.2, 3.0]
  c.betag_range = [0.5, 4.0]
  c.betap_range = [1.0, 2.0]
  c.blur_prob = 1.0  # not in Real-ESRGAN (always blurs)
  c.resize_prob = [0.2, 0.7, 0.1]  # up, down, keep
  c.resize_range = [0.15, 1.5]
  c.noise_prob = 1.0  # not in Real-ESRGAN (always adds noise)
  c.gaussian_noise_prob = 0.5
  c.noise_range = [1.0, 30.0]
  c.poisson_scale_range = [0.05, 3.0]
  c.gray_noise_prob = 0.4
  c.jpeg_prob = 1.0  # not in Real-ESRGAN (always compresses)
  c.jpeg_range = [30, 95]
  # The second degradation (kernel2).
  c.second_blur_prob = 0.8
  c.blur_kernel_size2 = 21
  c.kernel_list2 = list(_KERNEL_LIST)
  c.kernel_prob2 = list(_KERNEL_PROB)
  c.sinc_prob2 = 0.1
  c.blur_sigma2 = [0.2, 1.5]
  c.betag_range2 = [0.5, 4.0]
  c.betap_range2 = [1.0, 2.0]
  c.resize_prob2 = [0.3, 0.4, 0.3]
  c.resize_range2 = [0.3, 1.2]
  c.noise_prob2 = 1.0
  c.gaussian_noise_prob2 = 0.5
  c.noise_range2 = [1.0, 25.0]
  c.poisson_scale_range2 = [0.05, 2.5]
  c.gray_noise_prob2 = 0.4
  c.jpeg_prob2 = 1.0  # the last JPEG
  c.jpeg_range2 = [30, 95]
  c.final_sinc_prob = 0.8
  c.resize_modes = list(ops.RESIZE_MODES)
  # Sizes, augmentation, pool.
  c.gt_size = 256
  c.crop_pad_size = 400
  c.use_hflip = True
  c.use_rot = False
  c.queue_size = 180
  return c


def validate_config(config, scale: int) -> None:
  """Raises datasets.DataError for sizes or options the pipeline cannot use."""
  for key in ("blur_kernel_size", "blur_kernel_size2"):
    if config[key] != ops.MAX_KERNEL_SIZE:
      raise datasets_lib.DataError(f"{key} must be {ops.MAX_KERNEL_SIZE} (Real-ESRGAN draws sizes "
                               f"7..21 and pads to 21), got {config[key]}")
  if config.gt_size % scale or config.crop_pad_size % scale:
    raise datasets_lib.DataError(f"gt_size ({config.gt_size}) and crop_pad_size "
                             f"({config.crop_pad_size}) must be multiples of the scale ({scale})")
  if not 0 < config.gt_size <= config.crop_pad_size:
    raise datasets_lib.DataError(f"need 0 < gt_size ({config.gt_size}) <= crop_pad_size "
                             f"({config.crop_pad_size})")
  bad = sorted(set(config.resize_modes) - set(ops.RESIZE_MODES))
  if bad or not config.resize_modes:
    raise datasets_lib.DataError(
        f"resize_modes: unknown {bad}; choose from {list(ops.RESIZE_MODES)}")
  for key in ("resize_prob", "resize_prob2"):
    if len(config[key]) != 3 or min(config[key]) < 0 or sum(config[key]) <= 0:
      raise datasets_lib.DataError(f"{key} must be 3 non-negative weights (up, down, keep), got "
                               f"{list(config[key])}")


def _coin(seed, prob) -> tf.Tensor:
  return ops.uniform(seed, 0.0, 1.0) < prob


def augment_and_crop(gt: tf.Tensor, seed, config) -> tf.Tensor:
  """uint8/float GT → float32 [crop_pad_size]² in [0, 1]: flips, reflect-101 pad, random crop."""
  seeds = ops.split(seed, 5)
  gt = tf.convert_to_tensor(gt)
  if gt.dtype == tf.uint8:
    gt = tf.cast(gt, tf.float32) / 255.0  # as datasets (convert_image_dtype multiplies)
  gt = tf.cast(gt, tf.float32)
  if config.use_hflip:
    gt = tf.cond(_coin(seeds[0], 0.5), lambda: tf.reverse(gt, [1]), lambda: gt)
  if config.use_rot:  # BasicSR's augment: vertical flip, then transpose, each with prob. 1/2
    gt = tf.cond(_coin(seeds[1], 0.5), lambda: tf.reverse(gt, [0]), lambda: gt)
    gt = tf.cond(_coin(seeds[2], 0.5), lambda: tf.transpose(gt, [1, 0, 2]), lambda: gt)
  size = config.crop_pad_size
  shape = tf.shape(gt)
  pad_h, pad_w = tf.maximum(size - shape[0], 0), tf.maximum(size - shape[1], 0)
  gt = tf.gather(gt, ops.reflect101_indices(shape[0], 0, pad_h), axis=0)
  gt = tf.gather(gt, ops.reflect101_indices(shape[1], 0, pad_w), axis=1)
  shape = tf.shape(gt)
  top = tf.random.stateless_uniform([], seeds[3], 0, shape[0] - size + 1, tf.int32)
  left = tf.random.stateless_uniform([], seeds[4], 0, shape[1] - size + 1, tf.int32)
  return tf.ensure_shape(gt[top:top + size, left:left + size], [size, size, 3])


def _stage_noise_jpeg(out, seeds, config, suffix: str, with_jpeg: bool):
  noise_args = (config["gaussian_noise_prob" + suffix], config["noise_range" + suffix],
                config["poisson_scale_range" + suffix], config["gray_noise_prob" + suffix])
  out = tf.cond(_coin(seeds[0], config["noise_prob" + suffix]),
                lambda: ops.random_noise(out, seeds[1], *noise_args), lambda: out)
  if with_jpeg:
    out = tf.cond(_coin(seeds[2], config["jpeg_prob" + suffix]),
                  lambda: ops.random_jpeg(out, seeds[3], config["jpeg_range" + suffix]),
                  lambda: out)
  return out


def degrade(gt: tf.Tensor, seed, config, scale: int) -> tf.Tensor:
  """The two-stage degradation of one GT [H, W, 3] float32 → LR [H/scale, W/scale, 3].

  The LR is clamped and rounded to 8-bit levels as Real-ESRGAN does.
  """
  c = config
  modes = list(c.resize_modes)
  s = ops.split(seed, 24)
  shape = tf.shape(gt)
  size = tf.cast(shape[:2], tf.float32)
  final_size = shape[:2] // scale
  kernel1 = ops.random_blur_kernel(s[0], c.kernel_list, c.kernel_prob, c.blur_sigma,
                                   c.betag_range, c.betap_range, c.sinc_prob)
  kernel2 = ops.random_blur_kernel(s[1], c.kernel_list2, c.kernel_prob2, c.blur_sigma2,
                                   c.betag_range2, c.betap_range2, c.sinc_prob2)
  # First stage.
  out = tf.cond(_coin(s[2], c.blur_prob), lambda: ops.filter2d(gt, kernel1), lambda: gt)
  scale1 = ops.random_scale(s[3], c.resize_prob, c.resize_range)
  out = ops.resize(out, tf.floor(size * scale1), ops.random_mode(s[4], modes), modes)
  out = _stage_noise_jpeg(out, s[5:9], c, "", with_jpeg=True)
  # Second stage.
  out = tf.cond(_coin(s[9], c.second_blur_prob), lambda: ops.filter2d(out, kernel2),
                lambda: out)
  scale2 = ops.random_scale(s[10], c.resize_prob2, c.resize_range2)
  out = ops.resize(out, tf.floor(size / scale * scale2), ops.random_mode(s[11], modes), modes)
  out = _stage_noise_jpeg(out, s[12:16], c, "2", with_jpeg=False)
  # Resize back + final sinc, and the last JPEG, in random order (Real-ESRGAN: other orders give
  # twisted lines).
  use_sinc = _coin(s[16], c.final_sinc_prob)
  sinc = ops.random_final_sinc(s[17])
  use_jpeg = _coin(s[18], c.jpeg_prob2)

  def back(x):
    x = ops.resize(x, final_size, ops.random_mode(s[19], modes), modes)
    return tf.cond(use_sinc, lambda: ops.filter2d(x, sinc), lambda: x)

  def compress(x):
    return tf.cond(use_jpeg, lambda: ops.random_jpeg(x, s[20], c.jpeg_range2), lambda: x)

  out = tf.cond(_coin(s[21], 0.5), lambda: compress(back(out)), lambda: back(compress(out)))
  out = tf.clip_by_value(tf.round(out * 255.0), 0.0, 255.0) / 255.0
  return tf.ensure_shape(out, [gt.shape[0] and gt.shape[0] // scale,
                               gt.shape[1] and gt.shape[1] // scale, 3])


def degrade_example(image: tf.Tensor, seed, config, scale: int) -> dict[str, tf.Tensor]:
  """One training example from one GT image (uint8 or float [H, W, 3]).

  Args:
    image: The GT photo (any size; padded by reflection if smaller than crop_pad_size).
    seed: Stateless seed, int [2].
    config: A `default_degradation_config()`.
    scale: Upscaling factor.

  Returns:
    {"lr": [gt/s, gt/s, 3], "gt": [gt, gt, 3], "gt_usm": [gt, gt, 3]} float32 in [0, 1]; gt_usm
    is the USM-sharpened GT (equal to "gt" when config.gt_usm is False). The LR is made from
    gt_usm, as Real-ESRGAN does.
  """
  seeds = ops.split(seed, 4)
  gt = augment_and_crop(image, seeds[0], config)
  gt_usm = ops.usm_sharp(gt) if config.gt_usm else gt
  lr = degrade(gt_usm, seeds[1], config, scale)
  # paired_random_crop: LR crop at (top, left), GT crops at scale·(top, left).
  lq_size, gt_size = config.gt_size // scale, config.gt_size
  lr_full = config.crop_pad_size // scale
  top = tf.random.stateless_uniform([], seeds[2], 0, lr_full - lq_size + 1, tf.int32)
  left = tf.random.stateless_uniform([], seeds[3], 0, lr_full - lq_size + 1, tf.int32)

  def hr_crop(x):
    return x[scale * top:scale * top + gt_size, scale * left:scale * left + gt_size]

  return {"lr": lr[top:top + lq_size, left:left + lq_size], "gt": hr_crop(gt),
          "gt_usm": hr_crop(gt_usm)}


def _source(data_config, scale: int, gt_size: int, input_context, seed: int):
  """The shuffled stream of decoded HR images ({"hr": uint8}) of `esrgan_tf.data.datasets`."""
  if data_config.get("train_lr_dir", ""):
    raise datasets_lib.DataError("the degradation pipeline makes its own LR: train_lr_dir must be "
                             f"empty, got {data_config.get('train_lr_dir')!r}")
  # Fields this pipeline may be given without (the training configs always have them).
  fields = {"tfrecords": "", "cache": True, "shuffle_buffer": 0, "train_lr_dir": ""}
  fields.update({key: data_config[key] for key in data_config.keys()})
  return datasets_lib.decoded_images(fields, scale, gt_size, input_context, seed)


def make_degraded_train_dataset(data_config, scale: int, batch_size: int, input_context=None,
                                seed: int | None = None, degradation_config=None,
                                return_gt_usm: bool = False) -> tf.data.Dataset:
  """The Real-ESRGAN training `tf.data.Dataset`, shaped like `datasets.make_train_dataset`'s.

  Args:
    data_config: `config.data`: train_dir or tfrecords, cache, shuffle_buffer (as
      `datasets.make_train_dataset`); train_lr_dir must be empty. A gt_size there must
      equal the degradation config's.
    scale: Upscaling factor.
    batch_size: Batch size of this pipeline (per replica under a strategy).
    input_context: A `tf.distribute.InputContext`: images sharded by input pipeline.
    seed: Reproducible crops, kernels, noise, pool; None = a random seed.
    degradation_config: A `default_degradation_config()`; None = `data_config.degradation` if
      present, else the defaults.
    return_gt_usm: Return dicts {"lr", "hr", "gt_usm"} (Real-ESRGAN: hr plain, gt_usm sharpened
      for the `*_gt_usm` loss switches) instead of (lr, hr) tuples with hr = the sharpened GT
      when config.gt_usm (RealESRNet).

  Returns:
    An infinite dataset of float32 batches: lr [B, gt/s, gt/s, 3], hr [B, gt, gt, 3].

  Raises:
    DataError: Bad sizes or options, missing sources.
  """
  config = degradation_config
  if config is None:
    config = data_config.get("degradation", None) or default_degradation_config()
  scale = int(scale)
  validate_config(config, scale)
  data_gt = data_config.get("gt_size", None)
  if data_gt is not None and int(data_gt) != config.gt_size:
    raise datasets_lib.DataError(f"data gt_size ({data_gt}) differs from the degradation gt_size "
                             f"({config.gt_size})")
  if batch_size < 1:
    raise datasets_lib.DataError(f"batch_size must be >= 1, got {batch_size}")
  if data_config.get("color_augment", False):
    raise datasets_lib.DataError(
        "data.color_augment recolours bicubic (LR, HR) pairs; the degradation "
                             "pipeline does not support it (noise and JPEG do not commute with "
                             "colour maps: esrgan_tf.data.augment)")
  if seed is None:
    seed = random.randrange(2 ** 31)
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  ds = _source(data_config, scale, config.gt_size, input_context, seed)
  pipeline_seed = tf.constant(seed * 1000 + pipeline_id, tf.int64)

  def make(index, example):
    out = degrade_example(example["hr"], tf.stack([pipeline_seed, index]), config, scale)
    hr = out["gt_usm"] if config.gt_usm and not return_gt_usm else out["gt"]
    if return_gt_usm:
      return {"lr": out["lr"], "hr": hr, "gt_usm": out["gt_usm"]}
    return out["lr"], hr

  autotune = tf.data.AUTOTUNE
  ds = ds.enumerate().map(make, num_parallel_calls=autotune, deterministic=True)
  if config.queue_size > 1:  # the training-pair pool
    ds = ds.shuffle(config.queue_size, seed=seed + 1, reshuffle_each_iteration=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(autotune)


def benchmark_degradation_pipeline(train_dir: str | None = None, scale: int = 4,
                                   batch_size: int = 12, num_batches: int = 10,
                                   warmup_batches: int = 2, degradation_config=None) -> dict:
  """Images/s of `make_degraded_train_dataset` on a folder (default: the bundled photos).

  Returns:
    {"name", "images_per_s", "batches", "batch_size", "gt_size", "crop_pad_size", "scale"}.
  """
  if train_dir is None:
    from esrgan_tf import SAMPLES_DIR  # pylint: disable=g-import-not-at-top
    train_dir = os.path.join(SAMPLES_DIR, "train")
  config = degradation_config or default_degradation_config()
  data_config = {"train_dir": train_dir, "train_lr_dir": "", "tfrecords": "", "cache": True,
                 "shuffle_buffer": 64}
  iterator = iter(make_degraded_train_dataset(data_config, scale, batch_size, seed=0,
                                              degradation_config=config))
  for _ in range(warmup_batches):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  elapsed = time.perf_counter() - start
  return {"name": f"realesrgan degradation x{scale} gt{config.gt_size} b{batch_size}",
          "images_per_s": num_batches * batch_size / elapsed, "batches": num_batches,
          "batch_size": batch_size, "gt_size": config.gt_size,
          "crop_pad_size": config.crop_pad_size, "scale": scale}


def degradation_grid(image, num: int, columns: int, seed: int, config, scale: int,
                     zoom: int = 2) -> np.ndarray:
  """A grid of `num` degraded LRs of one photo, for tuning the ranges by eye.

  The centre crop_pad_size² of `image` (reflect-padded if smaller) is degraded with seeds
  (seed, 0..num-1); tile 0 is instead its plain bicubic downscale, for reference. Tiles are
  enlarged `zoom` times by pixel repetition and separated by 2 white pixels.

  Args:
    image: float32 or uint8 [H, W, 3].
    num: Number of tiles (including the reference).
    columns: Tiles per row.
    seed: Seed of the degradations.
    config: A `default_degradation_config()`.
    scale: Downscaling factor.
    zoom: Enlargement of each tile.

  Returns:
    float32 [rows·(t + 2) − 2, columns·(t + 2) − 2, 3] in [0, 1], t = zoom·crop_pad_size/scale.
  """
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float32) / 255.0
  size = config.crop_pad_size
  top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
  image = image[top:top + size, left:left + size].astype(np.float32)
  gt = augment_and_crop(image, tf.constant([seed, 0], tf.int64), _no_flip(config))
  source = ops.usm_sharp(gt) if config.gt_usm else gt
  fn = tf.function(lambda s: degrade(source, s, config, scale))
  tiles = [tf.image.resize(gt, [size // scale] * 2, "bicubic").numpy().clip(0, 1)]
  tiles += [fn(tf.constant([seed, i], tf.int64)).numpy() for i in range(1, num)]
  t = zoom * (size // scale)
  rows = -(-num // columns)
  grid = np.ones((rows * (t + 2) - 2, columns * (t + 2) - 2, 3), np.float32)
  for i, tile in enumerate(tiles):
    r, c = divmod(i, columns)
    grid[r * (t + 2):r * (t + 2) + t, c * (t + 2):c * (t + 2) + t] = np.repeat(
        np.repeat(tile, zoom, axis=0), zoom, axis=1)
  return grid


def _no_flip(config):
  config = ml_collections.ConfigDict(config.to_dict())
  config.use_hflip = config.use_rot = False
  return config
