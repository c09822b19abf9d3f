"""esrgan-serve against the official tensorflow-serving-api stubs, REST, versions and shutdown."""

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
  get_model_metadata_pb2,
  get_model_status_pb2,
  model_service_pb2_grpc,
  predict_pb2,
  prediction_service_pb2_grpc,
)

import esrgan_tf
from esrgan_tf.core.errors import ModelError
from esrgan_tf.export import saved_model as saved_model_lib
from esrgan_tf.inference import remote
from esrgan_tf.models import RRDBNet
from esrgan_tf.serving import core, defaults, rest_json
from esrgan_tf.serving import server as server_lib

AVAILABLE, END = 30, 50  # ModelVersionStatus.State values.
MAX_PIXELS = 2 * 64 * 64  # Small server limit so that the over-limit case stays cheap.


def tiny_generator(seed):
  keras.utils.set_random_seed(seed)
  model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=4)
  model.build((None, None, None, 3))
  return model


def wait_for(predicate, timeout=60.0, what="condition"):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def generator():
  return tiny_generator(1)


@pytest.fixture(scope="module")
def export_base(generator, tmp_path_factory):
  base = tmp_path_factory.mktemp("exports")
  saved_model_lib.export_saved_model(generator, str(base), version=1)
  return str(base)


@pytest.fixture(scope="module")
def direct(export_base):
  """The SavedModel called in-process: what every served answer must equal."""
  return tf.saved_model.load(os.path.join(export_base, "1")).signatures


@pytest.fixture(scope="module")
def server(export_base):
  srv = server_lib.ModelServer(export_base, "esrgan", port=0, rest_api_port=0, host="127.0.0.1",
                               file_system_poll_wait_seconds=0,
                               limits=defaults.ServerLimits(max_pixels=MAX_PIXELS))
  srv.start()
  yield srv
  srv.stop(grace=5)


def channel_for(port):
  return grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=remote.grpc_message_options(64))


