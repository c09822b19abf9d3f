"""Shared by the esrgan-beam tests: the Beam requirement and an in-memory Beam file system.

Importing this module skips the importing test module when Apache Beam is not installed (the
`beam` extra), except under CI (CI=true), where a missing Beam is an error, never a skip.

`MemoryFileSystem`: `memtest://bucket/name`, an object store in a dict. Registered with Beam by
being imported (Beam finds `FileSystem` subclasses by scheme), so paths on it work only in the
importing process: the in-process FnApiRunner. Like an object store it has no directories (a
"directory" is a prefix) and objects appear whole when their writer is closed. `FILES` maps each
path to its bytes.
"""

import io
import os

import pytest

try:
  from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem
except ImportError:
  if os.environ.get("CI", "").lower() == "true":
    raise
  pytest.skip("esrgan-beam needs the beam extra: pip install -e '.[beam]' (under CI=true this is "
              "an error, not a skip)", allow_module_level=True)

FILES: dict = {}
SCHEME = "memtest"


class _Writer(io.BytesIO):
  """Buffers the object; stores it on close (object stores commit whole objects)."""

  def __init__(self, path):
    super().__init__()
    self._path = path

  def close(self):
    if not self.closed:
      FILES[self._path] = self.getvalue()
    super().close()


class MemoryFileSystem(FileSystem):
  """`FileSystem` over `FILES`."""

  @classmethod
  def scheme(cls):
    return SCHEME

  def join(self, basepath, *paths):
    return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

  def split(self, path):
    head, _, tail = path.rstrip("/").rpartition("/")
    return head, tail

  def mkdirs(self, path):
    pass

  def has_dirs(self):
    return False

  def _list(self, dir_or_prefix):
    for path, data in sorted(FILES.items()):
      if path.startswith(dir_or_prefix):
        yield FileMetadata(path, len(data), 0.0)

  def create(self, path, mime_type="application/octet-stream", compression_type=None):
    return _Writer(path)

  def open(self, path, mime_type="application/octet-stream", compression_type=None):
    if path not in FILES:
      raise BeamIOError("open failed", {path: FileNotFoundError(path)})
    return io.BytesIO(FILES[path])

  def copy(self, source_file_names, destination_file_names):
    for src, dst in zip(source_file_names, destination_file_names):
      FILES[dst] = FILES[src]

  def rename(self, source_file_names, destination_file_names):
    for src, dst in zip(source_file_names, destination_file_names):
      FILES[dst] = FILES.pop(src)

  def exists(self, path):
    return path in FILES or any(p.startswith(path.rstrip("/") + "/") for p in FILES)

  def size(self, path):
    return len(FILES[path])

  def last_updated(self, path):
    return 0.0

  def checksum(self, path):
    return str(len(FILES[path]))

  def metadata(self, path):
    return FileMetadata(path, len(FILES[path]), 0.0)

  def delete(self, paths):
    for path in paths:
      for name in [p for p in FILES if p == path or p.startswith(path.rstrip("/") + "/")]:
        del FILES[name]
