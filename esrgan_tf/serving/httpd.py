"""A bounded HTTP/1.0 server for the REST front end (the stdlib's `ThreadingHTTPServer` is not).

What `http.server.ThreadingHTTPServer` lacks and this adds (every figure from `ServerLimits`):
  * a listen backlog of `LISTEN_BACKLOG` instead of 5 (40 concurrent clients then got connection
    resets instead of answers);
  * at most `max_connections` connection threads, and per client address at most
    `connections_per_client`; one more is answered 503 at once and closed;
  * under pressure (`PRESSURE_FRACTION` of the connections open), connections still silent before
    their request headers for `PRESSURE_IDLE_SECONDS` are cut, and when all are taken a new
    connection evicts the longest-silent of them, so idle sockets cannot keep others out (the
    server speaks HTTP/1.0: every connection closes after one answer, none idles kept alive);
  * deadlines on reading: the request line and headers within `request_seconds`, the body within
    `request_seconds` plus its length at `min_body_bytes_per_second`, and `idle_seconds` without
    a byte ends the connection, so slow clients (headers then half a body) cannot hold threads;
  * request bodies are read in chunks, each reserved first from the server's body budget and
    from the client's share of it (`body_bytes_per_client`): bytes in flight are bounded by what
    clients really sent, and one client cannot take the budget others need;
  * `close_all(grace)`: waits up to `grace` seconds for requests being computed, then shuts down
    every open connection, so SIGTERM exits even while clients hang mid-request.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import socket
import socketserver
import threading
import time
from typing import Optional

from absl import logging
import grpc

from esrgan_tf.serving.defaults import ServerLimits
from esrgan_tf.serving.errors import ServingError

LISTEN_BACKLOG = 128
# Above this fraction of max_connections, connections silent before their headers are cut after
# PRESSURE_IDLE_SECONDS (a real client sends its request line and headers at once).
PRESSURE_FRACTION = 0.75
PRESSURE_IDLE_SECONDS = 1.0
BODY_CHUNK_BYTES = 1 << 20
# Headers of every JSON answer (the web page's files add their own, web.HEADERS).
NOSNIFF = ("X-Content-Type-Options", "nosniff")


def refusal(status: int, reason: str, message: str) -> bytes:
  """A complete HTTP/1.0 JSON error answer that closes the connection."""
  body = json.dumps({"error": message}).encode()
  return (f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
          f"{NOSNIFF[0]}: {NOSNIFF[1]}\r\nConnection: close\r\n"
          f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@dataclasses.dataclass
class Connection:
  """One open connection: its thread, client address, phase and last activity."""

  sock: socket.socket
  thread: threading.Thread
  client: str
  waiting_for_headers: bool = True
  last_active: float = dataclasses.field(default_factory=time.monotonic)
  evicted: bool = False
  body_bytes: int = 0  # Reserved from the body budget.


class DeadlineReader(io.RawIOBase):
  """Socket reads that fail with TimeoutError once `owner.read_deadline` (monotonic) has passed."""

  def __init__(self, sock: socket.socket, owner, idle_seconds: float,
               connection: Optional[Connection]):
    super().__init__()
    self._sock = sock
    self._owner = owner
    self._idle = idle_seconds
    self._connection = connection

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    remaining = self._owner.read_deadline - time.monotonic()
    if remaining <= 0:
      raise TimeoutError("the client was too slow sending its request")
    self._sock.settimeout(min(remaining, self._idle))
    count = self._sock.recv_into(buffer)
    if count and self._connection is not None:
      self._connection.last_active = time.monotonic()
    return count


class SocketWriter(io.RawIOBase):
  """Unbuffered writes with `idle_seconds` per write (a client not reading its answer)."""

  def __init__(self, sock: socket.socket, idle_seconds: float):
    super().__init__()
    self._sock = sock
    self._idle = idle_seconds

  def writable(self) -> bool:
    return True

  def write(self, data) -> int:
    self._sock.settimeout(self._idle)
    self._sock.sendall(data)
    return len(data)


class BoundedHTTPServer(socketserver.TCPServer):
  """A TCP server with one thread per connection, bounded per server and per client address.

  Handlers should derive from `DeadlineHandlerMixin` (before BaseHTTPRequestHandler).

  Args:
    address: (host, port).
    handler: The request handler class.
    limits: Connections, per-client shares, body budget and time limits.
    busy: Callable returning how many requests are being computed (close_all waits for zero).
  """

  allow_reuse_address = True
  request_queue_size = LISTEN_BACKLOG

  def __init__(self, address, handler, *, limits: ServerLimits, busy=lambda: 0):
    self.limits = limits
    self.max_connections = limits.max_connections
    self._busy = busy
    self._lock = threading.Lock()
    self._connections: dict = {}  # socket → Connection
    self._per_client: collections.Counter = collections.Counter()
    self._body_by_client: collections.Counter = collections.Counter()
    self._closing = False
    self._reserved = 0
    super().__init__(address, handler)

  # Body budget.

  def reserve_body(self, sock, count: int) -> None:
    """Reserves `count` more body bytes for the connection `sock` before they are read.

    Raises:
      ServingError: RESOURCE_EXHAUSTED (429) when the server's budget or the client's share of
        it is taken.
    """
    with self._lock:
      connection = self._connections.get(sock)
      client = connection.client if connection is not None else ""
      if self._reserved + count > self.limits.body_budget_bytes:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"Server busy: {self._reserved} bytes of request bodies are being "
                           "read; retry later")
      if self._body_by_client[client] + count > self.limits.body_bytes_per_client:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"{self._body_by_client[client]} bytes of request bodies from "
                           f"{client} are being read, its share of this server; retry later")
      self._reserved += count
      self._body_by_client[client] += count
      if connection is not None:
        connection.body_bytes += count

  def release_body(self, sock) -> None:
    """Returns every body byte the connection `sock` reserved."""
    with self._lock:
      connection = self._connections.get(sock)
      if connection is not None:
        self._release_locked(connection)

  def _release_locked(self, connection: Connection) -> None:
    self._reserved -= connection.body_bytes
    self._body_by_client[connection.client] -= connection.body_bytes
    if not self._body_by_client[connection.client]:
      del self._body_by_client[connection.client]
    connection.body_bytes = 0

  # Connections.

  def connection(self, sock) -> Optional[Connection]:
    with self._lock:
      return self._connections.get(sock)

  def headers_received(self, sock) -> None:
    """The connection's request headers are read: it is no longer evictable."""
    with self._lock:
      connection = self._connections.get(sock)
      if connection is not None:
        connection.waiting_for_headers = False

  def _cut(self, connection: Connection) -> None:
    connection.evicted = True
    try:
      connection.sock.shutdown(socket.SHUT_RDWR)  # Unblocks its thread's recv.
    except OSError:
      pass

  def _make_room_locked(self, now: float) -> int:
    """Cuts silent connections still waiting for headers under pressure; returns those open."""
    open_ = [c for c in self._connections.values() if not c.evicted]
    if len(open_) < PRESSURE_FRACTION * self.max_connections:
      return len(open_)
    silent = sorted((c for c in open_ if c.waiting_for_headers), key=lambda c: c.last_active)
    for connection in silent:
      if now - connection.last_active >= PRESSURE_IDLE_SECONDS:
        self._cut(connection)
    open_ = [c for c in open_ if not c.evicted]
    if len(open_) >= self.max_connections:
      waiting = [c for c in silent if not c.evicted]
      if waiting:  # Full: the longest-silent one makes room for the newcomer.
        self._cut(waiting[0])
        return len(open_) - 1
    return len(open_)

  def process_request(self, request, client_address):
    client = client_address[0] if isinstance(client_address, tuple) else str(client_address)
    refusal_message = None
    with self._lock:
      if self._closing:
        refusal_message = "the server is shutting down"
      elif self._per_client[client] >= self.limits.connections_per_client:
        refusal_message = (f"too many open connections from {client} "
                           "(--max_connections_per_client); retry later")
      elif self._make_room_locked(time.monotonic()) >= self.max_connections:
        refusal_message = "too many open connections (--max_connections); retry later"
      else:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name="rest", daemon=True)
        self._connections[request] = Connection(request, thread, client)
        self._per_client[client] += 1
    if refusal_message is not None:
      try:
        request.settimeout(1.0)
        request.sendall(refusal(503, "Service Unavailable", refusal_message))
      except OSError:
        pass
      self.shutdown_request(request)
      return
    thread.start()

  def _serve_connection(self, request, client_address):
    try:
      self.finish_request(request, client_address)
    except OSError:  # The client went away, or the connection was cut (evicted, shut down).
      pass
    except Exception:  # pylint: disable=broad-except  # one connection must not stop the server.
      logging.exception("REST connection from %s failed", client_address[0])
    finally:
      with self._lock:
        connection = self._connections.pop(request, None)
        if connection is not None:
          self._release_locked(connection)
          self._per_client[connection.client] -= 1
          if not self._per_client[connection.client]:
            del self._per_client[connection.client]
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
    for connection in connections.values():
      self._cut(connection)
    for connection in connections.values():
      connection.thread.join(timeout=1.0)
    self.server_close()


