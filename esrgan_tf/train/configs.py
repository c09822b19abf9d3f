"""Loading config files (configs/*.py) by path: how one config derives from another.

`config_flags.DEFINE_config_file` loads a config file by path, not as a package module, so a
derived config (esrgan_x4.py from psnr_x4.py) loads its base the same way, relative to itself.
"""

import importlib.util
import os


def load_config_module(path: str):
  """Imports a config file by path and returns the module (it has `get_config`)."""
  name = "esrgan_configs_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"{path}: not a Python config file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sibling(this_file: str, name: str):
  """The config module `name` (e.g. "psnr_x4") from the folder of `this_file`."""
  return load_config_module(os.path.join(os.path.dirname(os.path.abspath(this_file)),
                                         f"{name}.py"))
