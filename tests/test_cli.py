"""Tests of esrgan_tf.cli: the shared console-script conventions (errors, exit codes, quiet TF)."""

import logging
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from esrgan_tf import cli

COMMANDS = ("upscale", "train", "evaluate", "export", "serve", "import_checkpoint", "interpolate")


def test_fail_prints_one_error_line_and_exits_1(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.fail(ValueError("model.keras: no such file"), "model.keras")
  assert exit_info.value.code == 1
  assert capsys.readouterr().err == "error: no such file (model.keras)\n"
  with pytest.raises(SystemExit):
    cli.fail("boom", "x.json", context="cannot write the results")
  assert capsys.readouterr().err == "error: cannot write the results: boom (x.json)\n"
  with pytest.raises(SystemExit):
    cli.fail("no input")
  assert capsys.readouterr().err == "error: no input\n"


def test_usage_error_exits_2():
  error = cli.usage("--a is required")
  assert error.exitcode == 2 and str(error) == "--a is required"


def test_quiet_tensorflow_defaults_and_opt_outs():
  env = {}
  cli.quiet_tensorflow(["esrgan-upscale", "--input=x"], env)
  assert env == {"TF_CPP_MIN_LOG_LEVEL": cli.QUIET_TF_LOG_LEVEL}
  assert logging.getLogger("tensorflow").level == logging.WARNING
  env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
  cli.quiet_tensorflow(["esrgan-upscale"], env)
  assert env == {"TF_CPP_MIN_LOG_LEVEL": "0"}  # the user's choice wins
  drop = [f for f in logging.getLogger("absl").filters if type(f).__name__ == "_DropLibraryInfo"]
  assert len(drop) == 1
  record = logging.LogRecord("absl", logging.INFO, "/x/site-packages/tensorflow/python/a.py", 1,
                             "Sharding callback duration", None, None)
  assert not drop[0].filter(record)
  record.pathname = "/x/esrgan_tf/train/loop.py"
  assert drop[0].filter(record)  # our own progress lines stay
  for flag in ("--verbosity=1", "-v", "-v=1"):
    env = {}
    cli.quiet_tensorflow(["esrgan-upscale", flag], env)
    assert env == {}, flag


def test_command_modules_do_not_import_tensorflow():
  """So that `cli.run` sets TF's log level before TensorFlow is loaded."""
  # One process per command: several define the same flag names (--model_name, --max_pixels).
  code = "import sys, esrgan_tf.cli.{}; print(sorted({{'tensorflow', 'keras'}} & set(sys.modules)))"
  procs = {c: subprocess.Popen([sys.executable, "-c", code.format(c)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for c in COMMANDS}
  for command, proc in procs.items():
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (command, err)
    assert out.strip() == "[]", command


def test_upscale_console_is_clean_by_default(tmp_path, tiny_generator):
  """No TF C++ notices (cuInit, CPU-feature rebuild hint) on a real run without any setting."""
  tiny_generator().save(tmp_path / "m.keras")
  Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "a.png")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  run = subprocess.run(
      [sys.executable, "-m", "esrgan_tf.cli.upscale", f"--model={tmp_path / 'm.keras'}",
       f"--input={tmp_path / 'a.png'}", f"--output={tmp_path / 'out'}"],
      capture_output=True, text=True, env=env, timeout=300, check=False)
  assert run.returncode == 0, run.stderr
  assert run.stdout.strip().splitlines()[-1] == "1 upscaled, 0 failed"
  for noise in ("cuInit", "rebuild TensorFlow", "E0000", "retracing"):
    assert noise not in run.stderr, run.stderr
