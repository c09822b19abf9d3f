"""The model registry's download against hostile mirrors on 127.0.0.1 (hostile suite).

Before the fix a mirror trickling a byte every 2 s was still downloading at 90 s with its staging
folder present, a Content-Length of 10^15 had 300 MB written before the peer hung up, and a
redirect to another port cached a 104-byte junk file under the model's name. Every failure must
leave the cache as it was: no file under the model's name, no staging folder.
"""

import http.server
import io
import os
import threading
import time

import numpy as np
import pytest
import weights_fixtures as wf

from esrgan_tf.models import RRDBNet, SRVGGNetCompact
from esrgan_tf.weights import registry as registry_lib


def _pth(scale_ups: int = 2) -> bytes:
  buffer = io.BytesIO()
  state = wf.random_state(num_blocks=1, num_ups=scale_ups, nf=8, gc=4, seed=5)
  wf.write_zip(buffer, {"params_ema": wf.state_dict(state)})
  return buffer.getvalue()


X4, X2 = _pth(2), _pth(1)


class _Mirror(http.server.BaseHTTPRequestHandler):
  """Answers by the first path component; `other` is the junk server's port."""

  other = 0

  def log_message(self, *args):
    pass

  def _send(self, data: bytes, length=None):
    self.send_response(200)
    self.send_header("Content-Length", str(len(data) if length is None else length))
    self.end_headers()
    self.wfile.write(data)

  def do_GET(self):  # pylint: disable=invalid-name
    kind = self.path.split("/")[1]
    try:
      if kind == "good":
        self._send(X4)
      elif kind == "x2":
        self._send(X2)
      elif kind == "junk":  # Looks like a zip, is not a checkpoint.
        self._send(b"PK\x03\x04" + b"junk" * 25)
      elif kind == "trickle":  # A byte at a time, forever.
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        while True:
          self.wfile.write(b"\x80")
          self.wfile.flush()
          time.sleep(0.1)
      elif kind == "stall":  # Headers, then silence.
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.flush()
        time.sleep(5)
      elif kind == "huge":  # Announces 10^15 bytes and streams zeros.
        self._send(b"", length=10**15)
        while True:
          self.wfile.write(b"\0" * 65536)
      elif kind == "endless":  # No Content-Length, streams until cut.
        self.send_response(200)
        self.end_headers()
        while True:
          self.wfile.write(b"\0" * 65536)
      elif kind == "elsewhere":  # Redirect to another port.
        self.send_response(302)
        self.send_header("Location", f"http://127.0.0.1:{self.other}/x.pth")
        self.send_header("Content-Length", "0")
        self.end_headers()
      elif kind == "here":  # Redirect within the origin.
        self.send_response(302)
        self.send_header("Location", "/good/tiny.pth")
        self.send_header("Content-Length", "0")
        self.end_headers()
      else:
        self.send_error(404)
    except OSError:  # The client gave up.
      pass


def _serve():
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
  server.daemon_threads = True
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


@pytest.fixture(scope="module")
def mirror():
  junk = _serve()
  _Mirror.other = junk.server_address[1]
  server = _serve()
  yield f"http://127.0.0.1:{server.server_address[1]}"
  for s in (server, junk):
    s.shutdown()
    s.server_close()


def _entry(url: str, max_bytes: int = 1 << 20, scale: int = 4,
           architecture: str = "rrdbnet") -> dict:
  return {"tiny": registry_lib.PublishedModel(name="tiny", url=url, filename="tiny.pth",
                                     architecture=architecture, scale=scale, licence="MIT",
                                     source="test", max_bytes=max_bytes)}


def _fails(root, registry, match, within=10.0):
  started = time.monotonic()
  with pytest.raises(registry_lib.RegistryError, match=match):
    registry_lib.fetch("tiny", root=str(root), registry=registry, mirror="")
  assert time.monotonic() - started < within
  assert os.listdir(root) == [], os.listdir(root)  # Nothing cached, no staging left.


