"""Network architectures."""

from esrgan_tf.models.discriminator import Discriminator
from esrgan_tf.models.rrdbnet import RRDBNet
from esrgan_tf.models.spectral_norm import SpectralNorm
from esrgan_tf.models.unet_discriminator import UNetDiscriminatorSN
from esrgan_tf.models.vgg import VGGFeatureExtractor

__all__ = ["Discriminator", "RRDBNet", "SpectralNorm", "UNetDiscriminatorSN",
           "VGGFeatureExtractor"]
