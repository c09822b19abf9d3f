"""Network architectures."""

from esrgan_tf.models.rrdbnet import RRDBNet

__all__ = ["RRDBNet"]
