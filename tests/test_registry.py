"""Published models by name (weights.registry) against a local HTTP server on 127.0.0.1."""

import hashlib
import http.server
import io
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
import weights_fixtures as wf

from esrgan_tf.core.errors import ModelError
from esrgan_tf.inference import resolver
from esrgan_tf.weights import registry as registry_lib


def tiny_pth() -> tuple[bytes, dict]:
  """A BasicSR-layout x4 RRDBNet (1 block, nf 8, gc 4) as `.pth` bytes, and its state dict."""
  state = wf.random_state(num_blocks=1, num_ups=2, nf=8, gc=4, seed=5)
  buffer = io.BytesIO()
  wf.write_zip(buffer, {"params_ema": wf.state_dict(state)})
  return buffer.getvalue(), state


def tiny_compact_pth() -> bytes:
  """A ×4 SRVGGNetCompact state dict (nf 4: conv, PReLU, conv to 3·4² channels) as `.pth`."""
  rng = np.random.default_rng(6)
  state = {"body.0.weight": rng.normal(size=(4, 3, 3, 3)), "body.0.bias": np.zeros(4),
           "body.1.weight": np.full(4, 0.25), "body.2.weight": rng.normal(size=(48, 4, 3, 3)),
           "body.2.bias": np.zeros(48)}
  buffer = io.BytesIO()
  wf.write_zip(buffer, {"params": wf.state_dict(
      {k: v.astype(np.float32) for k, v in state.items()})})
  return buffer.getvalue()


PTH, STATE = tiny_pth()
SHA = hashlib.sha256(PTH).hexdigest()
COMPACT_PTH = tiny_compact_pth()


class _Handler(http.server.BaseHTTPRequestHandler):
  def log_message(self, *args):
    pass

  def do_GET(self):  # pylint: disable=invalid-name
    self.server.requests.append(self.path)
    if self.path.startswith("/good/"):
      data = COMPACT_PTH if self.path.startswith("/good/realesr-") else PTH
      self.send_response(200)
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)
    elif self.path.startswith("/html/"):  # What Google Drive answers for a large file.
      page = b"<!DOCTYPE html><html><body>Google Drive can't scan this file</body></html>"
      self.send_response(200)
      self.send_header("Content-Type", "text/html")
      self.send_header("Content-Length", str(len(page)))
      self.end_headers()
      self.wfile.write(page)
    elif self.path.startswith("/interrupted/"):
      # Announces the whole file, sends half of it, then drops the connection.
      self.send_response(200)
      self.send_header("Content-Length", str(len(PTH)))
      self.end_headers()
      self.wfile.write(PTH[:len(PTH) // 2])
      self.wfile.flush()
      self.close_connection = True
    else:
      self.send_error(404)


@pytest.fixture(scope="module")
def http_base():
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  server.requests = []
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield server, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()
  server.server_close()


def registry(url, sha256=SHA, architecture="rrdbnet"):
  entry = registry_lib.PublishedModel(name="tiny", url=url, filename="tiny.pth",
                             architecture=architecture, scale=4, licence="MIT",
                             source="test", sha256=sha256)
  return {"tiny": entry}


def assert_nothing_half_written(root, keep=()):
  assert sorted(os.listdir(root)) == sorted(keep), os.listdir(root)


def test_good_file_is_cached_once_and_checked(http_base, tmp_path):
  server, base = http_base
  reg = registry(f"{base}/good/tiny.pth")
  before = len(server.requests)
  path = registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="")
  assert path == str(tmp_path / "tiny.pth")
  assert pathlib.Path(path).read_bytes() == PTH
  assert_nothing_half_written(tmp_path, keep=["tiny.pth"])
  assert registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="") == path
  assert len(server.requests) == before + 1  # The second call used the cache.
  # A cached file that no longer matches its checksum is fetched again.
  with open(path, "r+b") as f:
    f.write(b"\0\0\0\0")
  registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="")
  assert pathlib.Path(path).read_bytes() == PTH and len(server.requests) == before + 2