class DeadlineHandlerMixin:
  """For a `BaseHTTPRequestHandler`: reads under deadlines, writes with a per-write timeout.

  `read_deadline` starts at accept + request_seconds; `read_body(n)` reads an n-byte body under
  its own deadline and the body budget.
  """

  read_deadline: float
  server: BoundedHTTPServer

  def setup(self):
    limits = self.server.limits
    self.connection = self.request
    self.read_deadline = time.monotonic() + limits.request_seconds
    self.rfile = io.BufferedReader(DeadlineReader(
        self.connection, self, limits.idle_seconds, self.server.connection(self.request)))
    self.wfile = SocketWriter(self.connection, limits.idle_seconds)

  def parse_request(self):
    ok = super().parse_request()
    self.server.headers_received(self.request)
    return ok

  def read_body(self, length: int) -> bytearray:
    """Reads exactly `length` body bytes, each chunk reserved from the budget before it is read.

    The reservation is returned by `release_body` (after parsing) or when the connection ends.

    Raises:
      ServingError: RESOURCE_EXHAUSTED (429) when the budget or the client's share is taken,
        INVALID_ARGUMENT when the body ends early.
      TimeoutError: The body did not arrive in time.
    """
    limits = self.server.limits
    self.read_deadline = (time.monotonic() + limits.request_seconds
                          + length / limits.min_body_bytes_per_second)
    body = bytearray()
    while len(body) < length:
      count = min(BODY_CHUNK_BYTES, length - len(body))
      self.server.reserve_body(self.request, count)
      chunk = self.rfile.read(count)
      body += chunk
      if len(chunk) < count:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"the body ended after {len(body)} of {length} bytes")
    return body

  def release_body(self) -> None:
    self.server.release_body(self.request)

  def finish(self):
    try:
      self.wfile.flush()
    except OSError:
      pass
    self.wfile.close()
    self.rfile.close()
