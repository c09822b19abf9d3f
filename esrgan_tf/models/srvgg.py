"""SRVGGNetCompact, Real-ESRGAN's compact generator (realesrgan/archs/srvgg_arch.py).

The network of `realesr-general-x4v3` and `realesr-animevideov3`: a plain VGG-style stack on the
LR image, conv → act, `num_conv` × (conv → act), a conv to out·upscale² channels, pixel shuffle,
plus the nearest-upsampled input (the body learns the residual). No convolution runs at the HR
resolution, hence 10–30× cheaper than RRDBNet x4.

Layer names are the PyTorch `nn.ModuleList` indices (`body.0` first conv, `body.1` its
activation, ..., `body.{2·num_conv + 2}` the last conv), so checkpoint import/export is a lookup
table: see `named_convs` / `named_prelus`. Two layout facts the weight mappers handle
(`esrgan_tf.weights.layouts`): torch's PixelShuffle reads channel c·r² + i·r + j for output
channel c at sub-pixel (i, j), TF's depth_to_space reads (i·r + j)·C + c, so the last conv's
output channels are permuted on import/export; PReLU slopes are (C,) in torch, (1, 1, C) here.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from esrgan_tf.models.base import GeneratorMixin

ACT_TYPES = ("prelu", "relu", "leakyrelu")
SCALES = (1, 2, 3, 4)
# srvgg_arch.py: nn.LeakyReLU(negative_slope=0.1); nn.PReLU's default initial slope is 0.25.
LEAKY_SLOPE = 0.1
PRELU_INIT = 0.25
# PyTorch's default Conv2d init (kaiming_uniform with a=√5): U(±1/√fan_in) for weights and
# biases, i.e. VarianceScaling(1/3, fan_in, uniform); srvgg_arch.py does not re-initialise.
_TORCH_CONV_INIT = dict(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def _conv(filters: int, name: str, dtype) -> keras.layers.Conv2D:
  return keras.layers.Conv2D(
      filters, 3, padding="same", name=name, dtype=dtype,
      kernel_initializer=keras.initializers.VarianceScaling(**_TORCH_CONV_INIT),
      bias_initializer="zeros")


def _activation(act_type: str, name: str, dtype) -> keras.layers.Layer:
  if act_type == "prelu":
    # One slope per channel, shared over H and W: torch's nn.PReLU(num_parameters=num_feat).
    return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(PRELU_INIT),
                              shared_axes=[1, 2], name=name, dtype=dtype)
  if act_type == "relu":
    return keras.layers.ReLU(name=name, dtype=dtype)
  return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class SRVGGNetCompact(GeneratorMixin, keras.Model):
  """Real-ESRGAN's compact super-resolution network.

  Takes float32 NHWC images in [0, 1] of any size; returns the upscaled image, unclipped.

  Args:
    num_in_ch: Input image channels.
    num_out_ch: Output image channels.
    num_feat: Feature channels of every body conv.
    num_conv: Body convs between the first and the last conv (16: animevideov3, 32: general-x4v3).
    upscale: 1, 2, 3 or 4.
    act_type: "prelu" (per-channel slopes), "relu" or "leakyrelu" (slope 0.1).
    **kwargs: Passed to `keras.Model` (name, dtype policy).

  Raises:
    ValueError: On arguments outside the allowed values.
  """

  ARCH = "srvgg"

  def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
               num_conv: int = 16, upscale: int = 4, act_type: str = "prelu", **kwargs):
    if upscale not in SCALES:
      raise ValueError(f"upscale must be one of {SCALES}, got {upscale!r}")
    if act_type not in ACT_TYPES:
      raise ValueError(f"act_type must be one of {ACT_TYPES}, got {act_type!r}")
    for arg, value in (("num_in_ch", num_in_ch), ("num_out_ch", num_out_ch),
                       ("num_feat", num_feat)):
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    if not isinstance(num_conv, int) or isinstance(num_conv, bool) or num_conv < 0:
      raise ValueError(f"num_conv must be a non-negative integer, got {num_conv!r}")
    if num_out_ch != num_in_ch:
      # forward() adds the upsampled input to the output.
      raise ValueError(f"num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}): the "
                       "nearest-upsampled input is added to the output")
    kwargs.setdefault("name", "srvgg_compact")
    super().__init__(**kwargs)
    self.num_in_ch = num_in_ch
    self.num_out_ch = num_out_ch
    self.num_feat = num_feat
    self.num_conv = num_conv
    self.upscale = upscale
    self.act_type = act_type
    dtype = self.dtype_policy
    layers = [_conv(num_feat, "body.0", dtype), _activation(act_type, "body.1", dtype)]
    for _ in range(num_conv):
      n = len(layers)
      layers += [_conv(num_feat, f"body.{n}", dtype), _activation(act_type, f"body.{n + 1}", dtype)]
    layers.append(_conv(num_out_ch * upscale * upscale, f"body.{len(layers)}", dtype))
    self.body = layers
    for i, layer in enumerate(layers):  # see rrdbnet._track_items: tf.train.Checkpoint tracking
      setattr(self, f"_body_{i}", layer)

  # The attribute names the rest of the package reads from a generator (RRDBNet's).
  @property
  def in_channels(self) -> int:
    return self.num_in_ch

  @property
  def out_channels(self) -> int:
    return self.num_out_ch

  @property
  def scale(self) -> int:
    return self.upscale

  def build(self, input_shape=(None, None, None, 3)):
    channels = self.num_in_ch
    for layer in self.body:
      layer.build((None, None, None, channels))
      if isinstance(layer, keras.layers.Conv2D):
        channels = layer.filters
    self.built = True

  def call(self, inputs):
    out = inputs
    for layer in self.body:
      out = layer(out)
    if self.upscale == 1:
      return out + inputs
    out = tf.nn.depth_to_space(out, self.upscale)
    # Nearest resize by an integer factor: output pixel o reads input ⌊o / r⌋, as torch's
    # F.interpolate(mode="nearest"); lowers to RESIZE_NEAREST_NEIGHBOR (TFLite GPU delegate).
    base = tf.image.resize(inputs, tf.shape(inputs)[1:3] * self.upscale, method="nearest")
    return out + tf.cast(base, out.dtype)

  def named_convs(self) -> dict[str, keras.layers.Conv2D]:
    """Conv layers keyed by their state-dict prefix (`body.0`, `body.2`, ...), in order."""
    return {layer.name: layer for layer in self.body if isinstance(layer, keras.layers.Conv2D)}

  def named_prelus(self) -> dict[str, keras.layers.PReLU]:
    """PReLU layers keyed by their state-dict prefix (`body.1`, ...); empty unless prelu."""
    return {layer.name: layer for layer in self.body if isinstance(layer, keras.layers.PReLU)}

  def get_config(self):
    config = {"num_in_ch": self.num_in_ch, "num_out_ch": self.num_out_ch,
              "num_feat": self.num_feat, "num_conv": self.num_conv, "upscale": self.upscale,
              "act_type": self.act_type, "name": self.name}
    if self.dtype_policy.name != "float32":
      config["dtype"] = self.dtype_policy.name
    return config

