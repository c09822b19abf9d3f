"""`esrgan-serve`: TF Serving's gRPC (and REST, see `rest.py`) protocol for one model.

The services are the official ones from `tensorflow-serving-api` (PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus), so any TF Serving client works against this
server, and our client works against the real `tensorflow_model_server`.

    server = ModelServer("/models/esrgan", "esrgan", port=8500, rest_api_port=8501).start()
    ...
    server.stop(grace=30)  # stop accepting, let in-flight requests finish
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Optional

from absl import logging
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from esrgan_tf.inference import remote
from esrgan_tf.serving import core, limits, protocol
from esrgan_tf.serving.errors import ServingError


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """PredictionService: Predict and GetModelMetadata (Classify/Regress stay UNIMPLEMENTED)."""

  def __init__(self, predictor: core.Predictor):
    self._predictor = predictor

  def Predict(self, request, context):  # pylint: disable=invalid-name
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    predictor = self._predictor

    def parse(signature) -> dict:
      # Every TensorProto is checked against the signature (dtype, shape, value count) before
      # make_ndarray allocates anything; unknown aliases are left for the signature check.
      expected, given = set(signature.inputs), set(request.inputs)
      if expected != given:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"signature takes inputs {sorted(expected)}; missing {sorted(expected - given)}, "
            f"unexpected {sorted(given - expected)}")
      return {key: limits.tensor_proto_to_array(proto, key, signature.inputs[key],
                                                max_pixels=predictor.max_pixels)
              for key, proto in request.inputs.items()}

    try:
      version, signature_name, outputs = predictor.predict(
          request.model_spec.name, protocol.requested_version(request.model_spec),
          request.model_spec.signature_name, parse, request.output_filter,
          is_active=context.is_active)
    except ServingError as e:
      logging.vlog(1, "Predict failed: %s", e.message)
      context.abort(e.code, e.message)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature_name
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      return protocol.model_metadata_response(self._predictor, request.model_spec.name,
                                     protocol.requested_version(request.model_spec),
                                     request.metadata_field)
    except ServingError as e:
      context.abort(e.code, e.message)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """ModelService: GetModelStatus (HandleReloadConfigRequest stays UNIMPLEMENTED)."""

  def __init__(self, manager: core.ModelManager):
    self._manager = manager

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      return protocol.model_status_response(self._manager, request.model_spec.name,
                                   protocol.requested_version(request.model_spec))
    except ServingError as e:
      context.abort(e.code, e.message)


class ModelServer:
  """One model behind gRPC (and optionally REST), with version polling.

  Args:
    model_base_path: Directory of integer-named SavedModel versions.
    model_name: Name clients use in `model_spec.name` / the REST URL.
    port: gRPC port (0: any free port; see `.port` after `start`).
    rest_api_port: REST port; None disables REST, 0 picks a free port.
    host: Interface to bind (loopback by default: there is no authentication).
    file_system_poll_wait_seconds: Version scan interval (≤ 0: scan only at start).
    max_versions: Latest versions kept loaded.
    max_inflight: Concurrent Predicts before RESOURCE_EXHAUSTED (REST 429).
    max_message_mb: gRPC send/receive limit, REST body limit and answer limit.
    max_pixels: Request pixel limit (N·H·W), checked before running.
    web_ui: Serve the web page at `GET /` on the REST port (esrgan_tf/serving/web.py).
    max_connections: REST connections served at once (more are answered 503 and closed).
    loader: Test hook for `ModelManager`.
  """

  def __init__(self, model_base_path: str, model_name: str = "esrgan", *, port: int = 8500,
               rest_api_port: Optional[int] = None, host: str = protocol.DEFAULT_HOST,
               file_system_poll_wait_seconds: float = 1.0, max_versions: int = 1,
               max_inflight: int = protocol.SERVER_MAX_INFLIGHT,
               max_message_mb: int = protocol.SERVER_MAX_MESSAGE_MB,
               max_pixels: int = protocol.SERVER_MAX_PIXELS,
               max_connections: int = protocol.SERVER_MAX_CONNECTIONS, web_ui: bool = True,
               loader=core.load_servable):
    self.manager = core.ModelManager(model_name, model_base_path, max_versions=max_versions,
                                     poll_wait_seconds=file_system_poll_wait_seconds,
                                     loader=loader)
    self.predictor = core.Predictor(self.manager, max_inflight=max_inflight,
                                    max_pixels=max_pixels,
                                    max_answer_bytes=min(max_message_mb * 2**20, 2**31 - 1))
    self.max_connections = max_connections
    self.host = host
    self.port = port
    self.rest_api_port = rest_api_port
    self.max_message_mb = max_message_mb
    self.web_ui = web_ui
    self._grpc = None
    self._rest = None
    self._rest_thread = None
    self._stopped = threading.Event()

  def start(self) -> "ModelServer":
    """Loads the model's versions, then starts listening.

    Raises:
      OSError: A port cannot be bound.
    """
    self.manager.start()
    if not self.manager.available_versions():
      logging.warning("Serving %s with no version available yet", self.manager.name)
    # Workers beyond max_inflight so that an over-limit request is answered RESOURCE_EXHAUSTED
    # instead of queueing, and status/metadata calls still get through.
    workers = self.predictor.max_inflight + 8
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        # RPCs beyond the workers are refused RESOURCE_EXHAUSTED by gRPC itself instead of
        # queueing, each holding its (up to max_message_mb) request buffer.
        maximum_concurrent_rpcs=workers,
        # No SO_REUSEPORT (gRPC's default): a second server on the same port must fail to bind
        # rather than silently share the traffic.
        options=remote.grpc_message_options(self.max_message_mb) + [("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(self.predictor), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        _ModelService(self.manager), self._grpc)
    try:
      bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
    except RuntimeError:  # grpcio raises this for a port in use.
      bound = 0
    if not bound:
      self.manager.stop()
      raise OSError(f"cannot bind gRPC port {self.host}:{self.port} (in use?)")
    self.port = bound
    self._grpc.start()
    logging.info("Serving model %s over gRPC at %s:%d", self.manager.name, self.host, self.port)
    if self.rest_api_port is not None:
      from esrgan_tf.serving import rest  # pylint: disable=g-import-not-at-top
      try:
        self._rest = rest.make_http_server(self.predictor, self.host, self.rest_api_port,
                                           max_body_bytes=self.max_message_mb * 1024 * 1024,
                                           web_ui=self.web_ui,
                                           max_connections=self.max_connections)
      except OSError as e:
        self._grpc.stop(None)
        self.manager.stop()
        raise OSError(f"cannot bind REST port {self.host}:{self.rest_api_port} ({e})") from e
      self.rest_api_port = self._rest.server_address[1]
      self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest",
                                           daemon=True)
      self._rest_thread.start()
      logging.info("Serving REST at http://%s:%d/v1/models/%s", self.host, self.rest_api_port,
                   self.manager.name)
    return self

  def stop(self, grace: Optional[float] = 30.0) -> None:
    """Stops accepting requests, waits up to `grace` seconds for in-flight ones, then stops."""
    if self._stopped.is_set():
      return
    self._stopped.set()
    done = self._grpc.stop(grace) if self._grpc is not None else None  # Returns at once.
    if self._rest is not None:
      self._rest.shutdown()  # Stops accepting.
    logging.info("Stopped accepting requests; draining %d request(s) in flight (grace %s s)",
                 self.predictor.inflight, grace)
    if self._rest is not None:
      # Waits up to `grace` for running requests, then closes every connection still open
      # (clients that never finish sending cannot hold the shutdown).
      self._rest.close_all(grace)
    if done is not None:
      done.wait(None if grace is None else grace + 1.0)
    self.manager.stop()
    logging.info("Stopped")

  def wait(self, timeout: Optional[float] = None) -> bool:
    """Blocks until `stop` was called (or the timeout passes); True if stopped."""
    return self._stopped.wait(timeout)

  def __enter__(self) -> "ModelServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop(grace=5.0)
