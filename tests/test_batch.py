"""Tests of inference.batch in process: input expansion, output naming, the per-file loop."""

import dataclasses
import os

from image_fixtures import listing, rgb_image, touch
import numpy as np
from PIL import Image
import pytest

from esrgan_tf.images import image_io
from esrgan_tf.inference import batch as batch_lib
from esrgan_tf.inference import tiling

SCALE = 2


class NearestUpscaler:
  """Numpy fake model (nearest repeat), for the pipeline tests without TensorFlow."""

  scale = SCALE
  input_size = None
  max_batch = None
  name = "nearest"

  def __call__(self, batch):
    return np.repeat(np.repeat(batch, SCALE, axis=1), SCALE, axis=2)


def nearest2(x):
  return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


def _small_image(tmp_path):
  a = np.random.default_rng(5).integers(0, 256, (3, 3, 3), np.uint8)
  path = str(tmp_path / "src.png")
  Image.fromarray(a).save(path)
  return image_io.read_image(path)


def test_expand_inputs(tmp_path):
  d = tmp_path / "in"
  for name in ("b.png", "a.JPG", "notes.txt", "sub/c.webp", "sub/deeper/d.bmp"):
    touch(d / name, b"x")
  named = touch(tmp_path / "named.gif", b"x")
  sources, problems = batch_lib.expand_inputs([str(d), named, str(d / "b.png"),
                                              str(tmp_path / "missing.png"),
                                              str(tmp_path / "*.nothing")])
  # Directory entries sorted and filtered by extension; a named file is always tried; the
  # duplicate b.png is dropped; missing paths and empty globs are problems.
  assert [os.path.relpath(s.path, tmp_path) for s in sources] == [
      "in/a.JPG", "in/b.png", "named.gif"]
  assert [s.root for s in sources] == [str(d), str(d), None]
  assert [(os.path.basename(spec), why) for spec, why in problems] == [
      ("missing.png", "no such file or directory"),
      ("*.nothing", "pattern matches no image files")]
  sources, _ = batch_lib.expand_inputs([str(d)], recursive=True)
  assert [os.path.relpath(s.path, d) for s in sources] == [
      "a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.bmp"]
  sources, _ = batch_lib.expand_inputs([str(d / "*")])
  assert [os.path.basename(s.path) for s in sources] == ["a.JPG", "b.png"]
  sources, _ = batch_lib.expand_inputs([str(tmp_path / "**" / "*.webp")], recursive=True)
  assert [os.path.basename(s.path) for s in sources] == ["c.webp"]
  (tmp_path / "empty").mkdir()
  touch(tmp_path / "empty" / "readme.md", b"x")
  _, problems = batch_lib.expand_inputs([str(tmp_path / "empty")])
  assert len(problems) == 1 and "no image files" in problems[0][1]


def test_plan_outputs(tmp_path):
  src = touch(tmp_path / "in" / "cat.png", b"x")
  one = [batch_lib.Source(src)]
  # One named file and an output with an image extension: that is the output file.
  assert batch_lib.plan_outputs(one, str(tmp_path / "x.jpg"), scale=4)[0].dst == str(
      tmp_path / "x.jpg")
  # Otherwise a directory of <stem><suffix>.<ext>.
  job, = batch_lib.plan_outputs(one, str(tmp_path / "out"), scale=4)
  assert job.dst == str(tmp_path / "out" / "cat_out.png")
  job, = batch_lib.plan_outputs(one, str(tmp_path / "out"), scale=4, suffix="_x{scale}",
                               format="jpg")
  assert job.dst == str(tmp_path / "out" / "cat_x4.jpg")
  # Same stem twice with one format: the second is refused, not silently overwritten.
  other = touch(tmp_path / "in" / "cat.bmp", b"x")
  jobs = batch_lib.plan_outputs([batch_lib.Source(src), batch_lib.Source(other)],
                               str(tmp_path / "out"), scale=4, format="png")
  assert jobs[0].dst and jobs[1].dst is None and "cat.png" in jobs[1].problem
  # An output that is an input.
  job, = batch_lib.plan_outputs(one, str(tmp_path / "in"), scale=4, suffix="")
  assert job.dst is None and "replace an input" in job.problem
  job, = batch_lib.plan_outputs(one, src, scale=4)
  assert job.dst is None and "replace the input" in job.problem
  # Recursive inputs keep their sub-directories.
  deep = touch(tmp_path / "in" / "a" / "b.png", b"x")
  job, = batch_lib.plan_outputs([batch_lib.Source(deep, str(tmp_path / "in"))],
                               str(tmp_path / "out"), scale=2)
  assert job.dst == str(tmp_path / "out" / "a" / "b_out.png")


