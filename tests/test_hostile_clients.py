"""Clients that hold what others need, and browsers used as attackers (hostile suite).

esrgan-serve runs in a subprocess (short --request_timeout_seconds so that the deadlines show in
seconds); attackers connect from other loopback addresses (127.0.0.2, 127.0.3.x) than the normal
client (127.0.0.1), so per-client shares are what is tested. Each availability attack checks that
normal REST and gRPC requests are answered during and after it, the time, and the server's peak
memory (VmHWM). Before the fix: ten stalled gRPC calls refused every Predict and GetModelStatus,
66 idle sockets answered everyone 503, three trickling 64 MB POSTs made most predicts 429, any
web page could run the model and DNS rebinding reached it.
"""

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time

import grpc
import hostile_fixtures as hf
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

from esrgan_tf.export import saved_model
from esrgan_tf.models import RRDBNet
from esrgan_tf.serving import defaults, errors, rest
from esrgan_tf.serving import server as server_lib

MB = hf.MB
MAX_GROWTH = 100 * MB
REQUEST_SECONDS = 2.0
PREDICT = "/v1/models/esrgan:predict"


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
  keras.utils.set_random_seed(3)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  base = tmp_path_factory.mktemp("clients_exports")
  saved_model.export_saved_model(model, str(base), version=1)
  return str(base)


@pytest.fixture(scope="module")
def server(export_base):
  # gRPC requests get 2 s + 4 MB at 4 MB/s = 3 s to arrive; REST headers 2 s.
  srv = hf.Server(export_base, f"--request_timeout_seconds={REQUEST_SECONDS}",
                  "--max_message_mb=4")
  yield srv
  srv.close()


def _uint8_body(size=4):
  return json.dumps({"instances": np.full((1, size, size, 3), 9, np.uint8).tolist()}).encode()


def _normal_rest(server):
  status, answer, seconds, head = hf.http(server.rest_port, hf.post(PREDICT, _uint8_body()))
  assert status == 200, answer
  assert np.asarray(answer["predictions"]).shape == (1, 16, 16, 3)
  return seconds


def _predict_request():
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "esrgan"
  request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.full((1, 4, 4, 3), 9, np.uint8)))
  return request


def _normal_grpc(server):
  started = time.monotonic()
  stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
  answer = stub.Predict(_predict_request(), timeout=30)
  assert tf.make_ndarray(answer.outputs["upscaled"]).shape == (1, 16, 16, 3)
  status = get_model_status_pb2.GetModelStatusRequest()
  status.model_spec.name = "esrgan"
  model_service_pb2_grpc.ModelServiceStub(server.channel).GetModelStatus(status, timeout=30)
  return time.monotonic() - started


# --- gRPC calls that never send their request ---------------------------------------------------

def test_stalled_grpc_calls_are_cut_and_others_are_served(server):
  port, stop_relay = hf.relay(server.grpc_port, "127.0.0.2")
  attacker = grpc.insecure_channel(f"127.0.0.1:{port}")
  stall = attacker.stream_unary("/tensorflow.serving.PredictionService/Predict",
                                request_serializer=lambda x: x,
                                response_deserializer=lambda x: x)
  release = threading.Event()

  def never():  # A request stream that sends nothing until the test ends.
    release.wait()
    yield from ()

  before = server.reset_peak()
  started = time.monotonic()
  calls = [stall.future(never()) for _ in range(10)]
  try:
    time.sleep(1.5)  # Past STALLED_SECONDS: beyond its 4 waiting calls, 127.0.0.2's are cut.
    during = [_normal_grpc(server), _normal_rest(server)]
    assert max(during) < 5, during
    cut = [c for c in calls if c.done()]
    assert len(cut) == 10 - defaults.GRPC_PENDING_PER_CLIENT, len(cut)
    for call in calls:  # The rest at the receive deadline (2 s + 4 MB at 4 MB/s).
      with pytest.raises(grpc.RpcError) as e:
        call.result(timeout=10)
      assert e.value.code() == grpc.StatusCode.CANCELLED
    assert time.monotonic() - started < REQUEST_SECONDS + 1 + 2
  finally:
    release.set()
    attacker.close()
    stop_relay()
  assert _normal_grpc(server) < 5
  assert server.peak() - before < MAX_GROWTH


