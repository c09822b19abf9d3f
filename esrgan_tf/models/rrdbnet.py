"""RRDBNet, the ESRGAN generator (Wang et al. 2018, arXiv:1809.00219, §3.1 and Fig. 4).

Layer names follow the BasicSR/Real-ESRGAN state-dict keys (`conv_first`, `body.N.rdbK.convJ`,
`conv_body`, `conv_upI`, `conv_hr`, `conv_last`), so that checkpoint import and export in
`esrgan_tf.weights` is a lookup table: see `RRDBNet.named_convs`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from esrgan_tf.models.base import GeneratorMixin

SCALES = (1, 2, 4, 8)
UPSAMPLERS = ("depth_to_space", "nearest")
# Pixel-unshuffle factors of the input: 1 (none), or BasicSR's RRDBNet for scale 2 (factor 2) and
# scale 1 (factor 4): basicsr/archs/rrdbnet_arch.py folds the image into 4× or 16× channels, then
# runs the ×4 trunk (Real-ESRGAN's RealESRGAN_x2plus).
INPUT_UNSHUFFLES = (1, 2, 4)

# Residual scaling β = 0.2 inside each dense block and again around each RRDB (paper §3.1,
# "empirically"; BasicSR rrdbnet_arch.py uses the same constant).
RESIDUAL_SCALE = 0.2
# LeakyReLU slope of the reference implementation.
NEGATIVE_SLOPE = 0.2
# Body convs use MSRA/He init scaled by 0.1 (paper supplementary §2: smaller initialisation makes
# the very deep residual network easier to train). Scaling weights by 0.1 scales the variance by
# 0.01, hence VarianceScaling(scale=2 * 0.01) == HeNormal × 0.1 (untruncated, as torch's kaiming).
_BODY_INIT = dict(scale=2.0 * 0.01, mode="fan_in", distribution="untruncated_normal")
_HE_INIT = dict(scale=2.0, mode="fan_in", distribution="untruncated_normal")


def _conv(filters: int, name: str, init: dict, dtype=None) -> keras.layers.Conv2D:
  return keras.layers.Conv2D(
      filters, 3, padding="same", name=name, dtype=dtype,
      kernel_initializer=keras.initializers.VarianceScaling(**init),
      bias_initializer="zeros")


def _lrelu(x):
  return tf.nn.leaky_relu(x, alpha=NEGATIVE_SLOPE)


def _track_items(layer: keras.layers.Layer, prefix: str, items: list) -> None:
  """Also sets each list item as an attribute, so that `tf.train.Checkpoint` sees it.

  In TF 2.21, Keras 3 wraps list attributes in its own TrackedList, which TF's checkpoint
  dependency tracking does not follow: `tf.train.Checkpoint(model=RRDBNet())` silently saved 8 of
  72 variables of a 2-block net. Keras' own tracker de-duplicates, so weights are not repeated.
  """
  for i, item in enumerate(items):
    setattr(layer, f"{prefix}{i}", item)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class ResidualDenseBlock(keras.layers.Layer):
  """Five 3×3 convs with dense (concatenated) connections; no activation after conv5."""

  def __init__(self, num_features: int = 64, growth_channels: int = 32, **kwargs):
    super().__init__(**kwargs)
    self.num_features = num_features
    self.growth_channels = growth_channels
    dtype = self.dtype_policy
    self.convs = [_conv(growth_channels, f"conv{j}", _BODY_INIT, dtype) for j in range(1, 5)]
    self.convs.append(_conv(num_features, "conv5", _BODY_INIT, dtype))
    _track_items(self, "_conv_", self.convs)

  def build(self, input_shape):
    channels = self.num_features
    for conv in self.convs:
      conv.build((None, None, None, channels))
      channels += self.growth_channels

  def call(self, x):
    features = [x]
    for conv in self.convs[:-1]:
      features.append(_lrelu(conv(tf.concat(features, axis=-1))))
    # conv5: no activation (the reference; a LeakyReLU here breaks imported weights).
    out = self.convs[-1](tf.concat(features, axis=-1))
    return out * RESIDUAL_SCALE + x

  def get_config(self):
    return {**super().get_config(), "num_features": self.num_features,
            "growth_channels": self.growth_channels}


@keras.saving.register_keras_serializable(package="esrgan_tf")
class RRDB(keras.layers.Layer):
  """Residual-in-residual dense block: three dense blocks and a scaled skip."""

  def __init__(self, num_features: int = 64, growth_channels: int = 32, **kwargs):
    super().__init__(**kwargs)
    self.num_features = num_features
    self.growth_channels = growth_channels
    self.rdbs = [ResidualDenseBlock(num_features, growth_channels, name=f"rdb{k}",
                                    dtype=self.dtype_policy) for k in range(1, 4)]
    _track_items(self, "_rdb_", self.rdbs)

  def build(self, input_shape):
    for rdb in self.rdbs:
      rdb.build(input_shape)

  def call(self, x):
    out = x
    for rdb in self.rdbs:
      out = rdb(out)
    return out * RESIDUAL_SCALE + x

  def get_config(self):
    return {**super().get_config(), "num_features": self.num_features,
            "growth_channels": self.growth_channels}


@keras.saving.register_keras_serializable(package="esrgan_tf")
class RRDBNet(GeneratorMixin, keras.Model):
  """The ESRGAN generator.

  Takes float32 NHWC images in [0, 1] of any height and width and returns the upscaled image,
  float32 and unclipped (clip and round at the edges: `images.image_io`, `export.saved_model`).

  Args:
    in_channels: Input image channels.
    out_channels: Output image channels.
    num_features: Trunk width (nf).
    num_blocks: Number of RRDBs (nb).
    growth_channels: Dense-block growth (gc).
    scale: Upscaling factor: 2, 4, 8 (one ×2 stage each), or with `input_unshuffle` f, the
      trunk upscales by scale·f (2, 4 or 8) from an input folded by f: x2 with f=2 and x1 with
      f=4 are BasicSR's layouts (RealESRGAN_x2plus and the x1 community models).
    upsampler: "depth_to_space" (conv nf→4·nf, depth_to_space(2), LeakyReLU per stage: sub-pixel
      convolution) or "nearest" (nearest ×2, conv nf→nf, LeakyReLU per stage: the layout of the
      official ESRGAN and Real-ESRGAN weights).
    input_unshuffle: 1, or 2/4: `space_to_depth` of the input by this factor before conv_first
      (which then takes in_channels·f² channels). Inputs whose height or width is not a multiple
      of f are reflect-padded at the bottom/right and the output cropped back, inside `call` so
      that every runner gets it (Real-ESRGAN's `RealESRGANer.pre_process` mod_pad).
    **kwargs: Passed to `keras.Model` (name, dtype policy).

  Raises:
    ValueError: On a scale, upsampler or unshuffle factor outside the allowed values.
  """

  ARCH = "rrdbnet"

  def __init__(self, in_channels: int = 3, out_channels: int = 3, num_features: int = 64,
               num_blocks: int = 23, growth_channels: int = 32, scale: int = 4,
               upsampler: str = "depth_to_space", input_unshuffle: int = 1, **kwargs):
    check_output(scale, upsampler, input_unshuffle)
    check_sizes(in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                num_blocks=num_blocks, growth_channels=growth_channels)
    kwargs.setdefault("name", "rrdbnet")
    super().__init__(**kwargs)
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.num_features = num_features
    self.num_blocks = num_blocks
    self.growth_channels = growth_channels
    self.scale = scale
    self.upsampler = upsampler
    self.input_unshuffle = input_unshuffle

    # Sublayers share the model's dtype policy, so RRDBNet(dtype="bfloat16") computes in bf16
    # throughout (inference) and "mixed_bfloat16"/"mixed_float16" give mixed precision.
    # The trunk and the output convs are built by the same functions as MultiHeadRRDBNet's
    # (`multihead`), as attributes of this model: the variable names stay the published ones.
    dtype = self.dtype_policy
    self.conv_first, self.body, self.conv_body = make_trunk(
        num_features, num_blocks, growth_channels, dtype)
    self.conv_ups, self.conv_hr, self.conv_last = make_upsampler(
        num_features, out_channels, upsample_stages(scale, input_unshuffle), upsampler, dtype)
    _track_items(self, "_body_", self.body)
    _track_items(self, "_conv_up_", self.conv_ups)

  def build(self, input_shape=(None, None, None, 3)):
    build_trunk(self.conv_first, self.body, self.conv_body,
                self.in_channels * self.input_unshuffle**2, self.num_features)
    build_upsampler(self.conv_ups, self.conv_hr, self.conv_last, self.num_features)
    self.built = True

  def call(self, inputs):
    return unshuffled_call(inputs, self.input_unshuffle, self._trunk, self.scale)

  def _trunk(self, inputs):
    feat = trunk_features(self.conv_first, self.body, self.conv_body, inputs)
    return upsample_features(feat, self.conv_ups, self.conv_hr, self.conv_last, self.upsampler)

  def named_convs(self) -> dict[str, keras.layers.Conv2D]:
    """Conv layers keyed by their BasicSR/Real-ESRGAN state-dict prefix, in network order.

    Returns:
      e.g. {"conv_first": ..., "body.0.rdb1.conv1": ..., "conv_up1": ..., "conv_last": ...}.
      Keras kernels are (kh, kw, in, out); torch weights are (out, in, kh, kw).
    """
    convs = {"conv_first": self.conv_first}
    for i, block in enumerate(self.body):
      for k, rdb in enumerate(block.rdbs, start=1):
        for j, conv in enumerate(rdb.convs, start=1):
          convs[f"body.{i}.rdb{k}.conv{j}"] = conv
    convs["conv_body"] = self.conv_body
    for i, conv in enumerate(self.conv_ups, start=1):
      convs[f"conv_up{i}"] = conv
    convs["conv_hr"] = self.conv_hr
    convs["conv_last"] = self.conv_last
    return convs

  def get_config(self):
    config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
              "num_features": self.num_features, "num_blocks": self.num_blocks,
              "growth_channels": self.growth_channels, "scale": self.scale,
              "upsampler": self.upsampler, "name": self.name}
    if self.input_unshuffle != 1:  # absent = 1: configs and .keras files written before it load
      config["input_unshuffle"] = self.input_unshuffle
    if self.dtype_policy.name != "float32":
      config["dtype"] = self.dtype_policy.name
    return config


# --- building blocks shared with MultiHeadRRDBNet (`multihead`) ---------------------------------

def check_output(scale: int, upsampler: str, input_unshuffle: int = 1) -> None:
  """Validates one output's scale and upsampler for an input folded by `input_unshuffle`.

  Raises:
    ValueError: On a scale, upsampler or unshuffle factor outside the allowed values.
  """
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  if input_unshuffle not in INPUT_UNSHUFFLES:
    raise ValueError(f"input_unshuffle must be one of {INPUT_UNSHUFFLES}, got "
                     f"{input_unshuffle!r}")
  if scale * input_unshuffle not in (2, 4, 8):
    raise ValueError(f"scale {scale} with input_unshuffle {input_unshuffle} needs a trunk "
                     f"upscaling ×{scale * input_unshuffle}; it must be 2, 4 or 8")
  if upsampler not in UPSAMPLERS:
    raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")


def check_sizes(**sizes) -> None:
  """Raises ValueError naming the first of `sizes` (name=value) that is not a positive int."""
  for arg, value in sizes.items():
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{arg} must be a positive integer, got {value!r}")


def upsample_stages(scale: int, input_unshuffle: int = 1) -> int:
  """Number of ×2 stages after the trunk: log2(scale · input_unshuffle)."""
  return int(math.log2(scale * input_unshuffle))


def make_trunk(num_features: int, num_blocks: int, growth_channels: int, dtype):
  """The trunk's layers, named as in the published weights.

  Returns:
    (conv_first, [RRDB "body.0", ...], conv_body).
  """
  conv_first = _conv(num_features, "conv_first", _HE_INIT, dtype)
  body = [RRDB(num_features, growth_channels, name=f"body.{i}", dtype=dtype)
          for i in range(num_blocks)]
  conv_body = _conv(num_features, "conv_body", _HE_INIT, dtype)
  return conv_first, body, conv_body


def build_trunk(conv_first, body, conv_body, in_channels: int, num_features: int) -> None:
  """Builds the trunk's layers for `in_channels` input channels (after any unshuffle)."""
  feature_shape = (None, None, None, num_features)
  conv_first.build((None, None, None, in_channels))
  for block in body:
    block.build(feature_shape)
  conv_body.build(feature_shape)


def trunk_features(conv_first, body, conv_body, inputs):
  """conv_first, the RRDBs, conv_body and the long skip: the features every output starts from."""
  feat = conv_first(inputs)
  out = feat
  for block in body:
    out = block(out)
  return feat + conv_body(out)


def make_upsampler(num_features: int, out_channels: int, stages: int, upsampler: str, dtype):
  """One output's layers: a conv per ×2 stage, conv_hr and conv_last.

  Returns:
    ([conv_up1, ...], conv_hr, conv_last).
  """
  up_filters = 4 * num_features if upsampler == "depth_to_space" else num_features
  conv_ups = [_conv(up_filters, f"conv_up{i}", _HE_INIT, dtype) for i in range(1, stages + 1)]
  conv_hr = _conv(num_features, "conv_hr", _HE_INIT, dtype)
  conv_last = _conv(out_channels, "conv_last", _HE_INIT, dtype)
  return conv_ups, conv_hr, conv_last


def build_upsampler(conv_ups, conv_hr, conv_last, num_features: int) -> None:
  """Builds one output's layers (they all take `num_features` channels)."""
  feature_shape = (None, None, None, num_features)
  for conv in (*conv_ups, conv_hr, conv_last):
    conv.build(feature_shape)


def upsample_stage(x, conv, upsampler: str):
  """One ×2 stage: sub-pixel conv (depth_to_space) or nearest ×2 then conv; then LeakyReLU."""
  if upsampler == "depth_to_space":
    return _lrelu(tf.nn.depth_to_space(conv(x), 2))
  # tf.image.resize nearest lowers to RESIZE_NEAREST_NEIGHBOR, which the TFLite GPU delegate
  # runs; keras.layers.UpSampling2D lowers to TILE/EXPAND_DIMS, which it rejects. For an exact
  # ×2 factor this equals PyTorch's F.interpolate(mode="nearest") used by the official weights.
  size = tf.shape(x)[1:3] * 2
  x = tf.image.resize(x, size, method="nearest")
  return _lrelu(conv(x))


def upsample_features(feat, conv_ups, conv_hr, conv_last, upsampler: str):
  """Trunk features → the image: the ×2 stages, conv_hr + LeakyReLU, conv_last."""
  for conv in conv_ups:
    feat = upsample_stage(feat, conv, upsampler)
  return conv_last(_lrelu(conv_hr(feat)))


def unshuffled_call(inputs, factor: int, run, scale):
  """`run(inputs)`, or with `factor` > 1 `run` on the reflect-padded, space_to_depth-folded input
  and its output(s) cropped back to `scale` × the input size.

  Args:
    inputs: [N, H, W, C].
    factor: input_unshuffle (1: no folding).
    run: Tensor → tensor, or → dict of tensors.
    scale: The output's scale, or {key: scale} when `run` returns a dict.

  Returns:
    What `run` returns, cropped.
  """
  if factor == 1:
    return run(inputs)
  padded, (height, width), cropped = reflect_pad_to_multiple(inputs, factor)
  out = run(tf.nn.space_to_depth(padded, factor))
  if not cropped:
    return out
  if isinstance(out, dict):
    return {key: value[:, :height * scale[key], :width * scale[key], :]
            for key, value in out.items()}
  return out[:, :height * scale, :width * scale, :]


def reflect_pad_to_multiple(x, factor: int):
  """Reflect-pads NHWC `x` at the bottom/right to multiples of `factor` in height and width.

  Real-ESRGAN pads with F.pad(mode="reflect") (`RealESRGANer.pre_process`); numpy's "reflect"
  is the same (edge sample not repeated), and so is tf.pad(mode="REFLECT") = MIRROR_PAD, which
  the TFLite GPU delegate runs. That needs pad < side; a smaller input (a 1-pixel-wide image, where
  torch and tf.pad refuse) takes a periodic reflection by index gather instead, chosen at run time
  by a tf.cond that a static-shape conversion folds away. With static sizes nothing is added when
  nothing is padded.

  Args:
    x: [N, H, W, C] tensor.
    factor: The multiple.

  Returns:
    (padded x, (H, W) as ints or scalar tensors, whether anything may have been padded).
  """
  static = x.shape[1], x.shape[2]
  if all(isinstance(n, int) for n in static):
    pads = [_pad_to_multiple(n, factor) for n in static]
    if not any(pads):
      return x, static, False
    if all(p < n for p, n in zip(pads, static)):
      return tf.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, 0]], mode="REFLECT"), static, True
    return _gather_reflect(x, factor), static, True
  size = tf.shape(x)[1], tf.shape(x)[2]
  pads = [_pad_to_multiple(n, factor) for n in size]
  fits = tf.logical_and(pads[0] < size[0], pads[1] < size[1])
  padded = tf.cond(
      fits, lambda: tf.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, 0]], mode="REFLECT"),
      lambda: _gather_reflect(x, factor))
  return padded, size, True


def _pad_to_multiple(n, factor: int):
  """(f − n mod f) mod f for a size n ≥ 0: what takes n up to a multiple of f.

  Equal to (−n) mod f, but with both operands of each mod non-negative: tf2onnx 1.17 converts
  integer FloorMod as x − trunc(x / y)·y (ONNX Div truncates integers), which is wrong for a
  negative x; the ONNX export of an x2plus net then gave 72×104 instead of 74×106 for a 37×53
  input, and a failing Pad at 1×3.
  """
  return (factor - n % factor) % factor


def _gather_reflect(x, factor: int):
  """Periodic reflection (numpy "reflect" for any pad length) by index gather along H and W."""
  for axis in (1, 2):
    n = tf.shape(x)[axis]
    index = tf.range(n + _pad_to_multiple(n, factor))
    period = tf.maximum(2 * (n - 1), 1)
    index = index % period
    x = tf.gather(x, tf.where(index < n, index, period - index), axis=axis)
  return x