def test_upscale_files_skips_existing_and_goes_on_after_failures(tmp_path):
  good = str(tmp_path / "good.png")
  rgb_image(9, 13).save(good)
  bad = touch(tmp_path / "bad.png", b"not a png")
  out = str(tmp_path / "out")
  jobs = batch_lib.plan_outputs([batch_lib.Source(bad), batch_lib.Source(good)], out, scale=SCALE)
  lines = []
  options = batch_lib.Options(tiles=tiling.TileSpec(tile=4, overlap=1))
  summary = batch_lib.upscale_files(jobs, NearestUpscaler(), options, report=lines.append)
  assert summary.upscaled == [os.path.join(out, "good_out.png")]
  assert [src for src, _ in summary.failed] == [bad] and "bad.png" in lines[0]
  assert summary.line() == "1 upscaled, 1 failed"
  result = np.asarray(Image.open(summary.upscaled[0]))
  np.testing.assert_array_equal(result, np.repeat(np.repeat(
      np.asarray(Image.open(good)), SCALE, 0), SCALE, 1))
  # Again: the existing output is skipped (not a failure) and left alone.
  stamp = os.stat(summary.upscaled[0]).st_mtime_ns
  summary = batch_lib.upscale_files(jobs[1:], NearestUpscaler(), options, report=lines.append)
  assert (summary.upscaled, summary.failed, summary.skipped) == ([], [], [good])
  assert summary.line() == "0 upscaled, 0 failed, 1 skipped (output exists; --overwrite to replace)"
  assert os.stat(jobs[1].dst).st_mtime_ns == stamp
  options = dataclasses.replace(options, overwrite=True)
  summary = batch_lib.upscale_files(jobs[1:], NearestUpscaler(), options, report=lines.append)
  assert len(summary.upscaled) == 1 and not summary.skipped
  assert listing(out) == ["good_out.png"]  # No temporary files left.


def test_model_errors_are_reported_per_file(tmp_path):
  good = str(tmp_path / "good.png")
  rgb_image(5, 5).save(good)

  class Broken(NearestUpscaler):
    def __call__(self, batch):
      raise RuntimeError("device lost")

  jobs = batch_lib.plan_outputs([batch_lib.Source(good)], str(tmp_path / "o"), scale=SCALE)
  summary = batch_lib.upscale_files(jobs, Broken(), batch_lib.Options(), report=lambda _: None)
  assert summary.failed == [(good, f"{good}: RuntimeError: device lost")]
  assert listing(tmp_path / "o") == []



# ---------------------------------------------------------------- CLI, subprocess



def test_upscale_checks_color_fn_shape(tmp_path):
  img = _small_image(tmp_path)
  with pytest.raises(ValueError, match="expected"):
    batch_lib.upscale_loaded(img, lambda x: x, 2)
  out = batch_lib.upscale_loaded(img, lambda x: nearest2(x) * 3 - 1, 2)  # unclipped fn output
  assert out.color.min() >= 0 and out.color.max() <= 1


class AffineUpscaler(NearestUpscaler):
  """Nearest repeat of 1.2·x − 0.1: out-of-range values and many exact .5 levels after ×255."""

  def __call__(self, batch):
    return super().__call__(batch * np.float32(1.2) - np.float32(0.1))


@pytest.mark.parametrize("kind, ext", [("RGB", "png"), ("RGB", "jpg"), ("RGBA", "png"),
                                       ("RGBA", "jpg"), ("L", "png"), ("RGB", "webp")])
def test_upscale_file_uint8_path_equals_the_float_path(tmp_path, kind, ext):
  # upscale_file quantizes 8-bit RGB outputs inside the tiler (uint8, no float32 copy of the
  # output); every other kind goes through upscale_loaded's float32 result. Both must give the
  # bytes write_image produces from the float32 result.
  rng = np.random.default_rng(3)
  channels = {"RGB": 3, "RGBA": 4, "L": 1}[kind]
  pixels = rng.integers(0, 256, (37, 29, channels), np.uint8)
  src = str(tmp_path / "src.png")
  Image.fromarray(pixels if channels > 1 else pixels[..., 0], kind).save(src)
  options = batch_lib.Options(tiles=tiling.TileSpec(tile=16, overlap=4, pre_pad=2))
  got = batch_lib.upscale_file(src, str(tmp_path / f"got.{ext}"), AffineUpscaler(), options)
  img = image_io.read_image(src)
  reference = batch_lib.upscale_loaded(
      img, lambda x: tiling.upscale_array(x, AffineUpscaler(),
                                          tiling.TileSpec(tile=16, overlap=4, pre_pad=2)), SCALE)
  want = image_io.write_image(str(tmp_path / f"want.{ext}"), reference)
  assert open(got, "rb").read() == open(want, "rb").read()


def test_write_image_takes_quantized_color_where_float_maths_is_needed(tmp_path):
  # uint8 colour with alpha composited (JPEG) or written as gray equals the same picture as floats.
  color = np.random.default_rng(4).integers(0, 256, (8, 6, 3), np.uint8)
  alpha = np.linspace(0, 1, 48, dtype=np.float32).reshape(8, 6)
  for grayscale, with_alpha, ext in ((False, True, "jpg"), (True, False, "png"),
                                     (False, True, "png")):  # the last one: written as is
    base = image_io.LoadedImage(path="<t>", format="PNG", mode="RGB", color=color,
                               alpha=alpha if with_alpha else None, bit_depth=8,
                               grayscale=grayscale)
    as_float = image_io.LoadedImage(**{**base.__dict__, "color": color / np.float32(255)})
    a = image_io.write_image(str(tmp_path / f"u8_{grayscale}.{ext}"), base)
    b = image_io.write_image(str(tmp_path / f"f32_{grayscale}.{ext}"), as_float)
    assert open(a, "rb").read() == open(b, "rb").read()
