"""Tests of esrgan-upscale end to end (subprocess); the library it runs is in test_pipeline.py.

The CLI runs in a subprocess: it checks the real exit codes, and absl flags of different CLI
modules (several define --model_name, --max_pixels) cannot all be imported into one process.
"""

import io
import os
import subprocess
import sys

from image_fixtures import listing, rgb_image, touch
import numpy as np
from PIL import Image
import pytest

from esrgan_tf.inference import batch

SCALE = 2


def F32(path: str):  # noqa: N802  (a spec, as the CLI's --precision=float32 builds it)
  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
  return resolver.ModelSpec(model=path, precision="float32")


@pytest.fixture(scope="module")
def model_path(tiny_keras_model):
  return tiny_keras_model(SCALE)


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "esrgan_tf.cli.upscale", *args],
                        capture_output=True, text=True, env=env, timeout=300, check=False)


def _failure_line(stderr, name):
  lines = [line for line in stderr.splitlines() if line.startswith("FAILED") and name in line]
  assert len(lines) == 1, (name, stderr)
  return lines[0]


def _jpeg_bytes(image, **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", **kwargs)
  return buffer.getvalue()


def test_bad_input_matrix_end_to_end(tmp_path, model_path, image_files):
  d = tmp_path / "mixed"
  d.mkdir()
  png = io.BytesIO()
  rgb_image(12, 10).save(png, format="PNG")
  png = bytearray(png.getvalue())
  png[60] ^= 0xFF  # Inside the IDAT data: CRC mismatch / bad zlib stream.
  touch(d / "corrupt.png", bytes(png))
  touch(d / "truncated.jpg", _jpeg_bytes(rgb_image(64, 64))[:400])
  touch(d / "empty.png")
  touch(d / "text.png", b"hello, I am not an image\n")
  touch(d / "bomb.png", image_files.header_only_png(30000, 30000))
  touch(d / "notes.txt", b"skipped: not an image extension")
  deep = np.random.default_rng(1).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
  touch(d / "deep16.png", image_files.raw_png(deep))
  Image.new("CMYK", (8, 6), (0, 255, 128, 30)).save(d / "cmyk.jpg")
  palette = Image.new("P", (7, 5), 1)
  palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
  palette.putpixel((0, 0), 0)
  palette.save(d / "palette.png", transparency=0)
  Image.fromarray(np.dstack([np.full((5, 6), 100, np.uint8),
                             np.full((5, 6), 200, np.uint8)]), "LA").save(d / "la.png")
  rgb_image(11, 9, seed=2).save(d / "good1.png")
  rgb_image(8, 16, seed=3).save(d / "good2.jpg")
  gif = str(tmp_path / "anim.gif")
  frames = [Image.new("P", (4, 4), i) for i in range(2)]
  frames[0].save(gif, save_all=True, append_images=frames[1:])
  out = tmp_path / "out"

  run = _cli(f"--model={model_path}", f"--input={d},{gif}", f"--output={out}", "--tile=4",
             "--tile_overlap=1")
  assert run.returncode == 1, run.stderr
  assert run.stdout.strip().splitlines()[-1] == "6 upscaled, 6 failed"
  expected_failures = {  # file → words its message must contain
      "corrupt.png": [], "truncated.jpg": ["trunc"], "empty.png": ["empty"],
      "text.png": [], "bomb.png": ["30000"], "anim.gif": ["GIF"]}
  for name, words in expected_failures.items():
    line = _failure_line(run.stderr, name)
    for word in words:
      assert word.lower() in line.lower(), line
  assert "notes" not in run.stderr
  # Good files done at scale × size, kinds kept; nothing written for the bad ones, no temp files.
  assert listing(out) == sorted(["deep16_out.png", "cmyk_out.jpg", "palette_out.png",
                                  "la_out.png", "good1_out.png", "good2_out.jpg"])
  sizes = {"deep16": (7, 6), "cmyk": (8, 6), "palette": (7, 5), "la": (6, 5), "good1": (9, 11),
           "good2": (16, 8)}
  modes = {"deep16": None, "cmyk": "RGB", "palette": "RGBA", "la": "LA", "good1": "RGB",
           "good2": "RGB"}
  for stem, (width, height) in sizes.items():
    name = next(n for n in listing(out) if n.startswith(stem + "_out"))
    with Image.open(out / name) as im:
      assert im.size == (SCALE * width, SCALE * height), name
      if modes[stem]:
        assert im.mode == modes[stem], name
  with open(out / "deep16_out.png", "rb") as f:
    assert f.read(26)[24] == 16  # IHDR bit depth: 16-bit input stays 16-bit.


def test_directory_with_one_bad_and_two_good_files(tmp_path, model_path):
  d = tmp_path / "photos"
  d.mkdir()
  rgb_image(10, 12, seed=4).save(d / "a.png")
  rgb_image(7, 9, seed=5).save(d / "b.png")
  touch(d / "c.png", b"\x89PNG\r\n\x1a\n garbage")
  out = tmp_path / "results"
  run = _cli(f"--model={model_path}", f"--input={d}", f"--output={out}", "--tile=0",
             "--suffix=_x{scale}", "--format=webp")
  assert run.returncode == 1
  assert run.stdout.strip().splitlines()[-1] == "2 upscaled, 1 failed"
  assert "c.png" in _failure_line(run.stderr, "c.png")
  assert listing(out) == ["a_x2.webp", "b_x2.webp"]
  for name, size in (("a_x2.webp", (24, 20)), ("b_x2.webp", (18, 14))):
    with Image.open(out / name) as im:
      assert (im.format, im.size) == ("WEBP", size)


def test_single_file_to_file_tiled_equals_untiled(tmp_path, model_path):
  src = str(tmp_path / "cat.png")
  rgb_image(20, 30, seed=6).save(src)
  tiled, whole = str(tmp_path / "tiled.png"), str(tmp_path / "whole.png")
  # float32: the reference below computes in float32 (the default, auto, is bf16 on some CPUs).
  run = _cli(f"--model={model_path}", f"--input={src}", f"--output={tiled}", "--tile=16",
             "--tile_overlap=12", "--tile_batch=3", "--precision=float32")
  assert run.returncode == 0, run.stderr
  assert run.stdout.strip().splitlines()[-1] == "1 upscaled, 0 failed"
  from esrgan_tf.images import image_io
  from esrgan_tf.inference import resolver, tiling
  reference = batch.upscale_loaded(
      image_io.read_image(src),
      lambda x: tiling.upscale_array(x, resolver.load_engine(F32(model_path)),
                                     tiling.TileSpec(tile=0, pre_pad=tiling.DEFAULT_PRE_PAD)),
      SCALE)
  image_io.write_image(whole, reference)
  a = np.asarray(Image.open(tiled), np.float64)
  b = np.asarray(Image.open(whole), np.float64)
  assert a.shape == (40, 60, 3)
  # The tiny net's edge effect is ~4 px; 3 px of context and a 6 px fade hide it (measured:
  # identical after uint8 rounding; with tile 12, overlap 8 up to 63 levels apart).
  assert np.abs(a - b).max() <= 1


def test_pre_pad_flag_pads_the_edges_and_keeps_the_size(tmp_path, model_path):
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import resolver  # pylint: disable=g-import-not-at-top
  src = str(tmp_path / "cat.png")
  rgb_image(14, 18, seed=3).save(src)
  outputs = {}
  for pad in (0, 5):
    out = str(tmp_path / f"pad{pad}.png")
    run = _cli(f"--model={model_path}", f"--input={src}", f"--output={out}", "--tile=0",
               f"--pre_pad={pad}", "--precision=float32")
    assert run.returncode == 0, run.stderr
    # Reference: pad by hand (numpy's reflect, as torch's), run the whole image, crop.
    color = image_io.read_image(src).color
    padded = np.pad(color, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    sr = resolver.load_engine(F32(model_path))(padded[None])[0]
    sr = np.clip(sr[pad * SCALE:sr.shape[0] - pad * SCALE, pad * SCALE:sr.shape[1] - pad * SCALE],
                 0, 1)
    outputs[pad] = np.asarray(Image.open(out))
    assert outputs[pad].shape == (28, 36, 3)
    np.testing.assert_array_equal(outputs[pad], np.rint(sr * 255).astype(np.uint8))
  assert np.any(outputs[0] != outputs[5])  # The edges differ: the flag is not ignored.


def test_default_precision_is_auto_by_cpu(tmp_path, model_path):
  from esrgan_tf.core import cpu  # pylint: disable=g-import-not-at-top
  from esrgan_tf.images import image_io  # pylint: disable=g-import-not-at-top
  from esrgan_tf.inference import (
    resolver,  # pylint: disable=g-import-not-at-top
    tiling,  # pylint: disable=g-import-not-at-top
  )
  src, out = str(tmp_path / "cat.png"), str(tmp_path / "out.png")
  rgb_image(12, 10, seed=2).save(src)
  run = _cli(f"--model={model_path}", f"--input={src}", f"--output={out}", "--tile=0")
  assert run.returncode == 0, run.stderr
  expected = "bfloat16" if cpu.read_cpuinfo().bf16_flags else "float32"
  assert run.stderr.count("--precision=auto: ") == 1
  assert f"--precision=auto: {expected}" in run.stderr
  # The output is what that precision computes (bf16 differs from float32 by a few levels).
  reference = batch.upscale_loaded(
      image_io.read_image(src),
      lambda x: tiling.upscale_array(x, resolver.load_engine(
          resolver.ModelSpec(model=model_path, precision=expected)),
                                     tiling.TileSpec(tile=0, pre_pad=tiling.DEFAULT_PRE_PAD)),
      SCALE)
  image_io.write_image(str(tmp_path / "reference.png"), reference)
  np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                np.asarray(Image.open(tmp_path / "reference.png")))


def test_exit_codes_without_work(tmp_path, model_path):
  run = _cli(f"--model={model_path}", f"--input={tmp_path / 'none*.png'}",
             f"--output={tmp_path / 'o'}")
  assert run.returncode == 1 and "no input images" in run.stdout
  assert "none*.png" in _failure_line(run.stderr, "none*.png")
  src = str(tmp_path / "a.png")
  rgb_image(4, 4).save(src)
  run = _cli("--model=/nonexistent/model.keras", f"--input={src}", f"--output={tmp_path / 'o'}")
  assert run.returncode == 1  # a runtime failure: one `error: <what> (<file>)` line
  assert ("error: cannot load the model: no such file or directory (/nonexistent/model.keras)\n"
          in run.stderr)
  assert "Traceback" not in run.stderr
  run = _cli(f"--model={model_path}", f"--input={src}", f"--output={tmp_path / 'o'}",
             "--tile=8", "--tile_overlap=8")
  assert run.returncode == 2 and "--tile_overlap" in run.stderr  # a usage error
  run = _cli(f"--model={model_path}", f"--input={src}", f"--output={tmp_path / 'o'}",
             "--pre_pad=-1")
  assert run.returncode == 2 and "--pre_pad: pre_pad must be ≥ 0, got -1" in run.stderr
  run = _cli(f"--model={model_path}", f"--input={src}", f"--output={tmp_path / 'o'}",
             "--tile=eight")
  assert run.returncode == 2 and "Flags parsing error" in run.stderr
  assert not os.path.exists(tmp_path / "o")


def test_a_missing_input_beside_a_good_one_is_one_failure(tmp_path, model_path):
  # The model flags and the failed input specs must not be confused: the good file is done.
  good = str(tmp_path / "good.png")
  rgb_image(6, 5, seed=3).save(good)
  run = _cli(f"--model={model_path}", "--precision=float32", f"--input={good}",
             f"--input={tmp_path / 'missing.png'}", f"--output={tmp_path / 'o'}")
  assert run.returncode == 1, run.stderr
  assert run.stdout.strip().splitlines()[-1] == "1 upscaled, 1 failed"
  assert "missing.png" in _failure_line(run.stderr, "missing.png")
  assert "--precision=auto" not in run.stderr  # the flag given was used
  assert os.path.isfile(tmp_path / "o" / "good_out.png")
