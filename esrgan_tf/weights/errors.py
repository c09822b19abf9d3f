"""The error type of `esrgan_tf.weights`."""

from esrgan_tf.core.errors import ModelError


class CheckpointError(ModelError):
  """A checkpoint that cannot be read safely or mapped onto RRDBNet; the message names the file."""
