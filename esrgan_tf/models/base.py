"""What every generator shares: its architecture config, and construction from published weights.

`from_preset` is KerasHub's entry point (`keras_hub.models.X.from_preset(name)`): a name from
the published-weights registry (`esrgan_tf.weights.registry`, downloaded once and cached) or the
path of a checkpoint file (.pth/.pt, .safetensors, ncnn .param/.bin).
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from esrgan_tf import weights
from esrgan_tf.weights import registry
from esrgan_tf.weights.errors import CheckpointError


class GeneratorMixin:
  """Shared by `RRDBNet` and `SRVGGNetCompact` (each sets `ARCH` and defines `get_config`)."""

  ARCH = ""  # the `arch` key of esrgan_tf.models.GENERATORS

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def arch_config(self) -> dict:
    """The architecture arguments only (no name, no dtype): what identifies compatible weights."""
    config = self.get_config()
    config.pop("name")
    config.pop("dtype", None)
    return config

  def with_dtype(self, dtype: str):
    """A copy under another dtype policy (e.g. "bfloat16"), weights cast."""
    clone = type(self)(**self.arch_config(), dtype=dtype)
    clone.build((None, None, None, clone.in_channels))
    for target, source in zip(clone.weights, self.weights):
      target.assign(tf.cast(source, target.dtype))
    return clone

  @classmethod
  def from_preset(cls, preset: str, *, load_weights: bool = True, dtype: Optional[str] = None,
                  trainable: bool = True, **kwargs):
    """The generator of a published model, built as the file's tensors imply, weights loaded.

    Args:
      preset: A registry name (`esrgan-models list`: "RealESRGAN_x4plus", ...) or a checkpoint
        path.
      load_weights: False: the same architecture, randomly initialised.
      dtype: A Keras dtype policy ("bfloat16", "mixed_bfloat16", ...); weights are cast.
      trainable: Set on the returned model.
      **kwargs: Other constructor arguments (e.g. `name`).

    Returns:
      A built instance of this class.

    Raises:
      CheckpointError: The preset cannot be fetched or read, or it holds another architecture.
    """
    try:
      path = registry.resolve_spec(os.fspath(preset))
    except registry.RegistryError as e:
      raise CheckpointError(str(e)) from e
    found = weights.read_generator(path)
    if found.arch != cls.ARCH:
      raise CheckpointError(f"{preset}: holds a {found.arch} generator, not {cls.__name__}; "
                            "load it with esrgan_tf.load or that class's from_preset")
    clash = sorted(set(kwargs) & set(found.config))
    if clash:
      given = ", ".join(f"{k}={found.config[k]!r}" for k in clash)
      raise CheckpointError(f"{preset}: the file sets {given}; do not pass {', '.join(clash)}")
    if dtype is not None:
      kwargs["dtype"] = dtype
    model = cls(**found.config, **kwargs)
    model.build((None, None, None, model.in_channels))
    if load_weights:
      weights.assign_generator(model, found)  # cast to the variables' dtype on assignment
    model.trainable = trainable
    return model
