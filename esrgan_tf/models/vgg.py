"""Frozen VGG19 feature extractor for the perceptual loss (ESRGAN §3.3).

ESRGAN takes the features *before* the activation (paper §3.3: activated features are sparse
and give weaker supervision). Rather than mutating `layer.activation` of a built Keras model, we
rebuild the VGG19 trunk up to the deepest requested layer from fresh layers: every conv is a
new `Conv2D(activation=None)` holding a copy of the pretrained kernel and bias, followed by an
explicit ReLU, so the pre-activation tensor of any conv is available.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import keras
import tensorflow as tf

# Caffe-style ImageNet preprocessing of the Keras VGG weights: RGB→BGR, [0, 255], minus the
# per-channel BGR mean, no scaling (keras/src/applications/imagenet_utils.py,
# `preprocess_input(mode="caffe")`).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# File name keras.applications.VGG19(include_top=False, weights="imagenet") downloads into
# $KERAS_HOME/models (default ~/.keras/models) (keras/src/applications/vgg19.py).
IMAGENET_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
DEFAULT_LAYERS = {"block5_conv4": 1.0}  # ESRGAN: VGG19 conv5_4 before activation.
# BasicSR's VGG19 layer names (basicsr/archs/vgg_arch.py NAMES['vgg19']: conv{block}_{index})
# → the Keras VGG19 names (block{block}_conv{index}); blocks 1–2 have 2 convs, 3–5 have 4.
BASICSR_LAYER_NAMES = {f"conv{b}_{c}": f"block{b}_conv{c}"
                       for b, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                       for c in range(1, convs + 1)}
# Real-ESRGAN's perceptual loss (options/train_realesrgan_x4plus.yml, perceptual_opt.layer_weights;
# L1, pre-activation, perceptual_weight 1.0).
REAL_ESRGAN_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                      "conv5_4": 1.0}


def keras_layer_name(name: str) -> str:
  """The Keras VGG19 name of a conv given as Keras (block5_conv4) or BasicSR (conv5_4) name."""
  return BASICSR_LAYER_NAMES.get(name, name)


def imagenet_weights_path() -> Optional[str]:
  """The locally cached ImageNet VGG19 (no top) weights file, or None if not downloaded.

  Returns:
    The path under $KERAS_HOME/models (or ~/.keras/models) if the file exists, else None.
  """
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  path = os.path.join(home, "models", IMAGENET_NOTOP_FILE)
  return path if os.path.isfile(path) else None


def caffe_preprocess(images):
  """[0, 1] RGB float images → caffe-preprocessed BGR (×255, minus the ImageNet BGR mean)."""
  bgr = tf.reverse(images, axis=[-1]) * 255.0
  return bgr - tf.constant(CAFFE_BGR_MEAN, dtype=bgr.dtype)


# torchvision's ImageNet normalisation of [0, 1] RGB, which BasicSR's VGGFeatureExtractor applies
# with use_input_norm=True (basicsr/archs/vgg_arch.py) before torchvision's VGG19 weights.
TORCH_IMAGENET_MEAN = (0.485, 0.456, 0.406)
TORCH_IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS_MODES = ("caffe", "torch", "none")


def torch_preprocess(images):
  """[0, 1] RGB float images → (x − mean) / std with torchvision's ImageNet statistics."""
  mean = tf.constant(TORCH_IMAGENET_MEAN, dtype=images.dtype)
  return (images - mean) / tf.constant(TORCH_IMAGENET_STD, dtype=images.dtype)


def _preprocess_mode(preprocess, weights) -> str:
  if preprocess is True or preprocess is None:
    # Converted torchvision weights (a mapping) expect torch's normalisation, Keras' caffe.
    return "torch" if isinstance(weights, Mapping) else "caffe"
  if preprocess is False:
    return "none"
  if preprocess not in PREPROCESS_MODES:
    raise ValueError(f"preprocess must be a bool or one of {PREPROCESS_MODES}, got "
                     f"{preprocess!r}")
  return preprocess


