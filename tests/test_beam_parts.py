"""esrgan-beam's parts: atomic publishing, model staging, option pass-through, the model handler
behind Beam's cross-process proxy, dead-letter messages, and the command's argument handling."""

import io
import os
import subprocess
import sys
import traceback
import uuid

from beam_fixtures import FILES, SCHEME
from image_fixtures import rgb_image

from apache_beam.io.filesystems import FileSystems  # isort: skip  (after beam_fixtures' check)
from apache_beam.ml.inference.base import KeyedModelHandler
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
from apache_beam.utils import multi_process_shared
import numpy as np
import pytest

from esrgan_tf.beam import handler as handler_lib
from esrgan_tf.beam import io as beam_io
from esrgan_tf.beam import pipeline as beam_pipeline
from esrgan_tf.images import image_io
from esrgan_tf.inference import batch, tiling
from esrgan_tf.inference import engine as engine_lib
from esrgan_tf.weights import registry


def _temporaries(directory) -> list:
  return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_publish_writes_and_replaces_atomically(tmp_path):
  local = tmp_path / "local.bin"
  local.write_bytes(b"new contents")
  out = tmp_path / "out"
  out.mkdir()
  dst = str(out / "x.png")
  assert beam_io.publish(str(local), dst) == len(b"new contents")
  assert (out / "x.png").read_bytes() == b"new contents"
  local.write_bytes(b"second")
  beam_io.publish(str(local), dst)  # A retried bundle's second attempt replaces the first.
  assert (out / "x.png").read_bytes() == b"second"
  assert _temporaries(out) == []


def test_publish_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
  local = tmp_path / "local.bin"
  local.write_bytes(b"new contents")
  out = tmp_path / "out"
  out.mkdir()
  (out / "x.png").write_bytes(b"old")
  seen = []

  def failing_rename(sources, destinations):
    seen.append(sources[0])
    assert open(sources[0], "rb").read() == b"new contents"  # The whole file, under a temp name.
    raise OSError("rename failed")

  monkeypatch.setattr(FileSystems, "rename", staticmethod(failing_rename))
  with pytest.raises(OSError, match="rename failed"):
    beam_io.publish(str(local), str(out / "x.png"))
  assert os.path.basename(seen[0]).startswith(".x.png.") and not os.path.exists(seen[0])
  assert (out / "x.png").read_bytes() == b"old"
  assert os.listdir(out) == ["x.png"]


def test_stage_copies_files_and_directories_from_urls(tmp_path):
  FILES.clear()
  FILES[f"{SCHEME}://models/x4.pth"] = b"weights"
  FILES[f"{SCHEME}://models/export/1/saved_model.pb"] = b"graph"
  FILES[f"{SCHEME}://models/export/1/variables/variables.index"] = b"index"
  local = beam_io.stage(f"{SCHEME}://models/x4.pth")
  assert os.path.basename(local) == "x4.pth" and open(local, "rb").read() == b"weights"
  assert beam_io.stage(f"{SCHEME}://models/x4.pth") == local  # Once per process.
  base = beam_io.stage(f"{SCHEME}://models/export/")
  assert os.path.basename(base) == "export"
  with open(os.path.join(base, "1", "variables", "variables.index"), "rb") as f:
    assert f.read() == b"index"
  assert sorted(os.listdir(os.path.join(base, "1"))) == ["saved_model.pb", "variables"]
  with pytest.raises(FileNotFoundError, match="no such file"):
    beam_io.stage(f"{SCHEME}://models/missing.pth")
  name = next(iter(registry.REGISTRY))
  assert beam_io.stage(name) == name and beam_io.stage(str(tmp_path)) == str(tmp_path)


def test_beam_options_pass_through_and_unknown_ones_are_refused():
  options = beam_pipeline.pipeline_options(
      ["--runner=FnApiRunner", "--direct_running_mode", "multi_processing",
       "--direct_num_workers=2"])
  assert options.view_as(StandardOptions).runner == "FnApiRunner"
  direct = options.view_as(DirectOptions)
  assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_processing", 2)
  with pytest.raises(ValueError, match=r"unknown arguments \['--tile_overlpa=3', 'stray'\]"):
    beam_pipeline.pipeline_options(["--runner=FnApiRunner", "--tile_overlpa=3", "stray"])
  with pytest.raises(ValueError, match="invalid choice: 'fast'"):
    beam_pipeline.pipeline_options(["--direct_running_mode=fast"])


def test_handler_batches_one_image_and_shares_only_when_asked():
  spec = handler_lib.ModelSpec("m.keras")
  own = handler_lib.UpscaleModelHandler(spec, batch.Options())
  shared = KeyedModelHandler(handler_lib.UpscaleModelHandler(spec, batch.Options(),
                                                             large_model=True))
  assert own.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 1}
  assert not own.share_model_across_processes()
  assert shared.share_model_across_processes()


