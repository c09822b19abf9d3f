"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) on the stdlib server.

    GET  /v1/models/NAME[/versions/N]            → GetModelStatusResponse as JSON
    GET  /v1/models/NAME[/versions/N]/metadata   → {"model_spec": ..., "metadata":
                                                    {"signature_def": SignatureDefMap}}
    POST /v1/models/NAME[/versions/N]:predict    ← {"signature_name": ..., "instances": [...]}
                                                   (row format) or {"inputs": ...} (columnar)
                                                 → {"predictions": ...} or {"outputs": ...}

Binary strings travel as {"b64": "..."}; outputs whose alias ends in `_bytes` are encoded that
way. Errors are {"error": message} with the HTTP status of the gRPC code (400 INVALID_ARGUMENT,
404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, ...).
"""

from __future__ import annotations

import base64
import binascii
import http
import http.server
import json
import re
from typing import Iterator

from absl import logging
from google.protobuf import json_format
import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2

from esrgan_tf.serving import core, httpd, limits, protocol
from esrgan_tf.serving.errors import ServingError

# The google.rpc code → HTTP mapping (google/rpc/code.proto comments), which TF Serving follows.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<suffix>/metadata|:[a-z]+)?$")


def _bad(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _to_dict(message) -> dict:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   always_print_fields_with_no_presence=True)


# --- JSON ↔ numpy ------------------------------------------------------------------------------

def _decode_strings(value, where: str):
  """Nested JSON strings / {"b64": ...} objects → nested bytes."""
  if isinstance(value, list):
    return [_decode_strings(v, where) for v in value]
  if isinstance(value, dict):
    if set(value) != {"b64"} or not isinstance(value["b64"], str):
      raise _bad(f"{where}: a binary value must be {{\"b64\": \"<base64>\"}}, got keys "
                 f"{sorted(value)}")
    try:
      return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
      raise _bad(f"{where}: invalid base64 in \"b64\" ({e})") from e
  if isinstance(value, str):
    return value.encode("utf-8")
  raise _bad(f"{where}: expected a string or {{\"b64\": ...}}, got {type(value).__name__}")


def json_to_array(value, dtype_enum: int, where: str) -> np.ndarray:
  """One input tensor from its nested-list JSON form, typed as the signature says.

  Raises:
    ServingError: Ragged lists, wrong value kinds, integers out of range.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  dtype = tf.as_dtype(dtype_enum)
  try:
    if dtype == tf.string:
      nested = _decode_strings(value, where)
      array = np.empty(np.shape(nested) if isinstance(nested, list) else (), dtype=object)
      array[...] = nested if isinstance(nested, list) else nested
      return array
    raw = np.asarray(value)
  except ValueError as e:  # numpy: "setting an array element with a sequence" / inhomogeneous.
    raise _bad(f"{where}: not a rectangular nested list ({e})") from e
  if raw.dtype.kind not in "biuf":
    raise _bad(f"{where}: expected numbers for a {dtype.name} input, got {raw.dtype.kind!r} "
               "values (strings need a string input)")
  target = dtype.as_numpy_dtype
  if np.issubdtype(target, np.integer):
    if raw.dtype.kind == "f":
      raise _bad(f"{where}: a {dtype.name} input takes integers, got floating-point values")
    info = np.iinfo(target)
    if raw.size and (raw.min() < info.min or raw.max() > info.max):
      raise _bad(f"{where}: values outside the {dtype.name} range [{info.min}, {info.max}]")
  return raw.astype(target)


def array_to_json(array: np.ndarray, alias: str):
  """An output tensor as nested lists; `*_bytes` string outputs as {"b64": ...} objects."""
  if not isinstance(array, np.ndarray):  # One row of a tensor: a numpy scalar or bytes.
    array = np.asarray(array, dtype=object if isinstance(array, (bytes, str)) else None)
  if array.dtype.kind in "OSU":
    binary = alias.endswith("_bytes")

    def encode(item):
      if isinstance(item, list):
        return [encode(i) for i in item]
      if binary:
        return {"b64": base64.b64encode(item).decode("ascii")}
      return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
    return encode(array.tolist())
  return array.tolist()


