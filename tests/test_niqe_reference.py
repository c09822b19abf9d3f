"""NIQE (esrgan_tf.evaluation.niqe) against BasicSR's calculate_niqe (frozen values) and
hand-derived properties of its parts; esrgan-eval's no-reference mode."""

import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import esrgan_tf
from esrgan_tf.evaluation import niqe

# BasicSR 1.4.2's calculate_niqe(rgb[..., ::-1], crop_border) on the bundled photos, frozen by
# (torch venv with basicsr 1.4.2 and the shims of esrgan_tf.benchmarking.basicsr_steps):
#   python -c "from esrgan_tf.benchmarking import basicsr_steps; \
#     basicsr_steps.install_import_shims(); import numpy as np; from PIL import Image; \
#     from basicsr.metrics.niqe import calculate_niqe; \
#     rgb = np.asarray(Image.open(PATH).convert('RGB')); \
#     print(calculate_niqe(rgb[..., ::-1], crop_border=0), calculate_niqe(rgb[..., ::-1], 4))"
# scripts/check_basicsr_parity.py --sections=niqe compares more images live. Tolerance 1e-3:
# ours agrees to < 1e-5 on most, 2e-4 on chelsea cropped; a last-bit difference in the ×1/2
# resize can move one block's fitted α by a grid step (0.001), and BasicSR's own value moves by
# up to ~1e-2 with the float32 rounding of its BLAS (docs/training_parity.md).
BASICSR_NIQE = {
    "val/chelsea.png": (3.1930912439614785, 3.1504568854988224),
    "heldout/camera_gray.png": (3.5151884782425515, 3.626689521114711),
    "heldout/grace_hopper.png": (4.554939463677072, 4.590377617441754),
    "train/astronaut.png": (4.891062791978512, 4.761397729838613),
}


def _photo(name):
  return np.asarray(Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, name)).convert("RGB"))


@pytest.mark.parametrize("name", sorted(BASICSR_NIQE))
def test_niqe_equals_basicsr_frozen_values(name):
  rgb = _photo(name)
  for crop, want in zip((0, 4), BASICSR_NIQE[name]):
    assert niqe.niqe(rgb, crop_border=crop) == pytest.approx(want, abs=1e-3)


def test_aggd_fit_of_a_gaussian_sample():
  """A Gaussian is the GGD with α = 2, whose β = σ·√(Γ(1/2)/Γ(3/2)) = σ·√2 on both sides."""
  x = np.random.default_rng(0).normal(0, 0.7, 200_000).astype(np.float32)
  alpha, beta_l, beta_r = niqe.aggd_fit(x)
  assert alpha == pytest.approx(2.0, abs=0.03)
  assert beta_l == pytest.approx(0.7 * math.sqrt(2), rel=0.02)
  assert beta_r == pytest.approx(0.7 * math.sqrt(2), rel=0.02)
  # A Laplacian is α = 1 (β = σ/√2 for variance σ²).
  lap = np.random.default_rng(1).laplace(0, 0.5, 200_000).astype(np.float32)
  assert niqe.aggd_fit(lap)[0] == pytest.approx(1.0, abs=0.03)


def test_half_size_reproduces_constants_and_ramps():
  """MATLAB's bicubic weights sum to 1 and reproduce linear functions: output pixel i (0-based)
  samples the input at 2i + 0.5."""
  assert np.allclose(niqe.half_size(np.full((20, 24), 0.3, np.float32)), 0.3, atol=1e-6)
  ramp = np.tile(np.arange(24, dtype=np.float32)[None, :] / 24, (20, 1))
  out = niqe.half_size(ramp)
  assert out.shape == (10, 12)
  inner = slice(3, 9)  # Away from the mirrored edges.
  np.testing.assert_allclose(out[:, inner], np.tile((2 * np.arange(12) + 0.5)[inner] / 24,
                                                    (10, 1)), atol=1e-6)


def test_mscn_of_a_constant_image_is_zero():
  _, _, window = niqe.pristine_model()
  assert window.shape == (7, 7) and window.sum() == pytest.approx(1.0)
  np.testing.assert_array_equal(niqe.mscn(np.full((12, 12), 90, np.float32), window), 0)


def test_small_and_bad_images_are_refused():
  with pytest.raises(niqe.NiqeError, match="96×96"):
    niqe.niqe(np.zeros((95, 300, 3), np.uint8))
  with pytest.raises(niqe.NiqeError, match="two"):  # One block: no covariance (BasicSR fails).
    niqe.niqe(np.random.default_rng(0).integers(0, 256, (100, 100, 3)).astype(np.uint8))
  with pytest.raises(niqe.NiqeError, match="shape"):
    niqe.niqe(np.zeros((100, 100, 4), np.uint8))


