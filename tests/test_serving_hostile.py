"""esrgan-serve under attack: each hostile request is refused quickly, with the server's
peak memory (VmHWM, reset before each attack) bounded, and a normal request served afterwards.

The server runs as `python -m esrgan_tf.cli.serve` in a subprocess with its defaults (except the
ports), so the defaults themselves are what is tested, and SIGTERM is a real signal.
"""

import base64
import concurrent.futures
import io
import json
import os
import re
import signal
import socket
import struct
import time

import grpc
from hostile_fixtures import Server
import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.inference import remote
from esrgan_tf.models import RRDBNet
from esrgan_tf.serving import core, defaults, protocol

MB = 1 << 20
# Peak-RSS growth allowed for a refused request: far below what the attacks cost before (400 MB
# to 24 GB), above allocator noise of a Python/TF process.
MAX_GROWTH = 64 * MB


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  base = tmp_path_factory.mktemp("hostile_exports")
  saved_model_lib.export_saved_model(model, str(base), version=1)
  return str(base)


@pytest.fixture(scope="module")
def server(export_base):
  srv = Server(export_base, "--drain_seconds=2")
  yield srv
  srv.close()


# --- helpers -------------------------------------------------------------------------------------

def _request(signature: str, alias: str, proto) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "esrgan"
  request.model_spec.signature_name = signature
  request.inputs[alias].CopyFrom(proto)
  return request


def _proto(dtype, shape, **values) -> tensor_pb2.TensorProto:
  proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))
  for field, value in values.items():
    if field == "tensor_content":
      proto.tensor_content = value
    else:
      getattr(proto, field).extend(value)
  return proto


def _png(h=4, w=4) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), 77, np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


def _gif_bomb(size=15000) -> bytes:
  buffer = io.BytesIO()
  Image.new("P", (1, 1)).save(buffer, "GIF")
  data = bytearray(buffer.getvalue())
  data[6:10] = struct.pack("<HH", size, size)  # Logical screen: size × size.
  return bytes(data)


def _bmp_bomb(size=15000) -> bytes:
  header = struct.pack("<2sIHHI", b"BM", 14 + 40 + 64, 0, 0, 54)
  info = struct.pack("<IiiHHIIiiII", 40, size, -size, 1, 24, 0, 64, 2835, 2835, 0, 0)
  return header + info + b"\x00" * 64


def _grpc_attack(server, request):
  """(status code, details, seconds, peak growth in bytes) of one gRPC request."""
  before = server.reset_peak()
  started = time.monotonic()
  try:
    server.stub.Predict(request, timeout=60)
    code, details = grpc.StatusCode.OK, ""
  except grpc.RpcError as e:
    code, details = e.code(), e.details()
  return code, details, time.monotonic() - started, server.peak() - before


def _connect(port, source="127.0.0.1", timeout=30.0) -> socket.socket:
  """A connection to the server from `source`, another client address on loopback (127/8)."""
  return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0))


def _http(port, raw: bytes, timeout=30.0, source="127.0.0.1"):
  """Sends raw bytes; (status, parsed JSON body or text, seconds). Status 0: connection dropped."""
  started = time.monotonic()
  with _connect(port, source, timeout) as sock:
    try:
      sock.sendall(raw)
    except OSError:
      pass
    chunks = []
    try:
      while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
          break
        chunks.append(chunk)
    except OSError:
      pass
  data = b"".join(chunks)
  elapsed = time.monotonic() - started
  match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
  if not match:
    return 0, data[:200], elapsed
  body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
  try:
    return int(match.group(1)), json.loads(body), elapsed
  except ValueError:
    return int(match.group(1)), body[:200], elapsed


def _post(path: str, body: bytes, headers: str = "") -> bytes:
  return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
          f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def _normal_rest(server):
  body = json.dumps({"instances": np.full((1, 4, 4, 3), 9, np.uint8).tolist()}).encode()
  status, answer, seconds = _http(server.rest_port, _post("/v1/models/esrgan:predict", body))
  assert status == 200, answer
  assert np.asarray(answer["predictions"]).shape == (1, 16, 16, 3)
  return seconds


def _normal_grpc(server):
  request = _request("serving_default", "images",
                     tf.make_tensor_proto(np.full((1, 4, 4, 3), 9, np.uint8)))
  response = server.stub.Predict(request, timeout=60)
  assert tf.make_ndarray(response.outputs["upscaled"]).shape == (1, 16, 16, 3)


# --- gRPC: validate before allocating -----------------------------------------------------------

