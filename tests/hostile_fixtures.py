"""Attack files and measuring helpers for the hostile suites (tests/test_*hostile*.py).

Files are built here byte by byte or from Pillow's encoders, never downloaded: GIFs with a tiny
first frame and large later ones, many-frame GIFs, animated WebP and APNG, TIFFs with many strips
or pages. `Server` runs `esrgan-serve` in a subprocess whose peak memory (VmHWM) can be reset and
read; `relay` lets a test connect from another loopback address (127/8), so that per-client
limits can be told apart from global ones; `child_peak` runs loader code in a fresh interpreter
and reports its peak-RSS growth.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
from PIL import Image
from tensorflow_serving.apis import prediction_service_pb2_grpc

from esrgan_tf.inference import remote

MB = 1 << 20


# --- GIF, WebP, PNG, TIFF ------------------------------------------------------------------------

def gif_frame(width: int, height: int) -> bytes:
  """One GIF image block (descriptor + LZW data, no local colour table) of a blank image, as
  Pillow encodes it (a 1024² frame is ~1.9 kB)."""
  buffer = io.BytesIO()
  Image.new("P", (width, height)).save(buffer, "GIF")
  data = buffer.getvalue()
  # Pillow writes: header (6), screen descriptor (7), a 2-entry global colour table (6), image.
  assert data[19] == 0x2C and data[-1:] == b";", data[:32]
  return data[19:-1]


def gif(screen: tuple, frames: list, extensions: bytes = b"") -> bytes:
  """A GIF89a with a `screen` (width, height) logical screen, a 2-colour global table, then
  `extensions` and `frames` (image blocks from `gif_frame`)."""
  width, height = screen
  return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0" * 6
          + extensions + b"".join(frames) + b";")


def gif_comment(sub_blocks: int) -> bytes:
  """A comment extension of `sub_blocks` one-byte data sub-blocks (each a graph walk step)."""
  return b"\x21\xfe" + b"\x01x" * sub_blocks + b"\x00"


def animated_webp(frames: int = 3, size=(32, 24)) -> bytes:
  images = [Image.new("RGB", size, (i % 256, (7 * i) % 256, 0)) for i in range(frames)]
  buffer = io.BytesIO()
  images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], lossless=True)
  data = buffer.getvalue()
  assert data[12:16] == b"VP8X" and data[20] & 0x02, data[:32]  # animation flag
  return data


def apng(frames: int = 3, size=(8, 8)) -> bytes:
  images = [Image.new("RGB", size, (i % 256, (7 * i) % 256, 20)) for i in range(frames)]
  buffer = io.BytesIO()
  images[0].save(buffer, "PNG", save_all=True, append_images=images[1:])
  data = buffer.getvalue()
  assert b"acTL" in data
  return data


def _tiff_entry(tag, kind, count, value) -> bytes:
  return struct.pack("<HHII", tag, kind, count, value)


def tiff_many_strips(strips: int, width: int = 1) -> bytes:
  """A little-endian 8-bit grey TIFF of width × `strips` rows, one row per strip (every strip
  legal: RowsPerStrip 1), its StripOffsets and StripByteCounts arrays `strips` LONGs each."""
  entries = 9
  offsets_at = 8 + 2 + 12 * entries + 4
  counts_at = offsets_at + 4 * strips
  pixels_at = counts_at + 4 * strips
  ifd = [_tiff_entry(256, 4, 1, width), _tiff_entry(257, 4, 1, strips),
         _tiff_entry(258, 3, 1, 8), _tiff_entry(259, 3, 1, 1), _tiff_entry(262, 3, 1, 1),
         _tiff_entry(273, 4, strips, offsets_at), _tiff_entry(277, 3, 1, 1),
         _tiff_entry(278, 4, 1, 1), _tiff_entry(279, 4, strips, counts_at)]
  head = b"II*\0" + struct.pack("<IH", 8, entries) + b"".join(ifd) + b"\0\0\0\0"
  offsets = np.arange(pixels_at, pixels_at + width * strips, width, dtype="<u4")
  return (head + offsets.tobytes() + np.full(strips, width, "<u4").tobytes()
          + bytes(width * strips))


def tiff_pages(pages: int) -> bytes:
  """A TIFF of `pages` 1×1 grey pages (one IFD and one pixel each), pixel value = page % 256."""
  out = bytearray(b"II*\0" + struct.pack("<I", 8))
  for page in range(pages):
    at = len(out)
    pixel_at = at + 2 + 12 * 8 + 4
    following = pixel_at + 1 if page < pages - 1 else 0
    ifd = [_tiff_entry(256, 4, 1, 1), _tiff_entry(257, 4, 1, 1), _tiff_entry(258, 3, 1, 8),
           _tiff_entry(259, 3, 1, 1), _tiff_entry(262, 3, 1, 1),
           _tiff_entry(273, 4, 1, pixel_at), _tiff_entry(278, 4, 1, 1),
           _tiff_entry(279, 4, 1, 1)]
    out += struct.pack("<H", 8) + b"".join(ifd) + struct.pack("<I", following)
    out.append(page % 256)
  return bytes(out)


def png(height: int = 4, width: int = 4, value: int = 77) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


# --- esrgan-serve in a subprocess ---------------------------------------------------------------

def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """A served export in a subprocess (its defaults, plus `extra` flags)."""

  def __init__(self, base: str, *extra: str):
    self.rest_port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "esrgan_tf.cli.serve", f"--model_base_path={base}", "--port=0",
         f"--rest_api_port={self.rest_port}", "--file_system_poll_wait_seconds=0", *extra],
        stderr=subprocess.PIPE, text=True, env=env)
    self.lines = []
    self._reader = threading.Thread(target=lambda: self.lines.extend(
        iter(self.proc.stderr.readline, "")), daemon=True)
    self._reader.start()
    deadline = time.monotonic() + 120
    while not any("esrgan-serve ready" in line for line in self.lines):
      assert self.proc.poll() is None, "".join(self.lines)
      assert time.monotonic() < deadline, "esrgan-serve did not start"
      time.sleep(0.1)
    self.grpc_port = int(re.search(r"gRPC on (\d+)", "".join(self.lines)).group(1))
    self.channel = grpc.insecure_channel(
        f"127.0.0.1:{self.grpc_port}", options=remote.grpc_message_options(64))
    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

  def reset_peak(self) -> int:
    """Resets VmHWM to the current RSS (Linux clear_refs 5) and returns it in bytes."""
    with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
      f.write("5")
    return self.peak()

  def peak(self) -> int:
    with open(f"/proc/{self.proc.pid}/status") as f:
      return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024

  def close(self):
    self.channel.close()
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait()


# --- clients -------------------------------------------------------------------------------------

def connect(port: int, source: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
  """A TCP connection to 127.0.0.1:port from `source` (any 127/8 address is local on Linux)."""
  return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0))


def http(port: int, raw: bytes, timeout: float = 30.0, source: str = "127.0.0.1"):
  """Sends raw bytes; (status, parsed JSON body or raw bytes, seconds, raw head).

  Status 0: the connection was dropped without an answer. JSON is parsed strictly (no NaN).
  """
  started = time.monotonic()
  with connect(port, source, timeout) as sock:
    try:
      sock.sendall(raw)
    except OSError:
      pass
    chunks = []
    try:
      while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    except OSError:
      pass
  data = b"".join(chunks)
  elapsed = time.monotonic() - started
  match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
  if not match:
    return 0, data[:200], elapsed, b""
  head, _, body = data.partition(b"\r\n\r\n")

  def strict(name):
    raise ValueError(f"{name} is not JSON")

  try:
    return int(match.group(1)), json.loads(body, parse_constant=strict), elapsed, head
  except ValueError:
    return int(match.group(1)), body[:300], elapsed, head


def post(path: str, body: bytes, *, host: str = "127.0.0.1",
         content_type: str = "application/json", headers: str = "") -> bytes:
  return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
          f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def relay(target_port: int, source: str) -> tuple[int, callable]:
  """A local TCP relay whose upstream connections come from `source` (e.g. 127.0.0.2).

  Lets a gRPC channel (which cannot choose its source address) appear as another client.

  Returns:
    (port to connect to, stop function).
  """
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(64)
  sockets = [listener]

  def pump(src, dst):
    try:
      while data := src.recv(1 << 16):
        dst.sendall(data)
    except OSError:
      pass
    for s in (src, dst):
      try:
        s.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass

  def accept():
    while True:
      try:
        client, _ = listener.accept()
      except OSError:
        return
      upstream = connect(target_port, source)
      sockets.extend((client, upstream))
      threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
      threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

  threading.Thread(target=accept, daemon=True).start()

  def stop():
    for s in sockets:
      try:
        s.close()
      except OSError:
        pass

  return listener.getsockname()[1], stop


# --- loaders in a fresh interpreter -------------------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.monotonic()
try:
  result = repr({call})[:300]
  error = None
except Exception as e:  # reported to the test
  result, error = None, f"{{type(e).__name__}}: {{e}}"
seconds = time.monotonic() - started
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({{"result": result, "error": error, "seconds": seconds, "growth": growth}}))
"""


def child_peak(setup: str, call: str, timeout: float = 120.0) -> dict:
  """Runs `setup` (imports, not measured), then `call` (an expression) in a new interpreter.

  Returns:
    {"result": repr or None, "error": "Type: message" or None, "seconds", "growth": peak-RSS
    growth in bytes during `call`}.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  tests = os.path.dirname(os.path.abspath(__file__))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
  run = subprocess.run([sys.executable, "-c", _CHILD.format(setup=setup, call=call)],
                       capture_output=True, text=True, env=env, timeout=timeout, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  return json.loads(run.stdout.strip().splitlines()[-1])
