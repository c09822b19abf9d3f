"""evaluation.report: crop choice, crop grid, metrics table (HTML, PNG), latency SVG; esrgan-eval
--report end to end."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from esrgan_tf.evaluation import report
from esrgan_tf.models import rrdbnet

RESULT = {
    "images": [{"name": "a<b", "psnr": 30.0, "ssim": 0.9, "bicubic_psnr": 28.5,
                "bicubic_ssim": 0.85},
               {"name": "c", "psnr": 20.0, "ssim": 0.5, "bicubic_psnr": 21.0,
                "bicubic_ssim": 0.55}],
    "mean": {"psnr": 25.0, "ssim": 0.7}, "bicubic_mean": {"psnr": 24.75, "ssim": 0.7},
    "crop_border": 4, "y_channel": True, "num_images": 2, "model": "m.keras",
}


def test_most_different_window_finds_the_changed_block():
  rng = np.random.default_rng(0)
  a = rng.random((60, 80, 3))
  b = a.copy()
  b[23:33, 41:51] += 0.5  # The only difference: a 10×10 block.
  b[0:3, 0:3] += 0.9  # Larger per pixel but smaller in total over any 10×10 window.
  assert report.most_different_window(a, b, 10) == (23, 41, 10)
  assert report.most_different_window(a, b, 500)[2] == 60  # Clipped to the image.
  with pytest.raises(ValueError, match="differ in shape"):
    report.most_different_window(a, b[:-1], 10)


def test_crop_grid_is_the_same_window_at_the_same_zoom():
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
  top, left, side, zoom = 5, 7, 12, 3
  grid = report.crop_grid([("x", images[0]), ("y", images[1]), ("z", images[2])],
                          (top, left, side), zoom)
  tile = side * zoom
  assert grid.shape == (tile + 18, 3 * tile + 2 * 6, 3)
  for index, image in enumerate(images):
    x = index * (tile + 6)
    expected = np.kron(image[top:top + side, left:left + side],
                       np.ones((zoom, zoom, 1), np.uint8))
    np.testing.assert_array_equal(grid[18:, x:x + tile], expected)
  assert (grid[:18] < 128).any()  # The labels are drawn.


def test_table_rows_and_png():
  rows = report.table_rows(RESULT)
  assert rows == [("a<b", "30.000", "0.9000", "28.500", "0.8500", "+1.500"),
                  ("c", "20.000", "0.5000", "21.000", "0.5500", "-1.000"),
                  ("mean", "25.000", "0.7000", "24.750", "0.7000", "+0.250")]
  image = report.table_png(RESULT)
  assert image.dtype == np.uint8 and image.shape[2] == 3
  line = report.TABLE_FONT_SIZE + 8
  assert image.shape[0] == line * (len(rows) + 2) + 2 * 14
  assert (image.min(axis=2) < 100).sum() > 200  # Text is there.


def test_report_writer_picks_the_differing_crop_and_writes_atomically(tmp_path):
  rng = np.random.default_rng(2)
  hr = rng.random((64, 72, 3))
  bicubic = np.clip(hr + rng.normal(0, 0.01, hr.shape), 0, 1)
  sr = bicubic.copy()
  sr[30:62, 8:40] = 1 - sr[30:62, 8:40]  # SR differs from bicubic only here.
  target = tmp_path / "rep"
  writer = report.ReportWriter(str(target), crop=32)
  writer("a<b", {"lr": hr[::4, ::4], "hr": hr, "sr": sr, "bicubic": bicubic})
  writer("c", {"lr": hr[::4, ::4], "hr": hr, "sr": bicubic, "bicubic": bicubic})
  assert not target.exists()  # Nothing visible until finish.
  assert writer.figures[0]["box"] == (30, 8, 32) and writer.figures[0]["zoom"] == 9
  writer.finish(RESULT)
  assert sorted(os.listdir(tmp_path)) == ["rep"]
  assert sorted(os.listdir(target / "crops")) == ["a_b.png", "c.png"]
  page = (target / "index.html").read_text()
  assert "a&lt;b" in page and "a<b" not in page and "+0.250" in page
  assert 'src="crops/a_b.png"' in page and "x=8, y=30" in page
  grid = np.asarray(Image.open(target / "crops" / "a_b.png"))
  assert grid.shape == (32 * 9 + 18, 3 * 32 * 9 + 12, 3)
  assert Image.open(target / "table.png").size[0] > 200
  with pytest.raises(FileExistsError, match="--overwrite"):
    report.ReportWriter(str(target))
  report.ReportWriter(str(target), overwrite=True).finish(RESULT)
  assert not (target / "crops" / "a_b.png").exists()  # Replaced as a whole.


def test_esrgan_eval_report_end_to_end(tmp_path):
  model = rrdbnet.RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  model_path = str(tmp_path / "tiny.keras")
  model.save(model_path)
  hr_dir = tmp_path / "hr"
  hr_dir.mkdir()
  rng = np.random.default_rng(0)
  for name, shape in (("one", (40, 48, 3)), ("two", (32, 36, 3))):
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(hr_dir / f"{name}.png")
  out = tmp_path / "report"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  args = [sys.executable, "-m", "esrgan_tf.cli.evaluate", f"--model={model_path}",
          f"--hr={hr_dir}", f"--report={out}", f"--json={tmp_path / 'r.json'}"]
  proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  result = json.loads((tmp_path / "r.json").read_text())
  page = (out / "index.html").read_text()
  for row in result["images"]:
    assert f"<td>{row['name']}</td><td>{row['psnr']:.3f}</td>" in page
  assert f"{result['mean']['psnr']:.3f}" in page
  assert sorted(os.listdir(out / "crops")) == ["one.png", "two.png"]
  assert (out / "table.png").stat().st_size > 0
  again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
  assert again.returncode == 1 and "not an empty directory" in again.stderr
  assert sorted(os.listdir(tmp_path)) == sorted(["tiny.keras", "hr", "report", "r.json"])