GRPC_ATTACKS = {
    # 6000²·3 float32 from one value: make_ndarray would allocate 432 MB.
    "float_val broadcast 6000²": (
        "upscale_float", "images",
        lambda: _proto(types_pb2.DT_FLOAT, [1, 6000, 6000, 3], float_val=[0.5]),
        r"exceeds this server's limit"),
    "float_val broadcast within max_pixels": (
        "upscale_float", "images",
        lambda: _proto(types_pb2.DT_FLOAT, [1, 500, 500, 3], float_val=[0.5]),
        r"single broadcast value only for up to 4096"),
    "string_val broadcast 20M": (
        "upscale_bytes", "image_bytes",
        lambda: _proto(types_pb2.DT_STRING, [20_000_000], string_val=[_png()]),
        r"over this server's limit of 64 images"),
    "tensor_content too short": (
        "upscale_float", "images",
        lambda: _proto(types_pb2.DT_FLOAT, [1, 64, 64, 3], tensor_content=b"\0" * 16),
        r"tensor_content has 16 bytes, shape \[1, 64, 64, 3\] of float32 needs exactly 49152"),
    "wrong dtype": (
        "upscale_float", "images",
        lambda: _proto(types_pb2.DT_DOUBLE, [1, 2, 2, 3], double_val=[0.5] * 12),
        r"must be float32, got float64"),
    "negative dim": (
        "upscale_float", "images",
        lambda: _proto(types_pb2.DT_FLOAT, [1, -2, 2, 3], float_val=[0.5]),
        r"negative dimension"),
    "65 images": (
        "upscale_bytes", "image_bytes",
        lambda: _proto(types_pb2.DT_STRING, [65], string_val=[_png()] * 65),
        r"65 images, over this server's limit of 64"),
    "GIF bomb 15000²": (
        "upscale_bytes", "image_bytes",
        lambda: _proto(types_pb2.DT_STRING, [1], string_val=[_gif_bomb()]),
        r"declares 15000×15000|declares more pixels"),
    "BMP bomb 15000²": (
        "upscale_bytes", "image_bytes",
        lambda: _proto(types_pb2.DT_STRING, [1], string_val=[_bmp_bomb()]),
        r"declares 15000×15000|declares more pixels"),
    "not an image": (
        "upscale_bytes", "image_bytes",
        lambda: _proto(types_pb2.DT_STRING, [1], string_val=[b"GIF89a"]),
        r"no screen descriptor"),
}


@pytest.mark.parametrize("name", list(GRPC_ATTACKS))
def test_grpc_attack_refused_quickly_with_bounded_memory(server, name):
  signature, alias, make, message = GRPC_ATTACKS[name]
  code, details, seconds, growth = _grpc_attack(server, _request(signature, alias, make()))
  assert code == grpc.StatusCode.INVALID_ARGUMENT, details
  assert re.search(message, details), details
  assert seconds < 5.0
  assert growth < MAX_GROWTH, f"peak RSS grew {growth / MB:.0f} MB"
  _normal_grpc(server)


