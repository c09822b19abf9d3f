"""A bounded HTTP/1.0 server for the REST front end (the stdlib's `ThreadingHTTPServer` is not).

What `http.server.ThreadingHTTPServer` lacks and this adds:
  * a listen backlog of `LISTEN_BACKLOG` instead of 5 (40 concurrent clients then got connection
    resets instead of answers);
  * at most `max_connections` connection threads; one more is answered 503 at once and closed;
  * deadlines on reading: the request line and headers within `HEADER_SECONDS`, the body within
    `BODY_SECONDS` plus its length at `MIN_BODY_BYTES_PER_SECOND`, and `IDLE_SECONDS` without a
    byte ends the connection, so slow clients (headers then half a body) cannot hold threads;
  * `close_all(grace)`: waits up to `grace` seconds for requests being computed, then shuts down
    every open connection, so SIGTERM exits even while clients hang mid-request.
"""

from __future__ import annotations

import contextlib
import io
import socket
import socketserver
import threading
import time

from absl import logging
import grpc

from esrgan_tf.serving.errors import ServingError

LISTEN_BACKLOG = 128
HEADER_SECONDS = 10.0
BODY_SECONDS = 10.0
MIN_BODY_BYTES_PER_SECOND = 4 << 20  # a local client or proxy sends far faster than 4 MB/s
IDLE_SECONDS = 5.0
_BUSY_BODY = b'{"error": "too many open connections (--max_connections); retry later"}'
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(_BUSY_BODY)) + _BUSY_BODY


class DeadlineReader(io.RawIOBase):
  """Socket reads that fail with TimeoutError once `owner.read_deadline` (monotonic) has passed."""

  def __init__(self, sock: socket.socket, owner):
    super().__init__()
    self._sock = sock
    self._owner = owner

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    remaining = self._owner.read_deadline - time.monotonic()
    if remaining <= 0:
      raise TimeoutError("the client was too slow sending its request")
    self._sock.settimeout(min(remaining, IDLE_SECONDS))
    return self._sock.recv_into(buffer)


class SocketWriter(io.RawIOBase):
  """Unbuffered writes with `IDLE_SECONDS` per write (a client not reading its answer)."""

  def __init__(self, sock: socket.socket):
    super().__init__()
    self._sock = sock

  def writable(self) -> bool:
    return True

  def write(self, data) -> int:
    self._sock.settimeout(IDLE_SECONDS)
    self._sock.sendall(data)
    return len(data)


class BoundedHTTPServer(socketserver.TCPServer):
  """A TCP server with one thread per connection, at most `max_connections` of them.

  Handlers should derive from `DeadlineHandlerMixin` (before BaseHTTPRequestHandler).

  Args:
    address: (host, port).
    handler: The request handler class.
    max_connections: Connections served at once.
    busy: Callable returning how many requests are being computed (close_all waits for zero).
    body_budget_bytes: Bytes of request bodies read at once, over all connections; None: no
      limit.
  """

  allow_reuse_address = True
  request_queue_size = LISTEN_BACKLOG

  def __init__(self, address, handler, *, max_connections: int, busy=lambda: 0,
               body_budget_bytes=None):
    if max_connections < 1:
      raise ValueError(f"max_connections must be ≥ 1, got {max_connections}")
    self.max_connections = max_connections
    self._busy = busy
    self._lock = threading.Lock()
    self._connections: dict = {}  # socket → thread
    self._closing = False
    self._budget = body_budget_bytes
    self._reserved = 0
    super().__init__(address, handler)

  @contextlib.contextmanager
  def body_budget(self, length: int):
    """Reserves `length` bytes of the body budget while a body is read and parsed.

    Raises:
      ServingError: RESOURCE_EXHAUSTED (429) when the budget is taken by other requests.
    """
    with self._lock:
      if self._budget is not None and self._reserved + length > self._budget:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"Server busy: {self._reserved} bytes of request bodies are being "
                           "read; retry later")
      self._reserved += length
    try:
      yield
    finally:
      with self._lock:
        self._reserved -= length

  def process_request(self, request, client_address):
    with self._lock:
      refuse = self._closing or len(self._connections) >= self.max_connections
      if not refuse:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name="rest", daemon=True)
        self._connections[request] = thread
    if refuse:
      try:
        request.settimeout(1.0)
        request.sendall(_BUSY)
      except OSError:
        pass
      self.shutdown_request(request)
      return
    thread.start()

  def _serve_connection(self, request, client_address):
    try:
      self.finish_request(request, client_address)
    except Exception:  # pylint: disable=broad-except  # one connection must not stop the server.
      logging.exception("REST connection from %s failed", client_address[0])
    finally:
      with self._lock:
        self._connections.pop(request, None)
      self.shutdown_request(request)

  def open_connections(self) -> int:
    with self._lock:
      return len(self._connections)

  def close_all(self, grace) -> None:
    """Stops accepting (after `shutdown()`), lets computing requests finish for up to `grace`
    seconds, then shuts down every open connection and closes the listening socket."""
    with self._lock:
      self._closing = True
    deadline = time.monotonic() + (grace if grace is not None else 1e9)
    while self._busy() > 0 and self.open_connections() and time.monotonic() < deadline:
      time.sleep(0.05)
    with self._lock:
      connections = dict(self._connections)
    for sock in connections:
      try:
        sock.shutdown(socket.SHUT_RDWR)  # Unblocks a thread stuck in recv/send.
      except OSError:
        pass
    for thread in connections.values():
      thread.join(timeout=1.0)
    self.server_close()


class DeadlineHandlerMixin:
  """For a `BaseHTTPRequestHandler`: reads under deadlines, writes with a per-write timeout.

  `read_deadline` starts at accept + HEADER_SECONDS; call `extend_deadline_for_body(n)` before
  reading an n-byte body.
  """

  read_deadline: float

  def setup(self):
    self.connection = self.request
    self.read_deadline = time.monotonic() + HEADER_SECONDS
    self.rfile = io.BufferedReader(DeadlineReader(self.connection, self))
    self.wfile = SocketWriter(self.connection)

  def extend_deadline_for_body(self, length: int) -> None:
    self.read_deadline = (time.monotonic() + BODY_SECONDS
                          + length / MIN_BODY_BYTES_PER_SECOND)

  def finish(self):
    try:
      self.wfile.flush()
    except OSError:
      pass
    self.wfile.close()
    self.rfile.close()