def test_a_burst_of_waiting_calls_from_one_address_is_refused_at_once(server):
  channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
  stall = channel.stream_unary("/tensorflow.serving.ModelService/GetModelStatus",
                               request_serializer=lambda x: x,
                               response_deserializer=lambda x: x)
  release = threading.Event()

  def never():
    release.wait()
    yield from ()

  burst = defaults.ServerLimits().grpc_pending_burst  # The server's: --max_inflight 2.
  calls = [stall.future(never()) for _ in range(burst + 4)]
  try:
    refused = []
    deadline = time.monotonic() + 2
    while len(refused) < 4 and time.monotonic() < deadline:
      refused = [c for c in calls if c.done() and c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
      time.sleep(0.05)
    assert len(refused) == 4, [c.code() for c in calls if c.done()]
    assert "are already waiting for their request" in refused[0].details()
  finally:
    release.set()
    channel.close()
  time.sleep(REQUEST_SECONDS + 2)  # Let the watchdog cut the rest before the next test.


def test_a_unary_call_is_still_served_as_before(server):
  # The unary methods are served as stream-unary (identical on the wire): a client that sends its
  # request and half-closes gets the answer; one that half-closes with no request gets an error.
  channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
  empty = channel.stream_unary("/tensorflow.serving.PredictionService/Predict",
                               request_serializer=lambda x: x,
                               response_deserializer=lambda x: x)
  with pytest.raises(grpc.RpcError) as e:
    empty(iter(()), timeout=10)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "without a request message" in e.value.details()
  assert _normal_grpc(server) < 5
  channel.close()


# --- REST: connections and bodies per client ----------------------------------------------------

def test_idle_sockets_from_one_address_take_only_its_share(server):
  before = server.reset_peak()
  idle = []
  refused = 0
  try:
    for _ in range(66):
      sock = hf.connect(server.rest_port, "127.0.0.2", timeout=5)
      idle.append(sock)
    time.sleep(0.5)
    for sock in idle:  # Beyond its share (64 // 4), 127.0.0.2's connections got 503 at once.
      sock.settimeout(0.2)
      try:
        answer = sock.recv(4096)
      except OSError:
        continue
      if answer.startswith(b"HTTP/1.0 503"):
        assert b"--max_connections_per_client" in answer
        refused += 1
    assert refused == 66 - 64 // 4
    assert [_normal_rest(server) < 3 for _ in range(5)] == [True] * 5
  finally:
    for sock in idle:
      sock.close()
  assert server.peak() - before < MAX_GROWTH


def test_idle_sockets_from_many_addresses_are_evicted_for_newcomers(server):
  # 64 addresses, one silent socket each: the table is full. A newcomer evicts the longest silent
  # one; under pressure, any connection silent for 1 s is cut at the next accept, well before the
  # 2 s header deadline would end it.
  idle = []
  try:
    started = time.monotonic()
    for index in range(64):
      idle.append(hf.connect(server.rest_port, f"127.0.3.{index + 1}", timeout=5))
    time.sleep(0.3)
    for _ in range(5):
      assert _normal_rest(server) < 3
    time.sleep(max(0.0, started + 1.2 - time.monotonic()))
    _normal_rest(server)  # An accept under pressure: the silent ones are cut now.
    closed = 0
    for sock in idle:
      sock.settimeout(0.01)
      try:
        closed += sock.recv(1) == b""
      except OSError:  # Still open (timeout) or reset.
        pass
    assert time.monotonic() - started < REQUEST_SECONDS, "too slow to tell eviction apart"
    assert closed >= 60, closed
  finally:
    for sock in idle:
      sock.close()
  _normal_rest(server)


def test_trickling_bodies_do_not_take_the_body_budget(server):
  # Three POSTs declaring 4 MB (--max_message_mb), sending a byte every 0.3 s: before, each
  # reserved its declared length and others got 429; bodies now reserve what has arrived.
  before = server.reset_peak()
  stop = threading.Event()
  tricklers = []
  for _ in range(3):
    sock = hf.connect(server.rest_port, "127.0.0.2", timeout=10)
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/"
                 f"json\r\nContent-Length: {4 << 20}\r\n\r\n".encode())
    tricklers.append(sock)

  def trickle():
    while not stop.wait(0.3):
      for sock in tricklers:
        try:
          sock.send(b" ")
        except OSError:
          pass

  thread = threading.Thread(target=trickle, daemon=True)
  thread.start()
  try:
    statuses = []
    started = time.monotonic()
    while time.monotonic() - started < 3:
      statuses.append(hf.http(server.rest_port, hf.post(PREDICT, _uint8_body()))[0])
    assert set(statuses) == {200}, statuses
    # The tricklers are cut at their body deadline (2 s + 4 MB at 4 MB/s) with a 408.
    for sock in tricklers:
      sock.settimeout(10)
      answer = b""
      try:
        while chunk := sock.recv(4096):
          answer += chunk
      except OSError:
        pass
      assert answer.startswith(b"HTTP/1.0 408"), answer[:60]
  finally:
    stop.set()
    for sock in tricklers:
      sock.close()
  assert server.peak() - before < MAX_GROWTH


