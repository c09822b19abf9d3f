"""`esrgan-serve`: TF Serving's gRPC (and REST, see `rest.py`) protocol for one model.

The services are the official ones from `tensorflow-serving-api` (PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus), so any TF Serving client works against this
server, and our client works against the real `tensorflow_model_server`.

    server = ModelServer("/models/esrgan", "esrgan", port=8500, rest_api_port=8501).start()
    ...
    server.stop(grace=30)  # stop accepting, let in-flight requests finish

Every call first waits for its request message under a watchdog: a call whose request has not
arrived within `limits.grpc_receive_seconds` is cancelled, and so is one still waiting after
STALLED_SECONDS when its client address already has `limits.grpc_pending_per_client` such calls;
a burst of more than `limits.grpc_pending_burst` waiting calls from one address is refused at once.
A compute slot (`max_inflight`) is taken only once the request is complete and validated.
"""

from __future__ import annotations

import collections
import concurrent.futures
import re
import threading
import time
from typing import Optional

from absl import logging
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from esrgan_tf.inference import remote
from esrgan_tf.serving import core, defaults, limits, protocol
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


# --- waiting for the request -------------------------------------------------------------------

# gRPC peer strings: "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/path" (grpc core's
# grpc_sockaddr_to_uri); the client is the address without its port.
_PEER = re.compile(r"^(?:ipv4:(?P<v4>[^:]+):\d+|ipv6:\[(?P<v6>[^\]]+)\]:\d+)$")


def client_of(peer: str) -> str:
  """The client address of a gRPC peer string (the string itself for other transports)."""
  match = _PEER.match(peer or "")
  return (match["v4"] or match["v6"]) if match else (peer or "unknown")


# A call's request normally arrives within milliseconds; calls still waiting after this long are
# "stalled", and each client address may have only `grpc_pending_per_client` of those.
STALLED_SECONDS = 1.0


class _Watchdog:
  """Cancels calls whose request has not arrived in time (one thread for every call).

  A call is cancelled when its request has not arrived after `seconds`, or after
  STALLED_SECONDS when its client already has `per_client` older calls still waiting; more than
  `burst` waiting calls of one client are refused at once.
  """

  def __init__(self, seconds: float, per_client: int, burst: int):
    self.seconds = seconds
    self.burst = burst
    self._per_client = per_client
    self._lock = threading.Condition()
    self._waiting: dict = {}  # token → (start, client, context)
    self._next = 0
    self._stop = False
    self._thread = threading.Thread(target=self._run, name="grpc-watchdog", daemon=True)
    self._thread.start()

  def watch(self, context, client: str) -> Optional[int]:
    """A token for `release`, or None when the client already has a full burst waiting."""
    with self._lock:
      if sum(1 for _, c, _ in self._waiting.values() if c == client) >= self.burst:
        return None
      self._next += 1
      self._waiting[self._next] = (time.monotonic(), client, context)
      self._lock.notify()
      return self._next

  def release(self, token: int) -> None:
    with self._lock:
      self._waiting.pop(token, None)

  def stop(self) -> None:
    with self._lock:
      self._stop = True
      self._lock.notify()
    self._thread.join()

  def _late(self, now: float) -> list:
    stalled = collections.defaultdict(list)
    late = []
    for token, (start, client, _) in sorted(self._waiting.items()):  # Oldest first.
      if now - start >= self.seconds:
        late.append(token)
      elif now - start >= STALLED_SECONDS:
        stalled[client].append(token)
    for tokens in stalled.values():
      late += tokens[self._per_client:]  # The client's newest stalled calls beyond its share.
    return late

  def _run(self) -> None:
    with self._lock:
      while not self._stop:
        now = time.monotonic()
        for token in self._late(now):
          _, _, context = self._waiting.pop(token)
          context.cancel()  # Wakes the handler blocked on the request (grpc RpcContext.cancel).
        starts = [start for start, _, _ in self._waiting.values()]
        wake = min((start + STALLED_SECONDS if now - start < STALLED_SECONDS
                    else start + self.seconds for start in starts), default=now + 60.0)
        self._lock.wait(max(0.01, wake - now))