def parse_predict_body(body: dict, signature) -> tuple[dict, bool]:
  """Inputs of a :predict body against a SignatureDef.

  Returns:
    (alias → numpy array, True for row format).

  Raises:
    ServingError: Malformed body.
  """
  if ("instances" in body) == ("inputs" in body):
    raise _bad("the request must have exactly one of \"instances\" (row format) and \"inputs\" "
               "(columnar format)")
  aliases = list(signature.inputs)
  if "instances" in body:
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
      raise _bad("\"instances\" must be a non-empty list")
    keyed = all(isinstance(i, dict) and set(i) != {"b64"} for i in instances)
    if not keyed:
      if len(aliases) != 1:
        raise _bad(f"this signature has inputs {sorted(aliases)}: each instance must be an "
                   "object naming them")
      columns = {aliases[0]: instances}
    else:
      columns = {}
      for index, instance in enumerate(instances):
        if set(instance) != set(aliases):
          raise _bad(f"instance {index} has keys {sorted(instance)}, the signature takes "
                     f"{sorted(aliases)}")
        for key, value in instance.items():
          columns.setdefault(key, []).append(value)
    row = True
  else:
    value = body["inputs"]
    if isinstance(value, dict) and set(value) != {"b64"}:
      columns = value
    else:
      if len(aliases) != 1:
        raise _bad(f"this signature has inputs {sorted(aliases)}: \"inputs\" must be an object "
                   "naming them")
      columns = {aliases[0]: value}
    row = False
  inputs = {}
  for key, value in columns.items():
    if key not in signature.inputs:
      raise _bad(f"unknown input {key!r}; the signature takes {sorted(aliases)}")
    inputs[key] = json_to_array(value, signature.inputs[key].dtype, f"input {key!r}")
  return inputs, row


def _iter_array(array, alias: str) -> Iterator[str]:
  """JSON text of one output, one innermost row at a time (never the whole tensor as lists)."""
  if not isinstance(array, np.ndarray) or array.dtype.kind in "OSU" or array.ndim <= 2:
    yield json.dumps(array_to_json(array, alias), separators=(",", ":"))
    return
  yield "["
  for index in range(array.shape[0]):
    if index:
      yield ","
    yield from _iter_array(array[index], alias)
  yield "]"


def iter_predict_response(outputs: dict, row: bool) -> Iterator[bytes]:
  """`format_predict_response` as JSON text in chunks of about 64 kB, built row by row.

  Raises:
    ServingError: Row format with outputs of different batch sizes (before any text).
  """
  count = None
  if row and len(outputs) > 1:
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         "row format needs outputs with the same 0-th dimension; use \"inputs\"")
    count = sizes.pop()

  def pieces() -> Iterator[str]:
    yield '{"predictions":' if row else '{"outputs":'
    if len(outputs) == 1:
      (alias, array), = outputs.items()
      yield from _iter_array(array, alias)
    elif row:
      yield "["
      for index in range(count):
        yield "," if index else ""
        yield "{" + ",".join(
            f"{json.dumps(alias)}:" + "".join(_iter_array(array[index], alias))
            for alias, array in outputs.items()) + "}"
      yield "]"
    else:
      yield "{"
      for index, (alias, array) in enumerate(outputs.items()):
        yield ("," if index else "") + f"{json.dumps(alias)}:"
        yield from _iter_array(array, alias)
      yield "}"
    yield "}"

  buffer, size = [], 0
  for piece in pieces():
    buffer.append(piece)
    size += len(piece)
    if size >= 1 << 16:
      yield "".join(buffer).encode("utf-8")
      buffer, size = [], 0
  if buffer:
    yield "".join(buffer).encode("utf-8")