@pytest.fixture(scope="module")
def stub(server):
  with channel_for(server.port) as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(array, signature="", key="images", name="esrgan", version=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
  return request


def rest(srv, path, body=None):
  """(HTTP status, decoded JSON) of a REST call."""
  data = None if body is None else (body if isinstance(body, bytes) else
                                    json.dumps(body).encode())
  headers = {} if data is None else {"Content-Type": "application/json"}
  request = urllib.request.Request(f"http://127.0.0.1:{srv.rest_api_port}{path}", data=data,
                                   headers=headers)
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def sample_uint8(h, w, seed=0):
  photo = np.asarray(Image.open(os.path.join(esrgan_tf.SAMPLES_DIR, "val", "chelsea.png"))
                     .convert("RGB"))
  y, x = 37 + seed, 91 + seed
  return photo[y:y + h, x:x + w]


# --- Predict, metadata, status --------------------------------------------------------------

def test_predict_float_matches_direct_call_and_keras(stub, direct, generator):
  x = sample_uint8(12, 20)[None].astype(np.float32) / 255.0
  response = stub.Predict(predict_request(x, "upscale_float"), timeout=60)
  y = tf.make_ndarray(response.outputs["upscaled"])
  assert y.shape == (1, 48, 80, 3) and y.dtype == np.float32
  np.testing.assert_array_equal(y, direct["upscale_float"](images=tf.constant(x))["upscaled"])
  np.testing.assert_allclose(y, generator(x).numpy(), atol=1e-6)
  assert response.model_spec.name == "esrgan"
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == "upscale_float"


def test_predict_uint8_default_signature_matches_direct_call(stub, direct, generator):
  x = np.stack([sample_uint8(10, 14, 0), sample_uint8(10, 14, 5)])
  response = stub.Predict(predict_request(x), timeout=60)
  y = tf.make_ndarray(response.outputs["upscaled"])
  assert y.dtype == np.uint8 and y.shape == (2, 40, 56, 3)
  np.testing.assert_array_equal(y, direct["serving_default"](images=tf.constant(x))["upscaled"])
  # Independent of the graph: clip, ×255, round of the Keras output (within rounding ties).
  expected = np.round(np.clip(generator(x.astype(np.float32) / 255.0).numpy(), 0, 1) * 255)
  assert np.abs(y.astype(np.int32) - expected).max() <= 1
  assert response.model_spec.signature_name == "serving_default"


def test_output_filter_and_version_pin(stub):
  x = np.zeros((1, 4, 4, 3), np.uint8)
  request = predict_request(x, version=1)
  request.output_filter.append("upscaled")
  response = stub.Predict(request, timeout=60)
  assert list(response.outputs) == ["upscaled"] and response.model_spec.version.value == 1


def test_metadata_lists_the_three_signatures(stub, server):
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = "esrgan"
  response = stub.GetModelMetadata(request, timeout=30)
  signatures = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signatures)
  defs = signatures.signature_def
  assert {"serving_default", "upscale_float", "upscale_bytes"} <= set(defs)
  assert defs["serving_default"].inputs["images"].dtype == tf.uint8.as_datatype_enum
  assert defs["upscale_float"].outputs["upscaled"].dtype == tf.float32.as_datatype_enum
  assert defs["upscale_bytes"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum
  assert response.model_spec.version.value == 1
  status, body = rest(server, "/v1/models/esrgan/metadata")
  assert status == 200 and body["model_spec"]["version"] == "1"
  rest_defs = body["metadata"]["signature_def"]["signature_def"]
  assert rest_defs["upscale_bytes"]["outputs"]["output_bytes"]["dtype"] == "DT_STRING"


def test_busy_port_is_an_error(server, export_base):
  with pytest.raises(OSError, match="cannot bind gRPC port"):
    server_lib.ModelServer(export_base, port=server.port, host="127.0.0.1",
                           file_system_poll_wait_seconds=0).start()


def test_model_status_available(server):
  with channel_for(server.port) as channel:
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "esrgan"
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert (status.version, status.state, status.status.error_code) == (1, AVAILABLE, 0)
    request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as e:
      models.GetModelStatus(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
  # TF Serving's JSON (api_rest.md example).
  assert rest(server, "/v1/models/esrgan") == (200, {"model_version_status": [
      {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                        "error_message": ""}}]})
  assert rest(server, "/v1/models/esrgan/versions/1")[0] == 200
  assert rest(server, "/v1/models/other")[0] == 404


# --- REST predict ---------------------------------------------------------------------------

def png_bytes(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def test_rest_b64_png_round_trip(server, direct):
  image = sample_uint8(9, 13)
  status, body = rest(server, "/v1/models/esrgan:predict", {
      "signature_name": "upscale_bytes",
      "instances": [{"b64": base64.b64encode(png_bytes(image)).decode()}]})
  assert status == 200, body
  (prediction,) = body["predictions"]
  out = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["b64"]))))
  assert out.shape == (36, 52, 3)
  expected = direct["serving_default"](images=tf.constant(image[None]))["upscaled"][0]
  np.testing.assert_array_equal(out, expected)


def test_rest_instances_and_inputs_uint8(server, direct):
  x = np.stack([sample_uint8(6, 7, 0), sample_uint8(6, 7, 3)])
  expected = direct["serving_default"](images=tf.constant(x))["upscaled"].numpy()
  status, body = rest(server, "/v1/models/esrgan/versions/1:predict", {"instances": x.tolist()})
  assert status == 200, body
  np.testing.assert_array_equal(np.asarray(body["predictions"]), expected)
  status, body = rest(server, "/v1/models/esrgan:predict",
                      {"signature_name": "serving_default", "inputs": {"images": x.tolist()}})
  assert status == 200, body
  np.testing.assert_array_equal(np.asarray(body["outputs"]), expected)


