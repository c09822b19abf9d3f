"""Files on any file system Beam supports (local, gs://, s3://, hdfs://, ...).

  * `is_local`: a path Beam's LocalFileSystem serves (no URL scheme).
  * `publish`: copies a finished local file to its destination through Beam's `FileSystems`
    under a temporary name in the destination's directory, then renames it into place. A
    failure (or a retried bundle) leaves no partial file under the final name: a temporary
    object at worst, named `.<name>.<random>.tmp`, which no image pattern matches.
  * `stage`: a model given as a URL (`gs://bucket/x4.pth`, a SavedModel directory under a
    prefix) copied to a local directory once per process, since the model loaders read local
    paths.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# Copy buffer size: large enough for object stores' chunked uploads.
_CHUNK = 8 << 20
# --model URL → its local copy in this process.
_STAGED: dict = {}


def is_local(path: str) -> bool:
  """True for a path of Beam's LocalFileSystem (no `scheme://`)."""
  return FileSystems.get_scheme(path) is None


def absolute(path: str) -> str:
  """A local path made absolute (workers may run elsewhere than the launcher); URLs unchanged."""
  return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path


def join(directory: str, name: str) -> str:
  """`name` inside a directory or prefix of any file system."""
  return FileSystems.join(directory, name)


def read_text(path: str) -> str:
  """A UTF-8 text file from any file system (e.g. --input_list on gs://)."""
  f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
  try:
    return f.read().decode("utf-8")
  finally:
    f.close()


def temporary_name(path: str) -> str:
  """A hidden, unique sibling of `path` for the write-then-rename."""
  directory, name = FileSystems.split(path)
  return FileSystems.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def _copy_into(src_file, path: str) -> None:
  """Writes the open local file `src_file` to the new file `path` (uncompressed, synced)."""
  out = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
  try:
    shutil.copyfileobj(src_file, out, _CHUNK)
    if is_local(path):  # Object stores commit on close; a local file is synced before the rename.
      out.flush()
      os.fsync(out.fileno())
  finally:
    out.close()


def publish(local_file: str, path: str) -> int:
  """Copies `local_file` to `path` (any Beam file system) atomically; an existing file is replaced.

  Replacing is what makes a retried bundle succeed when its first attempt got as far as the
  rename; the caller decides beforehand whether an existing output may be replaced.

  Args:
    local_file: The finished file.
    path: The destination.

  Returns:
    The number of bytes written.

  Raises:
    OSError, BeamIOError: The file system's errors; the temporary object is removed (best effort).
  """
  tmp = temporary_name(path)
  try:
    with open(local_file, "rb") as f:
      _copy_into(f, tmp)
    FileSystems.rename([tmp], [path])
  except BaseException:
    try:
      if FileSystems.exists(tmp):
        FileSystems.delete([tmp])
    except Exception:  # pylint: disable=broad-except  # the original error matters more.
      pass
    raise
  return os.path.getsize(local_file)


def stage(spec: str) -> str:
  """A local path for a model spec: URLs are copied to a local directory, anything else returned.

  A URL naming one object is copied as a file (`gs://b/m/x4.pth` → `<tmp>/x4.pth`); otherwise it
  is taken as a directory (a SavedModel, a TF Serving export base) and everything under it is
  copied with its relative paths. Each process copies once (the copy is removed when it exits):
  a copy shared between processes could be stale after the URL's object changed.

  Args:
    spec: A `--model` value.

  Returns:
    `spec` itself for local paths and model names, else the local copy.

  Raises:
    FileNotFoundError: Nothing exists at or under the URL.
  """
  if is_local(spec):
    return spec
  if spec not in _STAGED:
    url = spec.rstrip("/")
    directory = tempfile.mkdtemp(prefix="esrgan_tf_model_")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    local = os.path.join(directory, FileSystems.split(url)[1] or "model")
    _download(url, local)
    _STAGED[spec] = local
  return _STAGED[spec]


def _download(url: str, local: str) -> None:
  if FileSystems.exists(url) and not FileSystems.match([url + "/**"])[0].metadata_list:
    files = [(url, local)]
  else:
    prefix = url + "/"
    files = [(m.path, os.path.join(local, *m.path[len(prefix):].split("/")))
             for m in FileSystems.match([prefix + "**"])[0].metadata_list]
  if not files:
    raise FileNotFoundError(f"{url}: no such file or directory")
  for remote, path in files:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    src = FileSystems.open(remote, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
      with open(path, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
    finally:
      src.close()
