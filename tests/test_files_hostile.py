"""Hostile input files for esrgan-upscale: non-regular files, output-sized pixel limits, names
with commas."""

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
from PIL import Image
import pytest

from esrgan_tf.images import image_io
from esrgan_tf.inference import batch

SCALE = 4


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG declaring width×height whose IDAT holds one compressed row only (~100 bytes)."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
          + _chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width))) + _chunk(b"IEND", b""))


def _read_with_timeout(path, seconds=5.0):
  """read_image in a thread; (exception or result, elapsed). Unblocks a FIFO left waiting."""
  outcome = {}

  def target():
    try:
      outcome["result"] = image_io.read_image(path)
    except Exception as e:  # pylint: disable=broad-except  # returned to the test.
      outcome["result"] = e

  started = time.monotonic()
  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(seconds)
  elapsed = time.monotonic() - started
  if thread.is_alive() and os.path.exists(path):  # Blocked in open(): give it a writer.
    with open(path, "wb"):
      pass
    thread.join(5)
  return outcome.get("result"), elapsed


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_socket_and_device_are_refused_without_a_blocking_read(tmp_path):
  fifo = str(tmp_path / "pipe.png")
  os.mkfifo(fifo)
  result, elapsed = _read_with_timeout(fifo)
  assert isinstance(result, image_io.ImageError), result
  assert "FIFO" in str(result) and "pipe.png" in str(result)
  assert elapsed < 2.0
  sock_path = str(tmp_path / "sock.png")
  with socket.socket(socket.AF_UNIX) as sock:
    sock.bind(sock_path)
    with pytest.raises(image_io.ImageError, match=r"sock\.png: .*a socket"):
      image_io.read_image(sock_path)
  with pytest.raises(image_io.ImageError, match=r"/dev/zero: .*a character device"):
    image_io.read_image("/dev/zero")  # Would otherwise be read forever.
  with pytest.raises(image_io.ImageError, match="is a directory"):
    image_io.read_image(str(tmp_path))


def test_default_max_pixels_is_sized_by_the_output():
  assert batch.output_bounded_max_pixels(4) == (4 << 30) // (24 * 16) == 11_184_810
  assert batch.output_bounded_max_pixels(2) == (4 << 30) // (24 * 4)
  assert batch.output_bounded_max_pixels(1) == image_io.BOMB_MAX_PIXELS  # header limit.
  # 89 Mpx at ×4 is 1.4 Gpx of output; refused by default now.
  assert 89_000_000 > batch.output_bounded_max_pixels(4)


@pytest.fixture(scope="module")
def model_path(tiny_keras_model):
  return tiny_keras_model(SCALE)


def _rgb(path, h=6, w=5):
  rng = np.random.default_rng(h * w)
  Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_cli_commas_fifo_and_output_sized_limit(tmp_path, model_path):
  src = tmp_path / "in"
  src.mkdir()
  _rgb(src / "a,b.png")  # Given by a repeated --input.
  _rgb(src / "c, d.png")  # Given by --input_list.
  _rgb(src / "plain.png")  # Given with another in one comma-separated --input.
  _rgb(src / "other.png")
  os.mkfifo(src / "pipe.png")
  # 4000×3000 = 12 Mpx: fine as an input header, but its ×4 output (192 Mpx, ~4.6 GB in
  # memory) is over the default limit; refused from the header (the pixel data is garbage).
  (src / "big.png").write_bytes(_png_header_only(4000, 3000))
  listing = tmp_path / "inputs.txt"
  listing.write_text(f"# one per line\n{src / 'c, d.png'}\n\n{src / 'big.png'}\n")
  out = tmp_path / "out"
  out.mkdir()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  started = time.monotonic()
  run = subprocess.run(
      [sys.executable, "-m", "esrgan_tf.cli.upscale", f"--model={model_path}",
       f"--input={src / 'a,b.png'}", f"--input={src / 'plain.png'},{src / 'other.png'}",
       f"--input={src / 'pipe.png'}", f"--input_list={listing}", f"--output={out}"],
      capture_output=True, text=True, env=env, timeout=180, check=False)
  elapsed = time.monotonic() - started
  assert run.returncode == 1, run.stderr
  assert "4 upscaled, 2 failed" in run.stdout, (run.stdout, run.stderr)
  for name in ("a,b_out.png", "c, d_out.png", "plain_out.png", "other_out.png"):
    with Image.open(out / name) as image:
      assert image.size == (5 * SCALE, 6 * SCALE)
  failed = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
  assert any("pipe.png" in line and "FIFO" in line for line in failed), failed
  big = [line for line in failed if "big.png" in line]
  assert len(big) == 1 and "11,184,810" in big[0] and "--max_pixels" in big[0], failed
  assert not (out / "big_out.png").exists() and not (out / "pipe_out.png").exists()
  assert elapsed < 120


def test_help_documents_repeated_input_and_input_list():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run([sys.executable, "-m", "esrgan_tf.cli.upscale", "--helpfull"],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
  text = run.stdout + run.stderr
  assert "--input_list" in text and "repeat --input" in text and "commas" in text


def test_a_glob_given_twice_is_not_reported_as_matching_nothing(tmp_path):
  for name in ("a.png", "b.png"):
    _rgb(tmp_path / name)
  pattern = str(tmp_path / "*.png")
  sources, problems = batch.expand_inputs([pattern, pattern, str(tmp_path / "a.png")])
  assert [os.path.basename(s.path) for s in sources] == ["a.png", "b.png"]
  assert problems == []
  sources, problems = batch.expand_inputs([str(tmp_path / "*.jpg")])
  assert sources == [] and problems == [(str(tmp_path / "*.jpg"),
                                         "pattern matches no image files")]
