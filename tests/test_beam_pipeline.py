"""esrgan-beam against esrgan-upscale: same files, same bytes, same failure messages.

The reference is the esrgan-upscale command itself (a subprocess) on the same input folder: a
mix of 8-bit RGB, RGBA, grayscale, 16-bit PNG and JPEG, plus a corrupt PNG and a header-only
30000×30000 PNG (over the default --max_pixels). esrgan-beam runs on the in-process FnApiRunner
(created explicitly: the default DirectRunner may try to download the Prism runner) and, as a
command, on the DirectRunner with two worker processes.
"""

import errno
import io
import json
import os
import subprocess
import sys

from beam_fixtures import FILES, SCHEME
from image_fixtures import header_only_png, listing, raw_png, rgb_image, touch

from apache_beam.io.filesystems import FileSystems  # isort: skip  (after beam_fixtures' check)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
import numpy as np
from PIL import Image
import pytest

from esrgan_tf.beam import handler as handler_lib
from esrgan_tf.beam import pipeline as beam_pipeline
from esrgan_tf.inference import batch

SCALE = 2
GOOD = {"rgb.png": (12, 10), "rgba.png": (11, 9), "gray.png": (7, 8), "deep16.png": (7, 6),
        "photo.jpg": (10, 12)}  # name → (width, height)
BAD = ("corrupt.png", "huge.png")
# Non-default processing flags for the command test (tiles, padding, resize, format, suffix).
FLAGS_B = ("--tile=8", "--tile_overlap=2", "--pre_pad=2", "--outscale=1.5", "--format=png",
           "--suffix=_x{scale}")


def _write_inputs(d):
  d.mkdir()
  rng = np.random.default_rng(7)
  rgb_image(10, 12, seed=1).save(d / "rgb.png")
  Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
  Image.fromarray(rng.integers(0, 256, (8, 7), dtype=np.uint8), "L").save(d / "gray.png")
  touch(d / "deep16.png", raw_png(rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)))
  rgb_image(12, 10, seed=3).save(d / "photo.jpg", quality=90)
  png = io.BytesIO()
  rgb_image(12, 10).save(png, format="PNG")
  png = bytearray(png.getvalue())
  png[60] ^= 0xFF  # Inside the IDAT data: a CRC mismatch.
  touch(d / "corrupt.png", bytes(png))
  touch(d / "huge.png", header_only_png(30000, 30000))


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, "-m", module, *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc):
  out, err = proc.communicate(timeout=600)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _files(directory) -> dict:
  return {name: (directory / name).read_bytes() for name in listing(directory)
          if name != beam_pipeline.FAILURES_NAME}


def _failed_lines(stderr) -> set:
  """esrgan-upscale's failure messages (its stderr lines "FAILED <message>")."""
  return {line[len("FAILED "):] for line in stderr.splitlines() if line.startswith("FAILED ")}


def _failures(path) -> list:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def model_path(tiny_keras_model):
  return tiny_keras_model(SCALE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  d = tmp_path_factory.mktemp("beam") / "inputs"
  _write_inputs(d)
  return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs, model_path):
  """esrgan-upscale's outputs and failure messages: {"A": defaults, "B": FLAGS_B}."""
  root = tmp_path_factory.mktemp("reference")
  procs = {name: _run("esrgan_tf.cli.upscale", f"--model={model_path}", f"--input={inputs}",
                      f"--output={root / name}", *flags)
           for name, flags in (("A", ()), ("B", FLAGS_B))}
  found = {}
  for name, proc in procs.items():
    done = _finish(proc)
    assert done.returncode == 1, done.stderr  # The two bad inputs.
    found[name] = (_files(root / name), _failed_lines(done.stderr))
  assert len(found["A"][0]) == len(GOOD) and len(found["A"][1]) == len(BAD)
  return found


def _settings(output, **kwargs):
  kwargs.setdefault("max_pixels", batch.output_bounded_max_pixels(SCALE))  # the CLI's default
  return beam_pipeline.Settings(output=str(output), failures=kwargs.pop(
      "failures", os.path.join(output, beam_pipeline.FAILURES_NAME)), **kwargs)


def _beam(patterns, settings, model, *, large_model=False):
  handler = handler_lib.UpscaleModelHandler(handler_lib.ModelSpec(model), batch.Options(),
                                            large_model=large_model)
  root = beam_pipeline.create(PipelineOptions([]), runner=FnApiRunner())
  outcome = beam_pipeline.run(root, patterns, settings, handler)
  assert outcome.state == "DONE"
  return outcome.counters