def test_grpc_answer_over_the_message_limit_refused_before_running(export_base):
  # A server with an 8 MB message limit: a 256² upscale_float request is within max_pixels, but
  # its ×4 float32 answer (256²·16·3·4 B = 12.6 MB) is not; refused from the estimate, before
  # the model runs. (In process: only the answer bound is under test here.)
  from esrgan_tf.serving import server as server_lib  # pylint: disable=g-import-not-at-top
  with server_lib.ModelServer(export_base, port=0, file_system_poll_wait_seconds=0,
                              limits=defaults.ServerLimits(max_message_mb=8)) as srv, \
      grpc.insecure_channel(f"127.0.0.1:{srv.port}",
                            options=remote.grpc_message_options(64)) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = _request("upscale_float", "images",
                       tf.make_tensor_proto(np.zeros((1, 256, 256, 3), np.float32)))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
      stub.Predict(request, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "answer would be 12.0 MB" in e.value.details()
    assert "--max_message_mb" in e.value.details()
    assert time.monotonic() - started < 5
    assert srv.predictor.inflight == 0
    ok = stub.Predict(_request("serving_default", "images", tf.make_tensor_proto(
        np.zeros((1, 8, 8, 3), np.uint8))), timeout=60)
    assert tf.make_ndarray(ok.outputs["upscaled"]).shape == (1, 32, 32, 3)


# --- REST ----------------------------------------------------------------------------------------

def _rest_attack(server, raw: bytes, timeout=30.0):
  before = server.reset_peak()
  status, body, seconds = _http(server.rest_port, raw, timeout)
  return status, body, seconds, server.peak() - before


def test_rest_float_answer_at_max_pixels_refused_before_computing(server):
  # The 24 GB case: upscale_float at exactly max_pixels; its JSON answer would be
  # 512²·48 numbers of up to 25 characters (315 MB) > 64 MB: refused before the model runs.
  side = int(protocol.SERVER_MAX_PIXELS_PER_REQUEST ** 0.5)
  row = "[" + ",".join(["[0.5,0.5,0.5]"] * side) + "]"
  body = ('{"signature_name":"upscale_float","instances":[[' + ",".join([row] * side)
          + "]]}").encode()
  status, answer, seconds, growth = _rest_attack(server, _post("/v1/models/esrgan:predict",
                                                               body))
  assert status == 400, answer
  assert "answer would be" in answer["error"] and "--max_message_mb" in answer["error"]
  assert seconds < 20.0
  # The body itself (9 MB of text → 786k floats) is parsed; nothing of the answer is built.
  assert growth < 3 * MAX_GROWTH, f"peak RSS grew {growth / MB:.0f} MB"
  _normal_rest(server)


def test_rest_json_answer_is_streamed_and_equal_to_the_model(server, export_base):
  x = np.random.default_rng(0).random((1, 24, 20, 3), np.float32)
  body = json.dumps({"signature_name": "upscale_float", "inputs": x.tolist()}).encode()
  status, answer, _ = _http(server.rest_port, _post("/v1/models/esrgan:predict", body))
  assert status == 200, answer
  direct = tf.saved_model.load(os.path.join(export_base, "1")).signatures["upscale_float"]
  np.testing.assert_allclose(np.asarray(answer["outputs"], np.float32),
                             direct(images=tf.constant(x))["upscaled"].numpy(), atol=1e-6)


REST_ATTACKS = {
    "JSON nested 100,000 deep": (
        lambda: _post("/v1/models/esrgan:predict", b'{"instances":' + b"[" * 100_000
                      + b"]" * 100_000 + b"}"), 400, "nested too deeply"),
    "5,000-digit Content-Length": (
        lambda: b"POST /v1/models/esrgan:predict HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + b"9" * 5000
        + b"\r\n\r\n{}", 400, "Content-Length"),
    "5,000-digit version": (
        lambda: b"GET /v1/models/esrgan/versions/" + b"9" * 5000 + b" HTTP/1.1\r\n\r\n", 400,
        "out of range"),
    "Content-Length 10^15": (
        lambda: b"POST /v1/models/esrgan:predict HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000000"
        b"\r\n\r\n{}", 413, "exceeds the limit"),
    "no Content-Length": (
        lambda: b"POST /v1/models/esrgan:predict HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"\r\n{}", 411, "Content-Length"),
    "many small values": (
        lambda: _post("/v1/models/esrgan:predict", b'{"instances":[' + b"0," * 2_000_000
                      + b"0]}"), 413, "values"),
    "GIF bomb as b64": (
        lambda: _post("/v1/models/esrgan:predict", json.dumps(
            {"signature_name": "upscale_bytes",
             "instances": [{"b64": base64.b64encode(_gif_bomb()).decode()}]}).encode()),
        400, "15000×15000|more pixels"),
    "65 images": (
        lambda: _post("/v1/models/esrgan:predict", json.dumps(
            {"signature_name": "upscale_bytes",
             "instances": [{"b64": base64.b64encode(_png()).decode()}] * 65}).encode()),
        400, "limit of 64"),
    "not JSON": (lambda: _post("/v1/models/esrgan:predict", b"\xff\xfe{"), 400, "not valid JSON"),
}


@pytest.mark.parametrize("name", list(REST_ATTACKS))
def test_rest_attack_answered_with_json_error(server, name):
  make, want, message = REST_ATTACKS[name]
  status, body, seconds, growth = _rest_attack(server, make())
  assert status == want, body
  assert isinstance(body, dict) and re.search(message, body["error"]), body
  assert seconds < 5.0
  assert growth < MAX_GROWTH, f"peak RSS grew {growth / MB:.0f} MB"
  _normal_rest(server)


def test_forty_concurrent_clients_get_answers_not_resets(server):
  body = json.dumps({"instances": np.full((1, 8, 8, 3), 9, np.uint8).tolist()}).encode()
  raw = _post("/v1/models/esrgan:predict", body)
  with concurrent.futures.ThreadPoolExecutor(40) as pool:
    # Forty client addresses (one client address may open a quarter of --max_connections).
    results = list(pool.map(lambda i: _http(server.rest_port, raw, source=f"127.0.1.{i + 1}"),
                            range(40)))
  statuses = [status for status, _, _ in results]
  assert set(statuses) <= {200, 429}, statuses
  assert statuses.count(200) >= 1
  assert max(seconds for _, _, seconds in results) < 30


def _slow_clients(port, count, send_body=True):
  """Clients (from 127.0.2.x) that send headers (and half of a body) then hang."""
  sockets = []
  for index in range(count):
    sock = _connect(port, f"127.0.2.{index + 1}", timeout=5)
    head = (b"POST /v1/models/esrgan:predict HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    sock.sendall(head + (b"x" * 500 if send_body else b""))
    sockets.append(sock)
  return sockets


def test_thirty_slow_clients_do_not_block_a_normal_request(server):
  before = server.reset_peak()
  slow = _slow_clients(server.rest_port, 30)
  try:
    time.sleep(0.5)
    assert _normal_rest(server) < 3.0
    _normal_grpc(server)
  finally:
    for sock in slow:
      sock.close()
  assert server.peak() - before < MAX_GROWTH


def test_connections_beyond_the_limit_get_503(export_base):
  srv = Server(export_base, "--max_connections=4")
  try:
    slow = _slow_clients(srv.rest_port, 4, send_body=False)
    time.sleep(0.3)
    status, body, seconds = _http(srv.rest_port, b"GET /v1/models/esrgan HTTP/1.1\r\n\r\n")
    assert status == 503 and "max_connections" in body["error"] and seconds < 2
    # Slow clients are cut at the header deadline (10 s): each gets a 408 and is closed; then
    # the server answers again.
    for sock in slow:
      sock.settimeout(15)
      answer = b""
      while chunk := sock.recv(4096):
        answer += chunk
      assert answer.startswith(b"HTTP/1.0 408"), answer[:80]
      sock.close()
    status, body, _ = _http(srv.rest_port, b"GET /v1/models/esrgan HTTP/1.1\r\n\r\n")
    assert status == 200, body
  finally:
    srv.close()


# --- version retry (in process: the manager with a loader that needs the whole directory) ------

def test_incomplete_version_is_retried_when_its_files_arrive(tmp_path, monkeypatch):
  monkeypatch.setattr(core, "RETRY_FIRST_SECONDS", 0.2)
  base = tmp_path / "base"
  (base / "1").mkdir(parents=True)
  (base / "1" / "saved_model.pb").write_bytes(b"pb")
  loads = []

  def loader(path, version):
    loads.append(version)
    if not os.path.exists(os.path.join(path, "variables", "variables.index")):
      raise OSError("variables/ missing")
    return core.Servable(version=version, path=path, signature_defs={}, functions={})

  manager = core.ModelManager("m", str(base), poll_wait_seconds=0, loader=loader)
  manager.start()
  assert manager.available_versions() == [] and loads == [1]
  manager.poll_once()  # Unchanged and within the backoff: not retried.
  assert loads == [1]
  (base / "1" / "variables").mkdir()
  (base / "1" / "variables" / "variables.index").write_bytes(b"i")  # The copy completes.
  manager.poll_once()  # The directory changed: retried at once (not only on saved_model.pb).
  assert manager.available_versions() == [1] and loads == [1, 1]


def test_failed_version_is_retried_after_a_backoff(tmp_path, monkeypatch):
  monkeypatch.setattr(core, "RETRY_FIRST_SECONDS", 0.2)
  base = tmp_path / "base"
  (base / "1").mkdir(parents=True)
  (base / "1" / "saved_model.pb").write_bytes(b"pb")
  attempts = []

  def loader(path, version):
    attempts.append(time.monotonic())
    if len(attempts) < 3:
      raise OSError("not yet")  # e.g. a file system that was not mounted.
    return core.Servable(version=version, path=path, signature_defs={}, functions={})

  manager = core.ModelManager("m", str(base), poll_wait_seconds=0, loader=loader)
  manager.start()
  deadline = time.monotonic() + 5
  while not manager.available_versions() and time.monotonic() < deadline:
    manager.poll_once()
    time.sleep(0.02)
  assert manager.available_versions() == [1]
  assert len(attempts) == 3
  gaps = np.diff(attempts)
  assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # Doubling backoff.


# --- SIGTERM with hanging clients (last: it stops the module's server) ---------------------------

def test_sigterm_exits_within_drain_seconds_with_hanging_clients(server):
  slow = _slow_clients(server.rest_port, 30)
  try:
    time.sleep(0.5)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=30)
    elapsed = time.monotonic() - started
  finally:
    for sock in slow:
      sock.close()
  assert code == 0, "".join(server.lines[-20:])
  assert elapsed < 2 + 5, f"exit took {elapsed:.1f} s with --drain_seconds=2"