def test_checksum_mismatch_deletes_and_refuses(http_base, tmp_path):
  _, base = http_base
  reg = registry(f"{base}/good/tiny.pth", sha256="0" * 64)
  with pytest.raises(registry_lib.RegistryError,
                     match=f"SHA-256 {SHA}, expected 0{{64}}; it was deleted"):
    registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="")
  assert_nothing_half_written(tmp_path)


def test_interrupted_transfer_leaves_nothing(http_base, tmp_path):
  _, base = http_base
  (tmp_path / ".download-999999999-stale").mkdir()  # Left by a killed process: cleaned up.
  reg = registry(f"{base}/interrupted/tiny.pth", sha256=None)
  with pytest.raises(registry_lib.RegistryError, match="cannot download .*/interrupted/tiny.pth"):
    registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="")
  assert_nothing_half_written(tmp_path)


def test_an_html_page_instead_of_the_file_is_refused(http_base, tmp_path):
  _, base = http_base
  reg = registry(f"{base}/html/tiny.pth", sha256=None)
  with pytest.raises(registry_lib.RegistryError,
                     match="not a PyTorch checkpoint .* place it at .*tiny.pth"):
    registry_lib.fetch("tiny", root=str(tmp_path), registry=reg, mirror="")
  assert_nothing_half_written(tmp_path)


def test_404_names_the_url_and_where_to_place_the_file(http_base, tmp_path):
  _, base = http_base
  url = f"{base}/missing/tiny.pth"
  with pytest.raises(registry_lib.RegistryError) as e:
    registry_lib.fetch("tiny", root=str(tmp_path), registry=registry(url), mirror="")
  message = str(e.value)
  assert url in message and "404" in message
  assert f"place it at {tmp_path / 'tiny.pth'}" in message
  assert_nothing_half_written(tmp_path)


def test_offline_unreachable_host(tmp_path):
  with socket_closed_port() as port:
    url = f"http://127.0.0.1:{port}/tiny.pth"
    with pytest.raises(registry_lib.RegistryError, match="Offline\\? .* place it at"):
      registry_lib.fetch("tiny", root=str(tmp_path), registry=registry(url), mirror="")
  assert_nothing_half_written(tmp_path)


class socket_closed_port:  # pylint: disable=invalid-name
  """A port on 127.0.0.1 that nothing listens on (bound, then released)."""

  def __enter__(self):
    import socket  # pylint: disable=g-import-not-at-top
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      return s.getsockname()[1]

  def __exit__(self, *exc):
    return False


