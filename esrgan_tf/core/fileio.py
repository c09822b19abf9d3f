"""Atomic file output: a reader never sees a partial file, and nothing is replaced by accident.

Every file or directory esrgan_tf writes goes through here:

  * `atomic_write(path, write)`: `write(f)` fills a temporary file in the target's directory
    (same file system, so the final step is a rename), which is flushed, fsync'ed and then moved
    into place. Without `overwrite` an existing file is never replaced, even one that appears
    while we write (the final step is `os.link`, which fails if the name exists). On any failure,
    KeyboardInterrupt included, the temporary file is removed and the target is untouched.
  * `atomic_path(path)`: the same for writers that want a path rather than an open file
    (`keras.Model.save`, `tf.saved_model.save`): yields a temporary path next to `path` (a file
    or a directory) and publishes it when the block succeeds.
  * `write_gfile(path, data)`: the `tf.io.gfile` variant for paths TensorFlow's file systems
    handle (gs://, s3://, hdfs://, and local paths too): temporary object, then
    `tf.io.gfile.rename`. Object stores create an object atomically, so readers still never see a
    partial file; the no-clobber check is `rename(overwrite=False)`.

Errors are the OS's: `FileExistsError` for an existing target without `overwrite`,
`FileNotFoundError` for a missing directory, other `OSError`s as raised. Callers that report to a
user wrap them with their own message (e.g. `image_io.ImageError`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from typing import BinaryIO, Callable, Iterator, Union
import uuid

# Errors of os.link on file systems without hard links (FAT, some network mounts): there the
# final step falls back to check-then-rename.
_NO_LINK_ERRNOS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV,
                   errno.ENOSYS, errno.EACCES)


def is_remote(path: str) -> bool:
  """True for a URL-style path (gs://, s3://, ...) that only `tf.io.gfile` can write."""
  return "://" in os.fspath(path)


def _exists_error(path: str) -> FileExistsError:
  return FileExistsError(errno.EEXIST, "exists (pass overwrite to replace it)", path)


def new_file_mode(path: str) -> int:
  """Permission bits for a new file: those of the file it replaces, else 0o666 & ~umask."""
  try:
    return os.stat(path).st_mode & 0o7777
  except OSError:
    pass
  try:  # Linux ≥ 4.7 reports the umask without the racy os.umask() set-and-restore.
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return 0o666 & ~int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  return 0o644


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.unlink(path)


def _publish(tmp: str, path: str, overwrite: bool) -> None:
  """Moves the finished `tmp` to `path`; without `overwrite` never replaces an existing name."""
  is_dir = os.path.isdir(tmp)
  if overwrite:
    if is_dir and os.path.lexists(path):
      # A directory cannot be renamed over a non-empty one: move the old one aside first.
      old = f"{tmp}.old"
      os.rename(path, old)
      os.rename(tmp, path)
      _remove(old)
    else:
      os.replace(tmp, path)
    return
  if is_dir:  # rename(2) of a directory onto an existing non-empty one fails: no clobber.
    if os.path.lexists(path):
      raise _exists_error(path)
    os.rename(tmp, path)
    return
  try:
    os.link(tmp, path)  # Atomic no-clobber: EEXIST if `path` appeared meanwhile.
  except FileExistsError:
    raise _exists_error(path) from None
  except OSError as e:
    if e.errno not in _NO_LINK_ERRNOS:
      raise
    if os.path.lexists(path):
      raise _exists_error(path) from None
    os.rename(tmp, path)
    return
  os.unlink(tmp)


def _check_target(path: str, overwrite: bool) -> str:
  """The absolute directory of `path`, after the checks that can fail before any work."""
  if os.path.isdir(path) and not overwrite:
    raise _exists_error(path)
  if not overwrite and os.path.lexists(path):
    raise _exists_error(path)
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise FileNotFoundError(errno.ENOENT, f"directory {directory} does not exist", path)
  return directory


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None], *,
                 overwrite: bool = False, text: bool = False) -> str:
  """Writes a file through `write(f)` atomically (see the module docstring).

  Args:
    path: The destination file (its directory must exist).
    write: Called once with the open temporary file (binary, or UTF-8 text if `text`).
    overwrite: Replace an existing file.
    text: Open the temporary file in text mode (UTF-8).

  Returns:
    `path` as a string.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False (checked before `write` runs and
      again, atomically, at the end).
    FileNotFoundError: The directory does not exist.
    OSError: Other OS errors. Whatever `write` raises is re-raised; the temporary file is gone.
  """
  path = os.fspath(path)
  directory = _check_target(path, overwrite)
  mode = new_file_mode(path)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as f:
      write(f)
      f.flush()
      if hasattr(os, "fchmod"):  # mkstemp creates 0o600; give the usual permissions.
        os.fchmod(f.fileno(), mode)
      os.fsync(f.fileno())
    _publish(tmp, path, overwrite)
  finally:
    if os.path.lexists(tmp):
      os.unlink(tmp)
  return path


