"""Real-ESRGAN's U-Net discriminator with spectral normalization, NHWC.

Architecture of `UNetDiscriminatorSN` (Real-ESRGAN, realesrgan/archs/discriminator_arch.py; the
same class in BasicSR basicsr/archs/discriminator_arch.py), Wang et al. 2021, "Real-ESRGAN:
Training Real-World Blind Super-Resolution with Pure Synthetic Data", §3.3/Fig. 6:
  x0 = lrelu(conv0(x))                 3×3, nf, bias, no spectral norm
  x1 = lrelu(SN(conv1)(x0))            4×4 stride 2, 2nf, no bias            H/2
  x2 = lrelu(SN(conv2)(x1))            4×4 stride 2, 4nf                      H/4
  x3 = lrelu(SN(conv3)(x2))            4×4 stride 2, 8nf                      H/8
  x4 = lrelu(SN(conv4)(up(x3))) [+ x2] 3×3, 4nf                               H/4
  x5 = lrelu(SN(conv5)(up(x4))) [+ x1] 3×3, 2nf                               H/2
  x6 = lrelu(SN(conv6)(up(x5))) [+ x0] 3×3, nf                                H
  out = conv9(lrelu(SN(conv8)(lrelu(SN(conv7)(x6)))))   conv7/8 3×3 nf, conv9 3×3 → 1, bias
with LeakyReLU slope 0.2 and up = bilinear ×2, torch `F.interpolate(scale_factor=2,
mode='bilinear', align_corners=False)`: source coordinate (dst + ½)/2 − ½ clamped at 0, which is
`tf.image.resize(..., "bilinear")` (half-pixel centers, no antialiasing; at the borders both
repeat the edge pixel; tested against a numpy transcription of torch's formula).
The 4×4 stride-2 convs pad 1 on each side (torch padding=1) = Keras "same" for even sizes, so
H and W must be multiples of 8 (as in torch, where the skip additions need it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from esrgan_tf.models.spectral_norm import SpectralNorm

NEGATIVE_SLOPE = 0.2  # Real-ESRGAN: F.leaky_relu(..., negative_slope=0.2).
# conv name → (filters as a multiple of nf, kernel size, stride); conv0 and conv9 are plain.
_SN_CONVS = {"conv1": (2, 4, 2), "conv2": (4, 4, 2), "conv3": (8, 4, 2), "conv4": (4, 3, 1),
             "conv5": (2, 3, 1), "conv6": (1, 3, 1), "conv7": (1, 3, 1), "conv8": (1, 3, 1)}
CONV_NAMES = ("conv0",) + tuple(_SN_CONVS) + ("conv9",)
SPATIAL_MULTIPLE = 8  # Three stride-2 convs, undone by three ×2 upsamplings.


def _lrelu(x):
  return tf.nn.leaky_relu(x, alpha=NEGATIVE_SLOPE)


def upsample_bilinear_x2(x):
  """torch `F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)`, NHWC."""
  size = tf.shape(x)[1:3] * 2
  return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)


@keras.saving.register_keras_serializable(package="esrgan_tf")
class UNetDiscriminatorSN(keras.Model):
  """U-Net discriminator with spectral norm: per-pixel logits [N, H, W, 1] (no sigmoid).

  Layers are attributes named as BasicSR's state-dict keys (`conv0` … `conv9`); `conv1`…`conv8`
  are `SpectralNorm` wrappers (torch semantics: stored u, v give torch's eval-mode σ).

  Args:
    num_in_ch: Image channels.
    num_feat: Base width nf (64 in Real-ESRGAN).
    skip_connection: Add the encoder features to the decoder's (Real-ESRGAN: True).
    **kwargs: Passed to `keras.Model`.

  Raises:
    ValueError: On a non-positive width or channel count.
  """

  def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True,
               **kwargs):
    for name, value in (("num_in_ch", num_in_ch), ("num_feat", num_feat)):
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    kwargs.setdefault("name", "unet_discriminator_sn")
    super().__init__(**kwargs)
    self.num_in_ch = num_in_ch
    self.num_feat = num_feat
    self.skip_connection = bool(skip_connection)
    self.conv0 = keras.layers.Conv2D(num_feat, 3, padding="same", name="conv0")
    for name, (mult, size, stride) in _SN_CONVS.items():
      conv = keras.layers.Conv2D(num_feat * mult, size, strides=stride, padding="same",
                                 use_bias=False, name=name)
      setattr(self, name, SpectralNorm(conv, name=f"{name}_sn"))
    # The logits leave in float32 under mixed precision (as the other discriminators' heads).
    self.conv9 = keras.layers.Conv2D(1, 3, padding="same", name="conv9", dtype="float32")

  def named_convs(self) -> dict:
    """{BasicSR name: layer} for conv0 … conv9 (SpectralNorm wrappers for conv1 … conv8)."""
    return {name: getattr(self, name) for name in CONV_NAMES}

  def _check_input(self, shape):
    if len(shape) != 4 or (shape[-1] is not None and shape[-1] != self.num_in_ch):
      raise ValueError(f"{self.name}: expected [N, H, W, {self.num_in_ch}] input, got "
                       f"{tuple(shape)}")
    for size in shape[1:3]:
      if size is not None and size % SPATIAL_MULTIPLE:
        raise ValueError(f"{self.name}: height and width must be multiples of "
                         f"{SPATIAL_MULTIPLE} (three stride-2 stages), got {tuple(shape[1:3])}")

  def build(self, input_shape=None):
    if input_shape is None:
      input_shape = (None, None, None, self.num_in_ch)
    self._check_input(input_shape)
    nf = self.num_feat
    self.conv0.build((None, None, None, self.num_in_ch))
    inputs = {"conv1": nf, "conv2": 2 * nf, "conv3": 4 * nf, "conv4": 8 * nf, "conv5": 4 * nf,
              "conv6": 2 * nf, "conv7": nf, "conv8": nf}
    for name, channels in inputs.items():
      getattr(self, name).build((None, None, None, channels))
    self.conv9.build((None, None, None, nf))
    self.built = True

  def call(self, images, training=False):
    self._check_input(images.shape)
    x0 = _lrelu(self.conv0(images))
    x1 = _lrelu(self.conv1(x0, training=training))
    x2 = _lrelu(self.conv2(x1, training=training))
    x3 = _lrelu(self.conv3(x2, training=training))
    x4 = _lrelu(self.conv4(upsample_bilinear_x2(x3), training=training))
    if self.skip_connection:
      x4 = x4 + x2
    x5 = _lrelu(self.conv5(upsample_bilinear_x2(x4), training=training))
    if self.skip_connection:
      x5 = x5 + x1
    x6 = _lrelu(self.conv6(upsample_bilinear_x2(x5), training=training))
    if self.skip_connection:
      x6 = x6 + x0
    out = _lrelu(self.conv7(x6, training=training))
    out = _lrelu(self.conv8(out, training=training))
    return self.conv9(out)

  def get_config(self):
    return {"num_in_ch": self.num_in_ch, "num_feat": self.num_feat,
            "skip_connection": self.skip_connection, "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)