def test_fn_api_runner_writes_esrgan_upscales_bytes(tmp_path, inputs, model_path, reference):
  expected, messages = reference["A"]
  counters = _beam([str(inputs)], _settings(tmp_path), model_path)
  assert _files(tmp_path) == expected
  failures = _failures(tmp_path / beam_pipeline.FAILURES_NAME)
  assert {r["error"] for r in failures} == messages
  assert sorted(os.path.basename(r["input"]) for r in failures) == sorted(BAD)
  assert counters == {
      "images": len(GOOD), "failures": len(BAD), "skipped": 0, "model_loads": 1,
      "input_pixels": sum(w * h for w, h in GOOD.values()),
      "output_bytes": sum(len(data) for data in expected.values())}


def test_shared_model_through_beams_proxy(tmp_path, inputs, model_path, reference):
  # large_model: Beam keeps the model behind a multi_process_shared proxy (methods only).
  expected, _ = reference["A"]
  counters = _beam([str(inputs / "*.png")], _settings(tmp_path), model_path, large_model=True)
  assert _files(tmp_path) == {k: v for k, v in expected.items() if k.endswith(".png")}
  assert counters["model_loads"] == 1


@pytest.mark.slow
def test_two_worker_processes_on_the_direct_runner(tmp_path, inputs, model_path, reference):
  expected, messages = reference["B"]
  input_list = tmp_path / "inputs.txt"
  # Every image pattern once, one of them twice (done once) and one that matches nothing.
  input_list.write_text(f"# patterns\n{inputs}/*.png\n{inputs}/*.jpg\n{inputs}/rgb.png\n\n"
                        f"{inputs}/nothing/*.png\n", encoding="utf-8")
  failures = tmp_path / "logs" / "failed.jsonl"
  run = _finish(_run("esrgan_tf.cli.beam", f"--model={model_path}", f"--input_list={input_list}",
                     f"--output={tmp_path / 'out'}", f"--failures={failures}", *FLAGS_B,
                     "--direct_running_mode=multi_processing", "--direct_num_workers=2"))
  assert run.returncode == 1, run.stderr[-3000:]  # Some inputs failed; the job succeeded.
  lines = run.stdout.strip().splitlines()
  assert lines[0] == f"{len(GOOD)} upscaled, {len(BAD) + 1} failed", run.stdout
  assert _files(tmp_path / "out") == expected
  assert {r["error"] for r in _failures(failures)} == messages | {
      f"{inputs}/nothing/*.png: pattern matches no image files"}
  # One model load in each of the two worker processes (each logs it), none in the launcher's
  # pipeline; the counter counts the loaded models that upscaled something.
  loads = [line for line in run.stderr.splitlines() if "loaded model" in line]
  assert len(loads) == 2, run.stderr[-3000:]
  counters = dict(item.split("=") for item in lines[1].removeprefix("counters: ").split(", "))
  assert 1 <= int(counters["model_loads"]) <= 2
  assert int(counters["images"]) == len(GOOD)


def test_rerun_does_only_what_is_missing_and_overwrite_replaces(tmp_path, inputs, model_path,
                                                                 reference):
  expected, _ = reference["A"]
  patterns = [str(inputs / "rgb.png"), str(inputs / "gray.png")]
  out = tmp_path / "out"
  assert _beam(patterns, _settings(out), model_path)["images"] == 2
  (out / "gray_out.png").unlink()
  (out / "rgb_out.png").write_bytes(b"kept: not replaced without --overwrite")
  counters = _beam(patterns, _settings(out), model_path)
  assert (counters["images"], counters["skipped"], counters["failures"]) == (1, 1, 0)
  assert (out / "gray_out.png").read_bytes() == expected["gray_out.png"]
  assert (out / "rgb_out.png").read_bytes() == b"kept: not replaced without --overwrite"
  counters = _beam(patterns, _settings(out, overwrite=True), model_path)
  assert (counters["images"], counters["skipped"]) == (2, 0)
  assert _files(out) == {k: expected[k] for k in ("gray_out.png", "rgb_out.png")}
  assert (out / beam_pipeline.FAILURES_NAME).read_bytes() == b""  # Nothing failed.


