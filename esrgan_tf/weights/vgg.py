"""torchvision's VGG19 state dict → the Keras VGG19 conv names, for BasicSR's perceptual loss.

BasicSR's VGGFeatureExtractor (basicsr/archs/vgg_arch.py) uses torchvision's `vgg19` weights
(vgg19-dcbb9e9d.pth). Its `features` Sequential holds the 16 convs at indices 0, 2, 5, 7, 10, 12,
14, 16, 19, 21, 23, 25, 28, 30, 32, 34 (ReLUs and max pools in between; torchvision
models/vgg.py cfg "E"); `classifier.*` is ignored. The file is read by `esrgan_tf.weights`
(`load_torchvision_vgg19`) with the same safe readers as the generator's.
"""

from __future__ import annotations

import numpy as np

from esrgan_tf.weights.errors import CheckpointError
from esrgan_tf.weights.layouts import strip_module_prefix, to_float32

# (block, convs per block) of VGG19; torchvision indices advance by 2 per conv (conv, ReLU) and
# by 1 more per max pool.
_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))


def _feature_indices() -> dict[str, int]:
  indices, index = {}, 0
  for block, convs in _BLOCKS:
    for conv in range(1, convs + 1):
      indices[f"block{block}_conv{conv}"] = index
      index += 2
    index += 1  # The max pool.
  return indices


TORCHVISION_FEATURE_INDEX = _feature_indices()


def torchvision_vgg19_convs(state: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{Keras VGG19 conv name: (kernel [3, 3, in, out], bias)} from a torchvision VGG19 state dict.

  Args:
    state: `features.N.weight/bias` (torch OIHW), optionally `classifier.*` and `module.`.

  Raises:
    CheckpointError: Missing convs, unexpected keys or shapes that are not VGG19's.
  """
  state = strip_module_prefix(state)
  expected = {f"features.{i}.{k}" for i in TORCHVISION_FEATURE_INDEX.values()
              for k in ("weight", "bias")}
  unexpected = sorted(k for k in state if k not in expected and not k.startswith("classifier."))
  missing = sorted(expected - set(state))
  if missing or unexpected:
    raise CheckpointError(f"not a torchvision VGG19 state dict: missing {missing[:4]}, "
                          f"unexpected {unexpected[:4]}")
  convs, channels = {}, 3
  for name, index in TORCHVISION_FEATURE_INDEX.items():
    weight = to_float32(f"features.{index}.weight", state[f"features.{index}.weight"])
    bias = to_float32(f"features.{index}.bias", state[f"features.{index}.bias"])
    out = weight.shape[0]
    if weight.shape != (out, channels, 3, 3) or bias.shape != (out,):
      raise CheckpointError(f"features.{index} ({name}): weight {weight.shape} / bias "
                            f"{bias.shape}, expected ({out}, {channels}, 3, 3) / ({out},)")
    convs[name] = (np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), bias)
    channels = out
  return convs
