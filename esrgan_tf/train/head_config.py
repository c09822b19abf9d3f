"""Multi-head training recipes: each head's loss mix, and the targets of the smaller scales.

A config whose `model.arch` is "multihead_rrdbnet" (`esrgan_tf.models.multihead`) trains every
head from one LR batch and one trunk pass. `model.heads` stays architecture-only (name, scale,
upsampler: what checkpoints hold and what a resume compares); the recipe is `config.head_losses`,
keyed by head name (schema: configs/multihead_x2x4x8.py):

  c.head_losses = {"psnr": dict(pixel_weight=1.0, perceptual_weight=0.0, gan_weight=0.0),
                   "gan": dict(trunk_gradient=1.0)}

Fields, each optional (a head absent from `head_losses` takes every default):
  * `weight` (1.0): the head's share of the generator loss, Σ_head weight · loss_head. 0 = the
    head is not trained: not computed in the step, no gradient, no optimizer update (it keeps
    its initial or `train.init_from` weights and is still evaluated).
  * `pixel_weight` (`loss.pixel_weight`), `perceptual_weight` (`perceptual.weight`),
    `gan_weight` (`loss.gan_weight`): the single-head terms (`steps.generator_loss_terms`) with
    these weights. In the psnr phase the perceptual and GAN weights are 0 (it has no VGG and no
    discriminator); naming a non-zero one there is an error.
  * `trunk_gradient` (1.0): the fraction of the head's gradient that reaches the shared trunk;
    0 = the head learns on the trunk's features without moving them (e.g. a GAN head beside a
    PSNR head that should keep the trunk PSNR-oriented).

Targets: the data pipeline makes (LR, HR) pairs at the LARGEST head scale S (`max_scale`), so
every head sees the same LR (HR/S), as at inference. A head of scale s < S is trained against
the HR crop resized by s/S with the same MATLAB bicubic that makes the LR (`images.imresize`,
antialiased) and rounded to 8-bit levels as the LR is (`head_targets`): the x2 head of an
x2/x4/x8 model learns to reproduce a bicubic-downscaled HR, not a native photo of that size.
Evaluation measures each head the usual way, at its own scale (LR = HR/s of the validation
photos, `train.head_eval`).
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import math

import tensorflow as tf

from esrgan_tf.images import imresize
from esrgan_tf.models import multihead

MULTIHEAD_ARCH = multihead.MultiHeadRRDBNet.ARCH
HEAD_LOSS_FIELDS = ("weight", "pixel_weight", "perceptual_weight", "gan_weight",
                    "trunk_gradient")
# Discriminator types that take any input size (one D may judge several scales).
SIZE_FREE_DISCRIMINATORS = ("patch", "unet_sn")


@dataclasses.dataclass(frozen=True)
class HeadLoss:
  """One head's training recipe (module docstring: fields and defaults)."""

  name: str
  scale: int
  weight: float = 1.0
  pixel_weight: float = 1.0
  perceptual_weight: float = 0.0
  gan_weight: float = 0.0
  trunk_gradient: float = 1.0

  @property
  def trained(self) -> bool:
    return self.weight > 0

  @property
  def adversarial(self) -> bool:
    """Trained with a GAN term (it has a discriminator)."""
    return self.trained and self.gan_weight > 0


def is_multihead(config) -> bool:
  """Whether `config.model` declares a multi-head generator."""
  return config.model.get("arch", "rrdbnet") == MULTIHEAD_ARCH


def head_specs(config) -> tuple[multihead.HeadSpec, ...]:
  """The `model.heads` of a multi-head config, validated (`multihead.parse_heads`)."""
  m = config.model
  return multihead.parse_heads(list(m.heads), m.get("upsampler", "depth_to_space"),
                               int(m.get("input_unshuffle", 1)))


def max_scale(config) -> int:
  """S: the largest head scale, the scale the data pipeline makes its (LR, HR) pairs at."""
  return max(spec.scale for spec in head_specs(config))


def target_size(config, scale: int) -> int:
  """The side of a head's training target: data.gt_size · scale / S."""
  return int(config.data.gt_size) * scale // max_scale(config)


def _entries(config) -> dict:
  raw = config.get("head_losses", None) or {}
  return {name: dict(entry.items()) for name, entry in raw.items()}


