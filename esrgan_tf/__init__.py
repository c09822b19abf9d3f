"""esrgan_tf: ESRGAN super-resolution in TensorFlow/Keras 3.

    import esrgan_tf
    up = esrgan_tf.load("RealESRGAN_x4plus")      # any esrgan-upscale --model spec
    out = up.upscale(image)                        # numpy (uint8/uint16/float) or PIL, same back
    model = esrgan_tf.models.RRDBNet.from_preset("RealESRGAN_x4plus")   # the Keras model

The names below are imported on first use, so that `import esrgan_tf` (and the console scripts'
`--help`) stay free of TensorFlow.
"""

import importlib
import os

__version__ = "0.1.0"

# Bundled public-domain/CC0 photos (licences in samples/LICENSES.md): train/ for the quickstart,
# val/chelsea.png and heldout/ held out.
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")

# Public name → (module, attribute); attribute None: the module itself.
_LAZY = {
    "load": ("esrgan_tf.inference.api", "load"),
    "Upscaler": ("esrgan_tf.inference.api", "Upscaler"),
    "ModelSpec": ("esrgan_tf.inference.resolver", "ModelSpec"),
    "TileSpec": ("esrgan_tf.inference.tiling", "TileSpec"),
    "ModelError": ("esrgan_tf.core.errors", "ModelError"),
    "models": ("esrgan_tf.models", None),
}
__all__ = ["SAMPLES_DIR", "__version__", *_LAZY]


def __getattr__(name: str):
  if name not in _LAZY:
    raise AttributeError(f"module 'esrgan_tf' has no attribute {name!r}")
  module_name, attribute = _LAZY[name]
  module = importlib.import_module(module_name)
  return module if attribute is None else getattr(module, attribute)