# --- browsers as attackers: content type, Host, Origin ------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", ""])
def test_cross_origin_simple_requests_cannot_run_the_model(server, content_type):
  raw = hf.post(PREDICT, _uint8_body(), content_type=content_type)
  if not content_type:
    raw = raw.replace(b"Content-Type: \r\n", b"")
  status, answer, _, _ = hf.http(server.rest_port, raw)
  assert status == 415, answer
  assert "Content-Type: application/json" in answer["error"]


@pytest.mark.parametrize("host, method, want", [
    ("evil.example:8501", "POST", 403), ("evil.example", "GET", 403),
    ("localhost", "POST", 200), (f"localhost:{8501}", "GET", 200), ("127.0.0.1:1", "GET", 200),
    ("[::1]:8501", "GET", 200), ("LOCALHOST", "GET", 200),
])
def test_host_header_against_dns_rebinding(server, host, method, want):
  raw = (hf.post(PREDICT, _uint8_body(), host=host) if method == "POST" else
         f"GET /v1/models/esrgan HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
  status, answer, _, _ = hf.http(server.rest_port, raw)
  assert status == want, answer
  if want == 403:
    assert "--allowed_hosts" in answer["error"]


def test_web_page_and_origin_are_checked_too(server):
  status, _, _, _ = hf.http(server.rest_port, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
  assert status == 403
  evil = hf.post(PREDICT, _uint8_body(), headers="Origin: http://evil.example\r\n")
  assert hf.http(server.rest_port, evil)[0] == 403
  same = hf.post(PREDICT, _uint8_body(),
                 headers=f"Origin: http://127.0.0.1:{server.rest_port}\r\n")
  assert hf.http(server.rest_port, same)[0] == 200
  twice = hf.post(PREDICT, _uint8_body(), headers="Host: evil.example\r\n")
  assert hf.http(server.rest_port, twice)[0] == 400


def test_allowed_hosts_names_extra_hosts(export_base):
  limits = defaults.ServerLimits(allowed_hosts=("SR.Example.org",))
  with server_lib.ModelServer(export_base, port=0, rest_api_port=0, host="127.0.0.1",
                              file_system_poll_wait_seconds=0, limits=limits) as srv:
    get = "GET /v1/models/esrgan HTTP/1.1\r\nHost: {}\r\n\r\n"
    assert hf.http(srv.rest_api_port, get.format("sr.example.org").encode())[0] == 200
    assert hf.http(srv.rest_api_port, get.format("other.example.org").encode())[0] == 403
  assert rest.host_allowed("anything", "0.0.0.0", ("*",))
  assert rest.host_allowed("localhost", "0.0.0.0", ())
  assert rest.host_allowed("myhost", "myhost", ())
  assert not rest.host_allowed("localhost", "10.1.2.3", ())
  assert rest.host_allowed("10.9.9.9", "10.1.2.3", ())  # An IP literal cannot be rebound.


# --- smaller points ------------------------------------------------------------------------------

def _raw_answer(server, raw):
  with hf.connect(server.rest_port) as sock:
    sock.sendall(raw)
    data = b""
    while chunk := sock.recv(1 << 16):
      data += chunk
  head, _, body = data.partition(b"\r\n\r\n")
  return head, body


def test_nan_is_neither_read_nor_written(server):
  nan = b'{"signature_name":"upscale_float","instances":[[[[NaN,0.5,0.5]]]]}'
  status, answer, _, _ = hf.http(server.rest_port, hf.post(PREDICT, nan))
  assert status == 400 and "NaN is not JSON" in answer["error"], answer
  # Finite inputs whose answer overflows float32: an error in strict JSON, not bare tokens.
  huge = json.dumps({"signature_name": "upscale_float",
                     "instances": np.full((1, 4, 4, 3), 3e38).tolist()}).encode()
  head, body = _raw_answer(server, hf.post(PREDICT, huge))
  assert head.startswith(b"HTTP/1.0 400"), head

  def strict(name):
    raise ValueError(name)

  assert "NaN or Infinity" in json.loads(body, parse_constant=strict)["error"]


@pytest.mark.parametrize("instances", ["[[[[true,1,2]]]]", "[[[[1,2,false]]]]",
                                       "[[[[true,true,true]]]]"])
def test_json_booleans_are_not_numbers(server, instances):
  body = ('{"instances":' + instances + "}").encode()
  status, answer, _, _ = hf.http(server.rest_port, hf.post(PREDICT, body))
  assert status == 400 and "not true/false" in answer["error"], answer


@pytest.mark.parametrize("extra, message", [
    ("Transfer-Encoding: chunked\r\n", "Transfer-Encoding is not accepted"),
    ("Content-Length: 7\r\n", "more than one Content-Length"),
])
def test_conflicting_framing_headers_are_a_400(server, extra, message):
  status, answer, _, _ = hf.http(server.rest_port, hf.post(PREDICT, _uint8_body(), headers=extra))
  assert status == 400 and message in answer["error"], answer


def test_json_answers_carry_nosniff(server):
  head, _ = _raw_answer(server, hf.post(PREDICT, _uint8_body()))
  assert b"X-Content-Type-Options: nosniff" in head
  head, _ = _raw_answer(server, b"GET /v1/models/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
  assert head.startswith(b"HTTP/1.0 404") and b"X-Content-Type-Options: nosniff" in head


def test_long_names_are_not_echoed_back_whole(server):
  name = "m" * 3_000_000
  request = _predict_request()
  request.model_spec.name = name
  stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(request, timeout=30)
  assert e.value.code() == grpc.StatusCode.NOT_FOUND
  assert len(e.value.details()) < 2 * errors.MAX_QUOTED_CHARS + 200
  assert "(3000000 characters)" in e.value.details()
  body = json.dumps({"signature_name": "s" * 3_000_000, "instances": [[[[1, 2, 3]]]]}).encode()
  head, answer = _raw_answer(server, hf.post(PREDICT, body))
  assert head.startswith(b"HTTP/1.0 400") and len(answer) < 1000, len(answer)
  body = json.dumps({"inputs": {"x" * 3_000_000: [1]}}).encode()
  head, answer = _raw_answer(server, hf.post(PREDICT, body))
  assert head.startswith(b"HTTP/1.0 400") and len(answer) < 2000, len(answer)


# --- the limits object ---------------------------------------------------------------------------

def test_server_limits_derive_shares_and_refuse_nonsense():
  limits = defaults.ServerLimits()
  assert limits.max_message_bytes == 64 << 20
  assert limits.body_budget_bytes == 3 * (64 << 20)
  assert limits.body_bytes_per_client == 96 << 20  # half of the budget
  assert limits.connections_per_client == 16
  assert limits.grpc_receive_seconds == 10 + 16  # 10 s + 64 MB at 4 MB/s
  assert limits.grpc_pending_burst == 16
  assert defaults.ServerLimits(max_message_mb=4096).max_message_bytes == 2**31 - 1
  assert defaults.ServerLimits(allowed_hosts=("A.B",)).allowed_hosts == ("a.b",)
  with pytest.raises(ValueError, match="max_inflight must be ≥ 1"):
    defaults.ServerLimits(max_inflight=0)
  with pytest.raises(ValueError, match="max_connections_per_client must be ≥ 1"):
    defaults.ServerLimits(max_connections_per_client=0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    limits.max_pixels = 1


def test_cli_builds_the_limits_from_flags(export_base):
  # In a subprocess: every command defines its flags at import (--max_pixels is also
  # esrgan-export's, which other tests import in process).
  code = """
import json, sys
from absl import flags
from esrgan_tf.cli import serve
from esrgan_tf.serving import server as server_lib
def fake(base, name, **kwargs):
  limits = kwargs["limits"]
  print(json.dumps({"kwargs": sorted(kwargs), "limits": [limits.max_inflight,
      limits.connections_per_client, limits.request_seconds, list(limits.allowed_hosts)]}))
  raise SystemExit(0)
server_lib.ModelServer = fake
serve.signal.signal = lambda *args: None
flags.FLAGS(sys.argv)
serve.main(["esrgan-serve"])
"""
  run = subprocess.run(
      [sys.executable, "-c", code, f"--model_base_path={export_base}", "--max_inflight=3",
       "--max_connections_per_client=5", "--request_timeout_seconds=4",
       "--allowed_hosts=a.example,b.example"], capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  built = json.loads(run.stdout.strip().splitlines()[-1])
  assert built["limits"] == [3, 5, 4.0, ["a.example", "b.example"]]
  assert not re.search("max_pixels|max_inflight", " ".join(built["kwargs"]))  # inside `limits`


def test_client_of_grpc_peers():
  assert server_lib.client_of("ipv4:127.0.0.2:5000") == "127.0.0.2"
  assert server_lib.client_of("ipv6:[::1]:5000") == "::1"
  assert server_lib.client_of("unix:/tmp/s") == "unix:/tmp/s"
