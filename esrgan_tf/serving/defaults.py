"""esrgan-serve's default limits and bind address (plain constants: no gRPC, no TensorFlow).

Sized for a 2-core box with a few GB of RAM (esrgan-serve is a development / small-deployment
server; `tensorflow_model_server` is the production one):
  * 64 MB messages: a ×4 float32 answer for a 512² input is 512²·16·3·4 B = 50 MB (gRPC); REST
    JSON text of the same answer would be ~315 MB and is refused (ask for uint8 or bytes).
  * 512² input pixels per request: RRDBNet (nf=64) keeps ~20 feature maps of H·W·64 float32
    alive, ~1.3 GB at 512²; clients tile larger images (esrgan_tf.inference.tiling does).
  * 2 requests in flight, one per core: more only queue inside TF while each holds its memory.
  * 64 REST connections: threads reading requests (cheap while waiting); compute stays at 2.
  * Per client address, a quarter of the connections and half of the request-body budget, and
    4 gRPC calls still waiting for their request: one client cannot take what the others need.

`ServerLimits` gathers every limit of one server; `esrgan-serve` builds it once from its flags.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

SERVER_MAX_MESSAGE_MB = 64
# The Python server's limit on one request: N·H·W of a tensor input, or the summed pixels of the
# encoded images (the exported graph has its own, per image: export.versions.GRAPH_MAX_PIXELS).
SERVER_MAX_PIXELS_PER_REQUEST = 512 * 512
SERVER_MAX_INFLIGHT = 2
SERVER_MAX_CONNECTIONS = 64
# A client that has not delivered its request (REST headers; a whole gRPC message) in this time
# is cut; a body gets this plus its length at MIN_BODY_BYTES_PER_SECOND.
REQUEST_SECONDS = 10.0
# Seconds without a byte from (or to) a client before its connection is closed.
IDLE_SECONDS = 5.0
# A local client or proxy sends far faster than 4 MB/s.
MIN_BODY_BYTES_PER_SECOND = 4 << 20
# gRPC calls of one client address still waiting for their request message.
GRPC_PENDING_PER_CLIENT = 4
# Loopback only unless asked: esrgan-serve has no authentication (as tensorflow_model_server).
DEFAULT_HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class ServerLimits:
  """Every bound of one `esrgan-serve`: requests, answers, connections, clients and time.

  Attributes:
    max_pixels: Python-server pixels per request (N·H·W, or the encoded images' summed sizes,
      every frame a decoder would allocate counted), checked before decoding or running.
    max_message_mb: gRPC message, REST body and answer limit, in MB.
    max_inflight: Predicts computed at once; one more gets RESOURCE_EXHAUSTED (REST 429).
    max_connections: REST connections served at once; one more evicts a connection still
      waiting for its headers, or is answered 503.
    max_connections_per_client: REST connections of one client address (None: a quarter of
      max_connections).
    max_body_mb_per_client: Request-body bytes in flight for one client address, in MB (None:
      half of the body budget, (max_inflight + 1) · max_message_mb).
    grpc_pending_per_client: gRPC calls of one client address whose request has not arrived.
    request_seconds: Time to deliver a request (REST headers, a gRPC message; REST bodies get
      this plus their length at min_body_bytes_per_second, gRPC messages the same for
      max_message_mb).
    idle_seconds: Longest silence of a REST client (reading) or stall of its reading (writing).
    min_body_bytes_per_second: Slowest accepted body transfer rate.
    allowed_hosts: Extra `Host`/`Origin` names the REST API answers ("*": any). IP literals,
      the bound host name and (bound to loopback or all interfaces) `localhost` always are.
  """

  max_pixels: int = SERVER_MAX_PIXELS_PER_REQUEST
  max_message_mb: int = SERVER_MAX_MESSAGE_MB
  max_inflight: int = SERVER_MAX_INFLIGHT
  max_connections: int = SERVER_MAX_CONNECTIONS
  max_connections_per_client: Optional[int] = None
  max_body_mb_per_client: Optional[int] = None
  grpc_pending_per_client: int = GRPC_PENDING_PER_CLIENT
  request_seconds: float = REQUEST_SECONDS
  idle_seconds: float = IDLE_SECONDS
  min_body_bytes_per_second: int = MIN_BODY_BYTES_PER_SECOND
  allowed_hosts: tuple = ()

  def __post_init__(self):
    for name in ("max_pixels", "max_message_mb", "max_inflight", "max_connections",
                 "grpc_pending_per_client", "min_body_bytes_per_second"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
    for name in ("max_connections_per_client", "max_body_mb_per_client"):
      if getattr(self, name) is not None and getattr(self, name) < 1:
        raise ValueError(f"{name} must be ≥ 1 (or None for the default), got "
                         f"{getattr(self, name)}")
    if self.request_seconds <= 0 or self.idle_seconds <= 0:
      raise ValueError("request_seconds and idle_seconds must be positive")
    object.__setattr__(self, "allowed_hosts", tuple(h.lower() for h in self.allowed_hosts))

  @property
  def max_message_bytes(self) -> int:
    """The message limit in bytes (gRPC caps lengths at 2³¹ − 1)."""
    return min(self.max_message_mb << 20, 2**31 - 1)

  @property
  def body_budget_bytes(self) -> int:
    """REST body bytes held at once over all clients: one body per compute slot, plus one."""
    return (self.max_inflight + 1) * self.max_message_bytes

  @property
  def connections_per_client(self) -> int:
    return self.max_connections_per_client or max(1, self.max_connections // 4)

  @property
  def body_bytes_per_client(self) -> int:
    if self.max_body_mb_per_client is not None:
      return self.max_body_mb_per_client << 20
    return max(self.max_message_bytes, self.body_budget_bytes // 2)

  @property
  def grpc_pending_burst(self) -> int:
    """gRPC calls of one client address waiting for their request at once (stalled or not): all
    its compute slots could be asked for at once, plus 14 status/metadata calls."""
    return self.max_inflight + 14

  @property
  def grpc_receive_seconds(self) -> float:
    """Deadline for a gRPC call's request message (its size is known only once it arrived)."""
    return self.request_seconds + self.max_message_bytes / self.min_body_bytes_per_second
