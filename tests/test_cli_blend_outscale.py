"""esrgan-upscale / esrgan-eval / esrgan-export with --blend_with/--blend_weight, and --outscale.

Subprocess runs (real exit codes; absl flags of several CLIs cannot share a process). Models are
tiny SRVGGNetCompact .pth files written with our BasicSR writer.
"""

import json
import os
import subprocess
import sys

from image_fixtures import raw_png
import keras
import numpy as np
from PIL import Image
import pytest

from esrgan_tf import weights
from esrgan_tf.images import image_io
from esrgan_tf.models import RRDBNet, SRVGGNetCompact

W = 0.3


def _compact(seed):
  keras.utils.set_random_seed(seed)
  model = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2)
  model.build()
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
  return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  d = tmp_path_factory.mktemp("models")
  a, b = _compact(1), _compact(2)
  paths = {"a": str(d / "a.pth"), "b": str(d / "b.safetensors"), "mixed": str(d / "mixed.pth"),
           "rrdb": str(d / "rrdb.keras")}
  weights.save_checkpoint(a, paths["a"])
  weights.save_checkpoint(b, paths["b"])
  # The blend computed here by hand, W·A + (1 − W)·B per tensor, as an independent reference.
  mixed = _compact(3)
  mixed.set_weights([W * np.float64(wa) + (1 - W) * np.float64(wb)
                     for wa, wb in zip(a.get_weights(), b.get_weights())])
  weights.save_checkpoint(mixed, paths["mixed"])
  rrdb = RRDBNet(num_features=4, num_blocks=1, growth_channels=2, scale=2)
  rrdb.build()
  rrdb.save(paths["rrdb"])
  return paths


@pytest.fixture(scope="module")
def rgba16(tmp_path_factory):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 65536, (7, 9, 4), dtype=np.uint16)
  path = tmp_path_factory.mktemp("in") / "deep.png"
  path.write_bytes(raw_png(pixels))
  return str(path)


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", f"esrgan_tf.cli.{module}", *args],
                        capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.slow
def test_blend_equals_hand_blended_model(tmp_path, models, rgba16):
  blended = _run("upscale", f"--model={models['a']}", f"--blend_with={models['b']}",
                 f"--blend_weight={W}", f"--input={rgba16}", f"--output={tmp_path / 'x.png'}",
                 "--tile=4", "--tile_overlap=1")
  assert blended.returncode == 0, blended.stderr
  reference = _run("upscale", f"--model={models['mixed']}", f"--input={rgba16}",
                   f"--output={tmp_path / 'y.png'}", "--tile=4", "--tile_overlap=1")
  assert reference.returncode == 0, reference.stderr
  got, want = (image_io.read_image(str(tmp_path / n)) for n in ("x.png", "y.png"))
  assert got.bit_depth == 16 and got.color.shape == (14, 18, 3)
  assert np.abs(got.color - want.color).max() <= 1 / 65535
  # Not the same as A alone.
  alone = _run("upscale", f"--model={models['a']}", f"--input={rgba16}",
               f"--output={tmp_path / 'a.png'}", "--tile=4", "--tile_overlap=1")
  assert alone.returncode == 0
  assert np.abs(image_io.read_image(str(tmp_path / "a.png")).color - want.color).max() > 0.01


def test_blend_refuses_other_architecture(tmp_path, models, rgba16):
  run = _run("upscale", f"--model={models['a']}", f"--blend_with={models['rrdb']}",
             "--blend_weight=0.5", f"--input={rgba16}", f"--output={tmp_path}")
  assert run.returncode == 1
  assert "cannot blend" in run.stderr and "a is SRVGGNetCompact, b is RRDBNet" in run.stderr
  assert os.listdir(tmp_path) == []
  run = _run("upscale", f"--model={models['a']}", "--blend_weight=0.5", f"--input={rgba16}",
             f"--output={tmp_path}")
  assert run.returncode != 0 and "--blend_with and --blend_weight go together" in run.stderr
  run = _run("upscale", f"--model={models['a']}", f"--blend_with={models['b']}",
             "--blend_weight=1.5", f"--input={rgba16}", f"--output={tmp_path}")
  assert run.returncode == 2 and "blend weight must be in [0, 1], got 1.5" in run.stderr


def test_outscale_resizes_with_lanczos_keeping_alpha_and_depth(tmp_path, models, rgba16):
  native = _run("upscale", f"--model={models['a']}", f"--input={rgba16}",
                f"--output={tmp_path / 'native.png'}")
  assert native.returncode == 0, native.stderr
  run = _run("upscale", f"--model={models['a']}", "--outscale=3.5", f"--input={rgba16}",
             f"--output={tmp_path}", "--suffix=_x{scale}")
  assert run.returncode == 0, run.stderr
  out = image_io.read_image(str(tmp_path / "deep_x3.5.png"))
  # Real-ESRGAN's size rule: (int(w·F), int(h·F)) = (int(9·3.5), int(7·3.5)) = (31, 24).
  assert out.color.shape == (24, 31, 3) and out.alpha.shape == (24, 31)
  assert out.bit_depth == 16
  # Reference: the native ×2 output resized per plane with Pillow's Lanczos (float32 planes).
  ref = image_io.read_image(str(tmp_path / "native.png"))

  def lanczos(plane):
    return np.clip(np.asarray(Image.fromarray(plane.astype(np.float32)).resize(
        (31, 24), Image.Resampling.LANCZOS)), 0, 1)

  want = np.stack([lanczos(ref.color[..., c]) for c in range(3)], -1)
  assert np.abs(out.color - want).max() <= 2 / 65535
  assert np.abs(out.alpha - lanczos(ref.alpha)).max() <= 2 / 65535
  # --outscale equal to the model's scale changes nothing.
  same = _run("upscale", f"--model={models['a']}", "--outscale=2", f"--input={rgba16}",
              f"--output={tmp_path / 'same.png'}")
  assert same.returncode == 0
  np.testing.assert_array_equal(image_io.read_image(str(tmp_path / "same.png")).color, ref.color)
  bad = _run("upscale", f"--model={models['a']}", "--outscale=0", f"--input={rgba16}",
             f"--output={tmp_path / 'bad.png'}")
  assert bad.returncode != 0 and "--outscale must be positive" in bad.stderr


@pytest.mark.slow
def test_eval_and_export_blend(tmp_path, models):
  hr = tmp_path / "hr"
  hr.mkdir()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 28, 3), dtype=np.uint8)).save(
      hr / "img.png")
  results = {}
  for name, extra in (("blend", [f"--blend_with={models['b']}", f"--blend_weight={W}"]),
                      ("mixed", [])):
    model = models["a"] if name == "blend" else models["mixed"]
    run = _run("evaluate", f"--model={model}", f"--hr={hr}", f"--json={tmp_path / name}.json",
               *extra)
    assert run.returncode == 0, run.stderr
    results[name] = json.loads((tmp_path / f"{name}.json").read_text())
  assert results["blend"]["blend_weight"] == W
  assert results["blend"]["mean"]["psnr"] == pytest.approx(results["mixed"]["mean"]["psnr"],
                                                           abs=1e-3)

  run = _run("export", f"--model={models['a']}", f"--blend_with={models['b']}",
             f"--blend_weight={W}", f"--export_dir={tmp_path / 'export'}")
  assert run.returncode == 0, run.stderr
  facts = json.loads((tmp_path / "export" / "1" / "assets.extra" / "esrgan_tf.json").read_text())
  assert facts["arch"]["num_conv"] == 1 and "0.3·" in facts["source"]
