"""The error type of `esrgan_tf.weights`."""

from esrgan_tf.inference.engine import ModelError


class CheckpointError(ModelError):
  """A checkpoint that cannot be read safely or mapped onto RRDBNet; the message names the file."""
