r"""esrgan-serve: serve an export base over TF Serving's gRPC and REST protocols.

  esrgan-serve --model_base_path=exports/esrgan --model_name=esrgan --port=8500 \
      --rest_api_port=8501

SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to --drain_seconds), exit 0.
For production use the real tensorflow_model_server with the same export (see serving/README.md).
"""

import os
import signal
import threading

from absl import flags
from absl import logging

from esrgan_tf import cli
from esrgan_tf import export_layout

_BASE = flags.DEFINE_string("model_base_path", None,
                            "Directory of integer-named SavedModel versions (esrgan-export).")
_NAME = flags.DEFINE_string("model_name", "esrgan", "Model name used by clients.")
_PORT = flags.DEFINE_integer("port", 8500, "gRPC port.")
_REST = flags.DEFINE_integer("rest_api_port", 0, "REST port; 0 disables REST (as TF Serving).")
_HOST = flags.DEFINE_string("host", "0.0.0.0", "Interface to bind.")
_POLL = flags.DEFINE_float("file_system_poll_wait_seconds", 1.0,
                           "Seconds between scans for new versions; ≤ 0 scans once.")
_MAX_VERSIONS = flags.DEFINE_integer("max_versions", 1, "Latest versions kept loaded.")
_INFLIGHT = flags.DEFINE_integer("max_inflight", 16,
                                 "Concurrent Predicts; more get RESOURCE_EXHAUSTED (REST 429).")
_MESSAGE_MB = flags.DEFINE_integer("max_message_mb", export_layout.DEFAULT_MAX_MESSAGE_MB,
                                   "gRPC message and REST body limit in MB.")
_PIXELS = flags.DEFINE_integer("max_pixels", export_layout.DEFAULT_MAX_PIXELS,
                               "Pixel limit per request (N·H·W), checked before running.")
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
  for flag in (_MAX_VERSIONS, _INFLIGHT, _MESSAGE_MB, _PIXELS):
    if flag.value < 1:
      raise cli.usage(f"--{flag.name} must be ≥ 1, got {flag.value}")
  if not os.path.isdir(_BASE.value):
    cli.fail("no such directory (--model_base_path)", _BASE.value)
  # TensorFlow after cli.run has set its log level.
  from esrgan_tf.serving import server as server_lib  # pylint: disable=g-import-not-at-top
  stop = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda num, _: (logging.info("Signal %d: draining", num), stop.set()))
  server = server_lib.ModelServer(
      _BASE.value, _NAME.value, port=_PORT.value,
      rest_api_port=_REST.value or None, host=_HOST.value,
      file_system_poll_wait_seconds=_POLL.value, max_versions=_MAX_VERSIONS.value,
      max_inflight=_INFLIGHT.value, max_message_mb=_MESSAGE_MB.value, max_pixels=_PIXELS.value,
      web_ui=_WEB_UI.value)
  server.start()
  rest = f", REST on {server.rest_api_port}" if server.rest_api_port else ""
  if server.rest_api_port and _WEB_UI.value:
    rest += f", web page at http://{_HOST.value}:{server.rest_api_port}/"
  logging.info("esrgan-serve ready: gRPC on %d%s", server.port, rest)
  while not stop.wait(1.0):
    pass
  server.stop(grace=_DRAIN.value)


def run():
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