def test_real_name_through_the_resolver_with_a_mirror(http_base, tmp_path, monkeypatch):
  server, base = http_base
  monkeypatch.setenv(registry_lib.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv(registry_lib.MIRROR_ENV, f"{base}/good/")
  model = resolver.load_generator("RealESRGAN_x4plus")
  assert server.requests[-1] == "/good/RealESRGAN_x4plus.pth"
  assert (tmp_path / "cache" / "RealESRGAN_x4plus.pth").read_bytes() == PTH
  assert model.scale == 4
  assert model.count_params() == sum(a.size for a in STATE.values())
  weights = {tuple(w.shape): w.numpy() for w in model.weights}
  first = STATE["conv_first.weight"]  # torch OIHW → Keras HWIO.
  np.testing.assert_array_equal(weights[(3, 3, 3, 8)], first.transpose(2, 3, 1, 0))


def test_unsupported_architecture_fails_before_downloading(http_base, tmp_path, monkeypatch):
  server, base = http_base
  before = len(server.requests)
  monkeypatch.setenv(registry_lib.CACHE_ENV, str(tmp_path))
  # Every listed architecture is supported today; a future entry may not be.
  assert ({e.architecture for e in registry_lib.REGISTRY.values()}
          <= registry_lib.SUPPORTED_ARCHITECTURES)
  monkeypatch.setattr(registry_lib, "SUPPORTED_ARCHITECTURES", frozenset({"rrdbnet"}))
  for name in ("RealESRGAN_x2plus", "realesr-general-x4v3"):
    with pytest.raises(ModelError, match=f"{name}: its architecture, .* is not "
                       "supported"):
      resolver.load_engine(name)
    with pytest.raises(registry_lib.RegistryError, match="not supported"):
      registry_lib.fetch(name, mirror=f"{base}/good/")
  assert len(server.requests) == before
  # Flipping the capability list is all it takes (the download then goes ahead).
  monkeypatch.setattr(registry_lib, "SUPPORTED_ARCHITECTURES",
                      frozenset({"rrdbnet", "srvgg_compact"}))
  assert registry_lib.fetch("realesr-general-x4v3", mirror=f"{base}/good/").endswith(
      "realesr-general-x4v3.pth")


def test_existing_path_wins_and_unknown_names_pass_through(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "RealESRGAN_x4plus").mkdir()
  assert registry_lib.resolve_spec("RealESRGAN_x4plus") == "RealESRGAN_x4plus"
  assert registry_lib.resolve_spec("model.keras") == "model.keras"
  with pytest.raises(registry_lib.RegistryError,
                     match="nope: not a published model name; known: RRDB_"):
    registry_lib.lookup("nope")


def test_cache_dir_precedence(tmp_path):
  home = os.path.expanduser("~")
  assert registry_lib.cache_dir({}) == os.path.join(home, ".cache", "esrgan_tf")
  assert registry_lib.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "esrgan_tf")
  environ = {"XDG_CACHE_HOME": "/x", registry_lib.CACHE_ENV: str(tmp_path)}
  assert registry_lib.cache_dir(environ) == str(tmp_path)


def test_mirror_url(monkeypatch):
  entry = registry_lib.REGISTRY["RealESRGAN_x4plus"]
  monkeypatch.delenv(registry_lib.MIRROR_ENV, raising=False)
  assert registry_lib.download_url(entry) == entry.url
  assert registry_lib.download_url(entry, "file:///srv/m/") == "file:///srv/m/RealESRGAN_x4plus.pth"
  monkeypatch.setenv(registry_lib.MIRROR_ENV, "https://m.example/x")
  assert registry_lib.download_url(entry) == "https://m.example/x/RealESRGAN_x4plus.pth"


def test_registry_entries():
  names = {"RealESRGAN_x4plus", "RealESRNet_x4plus", "RealESRGAN_x4plus_anime_6B",
           "RealESRGAN_x2plus", "realesr-animevideov3", "realesr-general-x4v3",
           "realesr-general-wdn-x4v3", "RRDB_ESRGAN_x4", "RRDB_PSNR_x4"}
  assert set(registry_lib.REGISTRY) == names
  for entry in registry_lib.REGISTRY.values():
    assert entry.architecture in registry_lib.ARCHITECTURES
    assert entry.url.startswith("https://")
    assert entry.sha256 is None or len(entry.sha256) == 64


def test_esrgan_models_list_shows_the_cache(tmp_path):
  (tmp_path / "RealESRGAN_x4plus.pth").write_bytes(b"x" * 2_000_000)
  env = dict(os.environ, ESRGAN_TF_HOME=str(tmp_path))
  proc = subprocess.run([sys.executable, "-m", "esrgan_tf.cli.models", "list"],
                        capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr
  lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
  assert "2.0 MB" in lines["RealESRGAN_x4plus"]
  assert " - " in lines["RealESRNet_x4plus"]
  assert "(not yet)" not in lines["RealESRGAN_x2plus"]  # every listed architecture loads
  assert f"cache: {tmp_path}" in proc.stdout
  assert "No published SHA-256" in proc.stdout
