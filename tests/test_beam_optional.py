"""Apache Beam stays optional: only esrgan_tf.beam and the esrgan-beam command import it, the
default install does not pull it, and the command's module loads without it (for --help)."""

import ast
import configparser
import os
import subprocess
import sys

import esrgan_tf

PACKAGE_DIR = os.path.dirname(esrgan_tf.__file__)
ALLOWED = (os.path.join(PACKAGE_DIR, "beam") + os.sep, os.path.join(PACKAGE_DIR, "cli", "beam.py"))


def _imports_beam(path: str) -> bool:
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):  # Inside functions too.
    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
             [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
    if any(n == "apache_beam" or n.startswith("apache_beam.") for n in names):
      return True
  return False


def test_only_the_beam_modules_import_apache_beam(tmp_path):
  found = sorted(os.path.join(d, f) for d, _, files in os.walk(PACKAGE_DIR) for f in files
                 if f.endswith(".py") and _imports_beam(os.path.join(d, f)))
  assert found and all(path.startswith(ALLOWED) for path in found), found
  (tmp_path / "probe.py").write_text("import apache_beam.io\n", encoding="utf-8")
  assert _imports_beam(str(tmp_path / "probe.py"))  # The walker sees a plain import.


def test_beam_is_an_extra_not_a_requirement():
  config = configparser.ConfigParser()
  config.read(os.path.join(os.path.dirname(PACKAGE_DIR), "setup.cfg"))
  required = config["options"]["install_requires"]
  extras = config["options.extras_require"]
  assert "apache-beam" not in required
  assert [line for line in extras["beam"].split("\n") if line.strip()] == [
      "apache-beam>=2.78,<3"]
  scripts = config["options.entry_points"]["console_scripts"]
  assert "esrgan-beam = esrgan_tf.cli.beam:run" in scripts


def test_the_command_module_loads_without_beam():
  code = ("import sys; import esrgan_tf.cli.beam; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam'))")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       check=True)
  assert run.stdout.strip() == "[]"
