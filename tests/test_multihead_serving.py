"""esrgan-serve with a multi-head export: each head's signature through the TF Serving gRPC and
REST protocols (official tensorflow-serving-api stubs), answer limits per head's scale."""

import base64
import io
import json
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
  predict_pb2,
  prediction_service_pb2_grpc,
)

from esrgan_tf.export import saved_model
from esrgan_tf.inference import remote, resolver
from esrgan_tf.models import MultiHeadRRDBNet
from esrgan_tf.serving import defaults
from esrgan_tf.serving import server as server_lib

HEADS = [{"name": "x2", "scale": 2}, {"name": "x4", "scale": 4}]


@pytest.fixture(scope="module")
def model():
  keras.utils.set_random_seed(11)
  generator = MultiHeadRRDBNet(num_features=8, num_blocks=1, growth_channels=4, heads=HEADS,
                               default_head="x4")
  generator.build()
  return generator


@pytest.fixture(scope="module")
def export_base(model, tmp_path_factory):
  base = tmp_path_factory.mktemp("multi_exports")
  saved_model.export_saved_model(model, str(base), version=1)
  return str(base)


@pytest.fixture(scope="module")
def server(export_base):
  # A 1 MB answer limit: a 128² float input is fine at ×2 (0.75 MB), not at ×4 (3 MB).
  srv = server_lib.ModelServer(export_base, "multi", port=0, rest_api_port=0, host="127.0.0.1",
                               file_system_poll_wait_seconds=0,
                               limits=defaults.ServerLimits(max_message_mb=1))
  srv.start()
  yield srv
  srv.stop(grace=5)


@pytest.fixture(scope="module")
def stub(server):
  with grpc.insecure_channel(f"127.0.0.1:{server.port}",
                             options=remote.grpc_message_options(64)) as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(array, signature, key="images"):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "multi"
  request.model_spec.signature_name = signature
  request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
  return request


def _rest(srv, path, body=None):
  data = None if body is None else json.dumps(body).encode()
  request = urllib.request.Request(f"http://127.0.0.1:{srv.rest_api_port}{path}", data=data,
                                   headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_grpc_each_head_through_its_own_signature(stub, model):
  x = np.random.default_rng(0).random((1, 10, 12, 3), dtype=np.float32)
  for head, scale in (("x2", 2), ("x4", 4)):
    response = stub.Predict(_request(x, f"upscale_{head}_float"), timeout=60)
    y = tf.make_ndarray(response.outputs["upscaled"])
    assert y.shape == (1, 10 * scale, 12 * scale, 3)
    np.testing.assert_allclose(y, model(x)[head].numpy(), rtol=0, atol=1e-6)
    assert response.model_spec.signature_name == f"upscale_{head}_float"
  # The default signature is the default head's, uint8.
  u8 = (x * 255).astype(np.uint8)
  default = tf.make_ndarray(stub.Predict(_request(u8, ""), timeout=60).outputs["upscaled"])
  x4 = tf.make_ndarray(stub.Predict(_request(u8, "upscale_x4"), timeout=60).outputs["upscaled"])
  assert default.shape == (1, 40, 48, 3)
  np.testing.assert_array_equal(default, x4)


def test_grpc_metadata_lists_every_head_signature(server):
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = "multi"
  request.metadata_field.append("signature_def")
  with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, timeout=60)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(signature_map)
  assert set(signature_map.signature_def) - {"__saved_model_init_op"} == {
      "serving_default", "upscale_float", "upscale_bytes", "upscale_x2", "upscale_x2_float",
      "upscale_x2_bytes", "upscale_x4", "upscale_x4_float", "upscale_x4_bytes"}


def test_rest_bytes_signature_of_each_head(server, model):
  image = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  b64 = base64.b64encode(buffer.getvalue()).decode()
  for head, scale in (("x2", 2), ("x4", 4)):
    status, body = _rest(server, "/v1/models/multi:predict",
                         {"signature_name": f"upscale_{head}_bytes", "instances": [{"b64": b64}]})
    assert status == 200, body
    png = base64.b64decode(body["predictions"][0]["b64"])
    got = np.asarray(Image.open(io.BytesIO(png)))
    assert got.shape == (9 * scale, 7 * scale, 3)
    want = np.clip(np.rint(model(image[None] / np.float32(255))[head].numpy()[0] * 255), 0, 255)
    assert np.abs(got.astype(int) - want).max() <= 1  # rounding at x.5 only


def test_answer_limit_uses_each_heads_scale(stub):
  x = np.zeros((1, 128, 128, 3), np.float32)
  ok = stub.Predict(_request(x, "upscale_x2_float"), timeout=60)
  assert tf.make_ndarray(ok.outputs["upscaled"]).shape == (1, 256, 256, 3)
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(_request(x, "upscale_x4_float"), timeout=60)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "answer would be 3.0 MB" in e.value.details()


def test_remote_head_for_esrgan_upscale_server(server, model):
  """`esrgan-upscale --server=... --head=x2` calls the head's float signature."""
  runner = resolver.load_engine(resolver.ModelSpec(
      server=f"127.0.0.1:{server.port}", model_name="multi", head="x2"))
  assert runner.scale == 2
  x = np.random.default_rng(2).random((1, 8, 6, 3), dtype=np.float32)
  np.testing.assert_allclose(runner(x), model(x)["x2"].numpy(), rtol=0, atol=1e-6)