@keras.saving.register_keras_serializable(package="esrgan_tf")
class VGGFeatureExtractor(keras.Model):
  """Pre-activation VGG19 features of [0, 1] RGB images. Not trainable.

  Args:
    layers: {VGG19 conv layer name: loss weight}, e.g. {"block5_conv4": 1.0} (ESRGAN) or
      `REAL_ESRGAN_LAYERS`. Names in Keras (block5_conv4) or BasicSR (conv5_4) form; the
      features come back under the names given. Only conv layers (pre-activation).
    weights: "imagenet" (Keras downloads into ~/.keras/models when missing), a path to a
      weights file for `keras.applications.VGG19(include_top=False)` (.weights.h5 or the Keras
      .h5), a mapping {Keras conv name: (kernel [3, 3, in, out], bias)} (e.g. torchvision's
      VGG19 as BasicSR uses it, from `esrgan_tf.weights.load_torchvision_vgg19`), or None
      (random init: tests only; a perceptual loss on it is meaningless).
    preprocess: True (default: "caffe" for Keras weights, "torch" for a mapping), "caffe",
      "torch" (BasicSR use_input_norm=True, range_norm=False), or False/"none".
    **kwargs: Passed to `keras.Model`.

  Call returns {layer name: float features [N, h, w, c]}, in the order of `layers`.

  Raises:
    ValueError: On an empty `layers`, a non-conv or unknown layer name, or a missing weights file.
  """

  def __init__(self, layers: Optional[Mapping[str, float]] = None, weights=None,
               preprocess: bool = True, **kwargs):
    layers = dict(DEFAULT_LAYERS if layers is None else layers)
    if not layers:
      raise ValueError("VGGFeatureExtractor needs at least one layer")
    conv_weights = weights if isinstance(weights, Mapping) else None
    if (conv_weights is None and weights not in (None, "imagenet")
        and not os.path.isfile(str(weights))):
      raise ValueError(f"VGG19 weights file {weights!r} does not exist")
    kwargs.setdefault("name", "vgg_features")
    super().__init__(**kwargs)
    self.layer_weights = {str(k): float(v) for k, v in layers.items()}
    self.weights_source = "mapping" if conv_weights is not None else weights
    self.preprocess = _preprocess_mode(preprocess, weights)

    vgg = keras.applications.VGG19(include_top=False,
                                   weights=None if conv_weights is not None else weights,
                                   input_shape=(None, None, 3))
    names = [layer.name for layer in vgg.layers]
    # Given name → Keras name; features are returned under the given names.
    self._taps = {name: keras_layer_name(name) for name in self.layer_weights}
    for name, keras_name in self._taps.items():
      if keras_name not in names or not keras_name.startswith("block") or "_conv" not in keras_name:
        convs = [n for n in names if "_conv" in n]
        raise ValueError(f"unknown VGG19 conv layer {name!r}; choose from {convs} (or the "
                         f"BasicSR names {list(BASICSR_LAYER_NAMES)})")
    if len(set(self._taps.values())) != len(self._taps):
      raise ValueError(f"VGG19 layers given twice (Keras and BasicSR names): {list(self._taps)}")
    last = max(names.index(name) for name in self._taps.values())
    # Fresh layers copying the pretrained ones, up to the deepest requested conv.
    self.trunk = []
    for layer in vgg.layers[1:last + 1]:
      if isinstance(layer, keras.layers.Conv2D):
        conv = keras.layers.Conv2D(layer.filters, layer.kernel_size, padding=layer.padding,
                                   activation=None, name=layer.name)
        conv.build((None, None, None, layer.kernel.shape[2]))
        if conv_weights is None:
          conv.set_weights(layer.get_weights())
        elif layer.name not in conv_weights:
          raise ValueError(f"VGG19 weights mapping lacks {layer.name}")
        else:
          kernel, bias = conv_weights[layer.name]
          if tuple(kernel.shape) != tuple(conv.kernel.shape) or tuple(bias.shape) != (
              conv.filters,):
            raise ValueError(f"{layer.name}: kernel {tuple(kernel.shape)} / bias "
                             f"{tuple(bias.shape)}, expected {tuple(conv.kernel.shape)} / "
                             f"{(conv.filters,)}")
          conv.set_weights([kernel, bias])
        self.trunk.append(conv)
      elif isinstance(layer, keras.layers.MaxPooling2D):
        self.trunk.append(keras.layers.MaxPooling2D(layer.pool_size, layer.strides,
                                                    name=layer.name))
      else:
        raise TypeError(f"unexpected VGG19 layer {layer.name} ({type(layer).__name__})")
    del vgg
    self.trainable = False
    self.built = True

  def call(self, images):
    if self.preprocess == "caffe":
      x = caffe_preprocess(images)
    elif self.preprocess == "torch":
      x = torch_preprocess(images)
    else:
      x = images
    features = {}
    wanted = set(self._taps.values())
    for layer in self.trunk:
      x = layer(x)
      if isinstance(layer, keras.layers.Conv2D):
        if layer.name in wanted:
          features[layer.name] = x
        x = tf.nn.relu(x)
    return {name: features[keras_name] for name, keras_name in self._taps.items()}

  def get_config(self):
    return {"layers": self.layer_weights, "weights": None, "preprocess": self.preprocess,
            "name": self.name}
