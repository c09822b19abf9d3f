"""The generator architectures by `arch` name, and building one from a config's `model` subtree."""

from __future__ import annotations

from esrgan_tf.models.multihead import MultiHeadRRDBNet
from esrgan_tf.models.rrdbnet import RRDBNet
from esrgan_tf.models.srvgg import SRVGGNetCompact

# `arch` values of a generator config (config.model), → class.
GENERATORS = {cls.ARCH: cls for cls in (RRDBNet, SRVGGNetCompact, MultiHeadRRDBNet)}


def build_generator(model_config, **kwargs):
  """Builds the generator a config's `model` subtree describes.

  Args:
    model_config: Constructor kwargs plus an optional `arch` key ("rrdbnet", the default so that
      existing configs and workdirs keep working, "srvgg" or "multihead_rrdbnet"); a dict or
      ConfigDict.
    **kwargs: Extra constructor kwargs (name, dtype).

  Returns:
    The built Keras model (weights initialised).

  Raises:
    ValueError: Unknown arch, or arguments the class rejects.
  """
  config = dict(model_config)
  arch = config.pop("arch", RRDBNet.ARCH)
  if arch not in GENERATORS:
    raise ValueError(f"model.arch must be one of {sorted(GENERATORS)}, got {arch!r}")
  model = GENERATORS[arch](**config, **kwargs)
  model.build((None, None, None, model.in_channels))
  return model


def arch_name(model) -> str:
  """The `arch` key of a generator instance (inverse of GENERATORS)."""
  for name, cls in GENERATORS.items():
    if isinstance(model, cls):
      return name
  raise ValueError(f"not a generator of esrgan_tf.models: {type(model).__name__}")
