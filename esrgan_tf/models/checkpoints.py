"""Keras models built from published checkpoint files (tensors read by `esrgan_tf.weights`)."""

from __future__ import annotations

import os

from esrgan_tf import weights
from esrgan_tf.models.discriminator import Discriminator
from esrgan_tf.models.generators import build_generator
from esrgan_tf.models.unet_discriminator import UNetDiscriminatorSN
from esrgan_tf.weights.errors import CheckpointError


def load_checkpoint(path: str):
  """Loads a published generator checkpoint as a Keras model.

  Args:
    path: .pth/.pt, .safetensors, or ncnn .param/.bin.

  Returns:
    A built, float32 `RRDBNet` (upsampler="nearest"; input_unshuffle 2/4 for the x2plus/x1
    layouts) or `SRVGGNetCompact`, holding the weights.

  Raises:
    CheckpointError: Unreadable/refused file, unrecognised layout, inconsistent shapes.
  """
  found = weights.read_generator(path)
  try:
    model = build_generator({"arch": found.arch, **found.config})
  except ValueError as e:  # the model class rejecting the inferred arguments
    raise CheckpointError(f"{found.path}: {e}") from None
  weights.assign_generator(model, found)
  return model


def load_discriminator(path: str, *, skip_connection: bool = True):
  """Loads a BasicSR netD checkpoint as a built Keras discriminator.

  Args:
    path: .pth/.pt or .safetensors, e.g. RealESRGAN_x4plus_netD.pth (`{"params": sd}`).
    skip_connection: For U-Net discriminators (not recorded in the file; Real-ESRGAN: True).

  Returns:
    `UNetDiscriminatorSN` (spectral norm's stored u, v give torch's eval-mode σ) or
    `Discriminator(type="vgg")` for BasicSR's VGGStyleDiscriminator.

  Raises:
    CheckpointError: Unreadable/refused file or not a BasicSR discriminator layout.
  """
  path = os.fspath(path)
  found = weights.read_discriminator(path)
  return build_discriminator(found, skip_connection=skip_connection, path=path)


def build_discriminator(found, *, skip_connection: bool = True, path: str = "state dict"):
  """A built Keras discriminator holding `found` (`weights.discriminator.DiscriminatorWeights`).

  Raises:
    CheckpointError: Missing/unexpected keys, bad shapes or dtypes (the message names `path`).
  """
  arch = found.config
  if found.layout == "unet_sn":
    model = UNetDiscriminatorSN(skip_connection=skip_connection, **arch)
    model.build((None, None, None, arch["num_in_ch"]))
  else:
    model = Discriminator(**arch)
    model.build((None, arch["input_size"], arch["input_size"], arch["in_channels"]))
  try:
    weights.discriminator.assign_discriminator(model, found)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from None
  return model
