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

Against browsers as attackers (cross-origin pages, DNS rebinding): every request's `Host` (and
`Origin`, when sent) must name this server (`host_allowed`: an IP address, the bound host name,
`localhost` when bound to loopback or all interfaces, or a name of --allowed_hosts), and a POST
must be `Content-Type: application/json`, which no form and no cross-origin fetch without a CORS
preflight can send (this server answers no preflight). Where TF Serving differs: it accepts any
content type (`curl -d` sends a form type: add `-H 'Content-Type: application/json'`), writes
NaN/Infinity as bare (non-JSON) tokens (refused here: in requests, and answers holding them are
an error asking for gRPC) and reads any Host.
"""

from __future__ import annotations

import http
import http.server
import ipaddress
import json
import re
from typing import Iterator
import urllib.parse

from absl import logging
from google.protobuf import json_format
import grpc
from tensorflow_serving.apis import get_model_metadata_pb2

from esrgan_tf.serving import core, defaults, httpd, limits, protocol, rest_json
from esrgan_tf.serving.errors import ServingError, shown

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


# --- HTTP ---------------------------------------------------------------------------------------

def _host_name(value: str) -> str:
  """The host name of a Host header value ("name:port", "[v6]:port"), lower case."""
  value = value.strip().lower()
  if value.startswith("["):
    return value[1:value.find("]")] if "]" in value else value
  return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
  try:
    ipaddress.ip_address(name)
  except ValueError:
    return False
  return True


def host_allowed(name: str, bound_host: str, allowed: tuple) -> bool:
  """Whether a Host/Origin host name may reach this server (against DNS rebinding).

  A rebinding page reaches the server under the attacker's DNS name, so names are what is
  checked: IP literals always pass (a browser then treats the server as its own origin), as do
  the name the server is bound to, `localhost` when bound to loopback or all interfaces, and the
  names in `allowed` ("*": any).
  """
  if "*" in allowed or name in allowed or _is_ip(name):
    return True
  bound = bound_host.lower().strip("[]")
  if name == bound:
    return True
  loopback_or_any = bound in ("", "localhost", "0.0.0.0", "::") or (
      _is_ip(bound) and ipaddress.ip_address(bound).is_loopback)
  return name == "localhost" and loopback_or_any


class _Server(httpd.BoundedHTTPServer):
  predictor: core.Predictor
  max_body_bytes: int
  bound_host: str
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
    self.send_header(*httpd.NOSNIFF)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _send_stream(self, status: int, chunks: Iterator[bytes]) -> None:
    """An answer of unknown length: HTTP/1.0, ended by closing the connection."""
    first = next(chunks)  # Errors of the encoder surface before the status line is sent.
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header(*httpd.NOSNIFF)
    self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(first)
    for chunk in chunks:
      self.wfile.write(chunk)
    self.close_connection = True

  def _guarded(self, method: str, work) -> None:
    """Runs a handler; every exception becomes a JSON error answer, never a dropped connection."""
    try:
      self._check_headers(method)
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
    finally:
      self.release_body()

  def _try_send(self, status: int, message: str) -> None:
    self.close_connection = True
    try:
      self._send(status, {"error": message})
    except OSError:
      pass

  def _check_headers(self, method: str) -> None:
    """Host/Origin (DNS rebinding, cross-origin pages), framing, and a POST's content type.

    Raises:
      ServingError: 403 for a Host/Origin this server does not answer to, 400 for conflicting
        or repeated framing headers, 415 for a POST that is not JSON.
    """
    allowed = self.server.limits.allowed_hosts
    for header in ("Host", "Origin"):
      values = self.headers.get_all(header) or []
      if len(values) > 1:
        raise _bad(f"{len(values)} {header} headers")
      if not values or (header == "Origin" and values[0].strip() == "null"):
        continue
      value = values[0]
      name = (urllib.parse.urlsplit(value.strip()).hostname or "" if header == "Origin"
              else _host_name(value))
      if not host_allowed(name, self.server.bound_host, allowed):
        raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                           f"{header} {shown(name)!r} is not a name of this server; start it "
                           "with --allowed_hosts to answer to it")
    if self.headers.get_all("Transfer-Encoding"):
      raise _bad("Transfer-Encoding is not accepted (no chunked bodies): send Content-Length")
    if len(self.headers.get_all("Content-Length") or []) > 1:
      raise _bad("more than one Content-Length header")
    if method == "POST":
      media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
      if media != "application/json":
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a POST must be Content-Type: application/json, got "
                           f"{shown(media or 'none')!r} (curl: add -H 'Content-Type: "
                           "application/json')", http_status=415)

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
    body, booleans = self._read_json(length)
    self.release_body()  # The raw bytes are gone; the parsed body is bounded by its values.
    signature_name = body.get("signature_name") or core.DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
      raise _bad("\"signature_name\" must be a string")
    row = "instances" in body
    _, _, outputs = predictor.predict(
        name, version, signature_name,
        lambda signature: rest_json.parse_predict_body(body, signature, booleans)[0],
        json_answer=True)
    self._send_stream(200, rest_json.iter_predict_response(outputs, row))

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

  def _read_json(self, length: int) -> tuple[dict, bool]:
    """(the parsed body, whether its text holds true/false)."""
    raw = self.read_body(length)
    # Every number or string in the body is one Python object after json.loads (~32 bytes
    # each): a cheap count of separators bounds them before parsing.
    values = raw.count(b",") + 1
    limit = 4 * self.server.predictor.max_pixels + 2 * limits.MAX_IMAGES_PER_REQUEST + 64
    if values > limit:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"the body holds about {values} values, more than this server's limit "
                         f"of {limit} (4 × --max_pixels)", http_status=413)
    try:
      body = json.loads(raw, parse_constant=rest_json.refuse_constant)
    except RecursionError:
      raise _bad("the request body is nested too deeply") from None
    except ValueError as e:
      raise _bad(f"the request body is not valid JSON ({e})") from e
    if not isinstance(body, dict):
      raise _bad("the request body must be a JSON object")
    return body, (b"true" in raw or b"false" in raw)


def make_http_server(predictor: core.Predictor, host: str, port: int,
                     limits_: defaults.ServerLimits = defaults.ServerLimits(), *,
                     web_ui: bool = False) -> _Server:
  """A bound (not yet serving) REST server; call `serve_forever` in a thread.

  Request bodies hold bytes of a budget of (max_inflight + 1) × the message limit, each client
  at most its share, reserved as they arrive; a request that does not fit is answered 429.
  `web_ui` also serves the web page (`GET /`, esrgan_tf/serving/web.py).
  """
  server = _Server((host, port), _Handler, limits=limits_, busy=lambda: predictor.inflight)
  server.predictor = predictor
  server.max_body_bytes = limits_.max_message_bytes
  server.bound_host = host
  server.web_ui = web_ui
  return server


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status this server answers for a gRPC code."""
  return _HTTP_STATUS.get(code, int(http.HTTPStatus.INTERNAL_SERVER_ERROR))
