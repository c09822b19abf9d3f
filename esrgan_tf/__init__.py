"""esrgan_tf: ESRGAN super-resolution in TensorFlow/Keras 3."""

import os

__version__ = "0.1.0"

# Bundled public-domain/CC0 photos (licences in samples/LICENSES.md): train/ for the quickstart,
# val/chelsea.png held out.
SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