def test_rest_json_mapping_with_several_named_tensors():
  from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=g-import-not-at-top
  signature = meta_graph_pb2.SignatureDef()
  signature.inputs["x"].dtype = tf.float32.as_datatype_enum
  signature.inputs["tag"].dtype = tf.string.as_datatype_enum
  body = {"instances": [{"x": [1.5, 2], "tag": "a"}, {"x": [3, 4], "tag": {"b64": "/w=="}}]}
  inputs, row = rest_json.parse_predict_body(body, signature)
  assert row and inputs["x"].dtype == np.float32
  np.testing.assert_array_equal(inputs["x"], [[1.5, 2], [3, 4]])
  assert inputs["tag"].tolist() == [b"a", b"\xff"]
  columnar, row = rest_json.parse_predict_body({"inputs": {"x": [[0.5]], "tag": ["z"]}}, signature)
  assert not row and columnar["x"].shape == (1, 1) and columnar["tag"].tolist() == [b"z"]
  outputs = {"a": np.array([[1, 2], [3, 4]], np.int32),
             "b_bytes": np.array([b"x", b"\xff"], object)}  # base64: "eA==", "/w==".
  assert rest_json.format_predict_response(outputs, row=True) == {"predictions": [
      {"a": [1, 2], "b_bytes": {"b64": "eA=="}}, {"a": [3, 4], "b_bytes": {"b64": "/w=="}}]}
  assert rest_json.format_predict_response(outputs, row=False) == {"outputs": {
      "a": [[1, 2], [3, 4]], "b_bytes": [{"b64": "eA=="}, {"b64": "/w=="}]}}


# --- malformed requests ---------------------------------------------------------------------

GRPC_BAD = [
    ("unknown model", dict(array=np.zeros((1, 4, 4, 3), np.uint8), name="nope"),
     grpc.StatusCode.NOT_FOUND, "nope"),
    ("unknown signature", dict(array=np.zeros((1, 4, 4, 3), np.uint8), signature="x4"),
     grpc.StatusCode.INVALID_ARGUMENT, "\"x4\" not found"),
    ("unknown input key", dict(array=np.zeros((1, 4, 4, 3), np.uint8), key="image"),
     grpc.StatusCode.INVALID_ARGUMENT, "missing ['images'], unexpected ['image']"),
    ("wrong dtype", dict(array=np.zeros((1, 4, 4, 3), np.float64)),
     grpc.StatusCode.INVALID_ARGUMENT, "must be uint8, got float64"),
    ("wrong rank", dict(array=np.zeros((4, 4, 3), np.uint8)),
     grpc.StatusCode.INVALID_ARGUMENT, "must have rank 4"),
    ("wrong channels", dict(array=np.zeros((1, 4, 4, 4), np.float32), signature="upscale_float"),
     grpc.StatusCode.INVALID_ARGUMENT, "must have 3 channels"),
    ("over the pixel limit", dict(array=np.zeros((3, 64, 64, 3), np.uint8)),
     grpc.StatusCode.INVALID_ARGUMENT, "exceeds this server's limit of 8192"),
    ("bytes that do not decode", dict(array=np.array([b"not an image"], object),
                                      signature="upscale_bytes", key="image_bytes"),
     grpc.StatusCode.INVALID_ARGUMENT, "image"),
    ("version not loaded", dict(array=np.zeros((1, 4, 4, 3), np.uint8), version=7),
     grpc.StatusCode.NOT_FOUND, "Specific(esrgan, 7)"),
]


@pytest.mark.parametrize("case, kwargs, code, message", GRPC_BAD, ids=[c[0] for c in GRPC_BAD])
def test_grpc_bad_request_is_refused_and_server_keeps_serving(stub, case, kwargs, code, message):
  del case
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(predict_request(**kwargs), timeout=60)
  assert e.value.code() == code
  assert message in e.value.details()
  ok = stub.Predict(predict_request(np.zeros((1, 4, 4, 3), np.uint8)), timeout=60)
  assert tf.make_ndarray(ok.outputs["upscaled"]).shape == (1, 16, 16, 3)


