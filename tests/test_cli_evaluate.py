"""esrgan-eval end to end on a tiny saved model (subprocess: absl flags stay out of pytest)."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from esrgan_tf.data import datasets
from esrgan_tf.evaluation import metrics
from esrgan_tf.images import imresize
from esrgan_tf.inference import tiling
from esrgan_tf.models import rrdbnet


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  model = rrdbnet.RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
  model.save(path)
  return path


def _eval(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "esrgan_tf.cli.evaluate", *args],
                        capture_output=True, text=True, env=env, timeout=300)


def test_eval_cli_table_json_and_bicubic_baseline(tmp_path, model_path):
  rng = np.random.default_rng(0)
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  images = {"a": rng.integers(0, 256, (34, 32, 3)), "b": rng.integers(0, 256, (24, 28, 3))}
  for name, image in images.items():
    Image.fromarray(image.astype(np.uint8)).save(hr_dir / f"{name}.png")
  out = tmp_path / "r.json"
  proc = _eval(f"--model={model_path}", f"--hr={hr_dir}", "--scale=4", "--crop_border=4",
               "--y_channel", f"--json={out}")
  assert proc.returncode == 0, proc.stderr
  assert "bic PSNR" in proc.stdout and "mean" in proc.stdout
  result = json.loads(out.read_text())
  assert {"images", "mean", "bicubic_mean", "scale", "crop_border", "y_channel",
          "model"} <= result.keys()
  assert [r["name"] for r in result["images"]] == ["a", "b"]
  for row in result["images"]:
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"} <= row.keys()
    # The baseline, computed here step by step: mod-crop, MATLAB ×1/4 → 8 bits, MATLAB ×4.
    hr = images[row["name"]]
    hr = hr[:hr.shape[0] // 4 * 4, :hr.shape[1] // 4 * 4].astype(np.float64)
    lr = np.floor(np.clip(imresize.imresize(hr / 255, 0.25).numpy(), 0, 1) * 255 + 0.5) / 255
    bic = np.floor(np.clip(imresize.imresize(lr, 4.0).numpy(), 0, 1) * 255 + 0.5)
    assert row["bicubic_psnr"] == pytest.approx(metrics.calculate_psnr(bic, hr, 4, True),
                                                abs=1e-6)
    assert row["bicubic_ssim"] == pytest.approx(metrics.calculate_ssim(bic, hr, 4, True),
                                                abs=1e-6)
  assert result["psnr_gain"] == pytest.approx(
      result["mean"]["psnr"] - result["bicubic_mean"]["psnr"])
  assert result["bicubic_mean"]["psnr"] == pytest.approx(
      np.mean([r["bicubic_psnr"] for r in result["images"]]))


def test_eval_cli_bad_hr_path(tmp_path, model_path):
  out = tmp_path / "r.json"
  proc = _eval(f"--model={model_path}", f"--hr={tmp_path / 'missing'}", f"--json={out}")
  assert proc.returncode != 0
  assert "missing" in proc.stderr and "does not exist" in proc.stderr
  assert not out.exists()


def test_eval_library_matches_tiled_and_direct(model_path):
  # What the CLI calls, in process: tiled (tiling.upscale_array) and direct give the same numbers.
  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
  model = resolver.load_engine(resolver.ModelSpec(model=model_path, precision="float32"))
  hr = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
  pairs = [("x", datasets.degrade(hr, 4), hr)]
  direct = metrics.evaluate(model, pairs, crop_border=4)
  tiled = metrics.evaluate(model, pairs, crop_border=4, tiles=tiling.TileSpec(tile=0, pre_pad=0))
  assert direct["mean"]["psnr"] == pytest.approx(tiled["mean"]["psnr"], abs=1e-6)
