"""The error type of `esrgan-serve`, shared by the core, the limits and both front ends."""

from __future__ import annotations

from typing import Optional

import grpc

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request that cannot be served; `code` is the gRPC status TF Serving would return.

  `http_status`, when set, overrides the REST status mapped from `code` (413 for a body over the
  limit, where gRPC says RESOURCE_EXHAUSTED as for a busy server).
  """

  def __init__(self, code: grpc.StatusCode, message: str, http_status: Optional[int] = None):
    super().__init__(message)
    self.code = code
    self.message = message
    self.http_status = http_status


def status_code_from_int(value: int) -> grpc.StatusCode:
  """gRPC status for a tensorflow.error.Code value (the two enums share their numbers)."""
  return _CODES_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)