def test_a_trickling_mirror_is_cut_by_the_minimum_rate(mirror, tmp_path, monkeypatch):
  monkeypatch.setattr(registry_lib, "RATE_GRACE_SECONDS", 1.0)
  _fails(tmp_path, _entry(f"{mirror}/trickle/tiny.pth"), r"sends \d+ bytes/s after 1 s, below "
         "32,768; nothing was cached", within=5)


def test_a_silent_mirror_is_cut_by_the_read_timeout(mirror, tmp_path, monkeypatch):
  monkeypatch.setattr(registry_lib, "CONNECT_READ_SECONDS", 0.5)
  _fails(tmp_path, _entry(f"{mirror}/stall/tiny.pth"), "timed out", within=4)


def test_a_declared_length_over_the_cap_is_refused_before_reading(mirror, tmp_path):
  _fails(tmp_path, _entry(f"{mirror}/huge/tiny.pth"),
         "announces 1,000,000,000,000,000 bytes, more than this model's file can be "
         r"\(1,048,576\)", within=2)


def test_a_stream_without_length_is_cut_at_the_cap(mirror, tmp_path):
  _fails(tmp_path, _entry(f"{mirror}/endless/tiny.pth"), "sent more than 1,048,576 bytes",
         within=5)


def test_redirects_only_within_the_origin_or_to_https(mirror, tmp_path):
  _fails(tmp_path, _entry(f"{mirror}/elsewhere/tiny.pth"),
         r"refused its redirect to http://127\.0\.0\.1:\d+/x\.pth")
  path = registry_lib.fetch("tiny", root=str(tmp_path), registry=_entry(f"{mirror}/here/tiny.pth"),
                   mirror="")
  with open(path, "rb") as f:
    assert f.read() == X4


def test_the_file_must_be_a_checkpoint_of_the_entry(mirror, tmp_path):
  _fails(tmp_path, _entry(f"{mirror}/junk/tiny.pth"), "is not a usable checkpoint")
  _fails(tmp_path, _entry(f"{mirror}/x2/tiny.pth"),
         r"is a BasicSR ×2 checkpoint, not the registry's RRDBNet \(ESRGAN's generator\) ×4")
  _fails(tmp_path, _entry(f"{mirror}/good/tiny.pth", architecture="srvgg_compact"),
         "not the registry's SRVGGNetCompact")


def test_registry_caps_fit_the_published_architectures():
  # Each cap is twice the float32 weights of the network the entry names, counted on our own
  # models, plus 1 MiB; a file of one state dict (what the releases hold) is about half of it.
  counts = {}

  def parameters(model):
    key = repr(model.arch_config())
    if key not in counts:
      model.build((None, None, None, 3))
      counts[key] = model.count_params()
    return counts[key]

  for entry in registry_lib.REGISTRY.values():
    if entry.architecture == "srvgg_compact":
      convs = 16 if entry.name == "realesr-animevideov3" else 32
      model = SRVGGNetCompact(num_feat=64, num_conv=convs, upscale=entry.scale)
    else:
      blocks = 6 if "anime_6B" in entry.name else 23
      model = RRDBNet(num_features=64, num_blocks=blocks, growth_channels=32, scale=entry.scale,
                      upsampler="nearest",
                      input_unshuffle=2 if entry.architecture == "pixel_unshuffle_rrdbnet" else 1)
    assert entry.max_bytes == 8 * parameters(model) + (1 << 20), entry.name
  # RealESRGAN_x4plus: 16,697,987 parameters, the count published with Real-ESRGAN's model.
  assert counts[repr(RRDBNet(num_features=64, num_blocks=23, growth_channels=32, scale=4,
                             upsampler="nearest").arch_config())] == 16_697_987
  assert np.isclose(registry_lib.REGISTRY["RealESRGAN_x4plus"].max_bytes / 2**20, 128.4, atol=0.1)