def test_failure_mid_write_leaves_no_partial_file(tmp_path, inputs, model_path, reference,
                                                  monkeypatch):
  expected, _ = reference["A"]
  out = tmp_path / "out"
  out.mkdir()
  (out / "rgb_out.png").write_bytes(b"previous result")  # Must survive the failed replacement.
  real_create = FileSystems.create

  class HalfWriter:
    """Writes half of what it is given, then fails as a full disk does."""

    def __init__(self, f):
      self._f = f

    def write(self, data):
      self._f.write(data[:len(data) // 2])
      self._f.flush()
      raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
      self._f.close()

  def create(path, *args, **kwargs):
    f = real_create(path, *args, **kwargs)
    return HalfWriter(f) if os.path.basename(path).startswith(".rgb_out.png.") else f

  monkeypatch.setattr(FileSystems, "create", staticmethod(create))
  counters = _beam([str(inputs / "rgb.png"), str(inputs / "gray.png")],
                   _settings(out, overwrite=True), model_path)
  assert (counters["images"], counters["failures"]) == (1, 1)
  assert sorted(os.listdir(out)) == [beam_pipeline.FAILURES_NAME, "gray_out.png", "rgb_out.png"]
  assert (out / "rgb_out.png").read_bytes() == b"previous result"
  assert (out / "gray_out.png").read_bytes() == expected["gray_out.png"]
  src = str(inputs / "rgb.png")
  assert _failures(out / beam_pipeline.FAILURES_NAME) == [
      {"input": src, "error": f"{src}: OSError: [Errno {errno.ENOSPC}] No space left on device"}]


def test_name_clashes_are_failures_as_in_esrgan_upscale(tmp_path, model_path):
  for sub in ("a", "b"):
    (tmp_path / sub).mkdir()
    rgb_image(5, 6, seed=len(sub)).save(tmp_path / sub / "x.png")
  a, b = str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")
  out = tmp_path / "out"
  # a/x.png is matched twice (done once); b/x.png would write the same output.
  counters = _beam([str(tmp_path / "a" / "*.png"), a, str(tmp_path / "b")], _settings(out),
                   model_path)
  jobs = batch.plan_outputs([batch.Source(a), batch.Source(b)], str(out), scale=SCALE)
  assert jobs[0].dst == str(out / "x_out.png") and jobs[1].dst is None
  assert (counters["images"], counters["failures"]) == (1, 1)
  assert _failures(out / beam_pipeline.FAILURES_NAME) == [
      {"input": b, "error": f"{b}: {jobs[1].problem}"}]
  # With no suffix and the inputs' own directory as output, the output would be the input.
  counters = _beam([a], _settings(tmp_path / "a", suffix="", overwrite=True), model_path)
  (job,) = batch.plan_outputs([batch.Source(a)], str(tmp_path / "a"), scale=SCALE, suffix="")
  assert (counters["images"], counters["failures"]) == (0, 1)
  assert job.problem.startswith(f"output {a} would replace an input")
  (record,) = _failures(tmp_path / "a" / beam_pipeline.FAILURES_NAME)
  assert record == {"input": a, "error": f"{a}: {job.problem}"}


def test_inputs_model_and_outputs_on_another_file_system(tmp_path, inputs, model_path, reference):
  expected, messages = reference["A"]
  FILES.clear()
  for name in ("rgb.png", "photo.jpg", "corrupt.png"):
    FILES[f"{SCHEME}://in/{name}"] = (inputs / name).read_bytes()
  with open(model_path, "rb") as f:
    FILES[f"{SCHEME}://models/tiny.keras"] = f.read()
  settings = _settings(f"{SCHEME}://out", failures=f"{SCHEME}://out/failures.jsonl")
  counters = _beam([f"{SCHEME}://in/*"], settings, f"{SCHEME}://models/tiny.keras")
  assert (counters["images"], counters["failures"]) == (2, 1)
  outputs = {k.rpartition("/")[2]: v for k, v in FILES.items() if k.startswith(f"{SCHEME}://out/")}
  assert sorted(outputs) == ["failures.jsonl", "photo_out.jpg", "rgb_out.png"]  # No temporaries.
  assert outputs["rgb_out.png"] == expected["rgb_out.png"]
  assert outputs["photo_out.jpg"] == expected["photo_out.jpg"]
  (record,) = [json.loads(line) for line in outputs["failures.jsonl"].decode().splitlines()]
  assert record["input"] == f"{SCHEME}://in/corrupt.png"
  # The same message as esrgan-upscale's for the local file, with the URL as its name.
  (local,) = [m for m in messages if m.startswith(str(inputs / "corrupt.png"))]
  assert record["error"] == local.replace(str(inputs / "corrupt.png"), record["input"])


def test_failure_inside_the_model_step_is_a_dead_letter(tmp_path, inputs, model_path, reference,
                                                        monkeypatch):
  expected, _ = reference["A"]
  real = batch.upscale_image

  def upscale_image(img, upscaler, options, progress=None):
    if img.path.endswith("gray.png"):
      raise ValueError("model exploded")
    return real(img, upscaler, options, progress)

  monkeypatch.setattr(batch, "upscale_image", upscale_image)
  out = tmp_path / "out"
  counters = _beam([str(inputs / "rgb.png"), str(inputs / "gray.png")], _settings(out),
                   model_path)
  assert (counters["images"], counters["failures"]) == (1, 1)
  assert _files(out) == {"rgb_out.png": expected["rgb_out.png"]}
  src = str(inputs / "gray.png")
  assert _failures(out / beam_pipeline.FAILURES_NAME) == [
      {"input": src, "error": f"{src}: ValueError: model exploded"}]