def format_predict_response(outputs: dict, row: bool) -> dict:
  """{"predictions": ...} (row) or {"outputs": ...} (columnar), named only if several outputs."""
  if row:
    if len(outputs) == 1:
      (alias, array), = outputs.items()
      return {"predictions": array_to_json(array, alias)}
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         "row format needs outputs with the same 0-th dimension; use \"inputs\"")
    rows = [{alias: array_to_json(array[i], alias) for alias, array in outputs.items()}
            for i in range(sizes.pop())]
    return {"predictions": rows}
  if len(outputs) == 1:
    (alias, array), = outputs.items()
    return {"outputs": array_to_json(array, alias)}
  return {"outputs": {alias: array_to_json(a, alias) for alias, a in outputs.items()}}


# --- HTTP ---------------------------------------------------------------------------------------

class _Server(httpd.BoundedHTTPServer):
  predictor: core.Predictor
  max_body_bytes: int
  web_ui: bool = False


def _error_status(e: ServingError) -> int:
  return e.http_status or _HTTP_STATUS.get(e.code, 500)


class _Handler(httpd.DeadlineHandlerMixin, http.server.BaseHTTPRequestHandler):
  server: _Server
  server_version = "esrgan-serve"

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.vlog(1, "REST %s " + format, self.client_address[0], *args)

  def _send(self, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode("utf-8")
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _send_stream(self, status: int, chunks: Iterator[bytes]) -> None:
    """An answer of unknown length: HTTP/1.0, ended by closing the connection."""
    first = next(chunks)  # Errors of the encoder surface before the status line is sent.
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(first)
    for chunk in chunks:
      self.wfile.write(chunk)
    self.close_connection = True

  def _guarded(self, method: str, work) -> None:
    """Runs a handler; every exception becomes a JSON error answer, never a dropped connection."""
    try:
      work()
    except ServingError as e:
      self._try_send(_error_status(e), e.message)
    except TimeoutError:
      self._try_send(408, "the request was not received in time")
    except RecursionError:
      self._try_send(400, "the request is nested too deeply")
    except MemoryError:
      self._try_send(413, "the request needs more memory than this server has")
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True
    except Exception as e:  # pylint: disable=broad-except  # answered 500, logged.
      logging.exception("REST %s %s failed", method, self.path[:200])
      self._try_send(500, f"internal error: {type(e).__name__}")

  def _try_send(self, status: int, message: str) -> None:
    self.close_connection = True
    try:
      self._send(status, {"error": message})
    except OSError:
      pass

  def _route(self, method: str):
    match = _PATH.match(self.path.split("?", 1)[0])
    if not match:
      raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} "
                         f"{self.path[:200]}")
    if match["label"]:
      raise _bad(f"Unrecognized servable version label: {match['label'][:100]}")
    version = None
    if match["version"]:
      if len(match["version"]) > 18:  # Versions are int64 in TF Serving.
        raise _bad(f"version number of {len(match['version'])} digits is out of range")
      version = int(match["version"])
    return match["name"], version, match["suffix"] or ""

  def do_GET(self):  # pylint: disable=invalid-name
    self._guarded("GET", self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._guarded("POST", self._post)

  def _serve_web_page(self) -> bool:
    """The web page and its assets (esrgan_tf/serving/web.py); False for other paths."""
    from esrgan_tf.serving import web  # pylint: disable=g-import-not-at-top
    answer = web.handle(self.path, self.server.predictor.manager.name)
    if answer is None:
      return False
    status, content_type, data = answer
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(data)))
    for key, value in web.HEADERS.items():
      self.send_header(key, value)
    self.end_headers()
    self.wfile.write(data)
    return True

  def _get(self):
    if self.server.web_ui and self._serve_web_page():
      return
    name, version, suffix = self._route("GET")
    predictor = self.server.predictor
    if suffix == "":
      response = protocol.model_status_response(predictor.manager, name, version)
      self._send(200, _to_dict(response))
    elif suffix == "/metadata":
      response = protocol.model_metadata_response(
          predictor, name, version, [protocol.SIGNATURE_DEF_FIELD])
      signature_map = response.metadata[protocol.SIGNATURE_DEF_FIELD]
      unpacked = get_model_metadata_pb2.SignatureDefMap()
      signature_map.Unpack(unpacked)
      self._send(200, {"model_spec": _to_dict(response.model_spec),
                       "metadata": {"signature_def": _to_dict(unpacked)}})
    else:
      raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: GET {self.path[:200]}")

  def _post(self):
    name, version, suffix = self._route("POST")
    if suffix != ":predict":
      raise ServingError(grpc.StatusCode.UNIMPLEMENTED if suffix in (":classify", ":regress")
                         else grpc.StatusCode.NOT_FOUND,
                         f"{suffix or 'no verb'}: esrgan-serve implements only :predict")
    predictor = self.server.predictor
    predictor.check_model_name(name)
    # Refused before the body is read: a busy server answers 429 at once and buffers nothing.
    if not predictor.has_free_slot():
      raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"Server busy: {predictor.max_inflight} requests already in flight "
                         "(--max_inflight); retry later")
    length = self._content_length()
    with self.server.body_budget(length):
      body = self._read_json(length)
    signature_name = body.get("signature_name") or core.DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
      raise _bad("\"signature_name\" must be a string")
    row = "instances" in body
    _, _, outputs = predictor.predict(
        name, version, signature_name, lambda signature: parse_predict_body(body, signature)[0],
        json_answer=True)
    self._send_stream(200, iter_predict_response(outputs, row))

  def _content_length(self) -> int:
    length = self.headers.get("Content-Length")
    if length is None or not re.fullmatch(r"[0-9]{1,18}", length.strip()):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         "a Content-Length header of at most 18 digits is required",
                         http_status=411 if length is None else 400)
    length = int(length)
    if length > self.server.max_body_bytes:
      raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"request body of {length} bytes exceeds the limit of "
                         f"{self.server.max_body_bytes} (--max_message_mb)", http_status=413)
    return length

  def _read_json(self, length: int) -> dict:
    self.extend_deadline_for_body(length)
    raw = self.rfile.read(length)
    if len(raw) != length:
      raise _bad(f"the body ended after {len(raw)} of {length} bytes")
    # Every number or string in the body is one Python object after json.loads (~32 bytes
    # each): a cheap count of separators bounds them before parsing.
    values = raw.count(b",") + 1
    limit = 4 * self.server.predictor.max_pixels + 2 * limits.MAX_IMAGES_PER_REQUEST + 64
    if values > limit:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"the body holds about {values} values, more than this server's limit "
                         f"of {limit} (4 × --max_pixels)", http_status=413)
    try:
      body = json.loads(raw)
    except RecursionError:
      raise _bad("the request body is nested too deeply") from None
    except ValueError as e:
      raise _bad(f"the request body is not valid JSON ({e})") from e
    if not isinstance(body, dict):
      raise _bad("the request body must be a JSON object")
    return body


def make_http_server(predictor: core.Predictor, host: str, port: int, *,
                     max_body_bytes: int, web_ui: bool = False,
                     max_connections: int = protocol.SERVER_MAX_CONNECTIONS) -> _Server:
  """A bound (not yet serving) REST server; call `serve_forever` in a thread.

  Request bodies being read hold bytes of a budget of (max_inflight + 1) × max_body_bytes; a
  request that does not fit is answered 429 before its body is read. `web_ui` also serves the
  web page (`GET /`, esrgan_tf/serving/web.py).
  """
  server = _Server((host, port), _Handler, max_connections=max_connections,
                   busy=lambda: predictor.inflight,
                   body_budget_bytes=(predictor.max_inflight + 1) * max_body_bytes)
  server.predictor = predictor
  server.max_body_bytes = max_body_bytes
  server.web_ui = web_ui
  return server


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status this server answers for a gRPC code."""
  return _HTTP_STATUS.get(code, int(http.HTTPStatus.INTERNAL_SERVER_ERROR))

