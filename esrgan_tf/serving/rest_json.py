"""JSON ↔ numpy for TF Serving's REST API (`rest.py` serves it over HTTP).

Requests: nested lists typed by the signature (JSON true/false only for bool inputs, as TF
Serving's rapidjson reader), binary strings as {"b64": ...}; NaN/Infinity tokens, which JSON
(RFC 8259 §6) does not have, are refused (`refuse_constant`). Answers: {"predictions": ...} (row
format) or {"outputs": ...} (columnar), built row by row; `*_bytes` string outputs as {"b64":
...}; an answer holding NaN or Infinity is an error (TF Serving writes them as bare tokens).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Iterator

import grpc
import numpy as np

from esrgan_tf.serving.errors import ServingError, shown


def _bad(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _decode_strings(value, where: str):
  """Nested JSON strings / {"b64": ...} objects → nested bytes."""
  if isinstance(value, list):
    return [_decode_strings(v, where) for v in value]
  if isinstance(value, dict):
    if set(value) != {"b64"} or not isinstance(value["b64"], str):
      raise _bad(f"{where}: a binary value must be {{\"b64\": \"<base64>\"}}, got keys "
                 f"{sorted(value)}")
    try:
      return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
      raise _bad(f"{where}: invalid base64 in \"b64\" ({e})") from e
  if isinstance(value, str):
    return value.encode("utf-8")
  raise _bad(f"{where}: expected a string or {{\"b64\": ...}}, got {type(value).__name__}")


def _holds_bool(value) -> bool:
  """Whether nested lists hold a JSON true/false (numpy would read it as 1/0 among numbers)."""
  pending = [value]
  while pending:
    item = pending.pop()
    if isinstance(item, bool):
      return True
    if isinstance(item, list):
      pending.extend(item)
  return False


def json_to_array(value, dtype_enum: int, where: str, booleans: bool = True) -> np.ndarray:
  """One input tensor from its nested-list JSON form, typed as the signature says.

  Args:
    value: The parsed JSON value.
    dtype_enum: The signature input's dtype.
    where: For messages.
    booleans: The body may hold true/false (False when its text has neither: no walk needed).

  Raises:
    ServingError: Ragged lists, wrong value kinds (true/false for numbers included), integers
      out of range.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  dtype = tf.as_dtype(dtype_enum)
  try:
    if dtype == tf.string:
      nested = _decode_strings(value, where)
      array = np.empty(np.shape(nested) if isinstance(nested, list) else (), dtype=object)
      array[...] = nested if isinstance(nested, list) else nested
      return array
    raw = np.asarray(value)
  except ValueError as e:  # numpy: "setting an array element with a sequence" / inhomogeneous.
    raise _bad(f"{where}: not a rectangular nested list ({e})") from e
  if raw.dtype.kind not in "biuf":
    raise _bad(f"{where}: expected numbers for a {dtype.name} input, got {raw.dtype.kind!r} "
               "values (strings need a string input)")
  # TF Serving reads true/false for bool inputs only (rapidjson IsBool), numbers for the rest.
  if dtype == tf.bool and raw.dtype.kind != "b":
    raise _bad(f"{where}: a bool input takes true/false")
  if dtype != tf.bool and booleans and (raw.dtype.kind == "b" or _holds_bool(value)):
    raise _bad(f"{where}: a {dtype.name} input takes numbers, not true/false")
  target = dtype.as_numpy_dtype
  if np.issubdtype(target, np.integer):
    if raw.dtype.kind == "f":
      raise _bad(f"{where}: a {dtype.name} input takes integers, got floating-point values")
    info = np.iinfo(target)
    if raw.size and (raw.min() < info.min or raw.max() > info.max):
      raise _bad(f"{where}: values outside the {dtype.name} range [{info.min}, {info.max}]")
  return raw.astype(target)


def array_to_json(array: np.ndarray, alias: str):
  """An output tensor as nested lists; `*_bytes` string outputs as {"b64": ...} objects."""
  if not isinstance(array, np.ndarray):  # One row of a tensor: a numpy scalar or bytes.
    array = np.asarray(array, dtype=object if isinstance(array, (bytes, str)) else None)
  if array.dtype.kind in "OSU":
    binary = alias.endswith("_bytes")

    def encode(item):
      if isinstance(item, list):
        return [encode(i) for i in item]
      if binary:
        return {"b64": base64.b64encode(item).decode("ascii")}
      return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
    return encode(array.tolist())
  return array.tolist()