def head_losses(config) -> tuple[HeadLoss, ...]:
  """Every head's recipe, in `model.heads` order (untrained heads included, `trained` False).

  Raises:
    ValueError: Unknown heads or fields in `head_losses`, or bad values (the message names the
      head and the field).
  """
  specs = head_specs(config)
  names = [spec.name for spec in specs]
  entries = _entries(config)
  unknown = sorted(set(entries) - set(names))
  if unknown:
    raise ValueError(f"head_losses names {unknown}, which are not heads of model.heads {names}")
  gan_phase = config.phase == "gan"
  defaults = {"weight": 1.0, "pixel_weight": float(config.loss.pixel_weight),
              "perceptual_weight": float(config.perceptual.weight) if gan_phase else 0.0,
              "gan_weight": float(config.loss.gan_weight) if gan_phase else 0.0,
              "trunk_gradient": 1.0}
  result = []
  for spec in specs:
    entry = entries.get(spec.name, {})
    bad = sorted(set(entry) - set(HEAD_LOSS_FIELDS))
    if bad:
      raise ValueError(f"head_losses.{spec.name}: unknown fields {bad} (known: "
                       f"{list(HEAD_LOSS_FIELDS)})")
    values = {}
    for field in HEAD_LOSS_FIELDS:
      value = entry.get(field, defaults[field])
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          math.isfinite(value) and value >= 0):
        raise ValueError(f"head_losses.{spec.name}.{field} must be a finite number >= 0, got "
                         f"{value!r}")
      values[field] = float(value)
    if values["trunk_gradient"] > 1:
      raise ValueError(f"head_losses.{spec.name}.trunk_gradient must be in [0, 1], got "
                       f"{values['trunk_gradient']!r}")
    if not gan_phase:
      extra = [f for f in ("perceptual_weight", "gan_weight") if values[f]]
      if extra:
        raise ValueError(f"head_losses.{spec.name}: {'/'.join(extra)} need phase 'gan' (the "
                         "psnr phase has no VGG and no discriminator)")
    result.append(HeadLoss(spec.name, spec.scale, **values))
  return tuple(result)


def trained_heads(config) -> tuple[HeadLoss, ...]:
  """The heads with weight > 0, in `model.heads` order."""
  return tuple(h for h in head_losses(config) if h.trained)


def shared_discriminator(config) -> bool:
  """`discriminator.shared` (absent: False): one discriminator judges every GAN head."""
  return bool(config.discriminator.get("shared", False))


def validate_config(config) -> None:
  """The multi-head checks `train.loop.validate_config` adds (nothing for a single head).

  Raises:
    ValueError: A config the multi-head trainer cannot run (names the field).
  """
  if not is_multihead(config):
    return
  plan = head_losses(config)
  scale, gt_size = max_scale(config), int(config.data.gt_size)
  if gt_size % scale:
    raise ValueError(f"data.gt_size {gt_size} is not a multiple of the largest head scale "
                     f"{scale} (the LR crop is gt_size / {scale})")
  if not any(h.trained for h in plan):
    raise ValueError("head_losses: every head has weight 0; nothing would be trained")
  for h in plan:
    if h.trained and not (h.pixel_weight or h.perceptual_weight or h.gan_weight):
      raise ValueError(f"head_losses.{h.name}: weight {h.weight:g} but every loss term is 0 "
                       "(set weight 0 to leave the head untrained)")
  t = config.train
  if t.jit_compile and any(spec.upsampler == "nearest" for spec in head_specs(config)):
    # As for one head (train.loop.validate_config): XLA cannot compile the nearest resize's
    # gradient.
    raise ValueError("train.jit_compile=True needs every head's upsampler 'depth_to_space'")
  if config.data.get("val_lr_dir", "") and len({h.scale for h in plan}) > 1:
    raise ValueError("data.val_lr_dir holds LR images of one scale; the heads have scales "
                     f"{sorted({h.scale for h in plan})} (evaluate from data.val_dir alone, "
                     "each head at its own scale)")
  if config.train.get("init_discriminator_from", ""):
    raise ValueError("train.init_discriminator_from: a multi-head run has a discriminator per "
                     "GAN head; loading one netD file is not supported")
  if config.phase == "gan":
    _check_discriminators(config, plan, gt_size, scale)


def _check_discriminators(config, plan, gt_size: int, scale: int) -> None:
  d_type = config.discriminator.type
  shared = shared_discriminator(config)
  if shared and d_type not in SIZE_FREE_DISCRIMINATORS:
    raise ValueError(f"discriminator.shared needs a discriminator of any input size "
                     f"{SIZE_FREE_DISCRIMINATORS}, got {d_type!r}")
  for h in plan:
    if not h.adversarial:
      continue
    size = gt_size * h.scale // scale
    if d_type == "unet_sn" and size % 8:
      raise ValueError(f"head {h.name!r}: the unet_sn discriminator needs its target size "
                       f"(data.gt_size·{h.scale}/{scale} = {size}) a multiple of 8")
    if d_type == "vgg" and (size < 8 or size & (size - 1)):
      raise ValueError(f"head {h.name!r}: the vgg discriminator needs its target size "
                       f"(data.gt_size·{h.scale}/{scale} = {size}) to be 4·2^k, k >= 1")


def head_targets(hr, scales: Iterable[int], largest: int) -> dict[int, tf.Tensor]:
  """{scale: training target} from an HR batch at scale `largest`.

  Args:
    hr: [N, H, W, C] float32 in [0, 1] (H, W multiples of largest / scale).
    scales: The scales to make.
    largest: S, the scale of `hr` relative to the LR.

  Returns:
    `hr` itself for S; for s < S the MATLAB bicubic (antialiased) ×s/S of `hr`, rounded to
    8-bit levels as the LR is (`imresize.quantize`).
  """
  targets = {}
  for s in sorted(set(int(s) for s in scales)):
    if s == largest:
      targets[s] = hr
    else:
      targets[s] = imresize.quantize(imresize.imresize(hr, s / largest))
  return targets


def scale_tag(config) -> str:
  """"x2x4x8": the head scales in `model.heads` order (the run name's scale part)."""
  return "x" + "x".join(str(spec.scale) for spec in head_specs(config))
