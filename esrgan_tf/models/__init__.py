"""Network architectures, and the generators built from configs, checkpoints and presets."""

from __future__ import annotations

from esrgan_tf.models.discriminator import Discriminator
from esrgan_tf.models.generators import GENERATORS, arch_name, build_generator
from esrgan_tf.models.multihead import MultiHeadRRDBNet
from esrgan_tf.models.rrdbnet import RRDBNet
from esrgan_tf.models.spectral_norm import SpectralNorm
from esrgan_tf.models.srvgg import SRVGGNetCompact
from esrgan_tf.models.unet_discriminator import UNetDiscriminatorSN
from esrgan_tf.models.vgg import VGGFeatureExtractor

__all__ = ["Discriminator", "GENERATORS", "MultiHeadRRDBNet", "RRDBNet", "SRVGGNetCompact",
           "SpectralNorm", "UNetDiscriminatorSN", "VGGFeatureExtractor", "arch_name",
           "build_generator"]