def parse_predict_body(body: dict, signature, booleans: bool = True) -> tuple[dict, bool]:
  """Inputs of a :predict body against a SignatureDef (`booleans`: see `json_to_array`).

  Returns:
    (alias → numpy array, True for row format).

  Raises:
    ServingError: Malformed body.
  """
  if ("instances" in body) == ("inputs" in body):
    raise _bad("the request must have exactly one of \"instances\" (row format) and \"inputs\" "
               "(columnar format)")
  aliases = list(signature.inputs)
  if "instances" in body:
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
      raise _bad("\"instances\" must be a non-empty list")
    keyed = all(isinstance(i, dict) and set(i) != {"b64"} for i in instances)
    if not keyed:
      if len(aliases) != 1:
        raise _bad(f"this signature has inputs {sorted(aliases)}: each instance must be an "
                   "object naming them")
      columns = {aliases[0]: instances}
    else:
      columns = {}
      for index, instance in enumerate(instances):
        if set(instance) != set(aliases):
          raise _bad(f"instance {index} has keys {sorted(instance)}, the signature takes "
                     f"{sorted(aliases)}")
        for key, value in instance.items():
          columns.setdefault(key, []).append(value)
    row = True
  else:
    value = body["inputs"]
    if isinstance(value, dict) and set(value) != {"b64"}:
      columns = value
    else:
      if len(aliases) != 1:
        raise _bad(f"this signature has inputs {sorted(aliases)}: \"inputs\" must be an object "
                   "naming them")
      columns = {aliases[0]: value}
    row = False
  inputs = {}
  for key, value in columns.items():
    if key not in signature.inputs:
      raise _bad(f"unknown input {shown(key)!r}; the signature takes {sorted(aliases)}")
    inputs[key] = json_to_array(value, signature.inputs[key].dtype, f"input {key!r}", booleans)
  return inputs, row


def _iter_array(array, alias: str) -> Iterator[str]:
  """JSON text of one output, one innermost row at a time (never the whole tensor as lists)."""
  if not isinstance(array, np.ndarray) or array.dtype.kind in "OSU" or array.ndim <= 2:
    yield json.dumps(array_to_json(array, alias), separators=(",", ":"))
    return
  yield "["
  for index in range(array.shape[0]):
    if index:
      yield ","
    yield from _iter_array(array[index], alias)
  yield "]"


def iter_predict_response(outputs: dict, row: bool) -> Iterator[bytes]:
  """`format_predict_response` as JSON text in chunks of about 64 kB, built row by row.

  Raises:
    ServingError: Row format with outputs of different batch sizes (before any text).
  """
  for alias, array in outputs.items():
    if isinstance(array, np.ndarray) and array.dtype.kind in "fc" and not np.isfinite(array).all():
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"output {alias!r} holds NaN or Infinity, which JSON cannot carry (were "
                         "the inputs outside [0, 1]?); use gRPC to receive such values")
  count = None
  if row and len(outputs) > 1:
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         "row format needs outputs with the same 0-th dimension; use \"inputs\"")
    count = sizes.pop()

  def pieces() -> Iterator[str]:
    yield '{"predictions":' if row else '{"outputs":'
    if len(outputs) == 1:
      (alias, array), = outputs.items()
      yield from _iter_array(array, alias)
    elif row:
      yield "["
      for index in range(count):
        yield "," if index else ""
        yield "{" + ",".join(
            f"{json.dumps(alias)}:" + "".join(_iter_array(array[index], alias))
            for alias, array in outputs.items()) + "}"
      yield "]"
    else:
      yield "{"
      for index, (alias, array) in enumerate(outputs.items()):
        yield ("," if index else "") + f"{json.dumps(alias)}:"
        yield from _iter_array(array, alias)
      yield "}"
    yield "}"

  buffer, size = [], 0
  for piece in pieces():
    buffer.append(piece)
    size += len(piece)
    if size >= 1 << 16:
      yield "".join(buffer).encode("utf-8")
      buffer, size = [], 0
  if buffer:
    yield "".join(buffer).encode("utf-8")


def format_predict_response(outputs: dict, row: bool) -> dict:
  """{"predictions": ...} (row) or {"outputs": ...} (columnar), named only if several outputs."""
  if row:
    if len(outputs) == 1:
      (alias, array), = outputs.items()
      return {"predictions": array_to_json(array, alias)}
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         "row format needs outputs with the same 0-th dimension; use \"inputs\"")
    rows = [{alias: array_to_json(array[i], alias) for alias, array in outputs.items()}
            for i in range(sizes.pop())]
    return {"predictions": rows}
  if len(outputs) == 1:
    (alias, array), = outputs.items()
    return {"outputs": array_to_json(array, alias)}
  return {"outputs": {alias: array_to_json(a, alias) for alias, a in outputs.items()}}


def refuse_constant(name: str):
  """json.loads hook for NaN/Infinity/-Infinity, which JSON (RFC 8259 §6) does not have."""
  raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")
