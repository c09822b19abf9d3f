r"""esrgan-serve: serve an export base over TF Serving's gRPC and REST protocols.

  esrgan-serve --model_base_path=exports/esrgan --model_name=esrgan --port=8500 \
      --rest_api_port=8501

SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to --drain_seconds), exit 0.
For production use the real tensorflow_model_server with the same export (see serving/README.md).

SECURITY: there is no authentication and no TLS. The server binds 127.0.0.1 unless --host says
otherwise; to expose it, put it behind a reverse proxy that authenticates, terminates TLS and
rate-limits (as TF Serving users do). Every request is validated before memory is allocated
(dtype, shape, value count, --max_pixels, images per request and their frames, answer size vs
--max_message_mb). Each client address gets a share (connections, body bytes, gRPC calls waiting
for their request), requests must arrive within --request_timeout_seconds, and the REST API
answers only JSON POSTs for Host/Origin names it is bound to (--allowed_hosts adds names).
Defaults are sized for a 2-core machine with a few GB of RAM; raise them on bigger machines.
"""

import os
import signal
import threading

from absl import flags, logging

from esrgan_tf import cli
from esrgan_tf.serving import defaults

_BASE = flags.DEFINE_string("model_base_path", None,
                            "Directory of integer-named SavedModel versions (esrgan-export).")
_NAME = flags.DEFINE_string("model_name", "esrgan", "Model name used by clients.")
_PORT = flags.DEFINE_integer("port", 8500, "gRPC port.")
_REST = flags.DEFINE_integer("rest_api_port", 0, "REST port; 0 disables REST (as TF Serving).")
_HOST = flags.DEFINE_string(
    "host", defaults.DEFAULT_HOST,
    "Interface to bind. WARNING: esrgan-serve has no authentication; anything but 127.0.0.1 "
    "exposes it to the network: put an authenticating reverse proxy in front instead.")
_POLL = flags.DEFINE_float("file_system_poll_wait_seconds", 1.0,
                           "Seconds between scans for new versions; ≤ 0 scans once.")
_MAX_VERSIONS = flags.DEFINE_integer("max_versions", 1, "Latest versions kept loaded.")
_INFLIGHT = flags.DEFINE_integer(
    "max_inflight", defaults.SERVER_MAX_INFLIGHT,
    "Concurrent Predicts (default: one per core of a 2-core box); more get RESOURCE_EXHAUSTED "
    "(REST 429, refused before the body is read).")
_MESSAGE_MB = flags.DEFINE_integer(
    "max_message_mb", defaults.SERVER_MAX_MESSAGE_MB,
    "gRPC message, REST body and answer limit in MB; an answer estimated larger (REST JSON "
    "counted as text) is refused before the model runs.")
_PIXELS = flags.DEFINE_integer(
    "max_pixels", defaults.SERVER_MAX_PIXELS_PER_REQUEST,
    "Pixel limit per request (N·H·W, or the summed sizes of encoded images, every frame the "
    "decoder would allocate counted), checked before anything is decoded or run (default 512²: "
    "~1.3 GB of RRDBNet activations).")
_CONNECTIONS = flags.DEFINE_integer(
    "max_connections", defaults.SERVER_MAX_CONNECTIONS,
    "Open REST connections; one more evicts a connection still silent before its headers, or "
    "is answered 503.")
_PER_CLIENT = flags.DEFINE_integer(
    "max_connections_per_client", 0,
    "Open REST connections of one client address (0: a quarter of --max_connections). Behind a "
    "reverse proxy every client has the proxy's address: set it to --max_connections there and "
    "let the proxy limit clients.")
_REQUEST_SECONDS = flags.DEFINE_float(
    "request_timeout_seconds", defaults.REQUEST_SECONDS,
    "Time a client has to deliver its request: REST headers (bodies get this plus 1 s per 4 MB), "
    "a whole gRPC message (plus 1 s per 4 MB of --max_message_mb); slower clients are cut.")
_ALLOWED_HOSTS = flags.DEFINE_list(
    "allowed_hosts", [],
    "Host names the REST API and web page answer to besides IP addresses, the --host name and "
    "(bound to loopback or all interfaces) localhost; '*' answers any (against DNS rebinding: "
    "list the names a reverse proxy forwards).")
_WEB_UI = flags.DEFINE_bool("web_ui", True,
                            "Serve the web page (upload, before/after comparison) at GET / on "
                            "the REST port; it uses only the REST API.")
_DRAIN = flags.DEFINE_float("drain_seconds", 30.0,
                            "On SIGTERM, how long in-flight requests may take to finish.")


def main(argv):
  if len(argv) > 1:
    raise cli.usage(f"unexpected arguments: {argv[1:]}")
  if not _BASE.value:
    raise cli.usage("--model_base_path is required")
  for flag in (_MAX_VERSIONS, _INFLIGHT, _MESSAGE_MB, _PIXELS, _CONNECTIONS):
    if flag.value < 1:
      raise cli.usage(f"--{flag.name} must be ≥ 1, got {flag.value}")
  if _PER_CLIENT.value < 0 or _REQUEST_SECONDS.value <= 0:
    raise cli.usage("--max_connections_per_client must be ≥ 0 and --request_timeout_seconds > 0")
  limits = defaults.ServerLimits(
      max_pixels=_PIXELS.value, max_message_mb=_MESSAGE_MB.value, max_inflight=_INFLIGHT.value,
      max_connections=_CONNECTIONS.value,
      max_connections_per_client=_PER_CLIENT.value or None,
      request_seconds=_REQUEST_SECONDS.value, allowed_hosts=tuple(_ALLOWED_HOSTS.value))
  if not os.path.isdir(_BASE.value):
    cli.fail("no such directory (--model_base_path)", _BASE.value)
  # TensorFlow after cli.run has set its log level.
  from esrgan_tf.serving import server as server_lib  # pylint: disable=g-import-not-at-top
  stop = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda num, _: (logging.info("Signal %d: draining", num), stop.set()))
  server = server_lib.ModelServer(
      _BASE.value, _NAME.value, port=_PORT.value, rest_api_port=_REST.value or None,
      host=_HOST.value, limits=limits, file_system_poll_wait_seconds=_POLL.value,
      max_versions=_MAX_VERSIONS.value, web_ui=_WEB_UI.value)
  server.start()
  rest = f", REST on {server.rest_api_port}" if server.rest_api_port else ""
  if server.rest_api_port and _WEB_UI.value:
    rest += f", web page at http://{_HOST.value}:{server.rest_api_port}/"
  logging.info("esrgan-serve ready: gRPC on %d%s", server.port, rest)
  while not stop.wait(1.0):
    pass
  # Waits at most --drain_seconds for requests being computed, then closes every connection
  # still open (clients hanging mid-request included): the process exits soon after.
  server.stop(grace=_DRAIN.value)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
