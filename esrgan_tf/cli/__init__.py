"""Console scripts: thin absl entry points over the library (one module per command).

Conventions shared by every command (`run` sets them up):
  * Usage errors (bad or missing flags, stray arguments) raise `app.UsageError` via `usage()`:
    absl prints the message and the short help, exit status 2 (flag parsing errors too).
  * Runtime failures (a missing or corrupt file, a model that does not load, an existing output
    without --overwrite) go through `fail()`: one line `error: <what> (<file>)` on stderr, exit
    status 1, no traceback.
  * TensorFlow's C++ log lines are quiet unless asked for (`quiet_tensorflow`).

The command modules import TensorFlow only inside `main` (never at import time), so that `run`
can set the log level before TensorFlow is loaded.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn, Optional

from absl import app, flags

# TF's C++ log levels (tsl/platform/default/logging.cc): 0 all, 1 no INFO, 2 no WARNING, 3 no
# ERROR. 3 hides "failed call to cuInit" (an ERROR on every machine without a GPU) and the
# "rebuild TensorFlow with the appropriate compiler flags" notice; real failures still reach the
# user as Python exceptions.
QUIET_TF_LOG_LEVEL = "3"


class _DropLibraryInfo(logging.Filter):
  """Drops INFO (and lower) records logged from inside TensorFlow's or Keras's own files."""

  _DIRS = (f"{os.sep}tensorflow{os.sep}", f"{os.sep}keras{os.sep}")

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(d in record.pathname for d in self._DIRS)


def quiet_tensorflow(argv: list[str], environ=os.environ) -> None:
  """Sets TF_CPP_MIN_LOG_LEVEL for a console script, before TensorFlow is imported.

  Left alone when the user set it already, or passed absl's `--verbosity`/`-v` (e.g.
  `--verbosity=1`) to see more; `--verbosity` also keeps TF's Python INFO logs. Only the console
  scripts (and scripts/quickstart.py) call this, never library code.

  Args:
    argv: The command line.
    environ: The environment to change (for tests).
  """
  if any(a.startswith(("--verbosity", "-v=")) or a == "-v" for a in argv[1:]):
    return
  # TF's Python INFO lines too (e.g. the checkpoint saver's "Sharding callback duration"): TF logs
  # through the "tensorflow" logger and, in places, absl's; both are created by name, so this
  # works before TensorFlow is imported. Our own absl INFO lines (progress) stay.
  logging.getLogger("tensorflow").setLevel(logging.WARNING)
  absl_logger = logging.getLogger("absl")
  if not any(isinstance(f, _DropLibraryInfo) for f in absl_logger.filters):
    absl_logger.addFilter(_DropLibraryInfo())
  if "TF_CPP_MIN_LOG_LEVEL" not in environ:
    environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL


def usage(message: str) -> app.UsageError:
  """A usage error for `raise`: absl prints it with the short help; exit status 2."""
  return app.UsageError(message, exitcode=2)


def fail(what, path: Optional[str] = None, *, context: str = "") -> NoReturn:
  """Reports a runtime failure as `error: <what> (<file>)` on stderr and exits with status 1.

  Args:
    what: The problem (an exception or text). Our exceptions start with the file name
      ("model.keras: no such file"); when that is `path`, it moves to the end in parentheses.
    path: The file concerned, if any.
    context: What was being done ("cannot load the model"), put before `what`.

  Raises:
    SystemExit: Always, with status 1.
  """
  text = str(what)
  if path:
    path = os.fspath(path)
    if text.startswith(f"{path}: "):
      text = text[len(path) + 2:]
    text = f"{text} ({path})"
  if context:
    text = f"{context}: {text}"
  print(f"error: {text}", file=sys.stderr, flush=True)
  raise SystemExit(1)


def save_generator(model, path: str, *, overwrite: bool) -> None:
  """Writes a generator by suffix (.keras, .pth, .safetensors); a failure ends the command."""
  from esrgan_tf import weights  # pylint: disable=g-import-not-at-top
  try:
    weights.save_model(model, path, overwrite=overwrite)
  except weights.CheckpointError as e:
    fail(e)
  except OSError as e:
    fail(f"cannot write ({e.strerror or e})", path)


def _parse_flags(argv: list[str], known_only: bool = False) -> list[str]:
  """absl's flag parsing with exit status 2 (a usage error) for a bad flag.

  With `known_only`, flags absl does not know are returned with the arguments (for a command
  that hands them on, e.g. esrgan-beam's Beam pipeline options).
  """
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(2)


def run(main, module_name: str, *, known_only: bool = False) -> None:
  """`app.run(main)` for a console script whose flags live in `module_name`.

  absl's `--help` lists the flags of the module named like `sys.argv[0]` and prints
  `__main__.__doc__`; under a console-script wrapper both are the wrapper's, so `--help` showed
  no flags at all. Register the command's flags as key flags of the wrapper and use the
  command module's docstring as the usage text.

  Args:
    main: The command's `main(argv)`.
    module_name: `__name__` of the command module.
    known_only: Pass flags absl does not know on to `main` in its argv instead of refusing them.
  """
  quiet_tensorflow(sys.argv)
  # The command's own flags and those it defined through `shared_flags` (one command a process).
  for module in (module_name, f"{__name__}.shared_flags"):
    for flag in flags.FLAGS.get_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get("__main__")
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = sys.modules[module_name].__doc__
  app.run(main, flags_parser=lambda argv: _parse_flags(argv, known_only))
