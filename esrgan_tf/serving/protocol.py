"""TF Serving protocol answers shared by the gRPC and REST front ends, and by clients.

Only messages and limits live here (no server): `server.py` and `rest.py` both build their
GetModelStatus / GetModelMetadata answers with these functions, and `client.py` takes the
message-size options from here without importing a server.
"""

from __future__ import annotations

from typing import Optional

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from esrgan_tf.serving import core
from esrgan_tf.serving.errors import ServingError

# 512 MB: a ×4 float32 answer for a 1024² input is 1024²·16·3·4 B ≈ 201 MB, far above gRPC's 4 MB
# default. (tensorflow_model_server itself sets the maximum, INT32_MAX.)
DEFAULT_MAX_MESSAGE_MB = 512
# esrgan-serve's own defaults, sized for a 2-core box with a few GB of RAM (the server is a dev /
# small-deployment server; tensorflow_model_server is the production one):
#   * 64 MB messages: a ×4 float32 answer for a 512² input is 512²·16·3·4 B = 50 MB (gRPC); REST
#     JSON text of the same answer would be ~315 MB and is refused (ask for uint8 or bytes).
#   * 512² input pixels per request: RRDBNet (nf=64) keeps ~20 feature maps of H·W·64 float32
#     alive, ~1.3 GB at 512²; clients tile larger images (esrgan_tf.tiling does).
#   * 2 requests in flight, one per core: more only queue inside TF while each holds its memory.
#   * 64 REST connections: threads reading requests (cheap while waiting); compute stays at 2.
SERVER_MAX_MESSAGE_MB = 64
SERVER_MAX_PIXELS = 512 * 512
SERVER_MAX_INFLIGHT = 2
SERVER_MAX_CONNECTIONS = 64
# Loopback only unless asked: esrgan-serve has no authentication (as tensorflow_model_server).
DEFAULT_HOST = "127.0.0.1"
SIGNATURE_DEF_FIELD = "signature_def"


def grpc_message_options(max_message_mb: int) -> list[tuple[str, int]]:
  """Channel/server options raising gRPC's send and receive limits to `max_message_mb`."""
  size = min(int(max_message_mb) * 1024 * 1024, 2**31 - 1)
  return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


def requested_version(model_spec) -> Optional[int]:
  """The version a ModelSpec asks for, or None for the latest.

  Raises:
    ServingError: A version label (this server has no label configuration, as TF Serving without
      a `version_labels` config).
  """
  if model_spec.HasField("version"):
    return int(model_spec.version.value)
  if model_spec.version_label:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"Unrecognized servable version label: {model_spec.version_label} "
                       "(esrgan-serve has no version labels; ask for a version number)")
  return None


def model_status_response(manager: core.ModelManager, name: str, version: Optional[int]
                          ) -> get_model_status_pb2.GetModelStatusResponse:
  """GetModelStatus answer.

  Raises:
    ServingError: Unknown model or version (NOT_FOUND).
  """
  if name != manager.name:
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"Could not find any versions of model {name}")
  response = get_model_status_pb2.GetModelStatusResponse()
  for status in manager.status(version):
    entry = response.model_version_status.add()
    entry.version = status.version
    entry.state = status.state
    entry.status.error_code = status.error_code
    entry.status.error_message = status.error_message
  return response


def model_metadata_response(predictor: core.Predictor, name: str, version: Optional[int],
                            fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
  """GetModelMetadata answer: the "serve" MetaGraph's SignatureDefMap packed in an Any.

  Raises:
    ServingError: Unknown model/version (NOT_FOUND), missing or unsupported metadata field.
  """
  fields = list(fields)
  if not fields:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       "GetModelMetadataRequest must specify at least one metadata_field")
  unsupported = [f for f in fields if f != SIGNATURE_DEF_FIELD]
  if unsupported:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"Metadata field {unsupported[0]} is not supported "
                       f"(only {SIGNATURE_DEF_FIELD!r})")
  predictor.check_model_name(name)
  with predictor.manager.acquire(version) as servable:
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
      signature_map.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
  return response