def test_grpc_bad_output_filter_and_metadata_field(stub):
  request = predict_request(np.zeros((1, 4, 4, 3), np.uint8))
  request.output_filter.append("nope")
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(request, timeout=60)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.value.details()
  metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
  metadata.model_spec.name = "esrgan"
  with pytest.raises(grpc.RpcError) as e:
    stub.GetModelMetadata(metadata, timeout=30)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "graph" in e.value.details()


REST_BAD = [
    ("not json", "/v1/models/esrgan:predict", b"{nope", 400, "not valid JSON"),
    ("both formats", "/v1/models/esrgan:predict", {"instances": [1], "inputs": [1]}, 400,
     "exactly one"),
    ("unknown model", "/v1/models/nope:predict", {"instances": [[[[0, 0, 0]]]]}, 404, "nope"),
    ("unknown signature", "/v1/models/esrgan:predict",
     {"signature_name": "x4", "instances": [[[[0, 0, 0]]]]}, 400, "\"x4\" not found"),
    ("floats for uint8", "/v1/models/esrgan:predict", {"instances": [[[[0.5, 0, 0]]]]}, 400,
     "takes integers"),
    ("out of uint8 range", "/v1/models/esrgan:predict", {"instances": [[[[300, 0, 0]]]]}, 400,
     "outside the uint8 range"),
    ("ragged", "/v1/models/esrgan:predict", {"instances": [[[[0, 0, 0]], [[0, 0]]]]}, 400,
     "rectangular"),
    ("wrong channels", "/v1/models/esrgan:predict", {"instances": [[[[0, 0]]]]}, 400,
     "must have 3 channels"),
    ("bad base64", "/v1/models/esrgan:predict",
     {"signature_name": "upscale_bytes", "instances": [{"b64": "@@@"}]}, 400, "base64"),
    ("undecodable bytes", "/v1/models/esrgan:predict",
     {"signature_name": "upscale_bytes", "instances": [{"b64": "aGVsbG8="}]}, 400, "image"),
    ("version not loaded", "/v1/models/esrgan/versions/3:predict", {"instances": [[[[0, 0, 0]]]]},
     404, "Specific(esrgan, 3)"),
    ("classify", "/v1/models/esrgan:classify", {"examples": []}, 501, ":predict"),
]


@pytest.mark.parametrize("case, path, body, status, message", REST_BAD,
                         ids=[c[0] for c in REST_BAD])
def test_rest_bad_request_is_refused(server, case, path, body, status, message):
  del case
  got, payload = rest(server, path, body)
  assert got == status and message in payload["error"], payload
  assert rest(server, "/v1/models/esrgan:predict", {"instances": [[[[1, 2, 3]]]]})[0] == 200


# --- remote_engine ------------------------------------------------------------------------

def test_remote_engine_matches_direct_call(server, direct):
  upscaler = remote.remote_engine(f"127.0.0.1:{server.port}", timeout=30)
  assert upscaler.scale == 4 and upscaler.info["version"] == 1
  x = sample_uint8(5, 9)[None].astype(np.float32) / 255.0
  np.testing.assert_array_equal(upscaler(x),
                                direct["upscale_float"](images=tf.constant(x))["upscaled"])
  uint8 = remote.remote_engine(f"127.0.0.1:{server.port}", signature_name="serving_default")
  expected = direct["serving_default"](images=tf.constant(sample_uint8(5, 9)[None]))["upscaled"]
  np.testing.assert_array_equal(np.round(uint8(x) * 255), expected)


