"""A TF Serving gRPC client as an `Engine`, for `esrgan-upscale --server=HOST:PORT`.

Only the standard API is used (GetModelMetadata, Predict with the official stub), so it works
against `esrgan-serve` and against the real `tensorflow_model_server` alike. Large images are
tiled by the caller (`esrgan_tf.inference.tiling`); each tile batch is one Predict.
"""

from __future__ import annotations

from typing import Optional

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from esrgan_tf.core.errors import ModelError
from esrgan_tf.export.versions import DEFAULT_MAX_MESSAGE_MB
from esrgan_tf.images import pixels
from esrgan_tf.inference.engine import Engine

# Side of the zero image sent once at connect time to measure the scale (any size works; small
# keeps it cheap, 8 survives every upsampler).
PROBE_SIZE = 8


def grpc_message_options(max_message_mb: int) -> list[tuple[str, int]]:
  """Channel/server options raising gRPC's send and receive limits to `max_message_mb`."""
  size = min(int(max_message_mb) * 1024 * 1024, 2**31 - 1)
  return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


class RemoteError(ModelError):
  """A Predict call that the server refused or that failed in transit."""

  def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
    super().__init__(message)
    self.code = code


def _describe(address: str, error: grpc.RpcError) -> str:
  code = error.code() if hasattr(error, "code") else None
  details = error.details() if hasattr(error, "details") else str(error)
  return f"{address}: {code.name if code else 'error'}: {details}"


def _single(mapping, what: str, signature_name: str, address: str) -> str:
  keys = list(mapping)
  if len(keys) != 1:
    raise ModelError(f"{address}: signature {signature_name!r} has {what} {sorted(keys)}; "
                     "remote_engine needs exactly one")
  return keys[0]


def remote_engine(address: str, model_name: str = "esrgan", *,
                  signature_name: str = "upscale_float", timeout: float = 60.0,
                  max_message_mb: int = DEFAULT_MAX_MESSAGE_MB,
                  version: Optional[int] = None) -> Engine:
  """Connects to a TF Serving endpoint and wraps one image signature as an `Engine`.

  The signature must take one [N, H, W, C] image tensor (float32 in [0, 1] or uint8) and return
  one image tensor; `upscale_float` (default, exact) and `serving_default` (uint8, a quarter of the
  bytes) both qualify. The scale is measured once with a PROBE_SIZE² zero image.

  Args:
    address: "host:port" of the gRPC endpoint.
    model_name: `model_spec.name`.
    signature_name: Which signature to call.
    timeout: Seconds per call (connect, metadata, each Predict).
    max_message_mb: Channel send/receive limit (gRPC's 4 MB default is too small for images).
    version: Pin a version (default: the server's latest).

  Returns:
    An `Engine` whose fn sends float32 NHWC batches and returns float32 batches.

  Raises:
    ModelError: Unreachable server, unknown model or signature, unusable signature.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  channel = grpc.insecure_channel(address, options=grpc_message_options(max_message_mb))
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
  except grpc.FutureTimeoutError:
    channel.close()
    raise ModelError(f"{address}: no gRPC server reachable within {timeout:g} s") from None
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

  def spec(message):
    message.name = model_name
    if version is not None:
      message.version.value = version

  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  spec(request.model_spec)
  try:
    metadata = stub.GetModelMetadata(request, timeout=timeout)
  except grpc.RpcError as e:
    channel.close()
    raise ModelError(_describe(address, e)) from e
  signatures = get_model_metadata_pb2.SignatureDefMap()
  metadata.metadata["signature_def"].Unpack(signatures)
  if signature_name not in signatures.signature_def:
    channel.close()
    names = sorted(k for k in signatures.signature_def if not k.startswith("__"))
    raise ModelError(f"{address}: model {model_name!r} has no signature {signature_name!r}; "
                     f"it has {names}")
  signature = signatures.signature_def[signature_name]
  input_key = _single(signature.inputs, "inputs", signature_name, address)
  output_key = _single(signature.outputs, "outputs", signature_name, address)
  input_dtype = tf.as_dtype(signature.inputs[input_key].dtype)
  if input_dtype not in (tf.float32, tf.uint8):
    channel.close()
    raise ModelError(f"{address}: signature {signature_name!r} takes {input_dtype.name}; "
                     "remote_engine needs float32 or uint8 images")
  dims = signature.inputs[input_key].tensor_shape.dim
  channels = dims[-1].size if len(dims) == 4 and dims[-1].size > 0 else 3

  def predict(batch: np.ndarray, _channel=channel) -> np.ndarray:
    # _channel: grpc closes a channel when its Python object is collected, so the closure holds it.
    del _channel
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4:
      raise ValueError(f"expected a float32 [N, H, W, C] batch, got shape {batch.shape}")
    if input_dtype == tf.uint8:
      batch = pixels.from_float(batch)
    req = predict_pb2.PredictRequest(output_filter=[output_key])
    spec(req.model_spec)
    req.model_spec.signature_name = signature_name
    req.inputs[input_key].CopyFrom(tf.make_tensor_proto(batch))
    try:
      response = stub.Predict(req, timeout=timeout)
    except grpc.RpcError as e:
      raise RemoteError(_describe(address, e), e.code()) from e
    out = tf.make_ndarray(response.outputs[output_key])
    if out.dtype == np.uint8:
      return out.astype(np.float32) / 255.0
    return out.astype(np.float32, copy=False)

  try:
    probe = predict(np.zeros((1, PROBE_SIZE, PROBE_SIZE, channels), np.float32))
  except RemoteError:
    channel.close()
    raise
  scale = probe.shape[1] // PROBE_SIZE
  if probe.ndim != 4 or scale < 1 or probe.shape[1:3] != (scale * PROBE_SIZE,) * 2:
    channel.close()
    raise ModelError(f"{address}: signature {signature_name!r} mapped a {PROBE_SIZE}² probe to "
                     f"shape {probe.shape}, not an integer upscale")
  info = {"server": address, "model_name": model_name, "signature": signature_name,
          "version": int(metadata.model_spec.version.value)}
  return Engine(fn=predict, scale=scale, name=f"{model_name}@{address}", info=info)
