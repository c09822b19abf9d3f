"""Network architectures."""

from esrgan_tf.models.discriminator import Discriminator
from esrgan_tf.models.rrdbnet import RRDBNet
from esrgan_tf.models.vgg import VGGFeatureExtractor

__all__ = ["Discriminator", "RRDBNet", "VGGFeatureExtractor"]