def test_remote_engine_errors(server):
  with pytest.raises(ModelError, match="no signature 'x4'"):
    remote.remote_engine(f"127.0.0.1:{server.port}", signature_name="x4")
  with pytest.raises(ModelError, match="NOT_FOUND"):
    remote.remote_engine(f"127.0.0.1:{server.port}", model_name="nope")
  with pytest.raises(ModelError, match="takes string"):
    remote.remote_engine(f"127.0.0.1:{server.port}", signature_name="upscale_bytes")
  upscaler = remote.remote_engine(f"127.0.0.1:{server.port}")
  with pytest.raises(remote.RemoteError, match="INVALID_ARGUMENT.*limit") as e:
    upscaler(np.zeros((3, 64, 64, 3), np.float32))
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_remote_engine_unreachable():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # Bound but not listening: nothing answers.
    with pytest.raises(ModelError, match="no gRPC server reachable"):
      remote.remote_engine(f"127.0.0.1:{port}", timeout=1.0)


# --- a model that blocks until the test opens a gate ------------------------------------------

class _GateModule(tf.Module):
  """Identity on images that writes `<gate>.started`, then spins until the file `gate` exists."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                tf.TensorSpec([], tf.string)])
  def serve(self, images, gate):
    started = tf.io.write_file(gate + ".started", "")
    with tf.control_dependencies([started]):
      spins = tf.while_loop(lambda i: tf.equal(tf.size(tf.io.matching_files(gate)), 0),
                            lambda i: i + 1, [tf.constant(0)])[0]
    with tf.control_dependencies([spins]):
      return {"upscaled": tf.identity(images)}


@pytest.fixture(scope="module")
def gate_base(tmp_path_factory):
  base = tmp_path_factory.mktemp("gate")
  module = _GateModule()
  tf.saved_model.save(module, str(base / "1"),
                      signatures={"serving_default": module.serve.get_concrete_function()})
  return str(base)


def gated_request(gate):
  request = predict_request(np.full((1, 2, 2, 3), 0.25, np.float32))
  request.inputs["gate"].CopyFrom(tf.make_tensor_proto(gate))
  return request


def test_resource_exhausted_when_inflight_is_full(gate_base, tmp_path):
  gate = str(tmp_path / "gate")
  with server_lib.ModelServer(gate_base, port=0, rest_api_port=0, host="127.0.0.1",
                              file_system_poll_wait_seconds=0,
                              limits=defaults.ServerLimits(max_inflight=1)) as srv:
    with channel_for(srv.port) as channel:
      stub_ = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      first = stub_.Predict.future(gated_request(gate), timeout=60)
      wait_for(lambda: os.path.exists(gate + ".started"), what="the first request to start")
      with pytest.raises(grpc.RpcError) as e:
        stub_.Predict(gated_request(gate), timeout=60)
      assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
      assert "max_inflight" in e.value.details()
      status, body = rest(srv, "/v1/models/esrgan:predict",
                          {"instances": [{"images": [[[0, 0, 0]]], "gate": gate}]})
      assert status == 429 and "busy" in body["error"]
      open(gate, "w").close()
      np.testing.assert_array_equal(tf.make_ndarray(first.result().outputs["upscaled"]), 0.25)
      again = stub_.Predict(gated_request(gate), timeout=60)  # The slot is free again.
      assert again.model_spec.version.value == 1


def test_predictor_skips_the_model_for_a_client_that_is_gone(tmp_path):
  from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=g-import-not-at-top
  (tmp_path / "1").mkdir()
  (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
  signature = meta_graph_pb2.SignatureDef()
  signature.inputs["images"].dtype = tf.float32.as_datatype_enum
  signature.inputs["images"].tensor_shape.unknown_rank = True
  signature.outputs["upscaled"].dtype = tf.float32.as_datatype_enum
  calls = []

  def double(images):
    calls.append(images.shape)
    return {"upscaled": images * 2}

  manager = core.ModelManager("m", str(tmp_path), poll_wait_seconds=0, loader=lambda p, v: (
      core.Servable(v, p, {"serving_default": signature}, {"serving_default": double})))
  manager.start()
  predictor = core.Predictor(manager, max_inflight=1)
  x = {"images": np.ones((1, 2, 2, 3), np.float32)}
  with pytest.raises(core.ServingError) as e:
    predictor.predict("m", None, "", x, is_active=lambda: False)
  assert e.value.code == grpc.StatusCode.CANCELLED and calls == []
  version, name, out = predictor.predict("m", None, "", x, is_active=lambda: True)
  assert (version, name, calls) == (1, "serving_default", [(1, 2, 2, 3)])
  np.testing.assert_array_equal(out["upscaled"], 2.0)
  assert predictor.inflight == 0


# --- versions -------------------------------------------------------------------------------

def test_manager_loads_new_version_before_unloading_old_one(tmp_path):
  for name in ("1", ".tmp-7", "8.old"):  # Only integer names are versions.
    (tmp_path / name).mkdir()
    (tmp_path / name / "saved_model.pb").write_bytes(b"")
  release = threading.Event()

  def loader(path, version):  # A fake SavedModel; version 2 loads until the test says so.
    if version == 2:
      assert release.wait(30)
    return core.Servable(version, path, signature_defs={}, functions={})

  manager = core.ModelManager("m", str(tmp_path), poll_wait_seconds=0, loader=loader)
  manager.start()
  assert manager.available_versions() == [1]
  state = lambda v: manager.status(v)[0].state  # pylint: disable=unnecessary-lambda-assignment
  (tmp_path / "2").mkdir()
  (tmp_path / "2" / "saved_model.pb").write_bytes(b"")
  with manager.acquire() as held:
    assert held.version == 1
    poll = threading.Thread(target=manager.poll_once)
    poll.start()
    wait_for(lambda: any((s.version, s.state) == (2, 20) for s in manager.status()),
             what="version 2 LOADING")
    assert state(1) == AVAILABLE
    with manager.acquire() as meanwhile:  # Version 1 serves while 2 loads.
      assert meanwhile.version == 1
    release.set()
    # 2 is AVAILABLE; 1 is UNLOADING until `held` (a request on version 1) finishes.
    wait_for(lambda: state(1) == 40, what="UNLOADING")
    assert state(2) == AVAILABLE
    with manager.acquire() as new:
      assert new.version == 2
    with pytest.raises(core.ServingError, match=r"Specific\(m, 1\)"):
      with manager.acquire(1):
        pass
  poll.join(30)
  assert state(1) == END and manager.available_versions() == [2]
  assert sorted(s.version for s in manager.status()) == [1, 2]



def status_of(models, version=None):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = "esrgan"
  if version is not None:
    request.model_spec.version.value = version
  return {s.version: s for s in models.GetModelStatus(request, timeout=30).model_version_status}


def test_version_swap_under_load_then_broken_version(export_base, tmp_path):
  base = tmp_path / "base"
  shutil.copytree(os.path.join(export_base, "1"), base / "1")
  # Version 2 is written beforehand (exporting is slow on a busy CPU) and moved in under load,
  # as export_saved_model itself does: complete directory, then an atomic rename.
  staged = saved_model_lib.export_saved_model(tiny_generator(2), str(tmp_path / "staging"),
                                              version=2)
  x = np.stack([sample_uint8(8, 8)])
  with server_lib.ModelServer(str(base), port=0, host="127.0.0.1",
                              limits=defaults.ServerLimits(max_inflight=8),
                              file_system_poll_wait_seconds=0.2) as srv, \
      channel_for(srv.port) as channel:
    stub_ = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    stop = threading.Event()
    seen = [[] for _ in range(8)]  # Per thread: (version, output) in order.
    failures = []

    def loop(index):
      while not stop.is_set():
        try:
          response = stub_.Predict(predict_request(x), timeout=60)
          seen[index].append((response.model_spec.version.value,
                              tf.make_ndarray(response.outputs["upscaled"])))
        except grpc.RpcError as e:  # pragma: no cover - the assertion below reports it.
          failures.append(f"{e.code()}: {e.details()}")

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(8)]
    for thread in threads:
      thread.start()
    try:
      wait_for(lambda: all(seen), what="every client to get an answer from version 1")
      os.rename(staged, base / "2")
      wait_for(lambda: status_of(models)[1].state == END, what="version 1 to be unloaded")
      statuses = status_of(models)
      assert statuses[2].state == AVAILABLE
      counts = [len(s) for s in seen]
      wait_for(lambda: all(len(s) > c + 2 for s, c in zip(seen, counts)),
               what="answers after the swap")
    finally:
      stop.set()
      for thread in threads:
        thread.join()
    assert failures == []
    v2 = tf.saved_model.load(str(base / "2")).signatures["serving_default"]
    expected = {1: None, 2: v2(images=tf.constant(x))["upscaled"].numpy()}
    for answers in seen:
      versions = [v for v, _ in answers]
      assert versions[0] == 1 and versions[-1] == 2
      assert versions == sorted(versions)  # Never back to 1 once 2 answered.
      for version, output in answers:
        if version == 2:
          np.testing.assert_array_equal(output, expected[2])
    assert not np.array_equal(seen[0][0][1], expected[2])  # The versions really differ.

    # A broken version 3 is reported and version 2 keeps serving.
    staging = base / ".tmp-3"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"definitely not a protobuf")
    os.rename(staging, base / "3")
    wait_for(lambda: 3 in status_of(models) and status_of(models)[3].state == END,
             what="version 3 to fail")
    broken = status_of(models, 3)[3]
    assert broken.status.error_code != 0 and "version 3" in broken.status.error_message
    assert status_of(models)[2].state == AVAILABLE
    assert stub_.Predict(predict_request(x), timeout=60).model_spec.version.value == 2


# --- SIGTERM --------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_drains_in_flight_request_then_exits_zero(gate_base, tmp_path):
  gate = str(tmp_path / "gate")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(
      [sys.executable, "-m", "esrgan_tf.cli.serve", f"--model_base_path={gate_base}",
       "--port=0", "--host=127.0.0.1", "--file_system_poll_wait_seconds=0"],
      stderr=subprocess.PIPE, text=True, env=env)
  lines = []
  reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
  reader.start()
  try:
    wait_for(lambda: any("esrgan-serve ready" in line for line in lines), timeout=90,
             what="esrgan-serve to start")
    port = int(re.search(r"gRPC on (\d+)", "".join(lines)).group(1))
    with channel_for(port) as channel:
      stub_ = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      in_flight = stub_.Predict.future(gated_request(gate), timeout=60)
      wait_for(lambda: os.path.exists(gate + ".started"), what="the request to start")
      proc.send_signal(signal.SIGTERM)
      wait_for(lambda: any("1 request(s) in flight" in line for line in lines),
               what="the server to start draining")
      with pytest.raises(grpc.RpcError) as e:  # No new requests while draining.
        stub_.Predict(gated_request(gate), timeout=10)
      assert e.value.code() == grpc.StatusCode.UNAVAILABLE
      assert proc.poll() is None
      open(gate, "w").close()
      np.testing.assert_array_equal(tf.make_ndarray(in_flight.result().outputs["upscaled"]),
                                    0.25)
    assert proc.wait(timeout=30) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
    reader.join()


# --- benchmark function (numbers go to scripts/benchmark.py; only its plumbing is tested) ----

def test_benchmark_serving_runs(export_base):
  from esrgan_tf.benchmarking import serving as bench  # pylint: disable=g-import-not-at-top
  result = bench.benchmark_serving(export_base, sizes=(8,), clients=2, repeats=1,
                                   throughput_size=8, throughput_seconds=0.5)
  assert set(result["latency"]) == {8}
  assert result["latency"][8]["grpc_ms"] > 0 and result["latency"][8]["in_process_ms"] > 0
  throughput = result["throughput"]
  assert throughput["clients"] == 2 and throughput["failed_requests"] == 0
  assert throughput["requests_per_s"] > 0
