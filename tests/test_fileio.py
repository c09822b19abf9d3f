"""Tests of core.fileio: atomic, no-clobber writes that leave nothing behind on failure."""

import os

import pytest

from esrgan_tf.core import fileio


class Boom(Exception):
  pass


def _fail(f):
  f.write(b"partial")
  raise Boom("disk on fire")


def test_write_then_no_clobber_then_overwrite(tmp_path):
  path = tmp_path / "a.bin"
  assert fileio.write_bytes(path, b"one") == str(path)
  assert path.read_bytes() == b"one"
  with pytest.raises(FileExistsError, match="exists"):
    fileio.write_bytes(path, b"two")
  assert path.read_bytes() == b"one"
  fileio.write_bytes(path, b"two", overwrite=True)
  assert path.read_bytes() == b"two"
  fileio.atomic_write(path, lambda f: f.write("drei ü"), overwrite=True, text=True)
  assert path.read_text(encoding="utf-8") == "drei ü"
  assert os.listdir(tmp_path) == ["a.bin"]


def test_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
  with pytest.raises(Boom, match="disk on fire"):
    fileio.atomic_write(tmp_path / "new.bin", _fail)
  assert os.listdir(tmp_path) == []
  old = tmp_path / "old.bin"
  old.write_bytes(b"keep")
  with pytest.raises(Boom):
    fileio.atomic_write(old, _fail, overwrite=True)
  assert old.read_bytes() == b"keep" and os.listdir(tmp_path) == ["old.bin"]


def test_file_appearing_during_write_is_not_clobbered(tmp_path):
  path = tmp_path / "race.bin"

  def write(f):
    path.write_bytes(b"theirs")  # another process wins the name meanwhile
    f.write(b"ours")

  with pytest.raises(FileExistsError, match="exists"):
    fileio.atomic_write(path, write)
  assert path.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["race.bin"]


def test_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    fileio.write_bytes(tmp_path / "nope" / "a.bin", b"x")


def test_new_file_gets_umask_permissions(tmp_path):
  umask = os.umask(0o022)
  os.umask(umask)
  path = tmp_path / "p.bin"
  fileio.write_bytes(path, b"x")
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_directory_publish_overwrite_and_failure(tmp_path):
  target = tmp_path / "7"
  with fileio.atomic_path(target) as tmp:
    os.makedirs(os.path.join(tmp, "sub"))
    with open(os.path.join(tmp, "sub", "f"), "w") as f:
      f.write("v1")
  assert (target / "sub" / "f").read_text() == "v1"
  with pytest.raises(FileExistsError, match="exists"):
    with fileio.atomic_path(target) as tmp:
      pass
  with pytest.raises(Boom):
    with fileio.atomic_path(target, overwrite=True) as tmp:
      os.makedirs(tmp)
      raise Boom()
  assert (target / "sub" / "f").read_text() == "v1"
  with fileio.atomic_path(target, overwrite=True) as tmp:
    os.makedirs(tmp)
    (tmp_path / os.path.basename(tmp) / "g").write_text("v2")
  assert sorted(os.listdir(target)) == ["g"]
  with pytest.raises(FileNotFoundError, match="nothing was written"):
    with fileio.atomic_path(tmp_path / "empty") as tmp:
      pass
  assert sorted(os.listdir(tmp_path)) == ["7"]


def test_gfile_variant_no_clobber_overwrite(tmp_path):
  path = str(tmp_path / "g.json")
  fileio.write_gfile(path, "{}")
  with pytest.raises(FileExistsError, match="exists"):
    fileio.write_gfile(path, "{1}")
  fileio.write_gfile(path, b"[]", overwrite=True)
  assert open(path, encoding="utf-8").read() == "[]"
  assert os.listdir(tmp_path) == ["g.json"]
  assert fileio.is_remote("gs://bucket/x.json") and not fileio.is_remote(path)