class _ReceiveGuard(grpc.GenericRpcHandler):
  """Serves the servicers' unary methods as "receive, then call" under the watchdog.

  The servicers register with the generated `add_*_to_server` functions as usual (into
  `self`); each unary method is then served as stream-unary (identical on the wire), so that its
  handler runs before the request arrives and the wait is bounded by the watchdog.
  """

  def __init__(self, watchdog: _Watchdog):
    self._handlers: list = []
    self._watchdog = watchdog

  def add_generic_rpc_handlers(self, handlers) -> None:  # The generated code's registration.
    self._handlers.extend(handlers)

  def add_registered_method_handlers(self, service, handlers) -> None:  # grpcio ≥ 1.63 codegen.
    self._handlers.append(grpc.method_handlers_generic_handler(service, handlers))

  def service(self, handler_call_details):
    for generic in self._handlers:
      handler = generic.service(handler_call_details)
      if handler is not None:
        break
    else:
      return None
    if handler.request_streaming or handler.response_streaming:
      return handler
    behaviour = handler.unary_unary

    def receive_then_call(request_iterator, context):
      return behaviour(self._receive(request_iterator, context), context)

    return grpc.stream_unary_rpc_method_handler(
        receive_then_call, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)

  def _receive(self, request_iterator, context):
    client = client_of(context.peer())
    token = self._watchdog.watch(context, client)
    if token is None:
      context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{self._watchdog.burst} calls from {client} are already waiting for their "
                    "request; retry later")
    request, problem = None, None
    try:
      request = next(request_iterator)
    except StopIteration:
      problem = (grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request message")
    except grpc.RpcError:  # Cancelled: by the watchdog, or the client went away.
      problem = (grpc.StatusCode.DEADLINE_EXCEEDED, "the request did not arrive in time")
    finally:
      self._watchdog.release(token)
    if problem is not None:
      context.abort(*problem)
    return request


class ModelServer:
  """One model behind gRPC (and optionally REST), with version polling.

  Args:
    model_base_path: Directory of integer-named SavedModel versions.
    model_name: Name clients use in `model_spec.name` / the REST URL.
    port: gRPC port (0: any free port; see `.port` after `start`).
    rest_api_port: REST port; None disables REST, 0 picks a free port.
    host: Interface to bind (loopback by default: there is no authentication).
    limits: Every request, connection, client and time bound (`defaults.ServerLimits`).
    file_system_poll_wait_seconds: Version scan interval (≤ 0: scan only at start).
    max_versions: Latest versions kept loaded.
    web_ui: Serve the web page at `GET /` on the REST port (esrgan_tf/serving/web.py).
    loader: Test hook for `ModelManager`.
  """

  def __init__(self, model_base_path: str, model_name: str = "esrgan", *, port: int = 8500,
               rest_api_port: Optional[int] = None, host: str = defaults.DEFAULT_HOST,
               limits: defaults.ServerLimits = defaults.ServerLimits(),
               file_system_poll_wait_seconds: float = 1.0, max_versions: int = 1,
               web_ui: bool = True, loader=core.load_servable):
    self.manager = core.ModelManager(model_name, model_base_path, max_versions=max_versions,
                                     poll_wait_seconds=file_system_poll_wait_seconds,
                                     loader=loader)
    self.limits = limits
    self.predictor = core.Predictor(self.manager, max_inflight=limits.max_inflight,
                                    max_pixels=limits.max_pixels,
                                    max_answer_bytes=limits.max_message_bytes)
    self.host = host
    self.port = port
    self.rest_api_port = rest_api_port
    self.web_ui = web_ui
    self._grpc = None
    self._watchdog = None
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
    # Workers: the compute slots, calls waiting for their request (a few per client, each cut
    # after limits.grpc_receive_seconds) and status/metadata calls; RPCs beyond them are refused
    # RESOURCE_EXHAUSTED by gRPC itself instead of queueing.
    workers = self.limits.max_inflight + 32
    self._watchdog = _Watchdog(self.limits.grpc_receive_seconds,
                               self.limits.grpc_pending_per_client, self.limits.grpc_pending_burst)
    guard = _ReceiveGuard(self._watchdog)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(self.predictor), guard)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self.manager), guard)
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        handlers=[guard], maximum_concurrent_rpcs=workers,
        # No SO_REUSEPORT (gRPC's default): a second server on the same port must fail to bind
        # rather than silently share the traffic.
        options=remote.grpc_message_options(self.limits.max_message_mb)
        + [("grpc.so_reuseport", 0)])
    try:
      bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
    except RuntimeError:  # grpcio raises this for a port in use.
      bound = 0
    if not bound:
      self._watchdog.stop()
      self.manager.stop()
      raise OSError(f"cannot bind gRPC port {self.host}:{self.port} (in use?)")
    self.port = bound
    self._grpc.start()
    logging.info("Serving model %s over gRPC at %s:%d", self.manager.name, self.host, self.port)
    if self.rest_api_port is not None:
      from esrgan_tf.serving import rest  # pylint: disable=g-import-not-at-top
      try:
        self._rest = rest.make_http_server(self.predictor, self.host, self.rest_api_port,
                                           self.limits, web_ui=self.web_ui)
      except OSError as e:
        self._grpc.stop(None)
        self._watchdog.stop()
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
      self._watchdog.stop()
    self.manager.stop()
    logging.info("Stopped")

  def wait(self, timeout: Optional[float] = None) -> bool:
    """Blocks until `stop` was called (or the timeout passes); True if stopped."""
    return self._stopped.wait(timeout)

  def __enter__(self) -> "ModelServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop(grace=5.0)
