"""The error type of `esrgan-serve`, shared by the core, the limits and both front ends."""

from __future__ import annotations

from typing import Optional

import grpc

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
# Longest error message sent back (a request's names are echoed in messages; a 3 MB model name
# must not come back whole, nor overflow gRPC's 8 kB metadata limit for the status).
MAX_MESSAGE_CHARS = 1000
# Longest piece of a request (a name, a key) quoted in a message.
MAX_QUOTED_CHARS = 100


def shown(value) -> str:
  """A request's string for a message, cut to MAX_QUOTED_CHARS with its length."""
  text = str(value)
  if len(text) <= MAX_QUOTED_CHARS:
    return text
  return text[:MAX_QUOTED_CHARS] + f"… ({len(text)} characters)"


class ServingError(Exception):
  """A request that cannot be served; `code` is the gRPC status TF Serving would return.

  `http_status`, when set, overrides the REST status mapped from `code` (413 for a body over the
  limit, where gRPC says RESOURCE_EXHAUSTED as for a busy server).
  """

  def __init__(self, code: grpc.StatusCode, message: str, http_status: Optional[int] = None):
    if len(message) > MAX_MESSAGE_CHARS:
      message = message[:MAX_MESSAGE_CHARS] + f"… ({len(message)} characters)"
    super().__init__(message)
    self.code = code
    self.message = message
    self.http_status = http_status


def status_code_from_int(value: int) -> grpc.StatusCode:
  """gRPC status for a tensorflow.error.Code value (the two enums share their numbers)."""
  return _CODES_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)