def test_loaded_model_works_through_beams_method_only_proxy(tiny_generator):
  upscaler = engine_lib.keras_engine(tiny_generator(scale=2))
  proxy = multi_process_shared.MultiProcessShared(
      lambda: handler_lib.LoadedModel(upscaler), tag=f"esrgan_test_{uuid.uuid4().hex}",
      always_proxy=True).acquire()
  with pytest.raises(AttributeError):
    proxy.scale  # pylint: disable=pointless-statement  # Attributes do not cross the proxy.
  img = image_io.decode_image_bytes(_png(rgb_image(9, 13, seed=2)), name="a.png")
  options = batch.Options(tiles=tiling.TileSpec(tile=6, overlap=2, pre_pad=1))
  direct = batch.upscale_image(img, upscaler, options)
  proxied = batch.upscale_image(img, handler_lib.upscaler_view(proxy), options)
  np.testing.assert_array_equal(proxied.color, direct.color)
  assert proxy.first_use() and not proxy.first_use()


def _png(image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def _dead_letter(raise_it) -> tuple:
  """What with_exception_handling puts in its dead letter: (type, repr, traceback lines)."""
  try:
    raise_it()
  except Exception as e:  # pylint: disable=broad-except
    return type(e), repr(e), traceback.format_exception(e)


def test_dead_letter_records_read_as_esrgan_upscale_reports():
  def chained():
    try:
      raise KeyError("inner")
    except KeyError as e:
      raise image_io.ImageError("a.png: corrupt PNG data (bad)\nsecond line") from e

  def plain():
    raise OSError(28, "No space left on device")

  assert beam_pipeline.dead_letter_record("a.png", _dead_letter(chained)) == {
      "input": "a.png", "error": "a.png: corrupt PNG data (bad)\nsecond line"}
  assert beam_pipeline.dead_letter_record("b.png", _dead_letter(plain)) == {
      "input": "b.png", "error": "b.png: OSError: [Errno 28] No space left on device"}


def test_wildcards_keep_image_names_and_named_files_are_always_tried(tmp_path):
  for name in ("a.png", "b.JPG", "notes.txt", "c.webp"):
    (tmp_path / name).write_bytes(b"x")
  found = list(beam_pipeline.match_pattern(beam_pipeline.normalize_pattern(str(tmp_path))))
  assert found == [str(tmp_path / n) for n in ("a.png", "b.JPG", "c.webp")]
  assert list(beam_pipeline.match_pattern(str(tmp_path / "notes.txt"))) == [
      str(tmp_path / "notes.txt")]
  with pytest.raises(beam_pipeline.InputError, match="missing.png: no such file or directory"):
    list(beam_pipeline.match_pattern(str(tmp_path / "missing.png")))
  assert batch.output_name(str(tmp_path / "notes.txt"), "_out") == "notes_out.png"
  assert batch.output_name(f"{SCHEME}://b/photo.JPG", "_x4", "webp") == "photo_x4.webp"


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "esrgan_tf.cli.beam", *args], capture_output=True,
                        text=True, env=env, timeout=300, check=False)


def test_command_refuses_unknown_arguments_and_missing_flags(tmp_path):
  run = _cli("--model=m.keras", f"--input={tmp_path}", f"--output={tmp_path}",
             "--direct_num_workers=2", "--tile_overlpa=3")
  assert run.returncode == 2
  assert "unknown arguments ['--tile_overlpa=3']" in run.stderr
  run = _cli(f"--input={tmp_path}", f"--output={tmp_path}", "--runner=FnApiRunner")
  assert run.returncode == 2 and "--model is required" in run.stderr
  run = _cli("--model=m.keras", f"--input={tmp_path}", f"--output={tmp_path}", "--runner=Nope")
  assert run.returncode == 2 and "Unexpected pipeline runner: Nope" in run.stderr
  run = _cli(f"--model={tmp_path / 'absent.keras'}", f"--input={tmp_path}",
             f"--output={tmp_path}", "--runner=FnApiRunner")
  assert run.returncode == 1
  assert run.stderr.strip().splitlines()[-1].startswith("error: cannot load the model")


def test_in_process_runner_takes_over_the_launchers_model(tiny_keras_model, monkeypatch):
  loads = []
  real = handler_lib.load_engine
  monkeypatch.setattr(handler_lib, "load_engine", lambda spec: loads.append(spec) or real(spec))
  spec = handler_lib.ModelSpec(tiny_keras_model(2), precision="float32")
  assert handler_lib.model_scale(spec) == 2 and len(loads) == 1  # At launch: scale, checks.
  handler = handler_lib.UpscaleModelHandler(spec, batch.Options())
  assert handler.load_model().facts()[0] == 2 and len(loads) == 1  # Same process: no reload.
  assert handler.load_model().facts()[0] == 2 and len(loads) == 2  # Handed over only once.
  name = next(iter(registry.REGISTRY))
  assert handler_lib.model_scale(handler_lib.ModelSpec(name)) == registry.REGISTRY[name].scale
  assert len(loads) == 2  # A registry name: its scale without a download.
