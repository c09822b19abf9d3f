"""Float64 numpy VGG19 trunk (pre-activation taps), from the VGG definition.

Simonyan & Zisserman 2015, configuration E: 3×3 'same' convs with ReLU, 2×2 stride-2 max pools
after each block; blocks of 2, 2, 4, 4, 4 convs. Weights are given per conv (in the tests: copied
from a randomly initialised extractor, or torchvision-layout random weights); input is
caffe-preprocessed (BGR, ×255, minus the ImageNet BGR mean) or torch-normalised.
"""

from __future__ import annotations

import discriminator_reference as ref
import numpy as np

BLOCKS = (2, 2, 4, 4, 4)
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68])  # keras imagenet_utils, mode="caffe".


def caffe(images):
  return images[..., ::-1] * 255.0 - CAFFE_BGR_MEAN


def max_pool_2x2(x):
  n, h, w, c = x.shape
  return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


TORCH_MEAN = np.array([0.485, 0.456, 0.406])  # torchvision ImageNet normalisation.
TORCH_STD = np.array([0.229, 0.224, 0.225])


def pre_activations(conv_weights, images, depth=16, preprocess="caffe"):
  """{"block{b}_conv{c}": conv output before ReLU} of caffe(images), NHWC float64.

  Args:
    conv_weights: {"block{b}_conv{c}": (kernel [3, 3, in, out], bias)}.
    images: [N, H, W, 3] RGB in [0, 1].
    depth: Number of convs to run (16: the whole trunk).
    preprocess: "caffe" (Keras weights) or "torch" ((x − mean) / std, torchvision weights).
  """
  images = np.asarray(images, np.float64)
  x = caffe(images) if preprocess == "caffe" else (images - TORCH_MEAN) / TORCH_STD
  taps = {}
  for b, convs in enumerate(BLOCKS, start=1):
    for c in range(1, convs + 1):
      name = f"block{b}_conv{c}"
      if len(taps) == depth:
        return taps
      kernel, bias = (np.asarray(w, np.float64) for w in conv_weights[name])
      x = ref.conv2d(x, kernel.transpose(3, 2, 0, 1), bias)
      taps[name] = x
      x = np.maximum(x, 0.0)
    x = max_pool_2x2(x)
  return taps
