"""Console scripts: thin absl entry points over the library (one module per command)."""

import sys

from absl import app
from absl import flags


def run(main, module_name: str) -> None:
  """`app.run(main)` for a console script whose flags live in `module_name`.

  absl's `--help` lists the flags of the module named like `sys.argv[0]` and prints
  `__main__.__doc__`; under a console-script wrapper both are the wrapper's, so `--help` showed
  no flags at all. Register the command's flags as key flags of the wrapper and use the
  command module's docstring as the usage text.

  Args:
    main: The command's `main(argv)`.
    module_name: `__name__` of the command module.
  """
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get("__main__")
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = sys.modules[module_name].__doc__
  app.run(main)
