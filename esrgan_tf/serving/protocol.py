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
from esrgan_tf.serving.defaults import (  # noqa: F401  (re-exported)
  DEFAULT_HOST,
  SERVER_MAX_CONNECTIONS,
  SERVER_MAX_INFLIGHT,
  SERVER_MAX_MESSAGE_MB,
  SERVER_MAX_PIXELS_PER_REQUEST,
)
from esrgan_tf.serving.errors import ServingError, shown

SIGNATURE_DEF_FIELD = "signature_def"


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
                       f"Unrecognized servable version label: {shown(model_spec.version_label)} "
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
                       f"Could not find any versions of model {shown(name)}")
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
