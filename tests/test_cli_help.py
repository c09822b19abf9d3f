"""Every console script's --help lists its own flags (absl shows none under a wrapper)."""

import os
import subprocess
import sys

# command -> flags its --help must list.
COMMANDS = {
    "esrgan-upscale": ["--input", "--output", "--model", "--tile", "--[no]overwrite"],
    "esrgan-train": ["--config", "--workdir"],
    "esrgan-eval": ["--model", "--hr", "--[no]y_channel"],
    "esrgan-export": ["--model", "--export_dir", "--tflite_quantize"],
    "esrgan-serve": ["--model_base_path", "--port", "--rest_api_port", "--[no]web_ui", "--host"],
    "esrgan-import": ["--checkpoint", "--output"],
    "esrgan-interpolate": ["--a", "--b", "--alpha"],
    "esrgan-models": ["--model_mirror"],
    "esrgan-beam": ["--input", "--output", "--model", "--failures", "--tile", "--[no]overwrite",
                    "--[no]large_model"],
}


def test_help_lists_each_commands_flags():
  bindir = os.path.dirname(sys.executable)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  procs = {name: subprocess.Popen([os.path.join(bindir, name), "--help"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for name in COMMANDS}
  for name, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    # absl exits 1 after --help; what matters is what it printed.
    listed = [flag for flag in COMMANDS[name] if f"  {flag}:" in out]
    assert listed == COMMANDS[name], (name, out[-3000:])
    assert "USAGE:" not in out.split("flags:")[0], f"{name}: no usage text"
