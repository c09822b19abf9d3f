"""ESRGAN discriminators. Both return one raw logit per image (no sigmoid).

* `vgg`: the VGG-style discriminator of ESRGAN/BasicSR (`VGGStyleDiscriminator`,
  basicsr/archs/discriminator_arch.py): stages of a 3×3 stride-1 conv and a 4×4 stride-2 conv,
  each followed by batch norm (except the very first conv) and LeakyReLU(0.2); features
  nf, 2nf, 4nf, 8nf, 8nf, …; then flatten, Dense(100), LeakyReLU, Dense(1). The flatten ties it
  to one input size: 128×128 in the paper (5 stages down to 4×4); we accept any 4·2^k (k ≥ 1).
* `patch`: fully convolutional stages of the same kind, global average pooling and a 1×1 conv:
  any input size.

`spectral_norm=True` wraps every conv/dense in `SpectralNorm` (torch semantics, a subclass of
`keras.layers.SpectralNormalization`; see models/spectral_norm.py) and drops the batch norms
(spectral norm replaces them as the Lipschitz control, as in SNGAN/Real-ESRGAN).

Batch norm uses torch's `nn.BatchNorm2d` defaults (eps 1e-5, momentum 0.1, i.e. Keras momentum
0.9), not Keras' (1e-3, 0.99), so BasicSR discriminator weights import exactly, and torch's
running-variance convention (`TorchBatchNorm`), so a trained netD saves the statistics torch
would have.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from esrgan_tf.models.spectral_norm import SpectralNorm

DISCRIMINATOR_TYPES = ("vgg", "patch")
NEGATIVE_SLOPE = 0.2  # BasicSR: nn.LeakyReLU(negative_slope=0.2).
# Spatial size after the last stride-2 stage of the VGG-style discriminator (BasicSR: 128 → 4).
_VGG_FINAL_SIZE = 4
# Width of the first fully connected layer (BasicSR: nn.Linear(num_feat * 8 * 4 * 4, 100)).
_VGG_HIDDEN = 100
# torch nn.BatchNorm2d defaults: eps=1e-5, momentum=0.1 (running ← 0.9·running + 0.1·batch).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="esrgan_tf")
class TorchBatchNorm(keras.layers.BatchNormalization):
  """Keras batch norm whose moving variance follows torch's `nn.BatchNorm2d`.

  Both normalise a training batch by its biased variance, but torch updates `running_var` with
  the UNBIASED one (n/(n − 1) times it, n = N·H·W per channel; torch/nn/functional.py
  batch_norm → aten native_batch_norm), Keras with the biased one. The variables, their names
  and inference are Keras' own, so checkpoints of either class load into the other.
  """

  def call(self, inputs, training=None, mask=None):
    if not (training and self.trainable) or mask is not None or self.renorm:
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)  # As Keras: statistics in float32 for float16 inputs.
    axes = [i for i in range(len(x.shape)) if i != self.axis % len(x.shape)]
    mean, variance = tf.nn.moments(x, axes)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + unbiased * (1.0 - momentum))
    gamma = self.gamma if self.scale else None
    beta = self.beta if self.center else None
    out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
    return tf.cast(out, self.compute_dtype)


def _lrelu(x):
  return tf.nn.leaky_relu(x, alpha=NEGATIVE_SLOPE)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class Discriminator(keras.Model):
  """VGG-style or patch discriminator returning logits of shape [N, 1].

  Args:
    type: "vgg" (fixed input size) or "patch" (any input size).
    num_features: Width of the first stage (nf; doubled per stage up to 8·nf).
    input_size: HR crop size for "vgg" (the config's gt_size): 4·2^k with k ≥ 1 (128 in the
      paper). Ignored by "patch".
    num_stages: Stride-2 stages of "patch" (each halves the size); "vgg" derives it from
      input_size.
    spectral_norm: Wrap every conv/dense in SpectralNormalization and drop batch norm.
    in_channels: Image channels.
    **kwargs: Passed to `keras.Model`.

  Raises:
    ValueError: On an unknown type, a bad size or width.
  """

  def __init__(self, type: str = "vgg", num_features: int = 64,  # pylint: disable=redefined-builtin
               input_size: int = 128, num_stages: int = 4, spectral_norm: bool = False,
               in_channels: int = 3, **kwargs):
    if type not in DISCRIMINATOR_TYPES:
      raise ValueError(f"discriminator type must be one of {DISCRIMINATOR_TYPES}, got {type!r}")
    if not isinstance(num_features, int) or num_features < 1:
      raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
    if type == "vgg":
      ratio = input_size // _VGG_FINAL_SIZE if isinstance(input_size, int) else 0
      if (input_size != ratio * _VGG_FINAL_SIZE or ratio < 2 or ratio & (ratio - 1)):
        raise ValueError(
            "vgg discriminator input_size must be 4·2^k with k >= 1 (8, 16, …, 128, 256), "
            f"got {input_size!r}")
      num_stages = ratio.bit_length() - 1
    elif not isinstance(num_stages, int) or num_stages < 1:
      raise ValueError(f"num_stages must be a positive integer, got {num_stages!r}")
    kwargs.setdefault("name", f"{type}_discriminator")
    super().__init__(**kwargs)
    self.type = type
    self.num_features = num_features
    self.input_size = input_size
    self.num_stages = num_stages
    self.spectral_norm = spectral_norm
    self.in_channels = in_channels

    self.stage_layers = []  # Per stage: [conv_s1, bn|None, conv_s2, bn|None].
    for i in range(num_stages):
      filters = num_features * min(2 ** i, 8)
      first = i == 0
      # BasicSR: conv0_0 has a bias and no BN; every other conv is bias-free and batch-normed.
      layers = [self._wrap(keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{i}_0",
                                               use_bias=first or spectral_norm)),
                None if first else self._bn(f"bn{i}_0"),
                self._wrap(keras.layers.Conv2D(filters, 4, strides=2, padding="same",
                                               name=f"conv{i}_1", use_bias=spectral_norm)),
                self._bn(f"bn{i}_1")]
      self.stage_layers.append(layers)
    if type == "vgg":
      self.flatten = keras.layers.Flatten(name="flatten")
      self.head = [self._wrap(keras.layers.Dense(_VGG_HIDDEN, name="linear1")),
                   self._wrap(keras.layers.Dense(1, name="linear2", dtype="float32"))]
    else:
      self.pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")
      self.head = [self._wrap(keras.layers.Conv2D(1, 1, name="conv_out", dtype="float32"))]

  def _wrap(self, layer):
    if self.spectral_norm:
      return SpectralNorm(layer, name=f"sn_{layer.name}")
    return layer

  def _bn(self, name):
    return None if self.spectral_norm else TorchBatchNorm(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)

  def _check_input(self, shape):
    if len(shape) != 4 or (shape[-1] is not None and shape[-1] != self.in_channels):
      raise ValueError(f"{self.name}: expected [N, H, W, {self.in_channels}] input, got "
                       f"{tuple(shape)}")
    if self.type == "vgg" and tuple(shape[1:3]) != (self.input_size, self.input_size):
      raise ValueError(
          f"{self.name}: the vgg discriminator takes {self.input_size}×{self.input_size} inputs "
          f"(flatten + dense head), got {tuple(shape[1:3])}; set discriminator.type='patch' for "
          "other sizes or change the crop size")

  def build(self, input_shape=None):
    if input_shape is None:
      size = self.input_size if self.type == "vgg" else None
      input_shape = (None, size, size, self.in_channels)
    self._check_input(input_shape)
    channels, size = self.in_channels, input_shape[1]
    for layers in self.stage_layers:
      filters = layers[0].layer.filters if self.spectral_norm else layers[0].filters
      for layer in layers:
        if layer is not None:
          layer.build((None, size, size, channels))
          channels = filters
      size = None if size is None else (size + 1) // 2
    if self.type == "vgg":
      self.head[0].build((None, size * size * channels))
      self.head[1].build((None, _VGG_HIDDEN))
    else:
      self.head[0].build((None, 1, 1, channels))
    self.built = True

  def call(self, images, training=False):
    self._check_input(images.shape)
    x = images
    for conv0, bn0, conv1, bn1 in self.stage_layers:
      x = conv0(x)
      if bn0 is not None:
        x = bn0(x, training=training)
      x = _lrelu(x)
      x = conv1(x)
      if bn1 is not None:
        x = bn1(x, training=training)
      x = _lrelu(x)
    if self.type == "vgg":
      x = _lrelu(self.head[0](self.flatten(x)))
      return self.head[1](x)
    return tf.reshape(self.head[0](self.pool(x)), [-1, 1])

  def get_config(self):
    return {"type": self.type, "num_features": self.num_features,
            "input_size": self.input_size, "num_stages": self.num_stages,
            "spectral_norm": self.spectral_norm, "in_channels": self.in_channels,
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)