def test_niqe_needs_only_numpy():
  """The default install has no scipy: the module must score without it."""
  code = ("import sys; sys.modules['scipy'] = None\n"
          "import numpy as np\n"
          "from esrgan_tf.evaluation import niqe\n"
          "rng = np.random.default_rng(0)\n"
          "print(niqe.niqe(rng.integers(0, 256, (96, 192, 3)).astype(np.uint8)))\n"
          "assert 'tensorflow' not in sys.modules\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert float(proc.stdout) > 0


def test_eval_cli_without_hr_scores_niqe_per_image_and_mean(tmp_path):
  from esrgan_tf.models import rrdbnet  # pylint: disable=g-import-not-at-top
  model = rrdbnet.RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  model_path = str(tmp_path / "tiny.keras")
  model.save(model_path)
  lr_dir = tmp_path / "photos"
  lr_dir.mkdir()
  for name in ("chelsea", "grace_hopper"):  # 64² LR crops: 256² outputs, 4 NIQE blocks.
    folder = "val" if name == "chelsea" else "heldout"
    Image.fromarray(_photo(f"{folder}/{name}.png")[::4, ::4]).save(lr_dir / f"{name}.png")
  Image.fromarray(_photo("val/chelsea.png")[:16, :16]).save(lr_dir / "tiny.png")  # 64² out
  out, report = tmp_path / "r.json", tmp_path / "report"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-m", "esrgan_tf.cli.evaluate", f"--model={model_path}",
                         f"--lr={lr_dir}", "--crop_border=0", f"--json={out}",
                         f"--report={report}"], capture_output=True, text=True, env=env,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "bic NIQE" in proc.stdout and "no reference" in proc.stdout
  result = json.loads(out.read_text())
  rows = {r["name"]: r for r in result["images"]}
  assert set(rows) == {"chelsea", "grace_hopper", "tiny"}
  assert rows["tiny"]["niqe"] is None and result["num_scored"] == 2
  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
  from esrgan_tf.images import imresize  # pylint: disable=g-import-not-at-top
  for name in ("chelsea", "grace_hopper"):
    lr = np.asarray(Image.open(lr_dir / f"{name}.png")).astype(np.float32) / 255
    bicubic = metrics.to_uint8_levels(imresize.imresize(lr, 4.0).numpy())
    assert rows[name]["bicubic_niqe"] == pytest.approx(niqe.niqe(bicubic), abs=1e-9)
    assert rows[name]["niqe"] > 0
  assert result["mean"]["niqe"] == pytest.approx(
      np.mean([rows[n]["niqe"] for n in ("chelsea", "grace_hopper")]))
  assert result["niqe_gain"] == pytest.approx(result["bicubic_mean"]["niqe"]
                                              - result["mean"]["niqe"])
  page = (report / "index.html").read_text()
  assert "NIQE gain" in page and "LR-bicubic | SR</h2>" in page
  assert len(os.listdir(report / "crops")) == 3


def test_training_evaluation_logs_niqe_to_tensorboard(tmp_path):
  """train.Evaluator with train.eval_niqe: eval/niqe in TensorBoard, equal to NIQE of the EMA
  generator's output."""
  from esrgan_tf.evaluation import metrics  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import configs  # pylint: disable=g-import-not-at-top
  from esrgan_tf.train import loop as train_loop  # pylint: disable=g-import-not-at-top
  val = tmp_path / "val"
  val.mkdir()
  # 200×104: two 96² NIQE blocks after the 4-pixel crop border.
  Image.fromarray(_photo("val/chelsea.png")[:200, :104]).save(val / "chelsea.png")
  c = configs.load_config_module(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "configs", "psnr_x4.py")).get_config("smoke")
  c.model.update(num_features=4, num_blocks=1, growth_channels=4)
  c.data.update(val_dir=str(val), gt_size=16, batch_size=2)
  c.train.update(steps=1, steps_per_loop=1, log_every=1, eval_every=1, checkpoint_every=1,
                 progress=False, strategy="default", eval_niqe=True)
  out = train_loop.train_and_evaluate(c, str(tmp_path / "run"))
  from esrgan_tf.data import datasets  # pylint: disable=g-import-not-at-top
  _, lr, _ = datasets.load_validation_set(c.data, 4)[0]
  sr = out["models"].ema_generator(lr[None]).numpy()[0]
  want = niqe.niqe(metrics.to_uint8_levels(sr), crop_border=4)
  assert out["eval"][0]["niqe"] == pytest.approx(want, abs=1e-9)
  import glob  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logged = {}
  for path in glob.glob(str(tmp_path / "run" / "tensorboard" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag in ("eval/niqe", "eval/psnr"):
          logged[value.tag] = float(tf.make_ndarray(value.tensor))
  assert logged["eval/niqe"] == pytest.approx(want, rel=1e-6)
  assert logged["eval/psnr"] == pytest.approx(out["eval"][0]["psnr"], rel=1e-6)