def write_bytes(path: Union[str, os.PathLike], data: Union[bytes, str], *,
                overwrite: bool = False) -> str:
  """`atomic_write` of ready data (str is written as UTF-8); gs:// etc. go to `write_gfile`."""
  if is_remote(path):
    return write_gfile(os.fspath(path), data, overwrite=overwrite)
  payload = data.encode("utf-8") if isinstance(data, str) else data
  return atomic_write(path, lambda f: f.write(payload), overwrite=overwrite)


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike], *, overwrite: bool = False,
                suffix: str = "") -> Iterator[str]:
  """Yields a temporary path next to `path`; what is written there is published on success.

  The caller creates the file or directory at the yielded path (e.g. `model.save(tmp)`,
  `tf.saved_model.save(module, tmp)`). A directory replacing an existing one (`overwrite`) is
  swapped in with two renames (old aside, new in) and the old one removed.

  Args:
    path: The destination file or directory (its parent must exist).
    overwrite: Replace an existing destination.
    suffix: Ending of the temporary name (Keras wants ".keras").

  Yields:
    The temporary path (nothing exists there yet).

  Raises:
    FileExistsError, FileNotFoundError, OSError: As `atomic_write`; also if the block created
      nothing at the temporary path.
  """
  path = os.fspath(path)
  directory = _check_target(path, overwrite)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
  try:
    yield tmp
    if not os.path.lexists(tmp):
      raise FileNotFoundError(errno.ENOENT, "nothing was written", tmp)
    if os.path.isfile(tmp):
      with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    _publish(tmp, path, overwrite)
  finally:
    _remove(tmp)


def write_gfile(path: str, data: Union[bytes, str], *, overwrite: bool = False) -> str:
  """Writes `data` to any `tf.io.gfile` path (gs://, s3://, local) via a temporary object.

  Args:
    path: Destination.
    data: bytes, or str written as UTF-8.
    overwrite: Replace an existing file.

  Returns:
    `path`.

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
    tf.errors.OpError: The file system's errors (e.g. NotFoundError for a missing bucket).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # only for remote paths.

  if not overwrite and tf.io.gfile.exists(path):
    raise _exists_error(path)
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
  try:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data.encode("utf-8") if isinstance(data, str) else data)
    try:
      tf.io.gfile.rename(tmp, path, overwrite=overwrite)
    except tf.errors.AlreadyExistsError:
      raise _exists_error(path) from None
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
  return path


class NotRegularFileError(OSError):
  """A path that is a FIFO, socket or device: refused before any (blocking) read."""

  def __init__(self, path: str, kind: str):
    super().__init__(f"{path}: is {kind}, not a regular file")
    self.kind = kind


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _check_regular(path: str, mode: int) -> None:
  if stat.S_ISDIR(mode):
    raise IsADirectoryError(errno.EISDIR, "is a directory", path)
  if not stat.S_ISREG(mode):
    raise NotRegularFileError(path, next((text for test, text in _NOT_REGULAR if test(mode)),
                                         "not a regular file"))


def open_regular(path: str) -> BinaryIO:
  """Opens a regular file for binary reading; anything else is refused without a blocking read.

  O_NONBLOCK makes opening a FIFO return at once (a plain open() waits for a writer forever);
  fstat on the opened descriptor then decides, so the checked file is the one read.

  Raises:
    FileNotFoundError, IsADirectoryError, NotRegularFileError (FIFO, socket, device), OSError.
  """
  try:
    _check_regular(path, os.stat(path).st_mode)  # Sockets cannot even be opened.
  except (FileNotFoundError, PermissionError):
    pass  # Reported by os.open below.
  flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
  fd = os.open(path, flags)
  try:
    _check_regular(path, os.fstat(fd).st_mode)
  except OSError:
    os.close(fd)
    raise
  os.set_blocking(fd, True)
  return os.fdopen(fd, "rb")
