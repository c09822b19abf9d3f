"""esrgan-upscale --head / --blend_heads and esrgan-eval on multi-head models (subprocesses: the
commands' absl flags stay out of pytest, and the exit codes are the real ones)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
from PIL import Image
import pytest

from esrgan_tf.data import datasets
from esrgan_tf.evaluation import metrics
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.models import MultiHeadRRDBNet

TINY = dict(num_features=8, num_blocks=1, growth_channels=4)


def _save(tmp_path_factory, name, heads, default_head=None, seed=0):
  keras.utils.set_random_seed(seed)
  model = MultiHeadRRDBNet(**TINY, heads=heads, default_head=default_head)
  model.build()
  path = str(tmp_path_factory.mktemp(name) / f"{name}.keras")
  model.save(path)
  return model, path


@pytest.fixture(scope="module")
def scales_model(tmp_path_factory):
  return _save(tmp_path_factory, "scales", [{"name": "x2", "scale": 2},
                                            {"name": "x4", "scale": 4}], default_head="x4")


@pytest.fixture(scope="module")
def styles_model(tmp_path_factory):
  return _save(tmp_path_factory, "styles", [{"name": "psnr", "scale": 2},
                                            {"name": "gan", "scale": 2}], seed=1)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
  image = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
  path = str(tmp_path_factory.mktemp("photo") / "p.png")
  Image.fromarray(image).save(path)
  return image, path


def _run(command, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", f"esrgan_tf.cli.{command}", *args],
                        capture_output=True, text=True, env=env, timeout=300, check=False)


def _levels(image):
  """float [0, 1] → 8-bit levels by rounding, as a float array (the reference rounding)."""
  return np.clip(np.rint(np.asarray(image, np.float64) * 255), 0, 255)


def _assert_close_levels(got, want):
  # Float32 noise can move a value across a rounding boundary: one level at most, rarely.
  diff = np.abs(got.astype(np.float64) - want)
  assert diff.max() <= 1 and np.mean(diff > 0) < 0.01, diff.max()


def test_upscale_each_head_and_the_default(tmp_path, scales_model, photo):
  model, path = scales_model
  image, src = photo
  out = model(image[None].astype(np.float32) / 255)
  for head, scale in (("x2", 2), (None, 4)):
    target = str(tmp_path / f"{head}.png")
    args = [f"--model={path}", f"--input={src}", f"--output={target}", "--precision=float32",
            "--tile=0", "--pre_pad=0"] + ([f"--head={head}"] if head else [])
    proc = _run("upscale", *args)
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(Image.open(target))
    assert got.shape == (10 * scale, 14 * scale, 3)
    _assert_close_levels(got, _levels(out[head or "x4"].numpy()[0]))


def test_blend_heads_from_one_trunk_pass(tmp_path, styles_model, photo):
  model, path = styles_model
  image, src = photo
  out = model(image[None].astype(np.float32) / 255)
  target = str(tmp_path / "blend.png")
  proc = _run("upscale", f"--model={path}", f"--input={src}", f"--output={target}",
              "--precision=float32", "--tile=0", "--pre_pad=0", "--blend_heads=psnr:0.3,gan:0.7")
  assert proc.returncode == 0, proc.stderr
  want = 0.3 * out["psnr"].numpy()[0] + 0.7 * out["gan"].numpy()[0]
  _assert_close_levels(np.asarray(Image.open(target)), _levels(want))


def test_upscale_head_errors(tmp_path, scales_model, photo):
  _, path = scales_model
  _, src = photo
  proc = _run("upscale", f"--model={path}", f"--input={src}", f"--output={tmp_path}/a.png",
              "--head=x8")
  assert proc.returncode == 1
  assert "no head 'x8'; its heads are ['x2', 'x4']" in proc.stderr
  proc = _run("upscale", f"--model={path}", f"--input={src}", f"--output={tmp_path}/b.png",
              "--blend_heads=x2:0.5,x4:0.5")
  assert proc.returncode == 1 and "must share a scale" in proc.stderr
  proc = _run("upscale", f"--model={path}", f"--input={src}", f"--output={tmp_path}/c.png",
              "--head=x2", "--blend_heads=x2:0.5,x4:0.5")
  assert proc.returncode == 2 and "exclude each other" in proc.stderr
  assert not os.listdir(tmp_path)


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp("hr")
  rng = np.random.default_rng(2)
  for name, shape in (("a", (40, 48, 3)), ("b", (32, 36, 3))):
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{name}.png")
  return str(folder)


def test_eval_reports_every_head(tmp_path, scales_model, hr_dir):
  model, path = scales_model
  out, report = tmp_path / "r.json", tmp_path / "report"
  proc = _run("evaluate", f"--model={path}", f"--hr={hr_dir}", f"--json={out}",
              f"--report={report}", "--precision=float32")
  assert proc.returncode == 0, proc.stderr
  assert "head x2 (×2):" in proc.stdout and "head x4 (×4):" in proc.stdout
  result = json.loads(out.read_text())
  assert sorted(result["heads"]) == ["x2", "x4"]
  for head, scale in (("x2", 2), ("x4", 4)):
    got = result["heads"][head]
    assert got["scale"] == scale and got["crop_border"] == scale and got["head"] == head
    # Independently: the trunk + that head as a plain RRDBNet, through the library.
    single = engine_lib.keras_engine(model.to_rrdbnet(head))
    pairs = datasets.load_validation_set({"val_dir": hr_dir, "val_lr_dir": "",
                                      "val_max_images": 0}, scale)
    want = metrics.evaluate(single, pairs, crop_border=scale)
    assert got["mean"]["psnr"] == pytest.approx(want["mean"]["psnr"], abs=1e-6)
    assert got["bicubic_mean"]["psnr"] == pytest.approx(want["bicubic_mean"]["psnr"], abs=1e-9)
    assert (report / head / "index.html").is_file()


def test_eval_one_head_and_scale_errors(tmp_path, scales_model, hr_dir):
  _, path = scales_model
  out = tmp_path / "one.json"
  proc = _run("evaluate", f"--model={path}", f"--hr={hr_dir}", "--head=x2", f"--json={out}",
              "--precision=float32")
  assert proc.returncode == 0, proc.stderr
  result = json.loads(out.read_text())
  assert result["scale"] == 2 and result["head"] == "x2" and "heads" not in result
  proc = _run("evaluate", f"--model={path}", f"--hr={hr_dir}", f"--lr={hr_dir}")
  assert proc.returncode == 2 and "--lr holds LR images of one scale" in proc.stderr
  proc = _run("evaluate", f"--model={path}", f"--hr={hr_dir}", "--scale=8")
  assert proc.returncode == 2 and "no head" in proc.stderr and "×8" in proc.stderr
